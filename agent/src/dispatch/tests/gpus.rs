//! A run on several GPUs decides what a run on one decides, in the same order; the
//! free GPUs measure ahead; every GPU's time is charged and journaled; a kill at any
//! record resumes, on any number of GPUs, to the same decisions, measuring no
//! comparison twice.

use std::collections::BTreeSet;

use super::*;

/// What a run decided, without the evaluations themselves (a run on several GPUs
/// journals them as they land, some measured ahead and never asked for).
fn choices(records: &[Record]) -> Vec<String> {
    decisions(records)
        .into_iter()
        .filter_map(|d| {
            let Ok(mut v) = serde_json::from_str::<Value>(&d) else {
                return Some(d); // a commit, in words
            };
            let kind = v["kind"].as_str().unwrap_or_default().to_string();
            if kind == "evaluated" || kind == "verdict" {
                return None;
            }
            // Which GPU made the final comparison is not a decision.
            v.as_object_mut()?.remove("gpu");
            Some(v.to_string())
        })
        .collect()
}

/// Every verdict's (kernel, config, best it was measured against).
fn verdicts(records: &[Record]) -> Vec<(String, String, String)> {
    records
        .iter()
        .filter_map(|r| match &r.event {
            J::Verdict {
                kernel,
                config,
                baseline,
                ..
            } => Some((kernel.clone(), config.clone(), baseline.clone())),
            _ => None,
        })
        .collect()
}

fn no_comparison_twice(records: &[Record], what: &str) {
    let v = verdicts(records);
    let distinct: BTreeSet<_> = v.iter().cloned().collect();
    assert_eq!(
        distinct.len(),
        v.len(),
        "{what}: a comparison measured twice: {v:?}"
    );
}

fn run_on(kernels: &str, gpus: usize, repo: &Path, reports: &Path) -> Run {
    let library =
        Library::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../patterns")).unwrap();
    run_full(
        kernels,
        DEFAULT_BUDGETS_TOML,
        library,
        (repo, reports),
        Scripted::new(vec_wins, variant_broken),
        StopFlag::default(),
        Extras {
            frozen: true,
            gpus,
            ..Extras::default()
        },
    )
}

#[test]
fn three_gpus_decide_as_one_and_measure_ahead_on_the_free_ones() {
    let kernels = "softmax,layernorm";
    let (one_repo, one_reports) = (user_repo_of(kernels), tempfile::tempdir().unwrap());
    let one = run_on(kernels, 1, one_repo.path(), one_reports.path());
    let (repo, reports) = (user_repo_of(kernels), tempfile::tempdir().unwrap());
    let three = run_on(kernels, 3, repo.path(), reports.path());

    assert!(choices(&one.records).len() > 10);
    assert_eq!(choices(&three.records), choices(&one.records));
    assert_eq!(branch_log(repo.path()), branch_log(one_repo.path()));
    assert_eq!(three.summary.stop_reason, Some(StopReason::NothingLeft));

    // The free GPUs measured ahead, and said which GPU measured what.
    let ahead = three
        .records
        .iter()
        .filter(|r| matches!(r.event, J::Evaluated { ahead: true, .. }))
        .count();
    assert!(ahead > 0, "nothing measured ahead");
    let gpus: BTreeSet<usize> = three
        .records
        .iter()
        .filter_map(|r| match &r.event {
            J::Evaluated { gpu, .. } => *gpu,
            _ => None,
        })
        .collect();
    assert!(gpus.len() >= 2, "one GPU measured everything: {gpus:?}");
    assert!(gpus.iter().all(|g| *g < 3));
    // One GPU never measures ahead.
    assert!(!one
        .records
        .iter()
        .any(|r| matches!(r.event, J::Evaluated { ahead: true, .. })));
    no_comparison_twice(&three.records, "three GPUs");
    // Every snapshot holds every charge journaled before it, the charges of work
    // measured ahead included.
    assert!(snapshots_agree_with_charges(&three.records, DEFAULT_BUDGETS_TOML, "three") > 0);
    let spent = folded(&three.records, DEFAULT_BUDGETS_TOML).spent();
    assert_eq!(three.summary.spent, spent);
    // Measured ahead costs GPU time: the work charged is at least one GPU's.
    let work = |r: &Run| folded_work(&r.records, DEFAULT_BUDGETS_TOML).spent().gpu_s;
    assert!(work(&three) >= work(&one) - 1e-9);
}

#[test]
fn killed_anywhere_a_run_on_several_gpus_resumes_on_any_number_to_the_same_decisions() {
    let kernels = "softmax,layernorm";
    let (s_repo, s_reports) = (user_repo_of(kernels), tempfile::tempdir().unwrap());
    let straight = run_on(kernels, 1, s_repo.path(), s_reports.path());
    let (repo, reports) = (user_repo_of(kernels), tempfile::tempdir().unwrap());
    let full = run_on(kernels, 3, repo.path(), reports.path());
    let text = std::fs::read_to_string(reports.path().join("r1").join(journal::FILE_NAME)).unwrap();
    let n = full.records.len();
    for (i, cut) in (2..n).step_by(7).enumerate() {
        let resume_on = [1, 2, 4][i % 3];
        let what = format!("cut after record {cut} of {n}, resumed on {resume_on} GPUs");
        let (repo, reports) = (user_repo_of(kernels), tempfile::tempdir().unwrap());
        // The git branch as the full run left it: commits after the cut are what a
        // kill between `git commit` and its journal record leaves.
        run_on(kernels, 3, repo.path(), reports.path());
        let path = reports.path().join("r1").join(journal::FILE_NAME);
        let kept: String = text.lines().take(cut).map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, kept).unwrap();
        let resumed = run_on(kernels, resume_on, repo.path(), reports.path());
        assert_eq!(
            choices(&resumed.records),
            choices(&straight.records),
            "{what}"
        );
        assert_eq!(branch_log(repo.path()), branch_log(s_repo.path()), "{what}");
        no_comparison_twice(&resumed.records, &what);
        snapshots_agree_with_charges(&resumed.records, DEFAULT_BUDGETS_TOML, &what);
    }
}
