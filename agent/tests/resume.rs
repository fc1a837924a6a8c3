//! A real `nightshift run` process killed with SIGKILL at random points and resumed
//! by a plain `nightshift run`, and resumes that ask for something else than the run
//! was started with. The GPU is the test double of debug builds
//! (`NIGHTSHIFT_FAKE_GPU=1`): these tests are about the journal and the ledger, and
//! nothing the double makes up reaches a report (`report` refuses its journals).

mod common;

use common::{copy_dir, git, git_init};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nightshift::budget::{Budgets, Ledger};
use nightshift::dispatch::FAKE_DEVICE;
use nightshift::journal::{self, Event, Record};
use nightshift::state::RunState;
use rand::{Rng, SeedableRng};

/// Why these tests cannot run with this binary, if they cannot.
fn no_fake_gpu() -> Option<&'static str> {
    if !cfg!(debug_assertions) || std::env::var_os("NIGHTSHIFT_BIN").is_some() {
        return Some("the fake GPU is in debug builds only, and this is a release build");
    }
    None
}

/// A repository with every bundled kernel, the patterns and `budgets`, committed.
fn project(budgets: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let root = common::repo_root();
    copy_dir(&root.join("kernels"), &p.join("kernels"));
    copy_dir(&root.join("patterns"), &p.join("patterns"));
    std::fs::write(p.join("budgets.toml"), budgets).unwrap();
    git_init(p);
    d
}

/// `nightshift args` in `dir` on the fake GPU, whose evaluations take `FAKE_MS`.
fn command(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(common::nightshift_bin());
    c.args(args)
        .current_dir(dir)
        .env("NIGHTSHIFT_FAKE_GPU", "1")
        .env("NIGHTSHIFT_FAKE_GPU_MS", FAKE_MS.to_string())
        .env("NIGHTSHIFT_CACHE_DIR", dir.join(".cache"));
    c
}

/// One made-up evaluation, ms (a comparison: twice that).
const FAKE_MS: u64 = 200;

fn nightshift(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = command(dir, args).output().expect("nightshift runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Its stderr goes to `dir/last-run.err` (what a failed assertion shows).
fn spawn(dir: &Path, args: &[&str]) -> Child {
    let err = std::fs::File::create(dir.join("last-run.err")).expect("stderr file");
    command(dir, args)
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("nightshift starts")
}

/// The last spawned run's stderr, its end.
fn last_err(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("last-run.err")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn records(journal: &Path) -> Vec<Record> {
    journal::read(journal)
        .map(|r| r.records)
        .unwrap_or_default()
}

/// Waits until the journal holds more than `n` records (the process is at work), or
/// the child exits; panics after a minute.
fn wait_for_records(child: &mut Child, journal: &Path, n: usize) {
    let start = Instant::now();
    while records(journal).len() <= n {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no progress in a minute"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The run's kernels as named in its records (the run-level records name none).
fn kernels_named(records: &[Record]) -> std::collections::BTreeSet<String> {
    records
        .iter()
        .filter_map(|r| match &r.event {
            Event::Evaluated { kernel, .. }
            | Event::Proposal { kernel, .. }
            | Event::KernelDone { kernel, .. }
            | Event::KernelPaused { kernel, .. }
            | Event::Commit { kernel, .. }
            | Event::Revert { kernel, .. } => Some(kernel.clone()),
            Event::Charge(c) => c.kernel.clone(),
            _ => None,
        })
        .collect()
}

/// The journal's invariants after any stop: every budget snapshot is the sum of the
/// charges before it (totals and breakdowns, bit for bit), the first snapshot after
/// each resume comes before anything new is charged, and only `kernels` were tuned.
fn check_journal(records: &[Record], kernels: &[&str], what: &str) -> usize {
    let r = RunState::from_records(records);
    let budgets: Budgets = r.budgets.as_ref().and_then(|b| b.get().cloned()).unwrap();
    let price = budgets.price_per_gpu_hour(FAKE_DEVICE);
    let mut snapshots = 0;
    let mut charges = Vec::new();
    let mut since_resume: Option<bool> = None;
    for rec in records {
        match &rec.event {
            Event::Charge(c) => {
                assert_ne!(
                    since_resume,
                    Some(true),
                    "{what}: seq {}: charged before the resumed ledger was snapshotted",
                    rec.seq
                );
                charges.push(c.clone());
            }
            Event::Resumed { .. } => since_resume = Some(true),
            Event::Budget {
                spent, breakdown, ..
            } => {
                let l = Ledger::from_charges(price, &charges).unwrap();
                assert_eq!(*spent, l.spent(), "{what}: snapshot at seq {}", rec.seq);
                assert_eq!(
                    breakdown.as_ref(),
                    Some(&l.breakdown()),
                    "{what}: snapshot at seq {}",
                    rec.seq
                );
                since_resume = Some(false);
                snapshots += 1;
            }
            _ => {}
        }
    }
    let tuned = kernels_named(records);
    let allowed: std::collections::BTreeSet<String> =
        kernels.iter().map(|k| k.to_string()).collect();
    assert!(tuned.is_subset(&allowed), "{what}: tuned {tuned:?}");
    let recorded: Vec<String> = r.kernels.unwrap().iter().map(|k| k.name.clone()).collect();
    assert_eq!(recorded, kernels, "{what}");
    snapshots
}

#[test]
fn a_run_killed_at_random_moments_resumes_on_its_own_kernels_inside_its_dollars() {
    if let Some(why) = no_fake_gpu() {
        println!("skipped: {why}");
        return;
    }
    // $1 a GPU-second: $5.5 admits the first baseline (projected at 5 s before
    // anything is measured, plus the watchdog in reserve), then about a dozen made-up
    // comparisons of 400 ms, fewer than the two kernels' patterns would try.
    let dollars = 5.5;
    let p = project(&format!(
        "[run]\ndollars = {dollars}\n[price]\ndefault_per_gpu_hour = 3600\n\
         [limits]\ncandidate_watchdog_seconds = 0.2\n"
    ));
    let dir = p.path();
    let journal = dir.join("reports/k9").join(journal::FILE_NAME);
    let kernels = ["rowsum", "softmax"];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x6b39);
    let mut child = spawn(
        dir,
        &["run", "kernels/rowsum", "kernels/softmax", "--run-id", "k9"],
    );
    let mut kills = 0;
    for round in 0..4 {
        let before = records(&journal).len();
        // At work (past its first records, or its resume record), then at a random
        // moment of what follows.
        wait_for_records(&mut child, &journal, before + 2);
        std::thread::sleep(Duration::from_millis(rng.random_range(0..1500)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
        let recs = records(&journal);
        check_journal(&recs, &kernels, &format!("after kill {round}"));
        if RunState::from_records(&recs).finished.is_some() {
            break;
        }
        // A plain `run` finds the unfinished run and carries it on.
        child = spawn(dir, &["run"]);
    }
    assert!(kills >= 2, "killed {kills} times only");
    // The last one runs to its end.
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the resumed run did not end"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let recs = records(&journal);
    let snapshots = check_journal(&recs, &kernels, "at the end");
    let r = RunState::from_records(&recs);
    assert!(
        r.finished.is_some(),
        "the last run ended ({status}) without finishing the run; its stderr:\n{}",
        last_err(dir)
    );
    assert!(
        matches!(r.stop, Some(nightshift::budget::StopReason::Dollars { .. })),
        "{:?}",
        r.stop
    );
    assert!(r.resumes >= 2, "{} resumes", r.resumes);
    assert!(snapshots > r.resumes, "{snapshots} snapshots");
    let spent = r.ledger(3600.0).unwrap().spent();
    assert!(
        spent.dollars <= dollars,
        "spent ${} of ${dollars} over the whole run",
        spent.dollars
    );
    // Every record names only the run's kernels; the others were never touched.
    assert!(!git(dir, &["log", "--format=%s", "main..nightshift/k9"]).contains("gemm"));
    // status says how long it was down, and how often it was resumed.
    let (code, out, err) = nightshift(dir, &["status", "k9"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("resumed {} time(s), down for", r.resumes)),
        "{out}"
    );
    // No report is made of a test double's figures.
    let (code, _, err) = nightshift(dir, &["report", "k9"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("test double"), "{err}");
    assert!(!dir.join("reports/k9/report.md").exists());
}

/// A finished fake run `r2` on softmax, started with the default options.
fn finished_run() -> (tempfile::TempDir, PathBuf) {
    let p = project(
        "[run]\ndollars = 0.3\n[price]\ndefault_per_gpu_hour = 3600\n\
         [limits]\ncandidate_watchdog_seconds = 0.1\n",
    );
    let (code, _, err) = nightshift(p.path(), &["run", "kernels/softmax", "--run-id", "r2"]);
    assert_eq!(code, 0, "{err}");
    let journal = p.path().join("reports/r2").join(journal::FILE_NAME);
    (p, journal)
}

#[test]
fn a_resume_that_asks_for_other_kernels_options_or_specs_is_refused_unless_forced() {
    if let Some(why) = no_fake_gpu() {
        println!("skipped: {why}");
        return;
    }
    let (p, journal) = finished_run();
    let dir = p.path();
    let len = std::fs::metadata(&journal).unwrap().len();
    let refused = |args: &[&str], expect: &[&str]| {
        let (code, _, err) = nightshift(dir, args);
        assert_eq!(code, 2, "{args:?}: {err}");
        for e in expect {
            assert!(err.contains(e), "{args:?}: `{e}` missing from {err}");
        }
        assert!(err.contains("--force"), "{err}");
        // Nothing was written to the run.
        assert_eq!(std::fs::metadata(&journal).unwrap().len(), len, "{args:?}");
    };
    refused(
        &["run", "--resume", "r2", "kernels/rowsum"],
        &[
            "kernels: the run was given softmax (kernels/softmax)",
            "rowsum",
        ],
    );
    refused(
        &["run", "--resume", "r2", "--min-gain", "0.05"],
        &["--min-gain 0.05: the run measures with 0.02"],
    );
    refused(
        &["run", "--resume", "r2", "--max-time", "1", "--gpu", "1"],
        &["--max-time 1: the run measures with 3", "--gpu 1"],
    );
    // The same values as the run's are no difference.
    let (code, _, err) = nightshift(dir, &["run", "--resume", "r2", "--min-gain", "0.02"]);
    assert_eq!(code, 0, "{err}");
    let len = std::fs::metadata(&journal).unwrap().len();
    // A spec edited since the run started (committed or not).
    let cu = dir.join("kernels/softmax/softmax.cu");
    let text = std::fs::read_to_string(&cu).unwrap();
    std::fs::write(&cu, format!("{text}\n// edited\n")).unwrap();
    let (code, _, err) = nightshift(dir, &["run", "--resume", "r2"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("kernels/softmax: its spec or sources changed")
            && err.contains("own worktree (branch nightshift/r2"),
        "{err}"
    );
    assert_eq!(std::fs::metadata(&journal).unwrap().len(), len);
    // A changed pattern library too.
    let pattern = dir.join("patterns/block-size.toml");
    let ptext = std::fs::read_to_string(&pattern).unwrap();
    std::fs::write(&pattern, format!("{ptext}\n# edited\n")).unwrap();
    let (code, _, err) = nightshift(dir, &["run", "--resume", "r2"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("the pattern library patterns changed"),
        "{err}"
    );

    // --force resumes, and journals each difference and the new options.
    let (code, _, err) = nightshift(
        dir,
        &["run", "--resume", "r2", "--min-gain", "0.05", "--force"],
    );
    assert_eq!(code, 0, "{err}");
    let recs = records(&journal);
    let forced = recs
        .iter()
        .rev()
        .find_map(|r| match &r.event {
            Event::Resumed {
                forced, options, ..
            } => Some((forced.clone(), options.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(forced.0.len(), 3, "{:?}", forced.0);
    assert!(forced.0.iter().any(|f| f.contains("--min-gain 0.05")));
    assert!(forced.0.iter().any(|f| f.contains("kernels/softmax")));
    assert!(forced.0.iter().any(|f| f.contains("pattern library")));
    assert_eq!(forced.1.map(|o| o.min_gain), Some(0.05));
    assert_eq!(
        RunState::from_records(&recs).options.map(|o| o.min_gain),
        Some(0.05)
    );
}
