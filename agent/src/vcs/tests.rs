//! The run's branch and worktree on a throwaway repository.
use super::*;
use crate::testutil::git as sh;

/// A user repository with one committed kernel spec and an uncommitted edit.
fn user_repo() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    sh(p, &["init", "-q", "-b", "main"]);
    sh(p, &["config", "user.email", "u@example.com"]);
    sh(p, &["config", "user.name", "U"]);
    std::fs::create_dir_all(p.join("kernels/k")).unwrap();
    std::fs::write(p.join("kernels/k/kernel.toml"), "name = \"k\"\n").unwrap();
    sh(p, &["add", "."]);
    sh(p, &["commit", "-q", "-m", "start"]);
    std::fs::write(
        p.join("kernels/k/kernel.toml"),
        "name = \"k\"  # user edit\n",
    )
    .unwrap();
    d
}

#[test]
fn commits_go_to_the_run_branch_and_never_touch_the_user() {
    let user = user_repo();
    let p = user.path();
    let head_before = sh(p, &["rev-parse", "HEAD"]);
    let wt = p.join(".nightshift/worktrees/r1");
    let ws = Workspace::open(p, "r1", &wt).unwrap();
    assert_eq!(ws.branch, "nightshift/r1");
    // The worktree holds HEAD's files, not the user's uncommitted edit.
    assert_eq!(
        std::fs::read_to_string(wt.join("kernels/k/kernel.toml")).unwrap(),
        "name = \"k\"\n"
    );
    assert_eq!(
        dirty(p, "kernels").unwrap(),
        vec!["kernels/k/kernel.toml".to_string()]
    );

    let msg = commit_message(
        "k: BLOCK=256 VEC=4 is FAST",
        &[
            ("Speedup", "1.210x [1.190, 1.230]".into()),
            ("Pattern", "vectorize-memory".into()),
        ],
    );
    let id = ws
        .commit(
            &[("kernels/k/tuned.toml".into(), "BLOCK = 256\n".into())],
            &msg,
        )
        .unwrap();
    let log = ws.log().unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].0, id);
    assert!(log[0]
        .1
        .contains("\n\nSpeedup: 1.210x [1.190, 1.230]\nPattern: vectorize-memory\n"));
    assert_eq!(sh(p, &["rev-parse", "nightshift/r1"]), id.to_string());
    // The user's branch, HEAD and working tree are as they were.
    assert_eq!(sh(p, &["rev-parse", "HEAD"]), head_before);
    assert_eq!(sh(p, &["rev-parse", "main"]), head_before);
    assert!(!p.join("kernels/k/tuned.toml").exists());
    assert_eq!(
        std::fs::read_to_string(p.join("kernels/k/kernel.toml")).unwrap(),
        "name = \"k\"  # user edit\n"
    );
}

#[test]
fn a_rejected_variant_is_discarded_and_a_resumed_run_finds_its_branch() {
    let user = user_repo();
    let p = user.path();
    let wt = p.join(".nightshift/worktrees/r2");
    let ws = Workspace::open(p, "r2", &wt).unwrap();
    ws.commit(
        &[("kernels/k/tuned.toml".into(), "A = 1\n".into())],
        // The run's commits say whose they are: the base lies below them.
        "first\n\nNightshift-Run: r2\n",
    )
    .unwrap();
    // A candidate's edits, then rejected.
    std::fs::write(wt.join("kernels/k/tuned.toml"), "A = 2\n").unwrap();
    std::fs::write(wt.join("kernels/k/scratch.cu"), "// candidate\n").unwrap();
    ws.discard().unwrap();
    assert_eq!(
        std::fs::read_to_string(wt.join("kernels/k/tuned.toml")).unwrap(),
        "A = 1\n"
    );
    assert!(!wt.join("kernels/k/scratch.cu").exists());
    drop(ws);
    // Resume: the same branch, its commit kept, the base still the user's commit.
    let ws = Workspace::open(p, "r2", &wt).unwrap();
    assert_eq!(ws.log().unwrap().len(), 1);
    // Resume after the worktree directory was lost: recreated from the branch.
    drop(ws);
    std::fs::remove_dir_all(&wt).unwrap();
    let ws = Workspace::open(p, "r2", &wt).unwrap();
    assert_eq!(
        std::fs::read_to_string(wt.join("kernels/k/tuned.toml")).unwrap(),
        "A = 1\n"
    );
    assert_eq!(ws.log().unwrap().len(), 1);
}

#[test]
fn bad_run_ids_and_missing_repositories_are_clear_errors() {
    let user = user_repo();
    for id in ["", "a/b", "..", ".x", "a b"] {
        let e = Workspace::open(user.path(), id, &user.path().join("wt"))
            .err()
            .unwrap();
        assert!(matches!(e, VcsError::BadRunId(_)), "{id:?}: {e}");
    }
    let nowhere = tempfile::tempdir().unwrap();
    let e = Workspace::open(nowhere.path(), "r", &nowhere.path().join("wt"))
        .err()
        .unwrap();
    assert!(e.to_string().contains("not inside a git repository"), "{e}");
}

#[test]
fn locks_left_by_a_run_killed_mid_commit_do_not_stop_its_resume() {
    let user = user_repo();
    let p = user.path();
    let wt = p.join(".nightshift/worktrees/r1");
    let ws = Workspace::open(p, "r1", &wt).unwrap();
    ws.commit(&[("kernels/k/tuned.toml".into(), "a\n".into())], "one")
        .unwrap();
    // kill -9 inside git: the index, the worktree's HEAD and the branch locked.
    let gitdir = ws.repo.path().to_path_buf();
    let common = ws.repo.commondir().to_path_buf();
    let locks = [
        gitdir.join("index.lock"),
        gitdir.join("HEAD.lock"),
        common.join("refs/heads/nightshift/r1.lock"),
    ];
    for l in &locks {
        std::fs::write(l, "").unwrap();
    }
    drop(ws);
    // The resumed run (which holds the run's own lock: no other process is in
    // this worktree) clears them and carries on.
    let ws = Workspace::open(p, "r1", &wt).unwrap();
    assert!(ws.discard().is_err(), "the index is locked");
    assert_eq!(ws.clear_stale_locks().unwrap().len(), 3);
    ws.discard().unwrap();
    ws.commit(&[("kernels/k/tuned.toml".into(), "b\n".into())], "two")
        .unwrap();
    for l in &locks {
        assert!(!l.exists(), "{}", l.display());
    }
    assert_eq!(
        sh(p, &["log", "--format=%s", "nightshift/r1", "-2"]).trim(),
        "two\none"
    );
}

#[test]
fn a_runs_base_stays_below_its_commits_when_the_user_takes_them() {
    let user = user_repo();
    let p = user.path();
    let rel = Path::new("kernels/k/kernel.toml");
    let wt = p.join(".nightshift/worktrees/r3");
    let ws = Workspace::open(p, "r3", &wt).unwrap();
    ws.commit(
        &[(rel.to_path_buf(), "name = \"k\"  # rewritten\n".into())],
        "rewrite\n\nNightshift-Run: r3\n",
    )
    .unwrap();
    let (base, run) = run_versions(p, "r3", rel).unwrap();
    assert_eq!(base.as_deref(), Some("name = \"k\"\n"));
    assert_eq!(run, ["name = \"k\"  # rewritten\n"]);
    drop(ws);
    // The user fast-forwards onto the run's commit: the base does not move.
    sh(p, &["stash", "-q"]);
    sh(p, &["merge", "-q", "--ff-only", "nightshift/r3"]);
    let ws = Workspace::open(p, "r3", &wt).unwrap();
    assert_eq!(ws.log().unwrap().len(), 1);
    assert_eq!(
        ws.read_at_base(Path::new("kernels/./k/kernel.toml"))
            .unwrap()
            .as_deref(),
        Some("name = \"k\"\n")
    );
    assert_eq!(ws.read_at_base(Path::new("../x")).unwrap(), None);
    assert_eq!(run_versions(p, "nope", rel).unwrap(), (None, vec![]));
}
