use super::*;

use serde_json::json;

use crate::budget::{Limit, Stage};

fn charge(kernel: &str, config: &str, stage: Stage, s: f64) -> Charge {
    Charge {
        kernel: Some(kernel.to_string()),
        pattern: Some("vectorize".to_string()),
        config: Some(config.to_string()),
        stage,
        gpu_s: s,
        wall_s: s,
        dollars: 0.0,
    }
}

/// One event of every kind, with the non-finite numbers JSON cannot hold.
fn every_event() -> Vec<Event> {
    vec![
        Event::RunStarted {
            run_id: "r1".into(),
            device: "NVIDIA H100 80GB HBM3".into(),
            budgets: Typed::Unreadable(json!({"run": {"wall_s": 28800.0}})),
            git_branch: Some("nightshift/r1".into()),
            kernels: vec![RunKernel {
                name: "softmax".into(),
                dir: "kernels/softmax".into(),
                hash: "0123456789abcdef".into(),
            }],
            options: Some(RunOptions {
                min_gain: 0.02,
                max_time_s: 3.0,
                target_noise: 0.005,
                energy_ms: 200.0,
                gpu: 0,
                gpus: vec![0, 1],
                patterns: "patterns".into(),
                patterns_hash: "fedcba9876543210".into(),
            }),
        },
        Event::Resumed {
            device: "NVIDIA H100 80GB HBM3".into(),
            dropped: Some("line 9: cut short".into()),
            down_s: Some(192.5),
            forced: vec!["--min-gain 0.05: the run measures with 0.02".into()],
            kernels: None,
            options: None,
            budgets: Typed::Unreadable(json!({"run": {"wall_s": 3600.0}})),
        },
        Event::Proposal {
            kernel: "softmax".into(),
            pattern: "vectorize".into(),
            prediction: "memory-bound at 60% of DRAM: wider loads, +10%".into(),
            predicted: None,
            configs: vec!["BLOCK=128 VEC=2".into(), "BLOCK=128 VEC=4".into()],
        },
        Event::Evaluated {
            ahead: false,
            gpu: None,
            kernel: "softmax".into(),
            config: "BLOCK=128 VEC=2".into(),
            pattern: Some("vectorize".into()),
            outcome: "passed".into(),
            median_us: Some(12.5),
            evaluation: Typed::Unreadable(json!({"outcome": "passed", "max_rel_err": "nan"})),
            rewritten: None,
        },
        Event::Evaluated {
            ahead: false,
            gpu: None,
            kernel: "softmax".into(),
            config: "BLOCK=128 VEC=4".into(),
            pattern: None,
            outcome: "hung".into(),
            median_us: None,
            evaluation: Typed::Unread,
            rewritten: Some(crate::rewrite::Change {
                rewrites: vec!["launch-bounds:min_blocks=2".into()],
                options: vec!["-std=c++17".into()],
                diff: "--- a\n+++ b\n".into(),
            }),
        },
        Event::Verdict {
            kernel: "softmax".into(),
            config: "BLOCK=128 VEC=2".into(),
            baseline: "BLOCK=128 VEC=1".into(),
            verdict: Verdict::Fast,
            speedup: f64::INFINITY,
            ci_lo: 1.05,
            ci_hi: f64::NEG_INFINITY,
            pairs: Some(40),
            min_gain: Some(0.02),
            against: Typed::Unreadable(json!({"config": "BLOCK=128 VEC=1"})),
        },
        Event::Commit {
            kernel: "softmax".into(),
            config: "BLOCK=128 VEC=2".into(),
            sha: "0123abcd".into(),
        },
        Event::Revert {
            kernel: "softmax".into(),
            config: "BLOCK=128 VEC=4".into(),
            reason: "hung".into(),
        },
        Event::Pivot {
            kernel: "softmax".into(),
            pattern: "vectorize".into(),
            reason: "three candidates without a FAST verdict".into(),
        },
        Event::Charge(Charge {
            kernel: None,
            pattern: None,
            config: None,
            stage: Stage::Idle,
            gpu_s: 1.5,
            wall_s: f64::NAN,
            dollars: 0.0,
        }),
        Event::Budget {
            spent: Spend {
                wall_s: 10.0,
                gpu_s: 9.0,
                dollars: 0.01,
                proposer_dollars: 0.0,
            },
            remaining: Some(Remaining {
                seconds: 100.0,
                binding: Some(Limit::GpuHours),
                wall_s: f64::INFINITY,
                gpu_s: 100.0,
                dollars_s: f64::INFINITY,
            }),
            breakdown: Some(crate::budget::Breakdown::default()),
        },
        Event::RunFinished {
            reason: "stopped by SIGINT".into(),
            stop: Some(StopReason::Signal {
                signal: "SIGINT".into(),
            }),
        },
        Event::KernelDone {
            kernel: "softmax".into(),
            reason: "no applicable pattern has anything left to try".into(),
        },
        Event::KernelPaused {
            kernel: "softmax".into(),
            reason: "spent its share".into(),
        },
        Event::Machine {
            device: json!({"name": "NVIDIA H100 80GB HBM3"}),
            ceilings: json!({"dram_gbs": 3000.0}),
            measure: json!({"seed": 24301}),
            nightshift: "0.1.0".into(),
        },
        Event::StudyPoint {
            gpu: None,
            kernel: "attention".into(),
            pattern: "workload-batching".into(),
            config: "VARIANT=1".into(),
            scale: 2,
            problem: "B=64 H=8".into(),
            outcome: "passed".into(),
            median_us: Some(12.5),
            evaluation: Typed::Unreadable(json!({"outcome": "passed"})),
        },
        Event::Study {
            kernel: "attention".into(),
            pattern: "workload-batching".into(),
            config: "VARIANT=1".into(),
            cut_short: Some("budget".into()),
            result: Typed::Unreadable(json!({"knee": 4})),
        },
        Event::FinalComparison {
            gpu: None,
            kernel: "softmax".into(),
            baseline: "BLOCK=128 VEC=1".into(),
            best: "BLOCK=128 VEC=2".into(),
            verdict: None,
            speedup: f64::NAN,
            ci_lo: f64::NAN,
            ci_hi: f64::NAN,
            pairs: None,
            baseline_evaluation: Typed::Unreadable(json!({"outcome": "passed"})),
            best_evaluation: Typed::Unread,
        },
        Event::NotApplicable {
            kernel: "softmax".into(),
            pattern: "unroll-pragma".into(),
            config: "BLOCK=128 VEC=2 + unroll-pragma:factor=4".into(),
            reason: "no inner loop without a pragma".into(),
        },
    ]
}

/// Records compared as JSON: NaN is not equal to itself.
fn as_json<T: Serialize>(x: &T) -> String {
    serde_json::to_string(x).unwrap()
}

fn new_journal(dir: &Path) -> Journal {
    Journal::create(dir, "r1").unwrap()
}

fn append_all(j: &mut Journal, events: &[Event]) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(j.append_at(e, 1_000 + i as u64).unwrap(), i as u64);
    }
}

/// The child process of the SIGKILL test below: appends records until it is killed.
#[test]
#[ignore = "run by a_journal_writer_killed_with_sigkill_loses_and_duplicates_nothing"]
fn journal_writer_child() {
    let dir = std::env::var_os("NIGHTSHIFT_JOURNAL_CHILD_DIR").expect("run by the parent test");
    let mut j = Journal::create(Path::new(&dir), "killed").unwrap();
    for i in 0u64.. {
        // Records of varying length, so the kill lands at any byte of a line.
        j.append(&Event::Revert {
            kernel: "softmax".into(),
            config: format!("N={i}"),
            reason: "x".repeat((i % 97) as usize * 13),
        })
        .unwrap();
    }
}

#[cfg(unix)]
#[test]
fn a_journal_writer_killed_with_sigkill_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("killed").join(FILE_NAME);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "journal::tests::journal_writer_child",
            "--ignored",
            "--test-threads=1",
        ])
        .env("NIGHTSHIFT_JOURNAL_CHILD_DIR", dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while fs::metadata(&path).map_or(0, |m| m.len()) < 64 * 1024 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "the child wrote too little"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let (mut j, got) = Journal::open_append(&path).unwrap();
    let n = got.records.len() as u64;
    assert!(n > 10, "only {n} records");
    for (i, r) in got.records.iter().enumerate() {
        // No gap, no duplicate: record i is the i-th append.
        assert_eq!(r.seq, i as u64);
        match &r.event {
            Event::Revert { config, .. } => assert_eq!(config, &format!("N={i}")),
            other => panic!("unexpected {other:?}"),
        }
    }
    // The run goes on where it stopped, and the file reads whole again.
    assert_eq!(
        j.append(&Event::KernelDone {
            kernel: "softmax".into(),
            reason: "resumed".into()
        })
        .unwrap(),
        n
    );
    let again = read(&path).unwrap();
    assert_eq!(again.records.len() as u64, n + 1);
    assert!(again.torn.is_none());
}

#[test]
fn every_event_round_trips_with_non_finite_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = new_journal(dir.path());
    let events = every_event();
    append_all(&mut j, &events);
    let back = read(j.path()).unwrap();
    assert_eq!(back.torn, None);
    assert_eq!(back.records.len(), events.len());
    for (i, (r, e)) in back.records.iter().zip(&events).enumerate() {
        assert_eq!(r.seq, i as u64);
        assert_eq!(r.t_ms, 1_000 + i as u64);
        assert_eq!(as_json(&r.event), as_json(e));
    }
    let verdict = back
        .records
        .iter()
        .find_map(|r| match &r.event {
            Event::FinalComparison { speedup, .. } => Some(*speedup),
            _ => None,
        })
        .expect("a final comparison");
    assert!(verdict.is_nan());
}

#[test]
fn verdicts_are_typed_and_written_as_every_journal_wrote_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = new_journal(dir.path());
    append_all(&mut j, &every_event());
    let text = fs::read_to_string(j.path()).unwrap();
    assert!(text.contains(r#""verdict":"FAST""#), "{text}");
    assert!(text.contains(r#""verdict":"not_compared""#), "{text}");
    // Every fixture journal (written by earlier versions) reads into the types.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journals");
    let mut verdicts = 0;
    for f in fs::read_dir(&fixtures).unwrap() {
        let path = f.unwrap().path();
        if path.extension().is_some_and(|x| x == "jsonl") {
            let read = read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            verdicts += read
                .records
                .iter()
                .filter(|r| matches!(r.event, Event::Verdict { .. }))
                .count();
        }
    }
    assert!(verdicts > 10, "{verdicts}");
    let bad = r#"{"kernel":"k","baseline":"a","best":"b","verdict":"fastish","speedup":1.0,"ci_lo":1.0,"ci_hi":1.0}"#;
    let e = serde_json::from_str::<Event>(&format!(r#"{{"kind":"final_comparison",{}"#, &bad[1..]));
    assert!(e.is_err(), "{e:?}");
}

#[test]
fn a_record_whose_timing_is_not_a_time_is_an_error_naming_its_line() {
    let dir = tempfile::tempdir().unwrap();
    for (median, sample) in [(Some(-16.58), 1.0), (Some(f64::NAN), 1.0), (Some(3.0), 0.0)] {
        let _ = fs::remove_dir_all(dir.path().join("r1"));
        let mut j = new_journal(dir.path());
        append_all(&mut j, &every_event()[..2]);
        j.append_at(
            &Event::Evaluated {
                ahead: false,
                gpu: None,
                kernel: "softmax".into(),
                config: "BLOCK=64".into(),
                pattern: None,
                outcome: "passed".into(),
                median_us: median,
                evaluation: Typed::Unreadable(
                    json!({"measurement": {"samples": [{"us": sample}]}}),
                ),
                rewritten: None,
            },
            9,
        )
        .unwrap();
        let e = read(j.path()).unwrap_err();
        assert!(matches!(e, JournalError::Corrupt { line: 3, .. }), "{e}");
        assert!(e.to_string().contains("is not a time"), "{e}");
    }
}

#[test]
fn a_record_is_one_json_line_with_its_kind() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = new_journal(dir.path());
    let e = Event::Commit {
        kernel: "softmax".into(),
        config: "BLOCK=256 VEC=4".into(),
        sha: "0123abcd".into(),
    };
    j.append_at(&e, 1_700_000_000_000).unwrap();
    let text = fs::read_to_string(dir.path().join("r1").join(FILE_NAME)).unwrap();
    assert_eq!(
        text,
        "{\"seq\":0,\"t_ms\":1700000000000,\"event\":{\"kind\":\"commit\",\
         \"kernel\":\"softmax\",\"config\":\"BLOCK=256 VEC=4\",\"sha\":\"0123abcd\"}}\n"
    );
}

#[test]
fn each_append_is_on_disk_before_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = new_journal(dir.path());
    let path = j.path().to_path_buf();
    for (i, e) in every_event().iter().enumerate() {
        let seq = j.append(e).unwrap();
        // Read through a separate handle, as a crash-time reader would.
        let on_disk = read(&path).unwrap();
        assert_eq!(on_disk.records.len(), i + 1);
        assert_eq!(on_disk.records[i].seq, seq);
        assert!(on_disk.records[i].t_ms > 1_600_000_000_000);
    }
    assert_eq!(j.next_seq(), every_event().len() as u64);
}

#[test]
fn create_refuses_to_overwrite_a_journal() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = new_journal(dir.path());
    j.append_at(&every_event()[0], 1).unwrap();
    let e = Journal::create(dir.path(), "r1").unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
    assert!(e.to_string().contains("resume"), "{e}");
    assert_eq!(read(j.path()).unwrap().records.len(), 1);
}

#[test]
fn create_refuses_a_run_id_that_is_not_one_directory() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["", ".", "..", "../escape", "a/b", "a b"] {
        let e = Journal::create(dir.path(), bad).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}: {e}");
    }
    Journal::create(dir.path(), "2025-11-21T02.30_softmax").unwrap();
}

#[test]
fn seq_continues_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = {
        let mut j = new_journal(dir.path());
        append_all(&mut j, &every_event()[..2]);
        j.path().to_path_buf()
    };
    let (mut j, before) = Journal::open_append(&path).unwrap();
    assert_eq!(before.records.len(), 2);
    assert_eq!(before.torn, None);
    assert_eq!(j.next_seq(), 2);
    assert_eq!(j.append_at(&every_event()[2], 5).unwrap(), 2);
    let seqs: Vec<u64> = read(&path).unwrap().records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [0, 1, 2]);
}

#[test]
fn an_empty_journal_reads_as_no_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = new_journal(dir.path()).path().to_path_buf();
    let (j, r) = Journal::open_append(&path).unwrap();
    assert_eq!(r.records, []);
    assert_eq!(r.torn, None);
    assert_eq!(j.next_seq(), 0);
}

/// A journal of `n` whole records followed by `tail`, as a crash leaves it.
fn crashed_journal(dir: &Path, n: usize, tail: &[u8]) -> PathBuf {
    let mut j = new_journal(dir);
    append_all(&mut j, &every_event()[..n]);
    let path = j.path().to_path_buf();
    drop(j);
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(tail).unwrap();
    path
}

#[test]
fn a_last_line_cut_short_is_reported_and_cut_off_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let whole = fs::read(crashed_journal(dir.path(), 3, b"")).unwrap().len() as u64;
    fs::remove_dir_all(dir.path().join("r1")).unwrap();
    let tail = b"{\"seq\":3,\"t_ms\":12,\"event\":{\"kind\":\"com";
    let path = crashed_journal(dir.path(), 3, tail);

    let r = read(&path).unwrap();
    assert_eq!(r.records.len(), 3);
    let torn = r.torn.clone().unwrap();
    assert_eq!(
        (torn.line, torn.offset, torn.bytes),
        (4, whole, tail.len() as u64)
    );
    assert!(
        torn.to_string()
            .starts_with("line 4: the last record was cut short"),
        "{torn}"
    );

    let (mut j, on_open) = Journal::open_append(&path).unwrap();
    assert_eq!(on_open, r);
    assert_eq!(fs::metadata(&path).unwrap().len(), whole);
    assert_eq!(j.append_at(&every_event()[6], 13).unwrap(), 3);
    let after = read(&path).unwrap();
    assert_eq!(after.torn, None);
    assert_eq!(after.records.len(), 4);
    assert!(matches!(after.records[3].event, Event::Commit { .. }));
}

#[test]
fn a_garbled_last_line_is_tolerated_like_a_short_one() {
    // Some filesystems leave zeros where the unsynced end of a file was.
    let dir = tempfile::tempdir().unwrap();
    let path = crashed_journal(dir.path(), 2, &[0u8; 64]);
    let r = read(&path).unwrap();
    assert_eq!((r.records.len(), r.torn.as_ref().unwrap().line), (2, 3));
    let path2 = {
        let d = dir.path().join("other");
        crashed_journal(&d, 2, b"not json at all\n")
    };
    let r = read(&path2).unwrap();
    assert_eq!((r.records.len(), r.torn.as_ref().unwrap().bytes), (2, 16));
    let (mut j, _) = Journal::open_append(&path2).unwrap();
    j.append_at(&every_event()[2], 3).unwrap();
    assert_eq!(read(&path2).unwrap().records.len(), 3);
}

#[test]
fn a_whole_last_record_without_its_newline_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let line = "{\"seq\":1,\"t_ms\":9,\"event\":{\"kind\":\"run_finished\",\"reason\":\"done\"}}";
    let path = crashed_journal(dir.path(), 1, line.as_bytes());
    let r = read(&path).unwrap();
    assert_eq!((r.records.len(), r.torn.clone()), (2, None));
    let (mut j, _) = Journal::open_append(&path).unwrap();
    assert_eq!(j.append_at(&every_event()[1], 10).unwrap(), 2);
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 3);
    assert!(text.contains(&format!("{line}\n")));
}

#[test]
fn a_corrupt_line_in_the_middle_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = crashed_journal(dir.path(), 2, b"{garbage}\n");
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"{\"seq\":3,\"t_ms\":1,\"event\":{\"kind\":\"run_finished\",\"reason\":\"x\"}}\n")
        .unwrap();
    let e = read(&path).unwrap_err();
    assert!(matches!(e, JournalError::Corrupt { line: 3, .. }), "{e}");
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("{}:3: not a journal record", path.display())),
        "{shown}"
    );
    // Resume refuses too, and leaves the file alone.
    let len = fs::metadata(&path).unwrap().len();
    assert!(Journal::open_append(&path).is_err());
    assert_eq!(fs::metadata(&path).unwrap().len(), len);
}

#[test]
fn a_missing_record_is_an_error_naming_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = crashed_journal(
        dir.path(),
        2,
        b"{\"seq\":3,\"t_ms\":1,\"event\":{\"kind\":\"run_finished\",\"reason\":\"x\"}}\n",
    );
    match read(&path).unwrap_err() {
        JournalError::Sequence {
            line,
            expected,
            found,
            ..
        } => assert_eq!((line, expected, found), (3, 2, 3)),
        other => panic!("{other}"),
    }
}

#[test]
fn reading_a_missing_journal_names_it() {
    let e = read(Path::new("/nonexistent/r1/journal.jsonl")).unwrap_err();
    // The message names it; the cause is its source, printed once after it.
    assert_eq!(e.to_string(), "read journal /nonexistent/r1/journal.jsonl");
    let cause = std::error::Error::source(&e).expect("the io error as its source");
    assert!(cause.is::<io::Error>(), "{cause}");
}

#[test]
fn resume_summarizes_what_a_crashed_run_did() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = new_journal(dir.path());
    let evaluated = |config: &str, outcome: &str| Event::Evaluated {
        ahead: false,
        gpu: None,
        kernel: "softmax".into(),
        config: config.into(),
        pattern: Some("vectorize".into()),
        outcome: outcome.into(),
        median_us: (outcome == "passed").then_some(10.0),
        evaluation: Typed::Unread,
        rewritten: None,
    };
    let commit = |config: &str, sha: &str| Event::Commit {
        kernel: "softmax".into(),
        config: config.into(),
        sha: sha.into(),
    };
    let events = vec![
        every_event()[0].clone(),
        Event::Charge(charge("softmax", "VEC=2", Stage::Compile, 1.0)),
        Event::Charge(charge("softmax", "VEC=2", Stage::Measure, 3.0)),
        evaluated("VEC=2", "passed"),
        commit("VEC=2", "aaaa"),
        Event::Charge(charge("softmax", "VEC=4", Stage::Validate, 30.0)),
        evaluated("VEC=4", "hung"),
        Event::Revert {
            kernel: "softmax".into(),
            config: "VEC=4".into(),
            reason: "hung".into(),
        },
        Event::Budget {
            spent: Spend {
                wall_s: 34.0,
                gpu_s: 34.0,
                dollars: 34.0 / 900.0,
                proposer_dollars: 0.0,
            },
            remaining: None,
            breakdown: None,
        },
        Event::Charge(charge("softmax", "VEC=8", Stage::Measure, 2.0)),
        evaluated("VEC=8", "passed"),
        commit("VEC=8", "bbbb"),
        Event::RunFinished {
            reason: "wall-time limit".into(),
            stop: None,
        },
    ];
    append_all(&mut j, &events);
    let r = crate::state::RunState::from_records(&read(j.path()).unwrap().records);
    assert_eq!(r.run_id.as_deref(), Some("r1"));
    assert_eq!(r.git_branch.as_deref(), Some("nightshift/r1"));
    assert_eq!(r.evaluated.len(), 3);
    assert!(r.was_evaluated("softmax", "VEC=4"));
    assert!(!r.was_evaluated("softmax", "VEC=1"));
    assert!(!r.was_evaluated("gemm", "VEC=2"));
    assert_eq!(
        r.evaluated[&("softmax".into(), "VEC=4".into())].outcome,
        "hung"
    );
    assert_eq!(r.committed["softmax"].config, "VEC=8");
    assert_eq!(r.committed["softmax"].sha, "bbbb");
    assert_eq!(r.finished.as_deref(), Some("wall-time limit"));
    assert_eq!(r.last_budget.map(|s| s.gpu_s), Some(34.0));
    assert_eq!((r.first_t_ms, r.last_t_ms), (Some(1_000), Some(1_012)));
    assert_eq!(r.next_seq, events.len() as u64);
    let ledger = r.ledger(4.0).unwrap();
    assert_eq!(ledger.spent().gpu_s, 36.0);
    assert_eq!(ledger.projection("softmax", None, 1).samples, 3);

    // Picked up again: no longer finished.
    let path = j.path().to_path_buf();
    drop(j);
    let (mut j, _) = Journal::open_append(&path).unwrap();
    j.append_at(&every_event()[1], 2_000).unwrap();
    let r = crate::state::RunState::from_records(&read(&path).unwrap().records);
    assert_eq!((r.finished, r.resumes), (None, 1));
}
