//! A night with a code-writing proposer, through the dispatcher: a `command`
//! proposer (a shell script in the test) serves answers in turn; what becomes of
//! each is journaled and told in the next request (a refused proposal's reason, a
//! compile log, a failed validation); a kept one is a commit of the kernel's source
//! with a `Nightshift-Proposer` trailer; every call's bill is in the ledger; a
//! resumed run answers the questions it asked from the journal. The evaluator's
//! figures are made up for the decision logic only.

use std::time::Duration;

use super::*;
use crate::propose::{command::CommandProposer, Proposer};
use crate::settings::CommandSettings;
use crate::testutil::proposal_pattern;

/// The proposer's script: the n-th request (n = outcomes in its history) is saved
/// as `req<n>.json` and answered with `answer<n>.json`, or fails when there is none;
/// every call is counted in `calls`.
const SCRIPT: &str = r#"dir=$(dirname "$0")
cat > "$dir/req.tmp"
echo x >> "$dir/calls"
n=$(grep -o '"outcome":' "$dir/req.tmp" | wc -l | tr -d ' ')
cp "$dir/req.tmp" "$dir/req$n.json"
if [ -f "$dir/answer$n.json" ]; then cat "$dir/answer$n.json"; else echo "no more proposals" >&2; exit 3; fi
"#;

/// A directory with the script and its answers for the bundled softmax: a renamed
/// entry (refused before the GPU), one that does not compile, one that fails
/// validation, one that is faster.
fn proposer_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("serve.sh"), SCRIPT).unwrap();
    let source = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernels/softmax/softmax.cu"),
    )
    .unwrap();
    let answers = [
        source.replacen("softmax_rows(", "softmax_v2(", 1),
        format!("// MARK_NOCOMPILE\n{source}"),
        format!("// MARK_BROKEN\n{source}"),
        format!("// MARK_FAST\n{source}"),
    ];
    for (i, a) in answers.iter().enumerate() {
        let body = serde_json::json!({"source": a, "explanation": format!("answer {i}")});
        std::fs::write(d.path().join(format!("answer{i}.json")), body.to_string()).unwrap();
    }
    d
}

fn proposer(dir: &Path) -> Proposer {
    command_at(dir, 30, 0.05)
}

/// The script of `dir` as a command proposer with this timeout and price.
fn command_at(dir: &Path, timeout_s: u64, price_per_call: f64) -> Proposer {
    Proposer::Command(CommandProposer::new(CommandSettings {
        argv: vec!["sh".into(), dir.join("serve.sh").display().to_string()],
        timeout: Duration::from_secs(timeout_s),
        price_per_call,
    }))
}

/// A night of softmax with one proposal pattern, `proposer` and `budgets`.
fn one_pattern(budgets: &str, proposer: Proposer) -> (Run, tempfile::TempDir) {
    let repo = user_repo();
    let reports = tempfile::tempdir().unwrap();
    let r = run_full(
        "softmax",
        budgets,
        Library {
            patterns: vec![proposal_pattern("ask", 4)],
        },
        (repo.path(), reports.path()),
        marking(),
        StopFlag::default(),
        Extras {
            proposer: Some(proposer),
            ..Extras::default()
        },
    );
    (r, repo)
}

fn marking() -> Scripted {
    let mut ev = Scripted::new(|_, _| false, |_| false);
    ev.marks = true;
    ev
}

fn night(repo: &Path, reports: &Path, dir: &Path, ev: Scripted, stop: StopFlag) -> Run {
    let library = Library {
        patterns: vec![proposal_pattern("ask", 4)],
    };
    let budgets = "[run]\ngpu_hours = 10\n[price]\ndefault_per_gpu_hour = 3.0\n";
    run_full(
        "softmax",
        budgets,
        library,
        (repo, reports),
        ev,
        stop,
        Extras {
            gpus: 0,
            proposer: Some(proposer(dir)),
            notifier: None,
            frozen: false,
        },
    )
}

fn invalid(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| match &r.event {
            J::ProposalInvalid { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

fn request(dir: &Path, n: usize) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join(format!("req{n}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn a_night_with_a_proposer_keeps_the_faster_source_and_tells_it_what_failed() {
    let repo = user_repo();
    let reports = tempfile::tempdir().unwrap();
    let dir = proposer_dir();
    let r = night(
        repo.path(),
        reports.path(),
        dir.path(),
        marking(),
        StopFlag::default(),
    );
    assert_eq!(r.summary.stop_reason, Some(StopReason::NothingLeft));

    // Four questions around the baseline, four around the kept proposal (the script
    // has no fifth answer: each fails).
    let a = answers(&r.records);
    assert_eq!(a.len(), 8, "{a:?}");
    assert!(
        a[0].check
            .as_deref()
            .unwrap()
            .contains("defines no kernel `softmax_rows`"),
        "{:?}",
        a[0].check
    );
    assert!(a[1..4]
        .iter()
        .all(|x| x.check.is_none() && x.source.is_some()));
    assert!(a[4..]
        .iter()
        .all(|x| x.source.is_none() && x.error.as_deref().unwrap().contains("no more proposals")));
    assert!(a.iter().all(|x| x.proposer == "command sh"));
    let bad = invalid(&r.records);
    assert_eq!(bad.len(), 5, "{bad:?}");

    // What failed reaches the next request: the refused entry, the compile log, the
    // failed validation.
    let h = &request(dir.path(), 3)["history"];
    assert_eq!(h[0]["outcome"], "proposal_invalid", "{h}");
    assert!(
        h[0]["first_failing_check"]
            .as_str()
            .unwrap()
            .contains("softmax"),
        "{h}"
    );
    assert_eq!(h[1]["outcome"], "compile_failed", "{h}");
    assert!(
        h[1]["compile_log"]
            .as_str()
            .unwrap()
            .contains("MARK_NOCOMPILE"),
        "{h}"
    );
    assert_eq!(h[2]["outcome"], "crashed", "{h}");
    assert!(
        h[2]["first_failing_check"]
            .as_str()
            .unwrap()
            .contains("scripted failure"),
        "{h}"
    );
    let h = &request(dir.path(), 4)["history"];
    assert_eq!(h[3]["outcome"], "kept", "{h}");
    assert!(h[3]["verdict"].as_str().unwrap().starts_with("FAST"), "{h}");
    // The question after the gain is asked about the kept source.
    let after = request(dir.path(), 4);
    assert!(after["source"].as_str().unwrap().contains("MARK_FAST"));

    // The kept proposal: one commit of the kernel's source, with who wrote it.
    let log = branch_log(repo.path());
    assert_eq!(log.len(), 1, "{log:?}");
    let msg = sh(repo.path(), &["log", "-1", "--format=%B", "nightshift/r1"]);
    assert!(
        msg.contains("Nightshift-Proposer: command sh; 0 input + 0 output tokens; $0.0500"),
        "{msg}"
    );
    let show = sh(repo.path(), &["show", "--format=", "nightshift/r1"]);
    assert!(show.contains("+// MARK_FAST"), "{show}");

    // Every call is billed: 8 x $0.05 beside the GPU time.
    let spent = r.summary.spent;
    assert!((spent.proposer_dollars - 0.40).abs() < 1e-9, "{spent:?}");
    assert!(spent.dollars > spent.proposer_dollars);
    let billed: f64 = r
        .records
        .iter()
        .filter_map(|x| match &x.event {
            J::Charge(c) if c.stage == Stage::Proposer => Some(c.dollars),
            _ => None,
        })
        .sum();
    assert!((billed - 0.40).abs() < 1e-9);
}

/// The report of such a night, from its journal: every question in order with what
/// came of it, the kept source's diff, the proposer's bills apart from the GPU's and
/// adding up to what the ledger spent, and `--verify` agreeing with all of it.
#[test]
fn the_report_of_a_night_with_a_proposer_shows_every_question_and_its_bill() {
    let repo = user_repo();
    let reports = tempfile::tempdir().unwrap();
    let dir = proposer_dir();
    let r = night(
        repo.path(),
        reports.path(),
        dir.path(),
        marking(),
        StopFlag::default(),
    );
    let report = crate::report::build("r1", &crate::state::RunState::from_records(&r.records));
    let p = &report.proposals;
    let outcomes: Vec<&str> = p.iter().map(|q| q.outcome.as_str()).collect();
    assert_eq!(
        outcomes,
        [
            "proposal_invalid",
            "compile_failed",
            "crashed",
            "passed",
            "proposer_failed",
            "proposer_failed",
            "proposer_failed",
            "proposer_failed"
        ]
    );
    assert!(
        p[0].detail.contains("defines no kernel `softmax_rows`"),
        "{:?}",
        p[0]
    );
    assert!(p[1].compile_log[0].contains("MARK_NOCOMPILE"), "{:?}", p[1]);
    assert!(p[2].detail.contains("scripted failure"), "{:?}", p[2]);
    assert!(p[3].decision.starts_with("kept ") && p[3].diff.contains("+// MARK_FAST"));
    assert!(p[4..]
        .iter()
        .all(|q| q.detail.contains("no more proposals") && q.decision == "-"));
    assert!(p.iter().all(|q| (q.dollars - 0.05).abs() < 1e-12));
    // The bills, apart from the GPU's, add up to what the ledger spent.
    let bills = report.spend.proposer.as_ref().unwrap();
    let spent = r.summary.spent;
    assert!(
        (bills.dollars - spent.proposer_dollars).abs() < 1e-9,
        "{bills:?}"
    );
    assert!(
        (bills.total_dollars - spent.dollars).abs() < 1e-9,
        "{bills:?}"
    );
    assert!((report.spend.dollars + bills.dollars - spent.dollars).abs() < 1e-9);
    assert_eq!((bills.questions, bills.unanswered), (8, 0));
    let md = crate::report::markdown(&report, &[]);
    assert!(
        md.contains("## Proposals") && md.contains("+// MARK_FAST"),
        "{md}"
    );
    assert!(md.contains("+ $0.4000 proposer = $"), "{md}");
    let json = serde_json::to_value(&report).unwrap();
    crate::report::verify(&json, "r1", &r.records).unwrap();
}

#[test]
fn a_resumed_night_does_not_ask_again_what_its_journal_answered() {
    let (repo1, reports1, dir1) = (user_repo(), tempfile::tempdir().unwrap(), proposer_dir());
    let straight = night(
        repo1.path(),
        reports1.path(),
        dir1.path(),
        marking(),
        StopFlag::default(),
    );

    let repo = user_repo();
    let reports = tempfile::tempdir().unwrap();
    let dir = proposer_dir();
    let stop = StopFlag::default();
    let mut ev = marking();
    // Stopped after the baseline and two candidates (the compile failure, the
    // broken one): three questions were asked.
    ev.stop_after = Some((3, stop.clone()));
    let first = night(repo.path(), reports.path(), dir.path(), ev, stop);
    assert!(matches!(
        first.summary.stop_reason,
        Some(StopReason::Signal { .. })
    ));
    let asked_before = std::fs::read_to_string(dir.path().join("calls"))
        .unwrap()
        .lines()
        .count();
    let resumed = night(
        repo.path(),
        reports.path(),
        dir.path(),
        marking(),
        StopFlag::default(),
    );
    let calls = std::fs::read_to_string(dir.path().join("calls"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(
        calls, 8,
        "every question asked once ({asked_before} before the stop)"
    );
    assert_eq!(decisions(&resumed.records), decisions(&straight.records));
    assert_eq!(branch_log(repo.path()), branch_log(repo1.path()));
    let billed = |recs: &[Record]| -> usize {
        recs.iter()
            .filter(|x| matches!(&x.event, J::Charge(c) if c.stage == Stage::Proposer))
            .count()
    };
    assert_eq!(billed(&resumed.records), 8);
    assert!((resumed.summary.spent.proposer_dollars - 0.40).abs() < 1e-9);
    // Its report has each question once, and verifies.
    let state = crate::state::RunState::from_records(&resumed.records);
    let report = crate::report::build("r1", &state);
    assert_eq!(report.proposals.len(), 8);
    let json = serde_json::to_value(&report).unwrap();
    crate::report::verify(&json, "r1", &resumed.records).unwrap();
}

#[test]
fn a_question_whose_bill_could_pass_the_budget_is_not_sent() {
    // $0.50 in all, a proposer that charges $0.60 a call: the first question's bound
    // ($0.60) does not fit, whatever the (empty) mean says, so it is never asked.
    let dir = proposer_dir();
    let (r, _repo) = one_pattern(
        "[run]\ndollars = 0.5\n[price]\ndefault_per_gpu_hour = 3.0\n",
        command_at(dir.path(), 30, 0.60),
    );
    assert!(
        matches!(r.summary.stop_reason, Some(StopReason::Dollars { .. })),
        "{:?}",
        r.summary.stop_reason
    );
    assert!(!dir.path().join("calls").exists(), "the proposer was asked");
    assert!(answers(&r.records).is_empty());
    assert!(r.summary.spent.dollars <= 0.5);
}

#[test]
fn later_candidates_built_on_a_kept_proposal_do_not_rewrite_what_it_is_told() {
    // After the kept proposal, knob moves around it carry its `proposal:` rewrite;
    // the next pattern's request still says the proposal was kept.
    let repo = user_repo();
    let reports = tempfile::tempdir().unwrap();
    let dir = proposer_dir();
    let moves = vec![crate::patterns::Move {
        role: crate::spec::Role::Block,
        direction: crate::patterns::Direction::Any,
    }];
    let mut block = crate::testutil::pattern(
        "block-size",
        crate::patterns::Tier::Source,
        crate::patterns::Body::Moves(moves),
    );
    block.priority = -1;
    let mut ask2 = proposal_pattern("ask2", 1);
    ask2.priority = -2;
    let library = Library {
        patterns: vec![proposal_pattern("ask", 4), block, ask2],
    };
    let r = run_full(
        "softmax",
        "[run]\ngpu_hours = 10\n[price]\ndefault_per_gpu_hour = 3.0\n",
        library,
        (repo.path(), reports.path()),
        marking(),
        StopFlag::default(),
        Extras {
            gpus: 0,
            proposer: Some(proposer(dir.path())),
            notifier: None,
            frozen: false,
        },
    );
    assert_eq!(r.summary.stop_reason, Some(StopReason::NothingLeft));
    let moved = r
        .records
        .iter()
        .filter(|x| matches!(&x.event, J::Evaluated { pattern: Some(p), .. } if p == "block-size"))
        .count();
    assert!(moved > 0, "knob moves ran around the kept proposal");
    let asked_after = |name: &str| {
        r.records
            .iter()
            .position(|x| matches!(&x.event, J::ProposerAnswer(a) if a.pattern == name))
    };
    let first_move = r
        .records
        .iter()
        .position(
            |x| matches!(&x.event, J::Evaluated { pattern: Some(p), .. } if p == "block-size"),
        )
        .unwrap();
    let seq: Vec<String> = r
        .records
        .iter()
        .filter_map(|x| match &x.event {
            J::ProposerAnswer(a) => Some(format!("ask {}", a.pattern)),
            J::Evaluated {
                pattern, config, ..
            } => Some(format!("eval {pattern:?} {config}")),
            J::Commit { config, .. } => Some(format!("commit {config}")),
            _ => None,
        })
        .collect();
    assert!(
        asked_after("ask2").unwrap() > first_move,
        "ask2 asks after the moves: {seq:#?}"
    );
    // ask2's question is the ninth: its history tells the fourth as kept.
    let last = answers(&r.records).len() - 1;
    let h = &request(dir.path(), last)["history"];
    assert_eq!(h[3]["outcome"], "kept", "{h}");
    assert!(h[3]["verdict"].as_str().unwrap().starts_with("FAST"), "{h}");
}

#[test]
fn a_question_that_could_hold_the_gpu_past_the_budget_is_not_sent() {
    // 36 GPU seconds in all; a proposer that may take 600 s holds the GPU idle that
    // long: the question does not fit, however cheap it is.
    let dir = proposer_dir();
    let (r, _repo) = one_pattern(
        "[run]\ngpu_hours = 0.01\n[price]\ndefault_per_gpu_hour = 3.0\n",
        command_at(dir.path(), 600, 0.0),
    );
    assert!(
        matches!(r.summary.stop_reason, Some(StopReason::GpuHours { .. })),
        "{:?}",
        r.summary.stop_reason
    );
    assert!(!dir.path().join("calls").exists(), "the proposer was asked");
}

/// A proposer that thinks 0.3 s and has nothing to propose.
fn slow_refusing_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let script = "cat > /dev/null\necho x >> \"$(dirname \"$0\")/calls\"\nsleep 0.3\necho nothing >&2\nexit 3\n";
    std::fs::write(d.path().join("serve.sh"), script).unwrap();
    d
}

fn two_kernels(repo: &Path, reports: &Path, dir: &Path) -> Run {
    run_full(
        "softmax,rowsum",
        "[run]\ngpu_hours = 10\n[price]\ndefault_per_gpu_hour = 3.0\n",
        Library {
            patterns: vec![proposal_pattern("ask", 1)],
        },
        (repo, reports),
        marking(),
        StopFlag::default(),
        Extras {
            gpus: 0,
            proposer: Some(proposer(dir)),
            notifier: None,
            frozen: true,
        },
    )
}

#[test]
fn while_a_question_is_out_another_kernel_uses_the_gpu_and_a_kill_anywhere_resumes_the_same() {
    let (repo, reports, dir) = (
        user_repo_of("softmax,rowsum"),
        tempfile::tempdir().unwrap(),
        slow_refusing_dir(),
    );
    let straight = two_kernels(repo.path(), reports.path(), dir.path());
    assert_eq!(straight.summary.stop_reason, Some(StopReason::NothingLeft));
    let at = |f: &dyn Fn(&J) -> bool| straight.records.iter().position(|r| f(&r.event)).unwrap();
    let softmax_asked = at(&|e| matches!(e, J::ProposerAnswer(a) if a.kernel == "softmax"));
    let rowsum_baseline = at(&|e| matches!(e, J::Evaluated { kernel, .. } if kernel == "rowsum"));
    // softmax's question was out while rowsum's baseline was measured (and rowsum's
    // own question asked): its answer is taken after them.
    assert!(
        rowsum_baseline < softmax_asked,
        "{:?}",
        decisions(&straight.records)
    );
    let rowsum_asked = at(&|e| matches!(e, J::ProposerAnswer(a) if a.kernel == "rowsum"));
    assert!(rowsum_asked < softmax_asked);
    assert_eq!(answers(&straight.records).len(), 2);

    // Killed after any record and resumed: the same decisions, each question answered
    // once in the journal.
    let n = straight.records.len();
    for cut in 1..n {
        let (repo, reports, dir) = (
            user_repo_of("softmax,rowsum"),
            tempfile::tempdir().unwrap(),
            slow_refusing_dir(),
        );
        two_kernels(repo.path(), reports.path(), dir.path());
        let path = reports.path().join("r1").join(journal::FILE_NAME);
        let text = std::fs::read_to_string(&path).unwrap();
        let kept: String = text.lines().take(cut).map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, kept).unwrap();
        let resumed = two_kernels(repo.path(), reports.path(), dir.path());
        assert_eq!(
            decisions(&resumed.records),
            decisions(&straight.records),
            "cut after record {cut}"
        );
        assert_eq!(answers(&resumed.records).len(), 2, "cut after record {cut}");
    }
}
