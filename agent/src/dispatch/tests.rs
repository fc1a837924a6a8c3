//! The dispatcher's plumbing (journal, git, replay on resume, signals) driven by a
//! scripted evaluator on a throwaway repository. The evaluator's figures are made up
//! for the decision logic only; they stay in temporary journals and reach no report.

use std::path::Path;
use std::sync::{Arc, Mutex};

use super::*;
use crate::budget::DEFAULT_BUDGETS_TOML;
use crate::evaluate::{Roofline, StageTimes};
use crate::gpu::FunctionInfo;
use crate::journal::{self, Event as J};
use crate::measure::stats::Summary;
use crate::measure::{StopReason as SampleStop, TimingMethod};
use crate::spec::ComputeKind;
use crate::testutil::{copy_dir, git as sh};
use crate::worker::protocol::{Measurement, Occupancy};

/// A user repository holding the bundled softmax kernel, committed.
fn user_repo() -> tempfile::TempDir {
    user_repo_of("softmax")
}

/// A user repository holding one bundled kernel, committed.
fn user_repo_of(kernel: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernels");
    copy_dir(&src.join(kernel), &p.join(format!("kernels/{kernel}")));
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
    /// Requests a stop (as SIGINT would) after this many calls.
    stop_after: Option<(usize, StopFlag)>,
    /// The timing method pinned before each call.
    pins: Arc<Mutex<Vec<MethodChoice>>>,
}

/// Units of work of the spec's problem: the product of its workload axes.
fn work(spec: &KernelSpec) -> f64 {
    spec.workload_axes
        .iter()
        .map(|a| spec.problem.get(a).copied().unwrap_or(1) as f64)
        .product()
}

fn made_up(spec: &KernelSpec, config: &Config, passed: bool) -> Evaluation {
    Evaluation {
        kernel: spec.name.clone(),
        config: config.clone(),
        external: None,
        problem: plan::problem_label(&spec.problem),
        outcome: if passed {
            Outcome::Passed
        } else {
            Outcome::Crashed {
                stage: "validate".into(),
                error: "scripted failure".into(),
            }
        },
        compile: None,
        function: Some(FunctionInfo {
            registers: 32,
            local_bytes: 0,
            static_shared_bytes: 0,
            const_bytes: 0,
            max_threads_per_block: 1024,
        }),
        checks: vec![],
        skipped_sizes: vec![],
        // Time grows as the square root of the work: a launch with more work per CTA
        // fills the GPU better (made up).
        measurement: Some(made_up_measurement(10.0 * work(spec).sqrt())),
        // Kernels with workload axes launch one CTA per unit of work.
        occupancy: Some(if spec.workload_axes.is_empty() {
            Occupancy {
                ctas: 4096,
                sms: 132,
                active_blocks_per_sm: 8,
                waves: 3.9,
                theoretical: 1.0,
            }
        } else {
            Occupancy {
                ctas: work(spec) as u64,
                sms: 132,
                active_blocks_per_sm: 8,
                waves: work(spec) / (132.0 * 8.0),
                theoretical: 1.0,
            }
        }),
        roofline: passed.then(|| Roofline {
            bytes: 1.0,
            flops: 1.0,
            gbs: 1000.0,
            dram_fraction: 0.3,
            gflops: 10.0,
            compute: ComputeKind::Fp32,
            compute_fraction: 0.01,
            bound: "memory".into(),
        }),
        anomalies: vec![],
        times: StageTimes {
            compile_ms: 100.0,
            validate_ms: 200.0,
            measure_ms: 600.0,
            total_ms: 1000.0,
        },
    }
}

fn made_up_measurement(median: f64) -> Measurement {
    Measurement {
        method: TimingMethod::Batch {
            launches: 50,
            buffer_sets: 4,
        },
        samples: vec![],
        summary: Some(Summary {
            n: 30,
            median,
            q1: median * 0.99,
            q3: median * 1.01,
            min: median * 0.98,
            max: median * 1.02,
            mean: median,
            ci_lo: median * 0.995,
            ci_hi: median * 1.005,
        }),
        discarded_throttled: 0,
        stop: SampleStop::Converged,
        throttle_reasons: vec![],
        sm_clock_mhz: None,
        warmup_us_per_launch: median,
        energy: None,
        utilization_gpu_pct: None,
        wall_ms: 100.0,
    }
}

impl Scripted {
    fn new(fast: fn(&Config, &Config) -> bool, broken: fn(&Config) -> bool) -> Self {
        Scripted {
            calls: Arc::default(),
            fast,
            broken,
            stop_after: None,
            pins: Arc::default(),
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
        spec: &KernelSpec,
        a: &Config,
        b: &Config,
    ) -> Result<(Evaluation, Evaluation, Option<AbResult>), EvalError> {
        // The pair: a candidate against the best, or (once) the best against the baseline.
        self.called(format!("{b} vs {a}"));
        let ea = made_up(spec, a, true);
        let eb = made_up(spec, b, !(self.broken)(b));
        if eb.outcome != Outcome::Passed {
            return Ok((ea, eb, None));
        }
        let fast = (self.fast)(a, b);
        let (speedup, verdict) = if fast {
            (1.25, Verdict::Fast)
        } else {
            (1.0, Verdict::Same)
        };
        let ab = AbResult {
            speedup,
            ci_lo: speedup - 0.01,
            ci_hi: speedup + 0.01,
            verdict,
            min_gain: 0.02,
            pairs: 30,
            stop: SampleStop::Decided,
        };
        Ok((ea, eb, Some(ab)))
    }
    fn min_gain(&self) -> f64 {
        0.02
    }
    fn pin_method(&mut self, method: MethodChoice) {
        self.pins.lock().unwrap().push(method);
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
    let id = "r1";
    let path = reports.join(id).join(journal::FILE_NAME);
    let (mut journal, previous) = if path.exists() {
        let (mut j, read) = Journal::open_append(&path).unwrap();
        j.append(&J::Resumed {
            device: ev.device_name(),
            dropped: None,
        })
        .unwrap();
        (j, read.records)
    } else {
        (Journal::create(reports, id).unwrap(), vec![])
    };
    let budgets = Budgets::parse(budgets_toml, Path::new("budgets.toml")).unwrap();
    if previous.is_empty() {
        journal
            .append(&J::RunStarted {
                run_id: id.into(),
                device: ev.device_name(),
                budgets: serde_json::to_value(&budgets).unwrap(),
                git_branch: Some("nightshift/r1".into()),
            })
            .unwrap();
    }
    let wt = crate::vcs::worktree_dir(repo, id).unwrap();
    let ws = Workspace::open(repo, id, &wt).unwrap();
    let rel = PathBuf::from("kernels").join(kernel);
    let spec = KernelSpec::load(&ws.root.join(&rel)).unwrap();
    let library =
        Library::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../patterns")).unwrap();
    let probe = ev.clone();
    let setup = Setup {
        run_id: id.into(),
        kernels: vec![KernelEntry { spec, rel_dir: rel }],
        library,
        budgets,
        workspace: ws,
        evaluator: ev,
        journal,
        previous,
        stop,
        view: View::quiet(),
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

#[test]
fn killed_at_any_record_the_run_resumes_to_the_same_decisions_and_commits() {
    let (straight_repo, straight) = uninterrupted();
    let n = straight.records.len();
    assert!(
        straight.calls.len() >= 4 && n > 20,
        "too short to cut: {n} records"
    );
    // Cut the journal after every few records, keeping the git branch as it ended
    // (commits made after the cut are what a kill -9 between `git commit` and the
    // journal's Commit record leaves behind).
    for cut in (1..n).step_by(3) {
        let repo = user_repo();
        let reports = tempfile::tempdir().unwrap();
        run_once(
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

        let resumed = run_once(
            repo.path(),
            reports.path(),
            Scripted::new(vec_wins, variant_broken),
            StopFlag::default(),
        );
        assert_eq!(
            decisions(&resumed.records),
            decisions(&straight.records),
            "cut after record {cut}"
        );
        assert_eq!(
            branch_log(repo.path()),
            branch_log(straight_repo.path()),
            "cut after record {cut}"
        );
        let seqs: Vec<u64> = resumed.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
    }
}

#[test]
fn cost_of_adds_up_to_the_evaluation_wall_time() {
    let spec = KernelSpec::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernels/softmax"))
        .unwrap();
    let e = made_up(&spec, &spec.baseline(), true);
    let c = cost_of(&e);
    let total: f64 = c.iter().map(|(_, s)| s).sum();
    assert!((total - 1.0).abs() < 1e-9);
    assert_eq!(c[0], (Stage::Compile, 0.1));
    // A compile failure has no total: its compile time is what it cost.
    let mut f = e.clone();
    f.times = StageTimes {
        compile_ms: 250.0,
        ..Default::default()
    };
    assert_eq!(cost_of(&f), vec![(Stage::Compile, 0.25)]);
}

#[test]
fn wall_offset_counts_each_stretch_not_the_time_the_run_lay_dead() {
    let rec = |seq, t_ms, event| Record { seq, t_ms, event };
    let started = J::RunStarted {
        run_id: "r".into(),
        device: "d".into(),
        budgets: Value::Null,
        git_branch: None,
    };
    let resumed = J::Resumed {
        device: "d".into(),
        dropped: None,
    };
    let done = J::KernelDone {
        kernel: "k".into(),
        reason: "x".into(),
    };
    let records = vec![
        rec(0, 1_000, started),
        rec(1, 61_000, done.clone()),
        // Dead for an hour.
        rec(2, 3_661_000, resumed),
        rec(3, 3_691_000, done),
    ];
    assert!((wall_offset_s(&records) - 90.0).abs() < 1e-9);
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
    let result: study::StudyResult = serde_json::from_value(study.0).unwrap();
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
    // Baseline, the VARIANT=1 candidate, then two study points.
    ev.stop_after = Some((4, stop.clone()));
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
        6,
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
