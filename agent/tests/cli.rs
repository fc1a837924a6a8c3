//! The binary's behaviour on bad input and on a machine without a GPU.

mod common;

use common::{copy_dir, git};

use std::process::Command;

fn nightshift(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(common::nightshift_bin())
        .args(args)
        .output()
        .expect("nightshift runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn doctor_without_a_gpu_says_what_is_missing_and_fails() {
    if common::no_gpu_reason().is_none() {
        println!("skipped: a CUDA device is present (this test checks the no-GPU path)");
        return;
    }
    let (code, out, _) = nightshift(&["doctor"]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("no CUDA driver")
            || out.contains("no usable CUDA device")
            || out.contains("no device"),
        "{out}"
    );
}

#[test]
fn bench_without_a_gpu_fails_clearly() {
    if common::no_gpu_reason().is_none() {
        println!("skipped: a CUDA device is present (this test checks the no-GPU path)");
        return;
    }
    let dir = common::repo_root().join("kernels/softmax");
    let (code, _, err) = nightshift(&["bench", dir.to_str().unwrap()]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("cannot open CUDA device"), "{err}");
}

#[test]
fn bench_names_a_malformed_spec_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("kernel.toml"),
        "name = \"x\"\nsorce = \"x.cu\"\n",
    )
    .unwrap();
    let (code, _, err) = nightshift(&["bench", dir.path().to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("kernel.toml:2"), "{err}");
    assert!(err.contains("sorce"), "{err}");
}

#[test]
fn bench_rejects_an_unknown_tunable_and_a_restricted_value() {
    let dir = common::repo_root().join("kernels/softmax");
    let (code, _, err) = nightshift(&["bench", dir.to_str().unwrap(), "--set", "BLOK=64"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a tunable"), "{err}");
    let (code, _, err) = nightshift(&["bench", dir.to_str().unwrap(), "--set", "BLOCK=100"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not among its values"), "{err}");
    let (code, _, err) = nightshift(&["bench", dir.to_str().unwrap(), "--set", "BLOCK"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("NAME=VALUE"), "{err}");
}

#[test]
fn bench_on_a_missing_directory_is_a_clear_error() {
    let (code, _, err) = nightshift(&["bench", "/nonexistent/kernel"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot read the spec"), "{err}");
}

#[test]
fn bench_names_a_bad_rewrite_before_it_asks_for_a_gpu() {
    let k = common::repo_root().join("kernels/softmax");
    let k = k.to_str().unwrap();
    for (args, want) in [
        (
            vec!["--rewrite", "launch-bound"],
            "unknown rewrite `launch-bound`",
        ),
        (
            vec!["--rewrite", "unroll-pragma:factor=0"],
            "not an integer in 1..=64",
        ),
        // softmax has __launch_bounds__, which --maxrregcount cannot override.
        (
            vec!["--rewrite", "max-registers:count=64"],
            "not applicable to softmax",
        ),
    ] {
        let mut a = vec!["bench", k];
        a.extend(args);
        let (code, _, err) = nightshift(&a);
        assert_eq!(code, 2, "{a:?}: {err}");
        assert!(err.contains(want), "{a:?}: {err}");
    }
}

#[test]
fn rewrite_shows_each_builtin_on_a_kernel_and_a_chain_as_a_diff() {
    let k = common::repo_root().join("kernels/rowsum");
    let k = k.to_str().unwrap();
    let (code, out, err) = nightshift(&["rewrite", k]);
    assert_eq!(code, 0, "{err}");
    for name in nightshift::rewrite::NAMES {
        assert!(out.contains(name), "{name}: {out}");
    }
    assert!(out.contains("not applicable: the entry kernel's `__launch_bounds__(BLOCK)`"));
    let (code, out, err) = nightshift(&[
        "rewrite",
        k,
        "--rewrite",
        "launch-bounds:min_blocks=2",
        "--nvrtc-option=--use_fast_math",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert!(v["diff"]
        .as_str()
        .unwrap()
        .contains("+extern \"C\" __global__ void __launch_bounds__(BLOCK, 2)"));
    assert_eq!(v["options"], serde_json::json!(["--use_fast_math"]));
    // softmax's entry has no loop: asking for an unroll pragma is an error, with why.
    let s = common::repo_root().join("kernels/softmax");
    let (code, _, err) =
        nightshift(&["rewrite", s.to_str().unwrap(), "--rewrite", "unroll-pragma"]);
    assert_eq!(code, 2);
    assert!(err.contains("has no loop"), "{err}");
}

#[test]
fn patterns_lists_the_library_and_rejects_a_malformed_pattern() {
    let dir = common::repo_root().join("patterns");
    let (code, out, err) = nightshift(&["patterns", "--dir", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    for p in [
        "parallelism-first",
        "roi-pivot",
        "workload-batching",
        "launch-bounds: min_blocks=2 | min_blocks=3 | min_blocks=4",
        "restrict-const: (defaults)",
    ] {
        assert!(out.contains(p), "{out}");
    }
    let (code, out, _) = nightshift(&["patterns", "--dir", dir.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let files = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "toml"))
        })
        .count();
    assert_eq!(v.as_array().map(|a| a.len()), Some(files));
    // Rewrite patterns carry their rewrite and steps; other kinds null.
    let by_name = |n: &str| {
        v.as_array()
            .and_then(|a| a.iter().find(|p| p["name"] == n))
            .cloned()
            .unwrap_or_else(|| panic!("{n} missing: {out}"))
    };
    let fm = by_name("fast-math");
    assert_eq!(fm["kind"], "rewrite");
    assert_eq!(fm["rewrite"], "fast-math");
    assert_eq!(fm["steps"][0], "part=all");
    assert!(by_name("occupancy")["rewrite"].is_null());

    let bad = tempfile::tempdir().unwrap();
    std::fs::write(
        bad.path().join("mine.toml"),
        "name = \"mine\"\nkind = \"moves\"\ntier = \"launch\"\nwhen = \"wavez < 1\"\nrationale = \"x\"\n[[move]]\nrole = \"block\"\ndirection = \"up\"\n",
    )
    .unwrap();
    let (code, _, err) = nightshift(&["patterns", "--dir", bad.path().to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("mine.toml:4") && err.contains("wavez"),
        "{err}"
    );
}

fn nightshift_in(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(common::nightshift_bin())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("nightshift runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// A project like this one, with the softmax kernel, the patterns and the budgets,
/// committed to a fresh repository (when `git_init`).
fn project(git_init: bool) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let root = common::repo_root();
    copy_dir(&root.join("kernels/softmax"), &p.join("kernels/softmax"));
    copy_dir(&root.join("kernels/include"), &p.join("kernels/include"));
    copy_dir(&root.join("patterns"), &p.join("patterns"));
    std::fs::copy(root.join("budgets.toml"), p.join("budgets.toml")).unwrap();
    if git_init {
        common::git_init(p);
    }
    d
}

#[test]
fn run_refuses_bad_input_before_any_gpu_time_is_spent() {
    // Not a git repository: the results could not be committed.
    let p = project(false);
    let (code, _, err) = nightshift_in(p.path(), &["run"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not inside a git repository"), "{err}");

    // Uncommitted changes to a kernel: the run works on HEAD and would not see them.
    let p = project(true);
    let cu = p.path().join("kernels/softmax/softmax.cu");
    let text = std::fs::read_to_string(&cu).unwrap();
    std::fs::write(&cu, format!("{text}\n// edit\n")).unwrap();
    let (code, _, err) = nightshift_in(p.path(), &["run"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("kernels/softmax/softmax.cu") && err.contains("--allow-dirty"),
        "{err}"
    );
    git(p.path(), &["checkout", "--", "."]);

    // A pattern naming a role no kernel spec has.
    std::fs::write(
        p.path().join("patterns/mine.toml"),
        "name = \"mine\"\nkind = \"moves\"\ntier = \"launch\"\nwhen = \"waves < 1\"\nrationale = \"x\"\n[[move]]\nrole = \"blok\"\ndirection = \"up\"\n",
    )
    .unwrap();
    let (code, _, err) = nightshift_in(p.path(), &["run"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("mine.toml") && err.contains("blok"), "{err}");
    std::fs::remove_file(p.path().join("patterns/mine.toml")).unwrap();

    // Budgets of zero, and a negative price, name their key.
    for (text, key) in [
        ("[run]\nwall_hours = 0\n", "wall_hours"),
        (
            "[run]\nwall_hours = 1\n[price]\ndefault_per_gpu_hour = -2\n",
            "default_per_gpu_hour",
        ),
    ] {
        std::fs::write(p.path().join("budgets.toml"), text).unwrap();
        let (code, _, err) = nightshift_in(p.path(), &["run"]);
        assert_eq!(code, 2, "{text}: {err}");
        assert!(
            err.contains("budgets.toml") && err.contains(key),
            "{text}: {err}"
        );
    }
    let (code, _, err) = nightshift_in(p.path(), &["run", "--wall-minutes", "-5"]);
    assert_eq!(code, 2, "{err}");
    // Nothing was started: no journal, no branch, the tree as it was.
    assert!(!p.path().join("reports").exists());
    assert_eq!(git(p.path(), &["branch", "--list", "nightshift/*"]), "");
}

#[test]
fn run_without_a_gpu_fails_clearly_and_leaves_nothing_behind() {
    if common::no_gpu_reason().is_none() {
        println!("skipped: a CUDA device is present (this test checks the no-GPU path)");
        return;
    }
    let p = project(true);
    let (code, _, err) = nightshift_in(p.path(), &["run", "--wall-minutes", "1"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("cannot open CUDA device") || err.contains("CUDA"),
        "{err}"
    );
    assert!(!p.path().join("reports").exists());
    assert_eq!(git(p.path(), &["branch", "--list", "nightshift/*"]), "");
    assert_eq!(git(p.path(), &["status", "--porcelain"]), "");
}

#[test]
fn status_reads_a_journal_and_says_how_the_run_stands() {
    use nightshift::journal::{Event, Journal};
    let p = project(true);
    let (code, _, err) = nightshift_in(p.path(), &["status"]);
    assert_eq!(code, 2);
    assert!(err.contains("reports"), "{err}");

    let reports = p.path().join("reports");
    let mut j = Journal::create(&reports, "r1").unwrap();
    let budgets = nightshift::budget::Budgets::load(&p.path().join("budgets.toml")).unwrap();
    for e in [
        Event::RunStarted {
            run_id: "r1".into(),
            device: "NVIDIA H100 80GB HBM3".into(),
            budgets: budgets.clone().into(),
            git_branch: Some("nightshift/r1".into()),
            kernels: vec![],
            options: None,
        },
        Event::Evaluated {
            ahead: false,
            gpu: None,
            kernel: "softmax".into(),
            config: "BLOCK=128 VARIANT=0 VEC=1".into(),
            pattern: None,
            outcome: "passed".into(),
            median_us: Some(35.0),
            evaluation: nightshift::journal::Typed::Unread,
            rewritten: None,
        },
        Event::Proposal {
            kernel: "softmax".into(),
            pattern: "vectorize-memory".into(),
            prediction: "1.15x".into(),
            predicted: None,
            configs: vec!["BLOCK=128 VARIANT=0 VEC=2".into()],
        },
    ] {
        j.append(&e).unwrap();
    }
    // No RunFinished and no live process: a crashed run, resumable.
    let (code, out, err) = nightshift_in(p.path(), &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("r1") && out.contains("stopped"), "{out}");
    assert!(out.contains("--resume r1"), "{out}");
    assert!(out.contains("working: vectorize-memory"), "{out}");
    assert!(out.contains("35.00"), "{out}");

    j.append(&Event::RunFinished {
        reason: "every kernel's every line of attack is done".into(),
        stop: None,
    })
    .unwrap();
    let (code, out, _) = nightshift_in(p.path(), &["status", "r1", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["state"], "finished");
    assert_eq!(v["kernels"][0]["kernel"], "softmax");
    assert_eq!(v["kernels"][0]["evaluated"], 1);
}

#[test]
fn sweep_refuses_bad_axes_and_tunables_before_the_gpu() {
    let k = common::repo_root().join("kernels/softmax");
    let k = k.to_str().unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = out.path().join("s");
    let o = o.to_str().unwrap();
    for (args, why) in [
        (vec!["--axis", "seqk=32..64:x2"], "not an axis of"),
        (vec!["--axis", "seq_k=64..32:x2"], "above"),
        (vec!["--axis", "seq_k=1,x"], "not an integer"),
        (
            vec!["--axis", "seq_k=32,64", "--over", "VARIANTT"],
            "not a tunable",
        ),
        (
            vec!["--axis", "seq_k=32,64", "--axis", "seq_k=128"],
            "given twice",
        ),
        (vec!["--axis", "seq_k=32,64", "--set", "VEC=3"], "--set"),
    ] {
        let mut a = vec!["sweep", k, "--out", o];
        a.extend(args.iter().copied());
        let (code, _, err) = nightshift(&a);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(why), "{args:?}: {err}");
    }
    assert!(
        !out.path().join("s").exists(),
        "nothing written on bad input"
    );
    // A sweep already there is continued only with --resume.
    std::fs::create_dir_all(out.path().join("s")).unwrap();
    std::fs::write(out.path().join("s/sweep.jsonl"), "{}\n").unwrap();
    let (code, _, err) = nightshift(&["sweep", k, "--out", o, "--axis", "seq_k=32,64"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--resume"), "{err}");
}

#[test]
fn sweep_without_a_gpu_fails_clearly() {
    if common::no_gpu_reason().is_none() {
        println!("skipped: a CUDA device is present (this test checks the no-GPU path)");
        return;
    }
    let k = common::repo_root().join("kernels/softmax");
    let out = tempfile::tempdir().unwrap();
    let o = out.path().join("s");
    let (code, _, err) = nightshift(&[
        "sweep",
        k.to_str().unwrap(),
        "--out",
        o.to_str().unwrap(),
        "--axis",
        "seq_k=32,64",
        "--over",
        "VARIANT",
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("cannot open CUDA device"), "{err}");
}

#[test]
fn check_refuses_a_missing_or_foreign_baseline_before_the_gpu() {
    let k = common::repo_root().join("kernels/softmax");
    let k = k.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("b.json");
    let bs = b.to_str().unwrap();
    let (code, _, err) = nightshift(&["check", k, "--baseline", bs]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--record"), "{err}");
    // A baseline that does not cover the kernel.
    std::fs::write(
        &b,
        r#"{"version":1,"device":"NVIDIA H100 80GB HBM3","date":"2026-11-21","command":"x","seed":1,"kernels":[]}"#,
    )
    .unwrap();
    let (code, _, err) = nightshift(&["check", k, "--baseline", bs]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no recorded baseline for softmax"), "{err}");
    let (code, _, err) = nightshift(&["check", k, "--baseline", bs, "--threshold", "5"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--threshold"), "{err}");
}

#[test]
fn check_record_without_a_gpu_fails_clearly_and_writes_nothing() {
    if common::no_gpu_reason().is_none() {
        println!("skipped: a CUDA device is present (this test checks the no-GPU path)");
        return;
    }
    let k = common::repo_root().join("kernels/softmax");
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("b.json");
    let (code, _, err) = nightshift(&[
        "check",
        k.to_str().unwrap(),
        "--record",
        "--baseline",
        b.to_str().unwrap(),
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(!b.exists());
}

#[test]
fn bad_numbers_files_and_paths_exit_2_naming_them_in_under_a_second() {
    let p = project(true);
    let dir = p.path();
    let softmax = "kernels/softmax";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["bench", softmax, "--max-time", "inf"], "--max-time"),
        (vec!["bench", softmax, "--watchdog", "1e30"], "--watchdog"),
        (vec!["bench", softmax, "--min-gain", "nan"], "--min-gain"),
        (
            vec!["bench", softmax, "--target-noise=-1"],
            "--target-noise",
        ),
        (vec!["bench", softmax, "--energy-ms=-5"], "--energy-ms"),
        (vec!["run", "--wall-minutes", "1e300"], "--wall-minutes"),
        (vec!["run", "--gpu-hours", "1e300"], "--gpu-hours"),
        (vec!["run", "--dollars", "inf"], "--dollars"),
        (vec!["check", "--max-time", "inf"], "--max-time"),
        (
            vec![
                "sweep",
                softmax,
                "--axis",
                "rows=1..256:+1",
                "--watchdog",
                "1e30",
            ],
            "--watchdog",
        ),
        (
            vec![
                "sweep",
                softmax,
                "--axis",
                "rows=1..256:+1",
                "--axis",
                "seq_k=1..256:+1",
            ],
            "--max-points",
        ),
        (vec!["report", "../outside"], "not a run id"),
        (vec!["status", "../outside"], "not a run id"),
        (vec!["run", "--run-id", "../x"], "not a run id"),
    ];
    for (args, expect) in cases {
        let t = std::time::Instant::now();
        let (code, _, err) = nightshift_in(dir, &args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: `{expect}` not in {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(t.elapsed() < std::time::Duration::from_secs(5), "{args:?}");
    }
    // Nothing was written outside the project (the report went nowhere).
    assert!(!dir.join("outside").exists() && !dir.parent().unwrap().join("outside").exists());
    // Two kernels with one name are refused.
    copy_dir(&dir.join("kernels/softmax"), &dir.join("kernels/softmax2"));
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", "twin"]);
    let (code, _, err) = nightshift_in(dir, &["run", "kernels/softmax", "kernels/softmax2"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("two kernels are named `softmax`"), "{err}");
}

#[cfg(unix)]
#[test]
fn a_fifo_where_a_file_belongs_is_an_error_not_a_hang() {
    let d = tempfile::tempdir().unwrap();
    let k = d.path().join("k");
    std::fs::create_dir_all(&k).unwrap();
    let ok = Command::new("mkfifo")
        .arg(k.join("kernel.toml"))
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        println!("skipped: mkfifo is not available");
        return;
    }
    let t = std::time::Instant::now();
    let (code, _, err) = nightshift(&["bench", k.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a regular file"), "{err}");
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn status_of_a_run_that_never_started_suggests_no_resume() {
    let p = project(true);
    let reports = p.path().join("reports/empty");
    std::fs::create_dir_all(&reports).unwrap();
    std::fs::write(reports.join("journal.jsonl"), "").unwrap();
    let (code, out, err) = nightshift_in(p.path(), &["status", "empty"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("nothing to resume") && !out.contains("--resume"),
        "{out}"
    );
}

/// `nightshift bench` in `dir` (where its nightshift.toml is read).
fn bench_in(dir: &std::path::Path) -> (i32, String) {
    let k = common::repo_root().join("kernels/softmax");
    let out = Command::new(common::nightshift_bin())
        .args(["bench", k.to_str().unwrap(), "--validate-only"])
        .current_dir(dir)
        .output()
        .expect("nightshift runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn the_worker_is_started_through_the_launcher_of_nightshift_toml() {
    let d = tempfile::tempdir().unwrap();
    // A launcher that leaves a mark, then runs the worker's command line it is given.
    std::fs::write(
        d.path().join("nightshift.toml"),
        "[worker]\nlauncher = [\"sh\", \"-c\", \"echo \\\"$@\\\" > launched; exec \\\"$@\\\"\", \"launcher\"]\n",
    )
    .unwrap();
    let (code, err) = bench_in(d.path());
    let launched = std::fs::read_to_string(d.path().join("launched")).unwrap_or_default();
    assert!(launched.contains(" worker --gpu 0"), "{launched:?} {err}");
    if common::no_gpu_reason().is_some() {
        // The worker's own answer came back through the launcher: no GPU here.
        assert_eq!(code, 3, "{err}");
        assert!(err.contains("cannot open CUDA device"), "{err}");
    } else {
        assert_eq!(code, 0, "{err}");
    }
    // A launcher that cannot be started is the infrastructure failing.
    std::fs::write(
        d.path().join("nightshift.toml"),
        "[worker]\nlauncher = [\"/nonexistent/srun\"]\n",
    )
    .unwrap();
    let (code, err) = bench_in(d.path());
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("/nonexistent/srun"), "{err}");
    // A malformed launcher is bad input, named before any GPU.
    std::fs::write(
        d.path().join("nightshift.toml"),
        "[worker]\nlauncher = [\"\"]\n",
    )
    .unwrap();
    let (code, err) = bench_in(d.path());
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("nightshift.toml:2") && err.contains("worker.launcher"),
        "{err}"
    );
}
