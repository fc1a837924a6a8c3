//! The source tier through the dispatcher: a kept rewrite is one commit of the
//! kernel's source with its evidence, the journal keeps every rewrite's diff, and a
//! resumed run rewrites the kernel as written, not as its branch committed it.

use super::*;
use crate::testutil::rewrite_pattern;

fn library(steps: &[&str]) -> Library {
    Library {
        patterns: vec![rewrite_pattern("launch-bounds", "launch-bounds", steps)],
    }
}

fn run(repo: &Path, reports: &Path, ev: Scripted, stop: StopFlag) -> Run {
    let lib = library(&["min_blocks=2", "min_blocks=3"]);
    run_with_library(
        "softmax",
        DEFAULT_BUDGETS_TOML,
        lib,
        (repo, reports),
        ev,
        stop,
    )
}

fn rewriting() -> Scripted {
    let mut ev = Scripted::new(|_, _| false, |_| false);
    ev.rewrites_win = true;
    ev
}

#[test]
fn a_kept_rewrite_is_one_commit_of_the_kernel_source_with_its_evidence() {
    let repo = user_repo();
    let reports = tempfile::tempdir().unwrap();
    let r = run(
        repo.path(),
        reports.path(),
        rewriting(),
        StopFlag::default(),
    );
    assert_eq!(r.summary.stop_reason, Some(StopReason::NothingLeft));

    // min_blocks=2 is FAST against the kernel as written; min_blocks=3 replaces it
    // and is measured against it (SAME: not kept).
    let log = branch_log(repo.path());
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(
        log[0].starts_with("softmax: rewrite launch-bounds:min_blocks=2"),
        "{log:?}"
    );
    let msg = sh(repo.path(), &["log", "-1", "--format=%B", "nightshift/r1"]);
    assert!(
        msg.contains("Nightshift-Rewrite: launch-bounds launch-bounds:min_blocks=2"),
        "{msg}"
    );
    let show = sh(repo.path(), &["show", "--format=", "nightshift/r1"]);
    assert!(show.contains("kernels/softmax/softmax.cu"), "{show}");
    assert!(
        show.contains(", 2)"),
        "the diff shows the attribute: {show}"
    );
    let tuned = sh(
        repo.path(),
        &["show", "nightshift/r1:kernels/softmax/tuned.toml"],
    );
    assert!(
        tuned.contains("rewrites = [\"launch-bounds:min_blocks=2\"]"),
        "{tuned}"
    );
    assert!(
        tuned.contains("--rewrite launch-bounds:min_blocks=2"),
        "{tuned}"
    );
    tuned::read(&tuned).expect("tuned.toml with rewrites reads back");

    // The journal keeps each rewrite candidate's diff; the final comparison measures
    // the rewritten best against the kernel as written.
    let diffs: Vec<&str> = r
        .records
        .iter()
        .filter_map(|x| match &x.event {
            J::Evaluated {
                rewritten: Some(c), ..
            } => Some(c.diff.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(diffs.len(), 2, "{:?}", r.calls);
    assert!(diffs.iter().all(|d| d.contains("__launch_bounds__")));
    assert!(
        r.calls.iter().any(|c| c
            .ends_with("+ launch-bounds:min_blocks=2 vs BLOCK=256 VARIANT=0 VEC=1")
            || c.contains("+ launch-bounds:min_blocks=2 vs ") && !c.ends_with("min_blocks=2")),
        "{:?}",
        r.calls
    );
    let finals: Vec<&str> = r
        .records
        .iter()
        .filter_map(|x| match &x.event {
            J::FinalComparison { best, .. } => Some(best.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        finals,
        ["BLOCK=128 VARIANT=0 VEC=1 + launch-bounds:min_blocks=2"]
    );
    // The report lists both and shows the kept one's diff.
    let state = crate::state::RunState::from_records(&r.records);
    let report = crate::report::build("r1", &state);
    assert_eq!(report.rewrites.len(), 2, "{:?}", report.rewrites);
    assert!(report.rewrites[0].decision.starts_with("kept "));
    assert!(report.rewrites[0].diff.contains("__launch_bounds__"));
    assert!(report.rewrites[1].decision.starts_with("rejected"));
    assert!(
        report
            .reproduce
            .contains(&"git worktree add /tmp/r1-base nightshift/r1~1".to_string()),
        "{:?}",
        report.reproduce
    );
    assert!(
        report.reproduce.iter().any(|l| l
            .starts_with("nightshift bench /tmp/r1-base/kernels/softmax --set ")
            && l.ends_with(" --rewrite launch-bounds:min_blocks=2")),
        "{:?}",
        report.reproduce
    );
    let md = crate::report::markdown(&report, &[]);
    assert!(md.contains("## Source rewrites"), "{md}");
    assert!(md.contains("```diff"), "{md}");
}

/// A run stopped right after its first rewrite was committed, `between` done to the
/// user's repository, then resumed: it must end as a run never stopped did, measuring
/// nothing twice and rewriting the kernel as written (the branch's source carries the
/// attribute: stacked on it, launch-bounds would find it "already there").
fn stopped_and_resumed(between: &dyn Fn(&Path)) {
    let (straight_repo, reports0) = (user_repo(), tempfile::tempdir().unwrap());
    let straight = run(
        straight_repo.path(),
        reports0.path(),
        rewriting(),
        StopFlag::default(),
    );
    let repo = user_repo();
    let reports = tempfile::tempdir().unwrap();
    let stop = StopFlag::default();
    let mut ev = rewriting();
    // Baseline, then the first rewrite (FAST, committed): stopped there.
    ev.stop_after = Some((2, stop.clone()));
    let first = run(repo.path(), reports.path(), ev, stop);
    assert_eq!(first.calls.len(), 2, "{:?}", first.calls);
    assert_eq!(branch_log(repo.path()).len(), 1);
    between(repo.path());
    let second = run(
        repo.path(),
        reports.path(),
        rewriting(),
        StopFlag::default(),
    );
    assert_eq!(second.summary.stop_reason, Some(StopReason::NothingLeft));
    // What the first run measured is not measured again: together, the straight run.
    let both: Vec<String> = first.calls.iter().chain(&second.calls).cloned().collect();
    assert_eq!(both, straight.calls);
    assert_eq!(decisions(&second.records), decisions(&straight.records));
    let commits = |r: &Path| sh(r, &["log", "--format=%s", "nightshift/r1", "-2"]);
    assert_eq!(commits(repo.path()), commits(straight_repo.path()));
}

#[test]
fn a_resumed_run_rewrites_the_kernel_as_written_and_measures_nothing_twice() {
    stopped_and_resumed(&|_| {});
}

#[test]
fn a_resume_after_the_user_took_the_runs_branch_still_rewrites_the_kernel_as_written() {
    // The user fast-forwards onto the run's partial result: HEAD is the run's tip.
    stopped_and_resumed(&|repo| {
        sh(repo, &["merge", "-q", "--ff-only", "nightshift/r1"]);
    });
}
