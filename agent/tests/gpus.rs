//! `nightshift run --gpus`: a real daemon on several GPUs (the test double of debug
//! builds, `NIGHTSHIFT_FAKE_GPU=1`, one per ordinal) killed with SIGKILL while its
//! workers are busy, and resumed on other numbers of GPUs: it ends with the commits
//! of a run on one GPU that never stopped, measures no comparison twice, and its
//! budget snapshots are the sums of its charges. `--gpus` is checked before any work.

mod common;

use common::{copy_dir, git, git_init};

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nightshift::budget::{Budgets, Ledger};
use nightshift::dispatch::FAKE_DEVICE;
use nightshift::journal::{self, Event, Record};
use nightshift::state::RunState;
use rand::{Rng, SeedableRng};

fn no_fake_gpu() -> Option<&'static str> {
    if !cfg!(debug_assertions) || std::env::var_os("NIGHTSHIFT_BIN").is_some() {
        return Some("the fake GPU is in debug builds only, and this is a release build");
    }
    None
}

const KERNELS: [&str; 2] = ["rowsum", "softmax"];

fn project() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let root = common::repo_root();
    for k in KERNELS.iter().chain(&["include"]) {
        copy_dir(&root.join("kernels").join(k), &p.join("kernels").join(k));
    }
    copy_dir(&root.join("patterns"), &p.join("patterns"));
    std::fs::write(p.join("budgets.toml"), "[run]\nwall_hours = 1\n").unwrap();
    git_init(p);
    d
}

fn command(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(common::nightshift_bin());
    c.args(args)
        .current_dir(dir)
        .env("NIGHTSHIFT_FAKE_GPU", "1")
        .env("NIGHTSHIFT_FAKE_GPU_MS", "30")
        .env("NIGHTSHIFT_CACHE_DIR", dir.join(".cache"));
    c
}

/// Its stderr goes to `dir/last-run.err` (a pipe nobody reads would fill).
fn spawn(dir: &Path, args: &[&str]) -> Child {
    let err = std::fs::File::create(dir.join("last-run.err")).expect("stderr file");
    command(dir, args)
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("nightshift starts")
}

/// Waits for the child to end; the end of its stderr.
fn finish(dir: &Path, mut child: Child) -> String {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            let text = std::fs::read_to_string(dir.join("last-run.err")).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            return lines[lines.len().saturating_sub(15)..].join("\n");
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the run did not end"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn records(journal: &Path) -> Vec<Record> {
    journal::read(journal)
        .map(|r| r.records)
        .unwrap_or_default()
}

fn branch(dir: &Path, run: &str) -> Vec<String> {
    git(
        dir,
        &[
            "log",
            "--reverse",
            "--format=%s",
            &format!("main..nightshift/{run}"),
        ],
    )
    .lines()
    .map(str::to_string)
    .collect()
}

/// Every snapshot is the sum of the charges before it; no (kernel, config, best) is
/// compared twice; no commit is journaled twice.
fn check_journal(recs: &[Record], what: &str) {
    let r = RunState::from_records(recs);
    let budgets: Budgets = r.budgets.as_ref().and_then(|b| b.get().cloned()).unwrap();
    let price = budgets.price_per_gpu_hour(FAKE_DEVICE);
    let mut charges = Vec::new();
    let mut verdicts = BTreeSet::new();
    let mut commits = BTreeSet::new();
    for rec in recs {
        match &rec.event {
            Event::Charge(c) => charges.push(c.clone()),
            Event::Budget { spent, .. } => {
                let l = Ledger::from_charges(price, &charges).unwrap();
                assert_eq!(*spent, l.spent(), "{what}: snapshot at seq {}", rec.seq);
            }
            Event::Verdict {
                kernel,
                config,
                baseline,
                ..
            } => assert!(
                verdicts.insert((kernel.clone(), config.clone(), baseline.clone())),
                "{what}: {kernel} {config} against {baseline} compared twice"
            ),
            Event::Commit { kernel, config, .. } => assert!(
                commits.insert((kernel.clone(), config.clone())),
                "{what}: {kernel} {config} committed twice"
            ),
            _ => {}
        }
    }
}

#[test]
fn a_run_on_three_gpus_killed_while_busy_resumes_on_one_or_four_to_the_commits_of_one() {
    if let Some(why) = no_fake_gpu() {
        println!("skipped: {why}");
        return;
    }
    let args = ["run", "kernels/rowsum", "kernels/softmax", "--run-id"];
    // One GPU, never stopped: the reference.
    let one = project();
    let err = finish(
        one.path(),
        spawn(one.path(), &[&args[..], &["g1"]].concat()),
    );
    let reference = branch(one.path(), "g1");
    assert!(reference.len() >= 2, "{reference:?}\n{err}");

    let p = project();
    let dir = p.path();
    let journal = dir.join("reports/g3").join(journal::FILE_NAME);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x9a3);
    let mut child = spawn(dir, &[&args[..], &["g3", "--gpus", "0,1,2"]].concat());
    let mut kills = 0;
    for (round, resume_on) in ["0", "0,1,2,3", "1,2"].iter().enumerate() {
        let before = records(&journal).len();
        let start = Instant::now();
        while records(&journal).len() <= before + 3 && child.try_wait().unwrap().is_none() {
            assert!(start.elapsed() < Duration::from_secs(60), "no progress");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..400)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL, workers busy
            kills += 1;
        }
        child.wait().unwrap();
        let recs = records(&journal);
        check_journal(&recs, &format!("after kill {round}"));
        if RunState::from_records(&recs).finished.is_some() {
            break;
        }
        child = spawn(dir, &["run", "--gpus", resume_on]);
    }
    let err = finish(dir, child);
    assert!(kills >= 2, "killed {kills} times only");
    let recs = records(&journal);
    check_journal(&recs, "at the end");
    let r = RunState::from_records(&recs);
    assert!(r.finished.is_some(), "not finished:\n{err}");
    assert_eq!(
        r.stop,
        Some(nightshift::budget::StopReason::NothingLeft),
        "{err}"
    );
    // The same commits, in the same order, as one GPU that never stopped.
    assert_eq!(branch(dir, "g3"), reference);
    // Several GPUs measured, some of it ahead.
    let gpus: BTreeSet<usize> = recs
        .iter()
        .filter_map(|r| match &r.event {
            Event::Evaluated { gpu, .. } => *gpu,
            _ => None,
        })
        .collect();
    assert!(gpus.len() >= 2, "{gpus:?}");
    assert!(recs
        .iter()
        .any(|r| matches!(r.event, Event::Evaluated { ahead: true, .. })));
}

#[test]
fn bad_gpu_lists_are_refused_before_any_work() {
    if let Some(why) = no_fake_gpu() {
        println!("skipped: {why}");
        return;
    }
    let p = project();
    for (list, says) in [
        ("0,x", "not a CUDA ordinal"),
        ("", "not a CUDA ordinal"),
        ("0,,1", "not a CUDA ordinal"),
        ("1.5", "not a CUDA ordinal"),
        ("99999", "no machine has that many"),
    ] {
        let out = command(p.path(), &["run", "kernels/rowsum", "--gpus", list])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--gpus {list:?}: {err}");
        assert!(err.contains(says), "--gpus {list:?}: {err}");
        assert!(!p.path().join("reports").exists(), "--gpus {list:?}");
    }
    // --gpu and --gpus are one or the other.
    let out = command(p.path(), &["run", "--gpu", "0", "--gpus", "0,1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
