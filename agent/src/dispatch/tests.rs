//! The dispatcher's plumbing (journal, git, replay on resume, signals) driven by a
//! scripted evaluator on a throwaway repository. The evaluator's figures are made up
//! for the decision logic only; they stay in temporary journals and reach no report.

use std::path::Path;
use std::sync::{Arc, Mutex};

use super::fake::{made_up, made_up_ab, made_up_measurement};
use super::*;
use crate::budget::DEFAULT_BUDGETS_TOML;
use crate::evaluate::StageTimes;
use crate::journal::{self, Event as J};
use crate::testutil::{copy_dir, git as sh};

/// A user repository holding the bundled softmax kernel, committed.
fn user_repo() -> tempfile::TempDir {
    user_repo_of("softmax")
}

/// A user repository holding one bundled kernel, committed.
fn user_repo_of(kernel: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernels");
    for kernel in kernel.split(',') {
        copy_dir(&src.join(kernel), &p.join(format!("kernels/{kernel}")));
    }
    copy_dir(&src.join("include"), &p.join("kernels/include"));
    sh(p, &["init", "-q", "-b", "main"]);
    sh(p, &["config", "user.email", "u@example.com"]);
    sh(p, &["config", "user.name", "U"]);
    sh(p, &["add", "."]);
    sh(p, &["commit", "-q", "-m", "kernels"]);
    d
}

/// Scripted results: a candidate is FAST when `fast(against, candidate)`, fails
/// validation when `broken(candidate)`, and is SAME otherwise.
#[derive(Clone)]
struct Scripted {
    calls: Arc<Mutex<Vec<String>>>,
    fast: fn(&Config, &Config) -> bool,
    broken: fn(&Config) -> bool,
    /// A rewritten kernel is FAST against the kernel as written.
    rewrites_win: bool,
    /// Read a proposal's source: `MARK_FAST` is FAST against a source without it,
    /// `MARK_BROKEN` fails validation, `MARK_NOCOMPILE` does not compile.
    marks: bool,
    /// Requests a stop (as SIGINT would) after this many calls.
    stop_after: Option<(usize, StopFlag)>,
    /// The timing method pinned before each call.
    pins: Arc<Mutex<Vec<MethodChoice>>>,
    /// The GPU it says it is (a run with several).
    ordinal: Option<usize>,
}

impl Scripted {
    fn new(fast: fn(&Config, &Config) -> bool, broken: fn(&Config) -> bool) -> Self {
        Scripted {
            calls: Arc::default(),
            fast,
            broken,
            rewrites_win: false,
            marks: false,
            stop_after: None,
            pins: Arc::default(),
            ordinal: None,
        }
    }
    fn called(&self, what: String) {
        let mut c = self.calls.lock().unwrap();
        c.push(what);
        if let Some((n, flag)) = &self.stop_after {
            if c.len() >= *n {
                flag.request("SIGINT");
            }
        }
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

/// A configuration of a version of the kernel, as a candidate displays it.
fn labelled(spec: &KernelSpec, config: &Config) -> String {
    crate::spec::Candidate {
        config: config.clone(),
        rewrites: spec
            .rewritten
            .as_ref()
            .map(|r| r.rewrites.clone())
            .unwrap_or_default(),
    }
    .to_string()
}

impl Evaluator for Scripted {
    fn device_name(&self) -> String {
        "NVIDIA H100 80GB HBM3".into()
    }
    fn evaluate(&mut self, spec: &KernelSpec, config: &Config) -> Result<Evaluation, EvalError> {
        self.called(format!("{config}"));
        Ok(made_up(spec, config, !(self.broken)(config)))
    }
    fn compare(
        &mut self,
        (sa, a): (&KernelSpec, &Config),
        (spec, b): (&KernelSpec, &Config),
    ) -> Result<(Evaluation, Evaluation, Option<AbResult>), EvalError> {
        // The pair: a candidate against the best, or (once) the best against the baseline.
        self.called(format!("{} vs {}", labelled(spec, b), labelled(sa, a)));
        let ea = made_up(sa, a, true);
        fn source(s: &KernelSpec) -> &str {
            s.rewritten.as_ref().map_or("", |r| r.source.as_str())
        }
        let marked = |m: &str| self.marks && source(spec).contains(m);
        let mut eb = made_up(spec, b, !(self.broken)(b) && !marked("MARK_BROKEN"));
        if marked("MARK_NOCOMPILE") {
            eb.outcome = Outcome::CompileFailed {
                log: "kernel.cu(3): error: identifier \"MARK_NOCOMPILE\" is undefined".into(),
            };
            eb.measurement = None;
        }
        if eb.outcome != Outcome::Passed {
            return Ok((ea, eb, None));
        }
        let rewritten = |s: &KernelSpec| s.rewritten.as_ref().map(|r| r.rewrites.len());
        let gained = (self.rewrites_win && rewritten(spec) > rewritten(sa))
            || (marked("MARK_FAST") && !source(sa).contains("MARK_FAST"));
        let ab = made_up_ab((self.fast)(a, b) || gained);
        Ok((ea, eb, Some(ab)))
    }
    fn min_gain(&self) -> f64 {
        0.02
    }
    fn pin_method(&mut self, method: MethodChoice) {
        self.pins.lock().unwrap().push(method);
    }
    fn ordinal(&self) -> Option<usize> {
        self.ordinal
    }
    fn machine(&self) -> Option<(Value, Value, Value)> {
        Some((
            serde_json::json!({"name": "scripted"}),
            Value::Null,
            serde_json::json!({"seed": 1}),
        ))
    }
}

/// Larger vectors win; VARIANT=1 fails validation.
fn vec_wins(a: &Config, b: &Config) -> bool {
    b.0.get("VEC") > a.0.get("VEC")
}
fn variant_broken(c: &Config) -> bool {
    c.0.get("VARIANT") == Some(&1)
}

struct Run {
    summary: RunSummary,
    records: Vec<Record>,
    calls: Vec<String>,
}

fn run_once(repo: &Path, reports: &Path, ev: Scripted, stop: StopFlag) -> Run {
    run_kernel("softmax", repo, reports, ev, stop)
}

fn run_kernel(kernel: &str, repo: &Path, reports: &Path, ev: Scripted, stop: StopFlag) -> Run {
    run_with(kernel, DEFAULT_BUDGETS_TOML, repo, reports, ev, stop)
}

fn run_with(
    kernel: &str,
    budgets_toml: &str,
    repo: &Path,
    reports: &Path,
    ev: Scripted,
    stop: StopFlag,
) -> Run {
    let library =
        Library::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../patterns")).unwrap();
    run_with_library(kernel, budgets_toml, library, (repo, reports), ev, stop)
}

fn run_with_library(
    kernel: &str,
    budgets_toml: &str,
    library: Library,
    dirs: (&Path, &Path),
    ev: Scripted,
    stop: StopFlag,
) -> Run {
    run_full(
        kernel,
        budgets_toml,
        library,
        dirs,
        ev,
        stop,
        Extras::default(),
    )
}

/// What `nightshift.toml` may add to a run.
#[derive(Default)]
struct Extras {
    proposer: Option<crate::propose::Proposer>,
    notifier: Option<crate::notify::Notifier>,
    /// The clock stands still: decisions do not depend on the machine's speed.
    frozen: bool,
    /// GPUs of the run (0: one), each a clone of the evaluator.
    gpus: usize,
}

/// A run with a code-writing proposer or webhooks, or neither.
fn run_full(
    kernel: &str,
    budgets_toml: &str,
    library: Library,
    (repo, reports): (&Path, &Path),
    ev: Scripted,
    stop: StopFlag,
    extras: Extras,
) -> Run {
    let id = "r1";
    let path = reports.join(id).join(journal::FILE_NAME);
    let (mut journal, previous) = if path.exists() {
        let (mut j, read) = Journal::open_append(&path).unwrap();
        j.append(&J::Resumed {
            device: ev.device_name(),
            dropped: None,
            down_s: None,
            forced: vec![],
            kernels: None,
            options: None,
            budgets: journal::Typed::Unread,
        })
        .unwrap();
        (j, read.records)
    } else {
        (Journal::create(reports, id).unwrap(), vec![])
    };
    let budgets = Budgets::parse(&patterns_only(budgets_toml), Path::new("budgets.toml")).unwrap();
    if previous.is_empty() {
        journal
            .append(&J::RunStarted {
                run_id: id.into(),
                device: ev.device_name(),
                budgets: budgets.clone().into(),
                git_branch: Some("nightshift/r1".into()),
                kernels: vec![],
                options: None,
            })
            .unwrap();
    }
    let wt = crate::vcs::worktree_dir(repo, id).unwrap();
    let ws = Workspace::open(repo, id, &wt).unwrap();
    // `kernel` may name several, separated by commas.
    let kernels: Vec<KernelEntry> = kernel
        .split(',')
        .map(|kernel| {
            let rel = PathBuf::from("kernels").join(kernel);
            let mut spec = KernelSpec::load(&ws.root.join(&rel)).unwrap();
            // As `nightshift run` does: the kernel as written, whatever the branch
            // committed.
            let src = spec
                .source_path
                .strip_prefix(&ws.root)
                .unwrap()
                .to_path_buf();
            spec.source = ws.read_at_base(&src).unwrap().unwrap();
            KernelEntry { spec, rel_dir: rel }
        })
        .collect();
    let probe = ev.clone();
    let setup = Setup {
        run_id: id.into(),
        kernels,
        library,
        budgets,
        workspace: ws,
        evaluators: (0..extras.gpus.max(1))
            .map(|i| Scripted {
                ordinal: Some(i),
                ..ev.clone()
            })
            .collect(),
        journal,
        previous,
        stop,
        view: View::quiet(),
        proposer: extras.proposer,
        notifier: extras.notifier,
        clock: if extras.frozen {
            Clock::Frozen
        } else {
            Clock::real()
        },
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let summary = rt
        .block_on(async { Dispatcher::new(setup).unwrap().run().await })
        .unwrap();
    Run {
        summary,
        records: journal::read(&path).unwrap().records,
        calls: probe.calls(),
    }
}

fn branch_log(repo: &Path) -> Vec<String> {
    sh(repo, &["log", "--format=%s", "main..nightshift/r1"])
        .lines()
        .map(str::to_string)
        .collect()
}

/// Every question to a proposer a journal holds, with its answer, in order.
fn answers(records: &[Record]) -> Vec<journal::ProposerAnswer> {
    records
        .iter()
        .filter_map(|r| match &r.event {
            J::ProposerAnswer(a) => Some(a.clone()),
            _ => None,
        })
        .collect()
}

/// What a run decided, without the records that differ between a straight run and
/// one that was interrupted and resumed (times, charges, budget snapshots, the start
/// and end markers).
fn decisions(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| match &r.event {
            J::Proposal { .. }
            | J::Evaluated { .. }
            | J::Verdict { .. }
            | J::Revert { .. }
            | J::ProposalInvalid { .. }
            | J::Pivot { .. }
            | J::KernelDone { .. }
            | J::KernelPaused { .. }
            | J::StudyPoint { .. }
            | J::Study { .. }
            | J::FinalComparison { .. } => {
                let mut v = serde_json::to_value(&r.event).unwrap();
                // The recorded evaluation is compared through its config only.
                for k in [
                    "evaluation",
                    "against",
                    "baseline_evaluation",
                    "best_evaluation",
                ] {
                    v.as_object_mut().unwrap().remove(k);
                }
                Some(v.to_string())
            }
            J::Commit { kernel, config, .. } => Some(format!("commit {kernel} {config}")),
            _ => None,
        })
        .collect()
}

/// The reference for resume tests: a run that was never interrupted, on its own
/// repository (kept alive with it).
fn uninterrupted() -> (tempfile::TempDir, Run) {
    let repo = user_repo();
    let reports = tempfile::tempdir().unwrap();
    let run = run_once(
        repo.path(),
        reports.path(),
        Scripted::new(vec_wins, variant_broken),
        StopFlag::default(),
    );
    (repo, run)
}

#[test]
fn a_run_commits_only_proven_gains_on_its_branch_and_journals_every_step() {
    let repo = user_repo();
    let reports = tempfile::tempdir().unwrap();
    let head = sh(repo.path(), &["rev-parse", "HEAD"]);
    let ev = Scripted::new(vec_wins, variant_broken);
    let run = run_once(repo.path(), reports.path(), ev, StopFlag::default());

    assert_eq!(run.summary.stop_reason, Some(StopReason::NothingLeft));
    // VEC 1 -> 2 -> 4, each FAST against the best before it: two commits.
    let log = branch_log(repo.path());
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(
        log.iter().all(|s| s.starts_with("softmax: VEC ")),
        "{log:?}"
    );
    let tuned = sh(
        repo.path(),
        &["show", "nightshift/r1:kernels/softmax/tuned.toml"],
    );
    let best = tuned::read(&tuned).unwrap();
    assert_eq!(best.0["VEC"], 4);
    assert_eq!(
        run.summary.kernels[0].best.as_deref(),
        Some(best.to_string().as_str())
    );
    // The closing summary is the journal's fold, the same one `status` reads.
    let k = &run.summary.kernels[0];
    let folded = &crate::state::RunState::from_records(&run.records).kernel_states[0];
    assert_eq!(k.commits.len(), 2);
    assert_eq!(k.commits, folded.commits);
    assert_eq!((&k.best, k.best_us), (&folded.best, folded.best_us));
    assert_eq!(&k.outcomes, &folded.outcomes);
    assert_eq!(k.outcomes.values().sum::<usize>(), folded.evaluated);
    assert!(k.best_us.is_some() && k.baseline_us.is_some(), "{k:?}");
    let body = sh(repo.path(), &["log", "-1", "--format=%B", "nightshift/r1"]);
    for t in [
        "Nightshift-Run: r1",
        "Nightshift-Pattern: ",
        "Nightshift-Speedup: 1.2500x (95% CI 1.2400-1.2600",
        "Nightshift-Pairs: 30",
    ] {
        assert!(body.contains(t), "{t} missing from\n{body}");
    }
    // The user's branch, index and tree are untouched.
    assert_eq!(sh(repo.path(), &["rev-parse", "HEAD"]), head);
    assert_eq!(sh(repo.path(), &["status", "--porcelain"]), "");

    // No configuration twice, and each one journaled once with its outcome.
    let mut seen = std::collections::BTreeSet::new();
    for c in &run.calls {
        assert!(seen.insert(c.clone()), "{c} evaluated twice");
    }
    let evaluated: Vec<&Record> = run
        .records
        .iter()
        .filter(|r| matches!(r.event, J::Evaluated { .. }))
        .collect();
    let finals = run
        .records
        .iter()
        .filter(|r| matches!(r.event, J::FinalComparison { .. }))
        .count();
    assert_eq!(finals, 1);
    assert_eq!(evaluated.len() + finals, run.calls.len());
    // A broken variant is reverted with its reason, never committed.
    assert!(run.records.iter().any(|r| matches!(&r.event,
        J::Revert { config, reason, .. } if config.contains("VARIANT=1") && reason.contains("scripted failure"))));
    // Every second is charged: the ledger's GPU time is the run's wall time.
    let charged: f64 = run
        .records
        .iter()
        .filter_map(|r| match &r.event {
            J::Charge(c) => Some(c.gpu_s),
            _ => None,
        })
        .sum();
    assert!((charged - run.summary.spent.gpu_s).abs() < 1e-6);
    assert!(charged >= 1.0 * run.calls.len() as f64);
    // The machine is recorded before any work.
    assert!(matches!(
        run.records.get(1).map(|r| &r.event),
        Some(J::Machine { .. })
    ));
    // The best was compared with the baseline at the end, and the journal closes.
    assert!(run
        .records
        .iter()
        .any(|r| matches!(r.event, J::FinalComparison { .. })));
    assert!(matches!(
        run.records.last().unwrap().event,
        J::RunFinished {
            stop: Some(StopReason::NothingLeft),
            ..
        }
    ));
}

#[test]
fn a_signal_stops_before_the_next_candidate_and_resume_measures_nothing_twice() {
    // The reference: a run that was never interrupted.
    let (straight_repo, straight) = uninterrupted();

    let repo = user_repo();
    let reports = tempfile::tempdir().unwrap();
    let stop = StopFlag::default();
    let mut ev = Scripted::new(vec_wins, variant_broken);
    ev.stop_after = Some((3, stop.clone()));
    let first = run_once(repo.path(), reports.path(), ev, stop);
    assert_eq!(
        first.calls.len(),
        3,
        "the candidate in flight finishes, no more"
    );
    assert!(matches!(
        first.summary.stop_reason,
        Some(StopReason::Signal { ref signal }) if signal == "SIGINT"
    ));

    let second = run_once(
        repo.path(),
        reports.path(),
        Scripted::new(vec_wins, variant_broken),
        StopFlag::default(),
    );
    for c in &second.calls {
        assert!(!first.calls.contains(c), "{c} measured again after resume");
    }
    assert_eq!(first.calls.len() + second.calls.len(), straight.calls.len());
    assert_eq!(decisions(&second.records), decisions(&straight.records));
    assert_eq!(branch_log(repo.path()), branch_log(straight_repo.path()));
}

/// The ledger the charges of `records` add up to, at the scripted device's price.
fn folded(records: &[Record], budgets_toml: &str) -> crate::budget::Ledger {
    let b = Budgets::parse(&patterns_only(budgets_toml), Path::new("budgets.toml")).unwrap();
    let charges: Vec<&Charge> = records
        .iter()
        .filter_map(|r| match &r.event {
            J::Charge(c) => Some(c),
            _ => None,
        })
        .collect();
    crate::budget::Ledger::from_charges(b.price_per_gpu_hour("NVIDIA H100 80GB HBM3"), charges)
        .unwrap()
}

/// Checks that every `budget` snapshot equals the charges journaled before it, totals
/// and every breakdown, bit for bit; returns how many there are.
fn snapshots_agree_with_charges(records: &[Record], budgets_toml: &str, what: &str) -> usize {
    let mut n = 0;
    for (i, r) in records.iter().enumerate() {
        if let J::Budget {
            spent, breakdown, ..
        } = &r.event
        {
            let l = folded(&records[..i], budgets_toml);
            assert_eq!(*spent, l.spent(), "{what}: snapshot at seq {}", r.seq);
            assert_eq!(
                breakdown.as_ref(),
                Some(&l.breakdown()),
                "{what}: snapshot at seq {}",
                r.seq
            );
            n += 1;
        }
    }
    n
}

/// GPU seconds charged in `records` for work that no record says was finished: a
/// kill came between its charges and its result.
fn unfinished_charges(records: &[Record]) -> f64 {
    let finished = |kernel: &str, config: &str| {
        if let Some(best) = config.strip_prefix("final: ") {
            return records.iter().any(|r| {
                matches!(&r.event, J::FinalComparison { kernel: k, best: b, .. } if k == kernel && b == best)
            });
        }
        records.iter().any(|r| match &r.event {
            J::Evaluated {
                kernel: k,
                config: c,
                pattern,
                outcome,
                ..
            } if k == kernel && c == config => {
                pattern.is_none()
                    || outcome != "passed"
                    || records.iter().any(|v| {
                        matches!(&v.event, J::Verdict { kernel: k, config: c, .. } if k == kernel && c == config)
                    })
            }
            _ => false,
        })
    };
    records
        .iter()
        .filter_map(|r| match &r.event {
            J::Charge(c) if c.stage != Stage::Idle => {
                let (k, cfg) = (c.kernel.as_deref()?, c.config.as_deref()?);
                (!finished(k, cfg)).then_some(c.gpu_s)
            }
            _ => None,
        })
        .sum()
}

/// The ledger of the work in `records` alone: idle time (the loop deciding) is real
/// time, so two runs differ in it by milliseconds; everything else is made up and
/// the same.
fn folded_work(records: &[Record], budgets_toml: &str) -> crate::budget::Ledger {
    let work: Vec<Record> = records
        .iter()
        .filter(|r| !matches!(&r.event, J::Charge(c) if c.stage == Stage::Idle))
        .cloned()
        .collect();
    folded(&work, budgets_toml)
}

/// [`run_with`] on a clock that stands still: no idle time is charged, so the
/// journal (its records and the decisions the budget allows) does not depend on
/// how loaded the test machine is.
fn run_frozen(
    kernel: &str,
    budgets_toml: &str,
    repo: &Path,
    reports: &Path,
    ev: Scripted,
    stop: StopFlag,
) -> Run {
    let library =
        Library::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../patterns")).unwrap();
    let extras = Extras {
        frozen: true,
        ..Extras::default()
    };
    run_full(
        kernel,
        budgets_toml,
        library,
        (repo, reports),
        ev,
        stop,
        extras,
    )
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Kills a run after every `step`-th record of its journal (and half of the next
/// one), resumes it, and checks the resumed run against one that never stopped:
/// the same decisions and commits, the ledger rebuilt from every charge before its
/// first decision, every budget snapshot equal to the charges before it, and the
/// run inside its limits.
fn killed_at_every_record(budgets_toml: &str, step: usize) -> Run {
    let straight_repo = user_repo();
    let straight_reports = tempfile::tempdir().unwrap();
    let straight = run_frozen(
        "softmax",
        budgets_toml,
        straight_repo.path(),
        straight_reports.path(),
        Scripted::new(vec_wins, variant_broken),
        StopFlag::default(),
    );
    let n = straight.records.len();
    assert!(
        straight.calls.len() >= 4 && n > 20,
        "too short to cut: {n} records"
    );
    snapshots_agree_with_charges(&straight.records, budgets_toml, "straight");
    // Cut the journal after every few records, keeping the git branch as it ended
    // (commits made after the cut are what a kill -9 between `git commit` and the
    // journal's Commit record leaves behind).
    for cut in (1..n).step_by(step) {
        let what = format!("cut after record {cut}");
        let repo = user_repo();
        let reports = tempfile::tempdir().unwrap();
        run_frozen(
            "softmax",
            budgets_toml,
            repo.path(),
            reports.path(),
            Scripted::new(vec_wins, variant_broken),
            StopFlag::default(),
        );
        let path = reports.path().join("r1").join(journal::FILE_NAME);
        let text = std::fs::read_to_string(&path).unwrap();
        let kept: String = text.lines().take(cut).map(|l| format!("{l}\n")).collect();
        // Half of the next record too: the crash came mid-write.
        let torn: String = text
            .lines()
            .nth(cut)
            .unwrap_or("")
            .chars()
            .take(7)
            .collect();
        std::fs::write(&path, format!("{kept}{torn}")).unwrap();

        let resumed = run_frozen(
            "softmax",
            budgets_toml,
            repo.path(),
            reports.path(),
            Scripted::new(vec_wins, variant_broken),
            StopFlag::default(),
        );
        let seqs: Vec<u64> = resumed.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());

        // The first snapshot after the resume is written before anything new is
        // charged, and holds every charge journaled before the kill.
        let at = resumed
            .records
            .iter()
            .position(|r| matches!(r.event, J::Resumed { .. }))
            .expect("a Resumed record");
        let first = at
            + resumed.records[at..]
                .iter()
                .position(|r| matches!(r.event, J::Budget { .. }))
                .expect("a budget snapshot after the resume");
        assert!(
            !resumed.records[at..first]
                .iter()
                .any(|r| matches!(r.event, J::Charge(_))),
            "{what}: charged before the resumed ledger was snapshotted"
        );
        let before = folded(&resumed.records[..at], budgets_toml);
        let J::Budget {
            spent, breakdown, ..
        } = &resumed.records[first].event
        else {
            unreachable!()
        };
        assert_eq!(*spent, before.spent(), "{what}");
        assert_eq!(breakdown.as_ref(), Some(&before.breakdown()), "{what}");
        // ... which is the straight run's ledger at the same point, but for the
        // milliseconds of idle time in which the two runs differ: totals and every
        // breakdown of the work are the same.
        let ours = folded_work(&resumed.records[..at], budgets_toml);
        let theirs = folded_work(&straight.records[..cut], budgets_toml);
        assert_eq!(ours.spent(), theirs.spent(), "{what}");
        assert_eq!(ours.breakdown(), theirs.breakdown(), "{what}");
        snapshots_agree_with_charges(&resumed.records, budgets_toml, &what);
        // Over the whole run, killed or not, the same spend, plus the work that was
        // charged before the kill but not journaled as done (so done again, or not
        // done at all when the limit no longer allows it).
        let again = unfinished_charges(&resumed.records[..at]);
        let all = folded(&resumed.records, budgets_toml).spent();
        let (work, theirs) = (
            folded_work(&resumed.records, budgets_toml).spent(),
            folded_work(&straight.records, budgets_toml).spent(),
        );
        let b = Budgets::parse(&patterns_only(budgets_toml), Path::new("budgets.toml")).unwrap();
        assert!(
            b.run.gpu.is_none_or(|g| all.gpu_s <= g.as_secs_f64())
                && b.run.dollars.is_none_or(|d| all.dollars <= d),
            "{what}: {all:?} past the limits"
        );
        let bound = b.run.gpu.is_some() || b.run.dollars.is_some();
        if again == 0.0 || !bound {
            // Nothing done twice (or no limit it could bring closer): the run the
            // kill interrupted decides as the one that never stopped.
            assert!(
                close(work.gpu_s, theirs.gpu_s + again),
                "{what}: {work:?} {theirs:?} {again}"
            );
            assert_eq!(
                decisions(&resumed.records),
                decisions(&straight.records),
                "{what}"
            );
            assert_eq!(
                branch_log(repo.path()),
                branch_log(straight_repo.path()),
                "{what}"
            );
        } else {
            // Work charged but not journaled as done was done again: the limit comes
            // sooner, and the run stops earlier on the same path.
            let evaluated = |rs: &[Record]| -> Vec<String> {
                rs.iter()
                    .filter_map(|r| match &r.event {
                        J::Evaluated { config, .. } => Some(config.clone()),
                        _ => None,
                    })
                    .collect()
            };
            let ours = evaluated(&resumed.records);
            assert!(
                evaluated(&straight.records).starts_with(&ours),
                "{what}: {ours:?}"
            );
            assert!(work.gpu_s <= theirs.gpu_s + again + 1e-9, "{what}");
        }
    }
    straight
}

#[test]
fn killed_at_any_record_the_run_resumes_to_the_same_decisions_commits_and_ledger() {
    let straight = killed_at_every_record(DEFAULT_BUDGETS_TOML, 3);
    assert_eq!(straight.summary.stop_reason, Some(StopReason::NothingLeft));
}

#[test]
fn a_run_bound_by_dollars_killed_anywhere_stops_inside_them_over_the_whole_run() {
    // $1 a GPU-second; scripted evaluations cost 1 s each, a 1 s watchdog in reserve.
    let budgets = "[run]\ndollars = 6.5\n[price]\ndefault_per_gpu_hour = 3600\n\
                   [limits]\ncandidate_watchdog_seconds = 1\n";
    let straight = killed_at_every_record(budgets, 1);
    assert!(
        matches!(
            straight.summary.stop_reason,
            Some(StopReason::Dollars { .. })
        ),
        "{:?}",
        straight.summary.stop
    );
    assert!(straight.summary.spent.dollars <= 6.5);
}

#[test]
fn a_run_bound_by_gpu_hours_killed_anywhere_stops_inside_them_over_the_whole_run() {
    let budgets = "[run]\ngpu_hours = 0.0018\n[limits]\ncandidate_watchdog_seconds = 1\n";
    let straight = killed_at_every_record(budgets, 1);
    assert!(
        matches!(
            straight.summary.stop_reason,
            Some(StopReason::GpuHours { .. })
        ),
        "{:?}",
        straight.summary.stop
    );
    assert!(straight.summary.spent.gpu_s <= 0.0018 * 3600.0);
}

#[test]
fn cost_of_labels_each_stage_by_the_evaluation_timers_and_adds_up_to_its_wall_time() {
    let spec = KernelSpec::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernels/softmax"))
        .unwrap();
    // Made-up timers: compile 100 ms, validate 200, measure 600, total 1000.
    let e = made_up(&spec, &spec.baseline(), true);
    let c = cost_of(&e, None);
    assert_eq!(
        c,
        vec![
            (Stage::Compile, 0.1),
            (Stage::Validate, 0.2),
            (Stage::Measure, 0.6),
            (Stage::Idle, 1.0 - 0.1 - 0.2 - 0.6)
        ]
    );
    // The incumbent validated again by a new worker: its own timer, `revalidate`.
    let mut against = e.clone();
    against.times.validate_ms = 50.0;
    let c = cost_of(&e, Some(&against));
    assert!(c.contains(&(Stage::Revalidate, 0.05)), "{c:?}");
    let total: f64 = c.iter().map(|(_, s)| s).sum();
    assert!((total - 1.0).abs() < 1e-9);
    // A candidate that failed validation was never measured: no `measure` time.
    let mut failed = e.clone();
    failed.times.measure_ms = 0.0;
    assert!(!cost_of(&failed, None)
        .iter()
        .any(|(s, _)| *s == Stage::Measure));
    // A compile failure has no total: its compile time is what it cost.
    let mut f = e.clone();
    f.times = StageTimes {
        compile_ms: 250.0,
        ..Default::default()
    };
    assert_eq!(cost_of(&f, None), vec![(Stage::Compile, 0.25)]);
}

#[test]
fn the_wall_clock_counts_the_time_the_run_lay_dead_and_says_how_long() {
    let rec = |seq, t_ms, event| Record { seq, t_ms, event };
    let started = J::RunStarted {
        run_id: "r".into(),
        device: "d".into(),
        budgets: journal::Typed::Unread,
        git_branch: None,
        kernels: vec![],
        options: None,
    };
    let resumed = |down_s| J::Resumed {
        device: "d".into(),
        dropped: None,
        down_s,
        forced: vec![],
        kernels: None,
        options: None,
        budgets: journal::Typed::Unread,
    };
    let done = J::KernelDone {
        kernel: "k".into(),
        reason: "x".into(),
    };
    let records = vec![
        rec(0, 1_000, started),
        rec(1, 61_000, done.clone()),
        // Dead for an hour; a journal from before `down_s` was recorded.
        rec(2, 3_661_000, resumed(None)),
        rec(3, 3_691_000, done.clone()),
        // Dead for two minutes, as journaled.
        rec(4, 3_811_000, resumed(Some(119.5))),
        rec(5, 3_821_000, done),
    ];
    let r = crate::state::RunState::from_records(&records);
    // The night passes while the daemon is down: the wall limit counts it all.
    assert!((r.elapsed_s() - 3_820.0).abs() < 1e-9);
    assert_eq!(r.down_s, vec![3_600.0, 119.5]);
    assert!((r.down_total_s() - 3_719.5).abs() < 1e-9);
}

#[test]
fn every_measurement_of_a_kernel_uses_its_baseline_timing_method() {
    let repo = user_repo();
    let reports = tempfile::tempdir().unwrap();
    let ev = Scripted::new(vec_wins, variant_broken);
    let pins = ev.pins.clone();
    let run = run_once(repo.path(), reports.path(), ev, StopFlag::default());
    let pins = pins.lock().unwrap().clone();
    assert_eq!(pins.len(), run.calls.len());
    // The baseline chooses (it was timed in batches); everything after uses that.
    assert_eq!(pins[0], MethodChoice::Auto);
    assert!(
        pins[1..].iter().all(|p| *p == MethodChoice::Batch),
        "{pins:?}"
    );
}

fn never(_: &Config, _: &Config) -> bool {
    false
}
fn none_broken(_: &Config) -> bool {
    false
}

#[test]
fn an_underfilled_kernel_is_studied_at_larger_workloads_per_unit_of_work() {
    let repo = user_repo_of("attention");
    let reports = tempfile::tempdir().unwrap();
    let ev = Scripted::new(never, none_broken);
    let run = run_kernel(
        "attention",
        repo.path(),
        reports.path(),
        ev,
        StopFlag::default(),
    );
    let points: Vec<(i64, String)> = run
        .records
        .iter()
        .filter_map(|r| match &r.event {
            J::StudyPoint { scale, problem, .. } => Some((*scale, problem.clone())),
            _ => None,
        })
        .collect();
    let scales: Vec<i64> = points.iter().map(|p| p.0).collect();
    assert_eq!(scales, vec![1, 2, 4, 8]);
    // Both workload axes (B = 32, H = 8) scale; the sequence does not.
    assert!(
        points[3].1.contains("B=256") && points[3].1.contains("H=64"),
        "{points:?}"
    );
    assert!(points.iter().all(|p| p.1.contains("S=512")), "{points:?}");
    let study = run
        .records
        .iter()
        .find_map(|r| match &r.event {
            J::Study {
                result, cut_short, ..
            } => Some((result.clone(), cut_short.clone())),
            _ => None,
        })
        .expect("a Study record");
    assert_eq!(study.1, None);
    let result: study::StudyResult = study.0.get().cloned().expect("a typed study result");
    // Made-up times grow as the square root of the work (x4 per step of scale 2 on
    // two axes): throughput per unit of work doubles per step, no knee.
    let x = result.rows[3].throughput_x.unwrap();
    assert!((x.0 - 8.0).abs() < 1e-9, "{x:?}");
    assert!(x.1 < 8.0 && x.2 > 8.0, "{x:?}");
    assert_eq!(result.knee, None);
    assert_eq!(result.rows[3].ctas_per_sm, Some(256.0 * 64.0 / 132.0));
    assert!(
        result.conclusion.contains("throughput per unit of work")
            && result.conclusion.contains("not a speedup of one launch"),
        "{}",
        result.conclusion
    );
    // The study comes before the kernel is done, and is in the summary.
    let pos = |f: &dyn Fn(&J) -> bool| run.records.iter().position(|r| f(&r.event)).unwrap();
    assert!(pos(&|e| matches!(e, J::Study { .. })) < pos(&|e| matches!(e, J::KernelDone { .. })));
    assert_eq!(
        run.summary.kernels[0].study.as_ref(),
        Some(&result.conclusion)
    );
}

#[test]
fn a_study_interrupted_anywhere_resumes_without_measuring_a_point_twice() {
    let straight_repo = user_repo_of("attention");
    let straight_reports = tempfile::tempdir().unwrap();
    let straight = run_kernel(
        "attention",
        straight_repo.path(),
        straight_reports.path(),
        Scripted::new(never, none_broken),
        StopFlag::default(),
    );
    let n = straight.records.len();
    for cut in 1..n {
        let repo = user_repo_of("attention");
        let reports = tempfile::tempdir().unwrap();
        let first = run_kernel(
            "attention",
            repo.path(),
            reports.path(),
            Scripted::new(never, none_broken),
            StopFlag::default(),
        );
        let path = reports.path().join("r1").join(journal::FILE_NAME);
        let text = std::fs::read_to_string(&path).unwrap();
        let kept: String = text.lines().take(cut).map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, kept).unwrap();
        let resumed = run_kernel(
            "attention",
            repo.path(),
            reports.path(),
            Scripted::new(never, none_broken),
            StopFlag::default(),
        );
        assert_eq!(
            decisions(&resumed.records),
            decisions(&straight.records),
            "cut after record {cut}"
        );
        // What the kept records hold is not measured again.
        drop(first);
        let kept_points = text
            .lines()
            .take(cut)
            .filter(|l| l.contains("\"study_point\""))
            .count();
        let remeasured = resumed
            .records
            .iter()
            .skip(cut)
            .filter(|r| matches!(r.event, J::StudyPoint { .. }))
            .count();
        assert_eq!(kept_points + remeasured, 4, "cut after record {cut}");
    }
}

#[test]
fn a_stop_during_a_study_resumes_it_where_it_stopped() {
    let repo = user_repo_of("attention");
    let reports = tempfile::tempdir().unwrap();
    let stop = StopFlag::default();
    let mut ev = Scripted::new(never, none_broken);
    // Baseline, the VARIANT=1 candidate, the source tier's five (cache policy and
    // unroll pragmas), then two study points.
    ev.stop_after = Some((9, stop.clone()));
    let first = run_kernel("attention", repo.path(), reports.path(), ev, stop);
    assert!(matches!(
        first.summary.stop_reason,
        Some(StopReason::Signal { .. })
    ));
    assert!(!first
        .records
        .iter()
        .any(|r| matches!(r.event, J::Study { .. } | J::KernelDone { .. })));
    let second = run_kernel(
        "attention",
        repo.path(),
        reports.path(),
        Scripted::new(never, none_broken),
        StopFlag::default(),
    );
    assert_eq!(
        first.calls.len() + second.calls.len(),
        11,
        "{:?} {:?}",
        first.calls,
        second.calls
    );
    let scales: Vec<i64> = second
        .records
        .iter()
        .filter_map(|r| match &r.event {
            J::StudyPoint { scale, .. } => Some(*scale),
            _ => None,
        })
        .collect();
    assert_eq!(scales, vec![1, 2, 4, 8]);
    assert!(second.records.iter().any(|r| matches!(
        r.event,
        J::Study {
            cut_short: None,
            ..
        }
    )));
}

#[test]
fn the_knee_is_where_more_work_per_launch_stops_paying() {
    let spec =
        KernelSpec::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernels/simsearch"))
            .unwrap();
    let at = |scale: i64, median: f64| {
        let s = study::scaled(&spec, scale);
        let mut e = made_up(&s, &s.baseline(), true);
        e.measurement = Some(made_up_measurement(median));
        (scale, e)
    };
    // Per unit of work: 100, 50, 37.5, 36.25 µs: the last step gains 3%.
    let points = vec![at(1, 100.0), at(2, 100.0), at(4, 150.0), at(8, 290.0)];
    let r = study::summarize(&spec, &points);
    assert_eq!(r.knee, Some(4));
    let per: Vec<f64> = r.rows.iter().map(|x| x.us_per_unit.unwrap()).collect();
    assert_eq!(per, vec![100.0, 50.0, 37.5, 36.25]);
    assert!(r.conclusion.contains("past x4"), "{}", r.conclusion);
    // The scaled problem multiplies the workload axis only, and is validated itself.
    let s = study::scaled(&spec, 8);
    assert_eq!(s.problem["Q"], 800);
    assert_eq!(s.problem["N"], spec.problem["N"]);
    assert!(s.validation.sizes.is_empty());
    // A failed point has no figures, and no knee is claimed past it.
    let mut bad = at(2, 100.0);
    bad.1.outcome = Outcome::Crashed {
        stage: "validate".into(),
        error: "x".into(),
    };
    let r = study::summarize(&spec, &[at(1, 100.0), bad]);
    assert_eq!(r.rows[1].median_us, None);
    assert_eq!(r.rows[1].us_per_unit, None);
    assert_eq!(r.rows[1].throughput_x, None);
    assert_eq!(r.knee, None);
    assert!(
        r.conclusion.contains("no larger workload"),
        "{}",
        r.conclusion
    );
}

#[test]
fn a_run_stopped_by_its_budget_still_compares_the_best_with_the_baseline() {
    let repo = user_repo();
    let reports = tempfile::tempdir().unwrap();
    // 10 GPU-seconds, a 1 s watchdog reserve; scripted evaluations cost 1 s each. The
    // loop stops once one more candidate and the owed final comparison would not fit.
    let budgets = "[run]\ngpu_hours = 0.0027778\n[limits]\ncandidate_watchdog_seconds = 1\n";
    let run = run_with(
        "softmax",
        budgets,
        repo.path(),
        reports.path(),
        Scripted::new(vec_wins, variant_broken),
        StopFlag::default(),
    );
    assert!(
        matches!(run.summary.stop_reason, Some(StopReason::GpuHours { .. })),
        "{:?}",
        run.summary.stop
    );
    let k = &run.summary.kernels[0];
    assert!(!k.commits.is_empty() && k.done.is_none(), "{k:?}");
    assert!(k.final_speedup.is_some(), "{k:?}");
    assert!(run
        .records
        .iter()
        .any(|r| matches!(r.event, J::FinalComparison { .. })));
    assert!(
        run.summary.spent.gpu_s <= 10.0 + 1e-3,
        "{:?}",
        run.summary.spent
    );
}

#[test]
fn every_charge_is_what_its_evaluation_timers_say_and_verify_checks_it() {
    let (_repo, run) = uninterrupted();
    let n = crate::report::verify::verify_charges(&run.records).unwrap();
    assert!(
        n >= 3 * run.calls.len(),
        "{n} figures for {} calls",
        run.calls.len()
    );
    // A second moved from `measure` to `validate` is caught, naming the record.
    let mut recs = run.records.clone();
    let i = recs
        .iter()
        .position(|r| matches!(&r.event, J::Charge(c) if c.stage == Stage::Measure))
        .unwrap();
    if let J::Charge(c) = &mut recs[i].event {
        c.stage = Stage::Validate;
    }
    let e = crate::report::verify::verify_charges(&recs)
        .unwrap_err()
        .to_string();
    assert!(e.contains("charged as"), "{e}");
}

mod notices;
mod proposals;
mod rewrites;
mod secret;

/// Budgets whose run ends with the pattern library (the model search after it is
/// off): these tests follow the patterns' decisions; the search has its own tests.
fn patterns_only(budgets_toml: &str) -> String {
    if budgets_toml.contains("after_patterns = true") {
        budgets_toml.replace("after_patterns = true", "after_patterns = false")
    } else if budgets_toml.contains("[search]") {
        budgets_toml.to_string()
    } else {
        format!("{budgets_toml}\n[search]\nafter_patterns = false\n")
    }
}

/// Runs on several GPUs: the same decisions, work measured ahead.
mod gpus;
