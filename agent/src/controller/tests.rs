//! The controller driven by scripted events: no GPU, no files, no clock. The results
//! fed in are made up for the decision logic only; none reaches a report.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::*;
use crate::budget::DEFAULT_BUDGETS_TOML;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn spec(name: &str) -> KernelSpec {
    KernelSpec::load(&root().join("kernels").join(name)).unwrap()
}

fn library() -> Library {
    Library::load(&root().join("patterns")).unwrap()
}

/// Budgets from `text`; without a `[search]` section the model search after the
/// patterns is off, so a kernel is done when the library has nothing left (the
/// search's own tests turn it on).
fn budgets(text: &str) -> Budgets {
    let text = if text.contains("after_patterns = true") {
        text.replace("after_patterns = true", "after_patterns = false")
    } else if text.contains("[search]") {
        text.to_string()
    } else {
        format!("{text}\n[search]\nafter_patterns = false\n")
    };
    Budgets::parse(&text, Path::new("budgets.toml")).unwrap()
}

/// The actions past the note of the tunables no pattern moves (said first, at the
/// baseline).
fn past_unmoved(a: Vec<Action>) -> Vec<Action> {
    a.into_iter()
        .filter(|x| !matches!(x, Action::Unmoved { .. }))
        .collect()
}

fn controller(specs: Vec<KernelSpec>, lib: Library, b: Budgets) -> Controller {
    let ledger = Ledger::for_device(&b, "NVIDIA H100 80GB HBM3");
    Controller::new(specs, lib, b, ledger)
}

fn profile(pairs: &[(&str, f64)]) -> Profile {
    Profile {
        signals: pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    }
}

/// A memory-bound, well-filled kernel with vector and variant tunables (softmax-like).
fn memory_bound() -> Profile {
    profile(&[
        ("ctas", 4096.0),
        ("sms", 132.0),
        ("waves", 1.94),
        ("occupancy", 1.0),
        ("spill_bytes", 0.0),
        ("memory_bound", 1.0),
        ("compute_bound", 0.0),
        ("dram_fraction", 0.65),
        ("compute_fraction", 0.02),
        ("has_vector", 1.0),
        ("has_variant", 1.0),
        ("has_block", 1.0),
        ("has_tile", 0.0),
        ("has_unroll", 0.0),
        ("has_parallelism", 0.0),
        ("has_workload_axes", 0.0),
    ])
}

fn result(
    passed: bool,
    verdict: Option<Verdict>,
    profile: Option<Profile>,
    secs: f64,
) -> CandidateResult {
    CandidateResult {
        passed,
        outcome: if passed {
            "passed".into()
        } else {
            "incorrect".into()
        },
        verdict,
        speedup: verdict.map(|v| if v == Verdict::Fast { 1.2 } else { 1.0 }),
        profile,
        cost: vec![(Stage::Validate, secs / 2.0), (Stage::Measure, secs / 2.0)],
    }
}

fn evaluate_of(actions: &[Action]) -> Option<(usize, String, Candidate)> {
    actions.iter().find_map(|a| match a {
        Action::Evaluate {
            kernel,
            pattern,
            config,
            ..
        } => Some((*kernel, pattern.clone(), config.clone())),
        _ => None,
    })
}

/// `p` without one signal's truth: `name` set to 0.
fn with_zero(mut p: Profile, name: &str) -> Profile {
    p.signals.insert(name.to_string(), 0.0);
    p
}

#[test]
fn a_step_that_is_not_slower_is_followed_by_the_next_one_the_same_way() {
    let mut c = controller(
        vec![spec("softmax")],
        library(),
        budgets(DEFAULT_BUDGETS_TOML),
    );
    c.handle(0.0, Event::Started);
    let a = c.handle(
        1.0,
        Event::Baseline {
            kernel: 0,
            result: result(true, None, Some(memory_bound()), 2.0),
        },
    );
    // The launch tier first: the block size, both ways from 128.
    let (_, pattern, cfg) = evaluate_of(&a).unwrap();
    assert_eq!(
        (pattern.as_str(), cfg.config.0["BLOCK"]),
        ("block-size", 256)
    );
    assert_eq!(c.queued(0).len(), 1, "then 64");
    // SAME at 1.01x: not proven, not worse; 512 is tried before turning to 64.
    let mut same = result(true, Some(Verdict::Same), Some(memory_bound()), 2.0);
    same.speedup = Some(1.01);
    let a = c.handle(
        2.0,
        Event::Evaluated {
            kernel: 0,
            config: cfg,
            result: same,
        },
    );
    let (_, _, next) = evaluate_of(&a).unwrap();
    assert_eq!(next.config.0["BLOCK"], 512);
    // SLOW ends the line; the other direction is next.
    let a = c.handle(
        3.0,
        Event::Evaluated {
            kernel: 0,
            config: next,
            result: result(true, Some(Verdict::Slow), Some(memory_bound()), 2.0),
        },
    );
    let (_, _, next) = evaluate_of(&a).unwrap();
    assert_eq!(next.config.0["BLOCK"], 64);
}

#[test]
fn a_memory_bound_kernel_vectorizes_first_commits_a_win_and_continues_from_it() {
    let mut c = controller(
        vec![spec("softmax")],
        library(),
        budgets(DEFAULT_BUDGETS_TOML),
    );
    let a = c.handle(0.0, Event::Started);
    let base = spec("softmax").baseline();
    assert_eq!(
        a,
        vec![Action::MeasureBaseline {
            kernel: 0,
            config: base.clone()
        }]
    );
    let a = c.handle(
        1.0,
        Event::Baseline {
            kernel: 0,
            result: result(
                true,
                None,
                Some(with_zero(memory_bound(), "has_block")),
                2.0,
            ),
        },
    );
    // BLOCK: this profile says the spec has none, so no pattern moves it (said).
    assert!(matches!(&a[0], Action::Unmoved { tunables, .. } if tunables[0].starts_with("BLOCK")));
    let a = past_unmoved(a);
    let (_, pattern, cfg) = evaluate_of(&a).expect("a candidate");
    // Constant tier (vectorize) before variant tier; no launch-tier pattern applies
    // (no block tunable in this profile).
    assert_eq!(pattern, "vectorize-memory");
    assert_eq!(cfg.config.0["VEC"], 2);
    assert!(matches!(&a[0], Action::Evaluate { against, .. } if *against == base.clone().into()));
    // FAST: committed, and the next candidate steps on from VEC=2.
    let a = c.handle(
        3.0,
        Event::Evaluated {
            kernel: 0,
            config: cfg.clone(),
            result: result(
                true,
                Some(Verdict::Fast),
                Some(with_zero(memory_bound(), "has_block")),
                2.0,
            ),
        },
    );
    assert!(matches!(&a[0], Action::Commit { config, .. } if *config == cfg));
    let (_, _, next) = evaluate_of(&a).unwrap();
    assert_eq!(next.config.0["VEC"], 4);
    assert!(matches!(&a[1], Action::Evaluate { against, .. } if *against == cfg));
    assert_eq!(c.best(0), Some(&cfg));
    // SLOW: reverted; vectorize has nothing left, so the variant switch is next.
    let a = c.handle(
        5.0,
        Event::Evaluated {
            kernel: 0,
            config: next,
            result: result(
                true,
                Some(Verdict::Slow),
                Some(with_zero(memory_bound(), "has_block")),
                2.0,
            ),
        },
    );
    assert!(matches!(&a[0], Action::Revert { reason, .. } if reason.starts_with("SLOW")));
    let (_, pattern, cfg) = evaluate_of(&a).unwrap();
    assert_eq!(pattern, "variant-select");
    assert_eq!((cfg.config.0["VARIANT"], cfg.config.0["VEC"]), (1, 2));
}

#[test]
fn the_loop_never_repeats_a_configuration_and_ends_when_nothing_is_left() {
    let mut c = controller(
        vec![spec("softmax")],
        library(),
        budgets(DEFAULT_BUDGETS_TOML),
    );
    c.handle(0.0, Event::Started);
    let mut a = c.handle(
        1.0,
        Event::Baseline {
            kernel: 0,
            result: result(true, None, Some(memory_bound()), 1.0),
        },
    );
    let mut seen = BTreeSet::new();
    let mut now = 1.0;
    let mut i = 0;
    while let Some((k, _, cfg)) = evaluate_of(&a) {
        assert!(seen.insert(cfg.clone()), "{cfg} evaluated twice");
        // Every other candidate is a win, the rest fail in various ways.
        let r = match i % 3 {
            0 => result(true, Some(Verdict::Fast), Some(memory_bound()), 1.0),
            1 => result(false, None, None, 1.0),
            _ => result(true, Some(Verdict::Same), Some(memory_bound()), 1.0),
        };
        now += 1.0;
        i += 1;
        a = c.handle(
            now,
            Event::Evaluated {
                kernel: k,
                config: cfg,
                result: r,
            },
        );
        assert!(i < 100, "the loop does not end");
    }
    assert!(
        a.iter()
            .any(|x| matches!(x, Action::KernelDone { kernel: 0, .. })),
        "{a:?}"
    );
    // A kernel that gained is compared once more, best against baseline, before
    // the run ends; the controller waits for it.
    let Some(Action::FinalComparison {
        kernel: 0, best, ..
    }) = a.last().cloned()
    else {
        panic!("no final comparison: {a:?}");
    };
    assert_ne!(best, spec("softmax").baseline().into());
    assert!(!c.stopped());
    a = hear(
        &mut c,
        now + 1.0,
        Event::Compared {
            kernel: 0,
            cost: vec![(Stage::Measure, 1.0)],
        },
    );
    assert!(
        matches!(
            a.last(),
            Some(Action::Stop {
                reason: StopReason::NothingLeft
            })
        ),
        "{a:?}"
    );
    assert!(c.stopped());
    assert!(!seen.contains(&spec("softmax").baseline().into()));
}

#[test]
fn an_underfilled_gpu_gets_parallelism_first() {
    let mut c = controller(
        vec![spec("simsearch")],
        library(),
        budgets(DEFAULT_BUDGETS_TOML),
    );
    c.handle(0.0, Event::Started);
    // The simsearch baseline on the H100: 100 CTAs on 132 SMs.
    let p = profile(&[
        ("ctas", 100.0),
        ("sms", 132.0),
        ("waves", 0.08),
        ("occupancy", 0.25),
        ("spill_bytes", 0.0),
        ("memory_bound", 0.0),
        ("compute_bound", 1.0),
        ("dram_fraction", 0.001),
        ("compute_fraction", 0.003),
        ("has_tile", 1.0),
        ("has_variant", 1.0),
        ("has_vector", 0.0),
        ("has_unroll", 0.0),
        ("has_workload_axes", 1.0),
    ]);
    let a = c.handle(
        1.0,
        Event::Baseline {
            kernel: 0,
            result: result(true, None, Some(p), 2.0),
        },
    );
    let (_, pattern, cfg) = evaluate_of(&a).unwrap();
    assert_eq!(pattern, "parallelism-first");
    assert_eq!(
        cfg.config.0["SPLIT"], 2,
        "more CTAs per launch first: {cfg}"
    );
}

#[test]
fn a_pattern_that_does_not_pay_is_dropped_after_twice_its_budget() {
    // One pattern, a 1-minute budget, candidates costing 50 s: the third one crosses
    // 2 x 60 s without a FAST verdict.
    let lib = Library::parse(&[(
        PathBuf::from("patterns/slow.toml"),
        "name = \"slow\"\nkind = \"moves\"\ntier = \"launch\"\nbudget_minutes = 1\nrationale = \"x\"\n[[move]]\nrole = \"block\"\ndirection = \"any\"\n[[move]]\nrole = \"vector\"\ndirection = \"up\"\n[[move]]\nrole = \"variant\"\ndirection = \"up\"\n".into(),
    )])
    .unwrap();
    let mut c = controller(vec![spec("softmax")], lib, budgets(DEFAULT_BUDGETS_TOML));
    c.handle(0.0, Event::Started);
    let mut a = c.handle(
        1.0,
        Event::Baseline {
            kernel: 0,
            result: result(true, None, Some(memory_bound()), 1.0),
        },
    );
    let mut evaluated = 0;
    while let Some((k, _, cfg)) = evaluate_of(&a) {
        evaluated += 1;
        a = c.handle(
            10.0,
            Event::Evaluated {
                kernel: k,
                config: cfg,
                result: result(true, Some(Verdict::Same), None, 50.0),
            },
        );
        if a.iter().any(|x| matches!(x, Action::Pivot { .. })) {
            break;
        }
    }
    assert_eq!(evaluated, 3);
    let pivot = a.iter().find_map(|x| match x {
        Action::Pivot {
            pattern, reason, ..
        } => Some((pattern.clone(), reason.clone())),
        _ => None,
    });
    let (pattern, reason) = pivot.expect("a pivot");
    assert_eq!(pattern, "slow");
    assert!(reason.contains("without a FAST verdict"), "{reason}");
    assert_eq!(c.dropped()["softmax"], vec!["slow".to_string()]);
    // It was the only pattern: the kernel is done.
    assert!(a.iter().any(|x| matches!(x, Action::KernelDone { .. })));
}

#[test]
fn work_that_cannot_finish_inside_the_budget_is_not_started() {
    // 0.01 GPU-hours = 36 s; each candidate costs 10 s plus a 30 s watchdog reserve.
    let b = budgets("[run]\ngpu_hours = 0.01\n");
    let mut c = controller(vec![spec("softmax")], library(), b);
    assert!(matches!(
        &c.handle(0.0, Event::Started)[0],
        Action::MeasureBaseline { .. }
    ));
    let a = hear(
        &mut c,
        1.0,
        Event::Baseline {
            kernel: 0,
            result: result(true, None, Some(memory_bound()), 10.0),
        },
    );
    assert!(
        matches!(
            &a[..],
            [Action::Stop {
                reason: StopReason::GpuHours { .. }
            }]
        ),
        "{a:?}"
    );
    assert!(c.stopped());
    // The projection learns from what this kernel's work cost (the baseline's 10 s).
    assert_eq!(
        c.ledger().project("softmax", Some("vectorize-memory"), 1),
        10.0
    );
    assert!(
        c.handle(2.0, Event::Started).is_empty(),
        "a stopped controller does nothing"
    );
}

#[test]
fn a_budget_stop_first_makes_the_final_comparison_it_kept_room_for() {
    // 36 s of GPU time, a 1 s watchdog reserve, 10 s per piece of work.
    let b = budgets("[run]\ngpu_hours = 0.01\n[limits]\ncandidate_watchdog_seconds = 1\n");
    let mut c = controller(vec![spec("softmax")], library(), b);
    c.handle(0.0, Event::Started);
    let a = hear(
        &mut c,
        1.0,
        Event::Baseline {
            kernel: 0,
            result: result(true, None, Some(memory_bound()), 10.0),
        },
    );
    let (k, _, cfg) = evaluate_of(&a).expect("10 + 10 owed + 1 fits in 26");
    let a = hear(
        &mut c,
        2.0,
        Event::Evaluated {
            kernel: k,
            config: cfg.clone(),
            result: result(true, Some(Verdict::Fast), Some(memory_bound()), 10.0),
        },
    );
    // 16 s left: another candidate and the final owed (21 s) do not fit, the final
    // alone (11 s) does: it is asked for and the run does not stop before it ends.
    let Some(Action::FinalComparison {
        kernel: 0, best, ..
    }) = a.last().cloned()
    else {
        panic!("{a:?}");
    };
    assert_eq!(best, cfg);
    assert!(!a.iter().any(|x| matches!(x, Action::Stop { .. })), "{a:?}");
    assert!(!c.stopped());
    // A crash here: the resumed run admits the final again on its own projection.
    assert!(c.handle(3.0, Event::Resumed).is_empty());
    let a = hear(
        &mut c,
        4.0,
        Event::Compared {
            kernel: 0,
            cost: vec![(Stage::Measure, 10.0)],
        },
    );
    assert!(
        matches!(
            &a[..],
            [Action::Stop {
                reason: StopReason::GpuHours { .. }
            }]
        ),
        "{a:?}"
    );
    assert!(c.stopped());
}

#[test]
fn a_final_comparison_that_no_longer_fits_on_resume_is_skipped_with_its_reason() {
    let b = budgets("[run]\ngpu_hours = 0.01\n[limits]\ncandidate_watchdog_seconds = 1\n");
    let mut c = controller(vec![spec("softmax")], library(), b);
    c.handle(0.0, Event::Started);
    let a = hear(
        &mut c,
        1.0,
        Event::Baseline {
            kernel: 0,
            result: result(true, None, Some(memory_bound()), 10.0),
        },
    );
    let (k, _, cfg) = evaluate_of(&a).unwrap();
    let a = hear(
        &mut c,
        2.0,
        Event::Evaluated {
            kernel: k,
            config: cfg,
            result: result(true, Some(Verdict::Fast), Some(memory_bound()), 10.0),
        },
    );
    assert!(
        matches!(a.last(), Some(Action::FinalComparison { .. })),
        "{a:?}"
    );
    // The journal held 10 s more than the replay reached: 11 s no longer fit in 6.
    c.charged(&Charge {
        kernel: Some("softmax".into()),
        pattern: None,
        config: None,
        stage: Stage::Idle,
        gpu_s: 10.0,
        wall_s: 10.0,
        dollars: 0.0,
    })
    .unwrap();
    let a = c.handle(3.0, Event::Resumed);
    assert!(
        matches!(
            &a[..],
            [
                Action::FinalSkipped { kernel: 0, reason },
                Action::Stop {
                    reason: StopReason::GpuHours { .. }
                }
            ] if !reason.is_empty()
        ),
        "{a:?}"
    );
    assert!(c.stopped());
}

#[test]
fn a_kernel_that_gained_nothing_owes_no_final_comparison() {
    let mut c = controller(
        vec![spec("softmax"), spec("rowsum")],
        library(),
        budgets(DEFAULT_BUDGETS_TOML),
    );
    let a = c.handle(0.0, Event::Started);
    let mut trail = Vec::new();
    drive(
        &mut c,
        a,
        &|_, _| Verdict::Same,
        &|_| 1.0,
        &|x| matches!(x, Action::Stop { .. }),
        &mut trail,
    )
    .expect("the run ends");
    assert!(
        !trail.iter().any(|x| matches!(
            x,
            Action::FinalComparison { .. } | Action::FinalSkipped { .. }
        )),
        "{trail:?}"
    );
    assert_eq!(
        trail
            .iter()
            .filter(|x| matches!(x, Action::KernelDone { .. }))
            .count(),
        2
    );
}

#[test]
fn a_signal_stops_the_run_and_a_failed_baseline_moves_on() {
    let mut c = controller(
        vec![spec("softmax"), spec("rowsum")],
        library(),
        budgets(DEFAULT_BUDGETS_TOML),
    );
    c.handle(0.0, Event::Started);
    let a = c.handle(
        1.0,
        Event::Baseline {
            kernel: 0,
            result: result(false, None, None, 1.0),
        },
    );
    assert!(
        matches!(&a[0], Action::KernelDone { kernel: 0, reason } if reason.contains("incorrect"))
    );
    assert!(matches!(&a[1], Action::MeasureBaseline { kernel: 1, .. }));
    let a = c.handle(
        2.0,
        Event::Interrupted {
            signal: "SIGINT".into(),
        },
    );
    assert!(matches!(
        &a[..],
        [Action::Stop {
            reason: StopReason::Signal { .. }
        }]
    ));
    assert!(c
        .handle(
            3.0,
            Event::Baseline {
                kernel: 1,
                result: result(true, None, None, 1.0)
            }
        )
        .is_empty());
}

/// The simsearch baseline's shape on the H100: fewer CTAs than SMs.
fn underfilled() -> Profile {
    profile(&[
        ("ctas", 100.0),
        ("sms", 132.0),
        ("waves", 0.08),
        ("has_workload_axes", 1.0),
    ])
}

fn study_only() -> Library {
    Library::parse(&[(
        PathBuf::from("patterns/workload-batching.toml"),
        std::fs::read_to_string(root().join("patterns/workload-batching.toml")).unwrap(),
    )])
    .unwrap()
}

#[test]
fn an_underfilled_kernel_with_workload_axes_is_studied_before_it_is_done() {
    let mut c = controller(
        vec![spec("simsearch")],
        study_only(),
        budgets(DEFAULT_BUDGETS_TOML),
    );
    c.handle(0.0, Event::Started);
    let a = c.handle(
        1.0,
        Event::Baseline {
            kernel: 0,
            result: result(true, None, Some(underfilled()), 2.0),
        },
    );
    let a = past_unmoved(a);
    match &a[..] {
        [Action::StudyBegin {
            kernel: 0,
            pattern,
            config,
            axes,
            scales,
            budget_s,
        }, Action::StudyPoint {
            kernel: 0,
            scale: 1,
            ..
        }] => {
            assert_eq!(pattern, "workload-batching");
            assert_eq!(config, &Candidate::from(spec("simsearch").baseline()));
            assert_eq!(axes, &vec!["Q".to_string()]);
            assert_eq!(scales, &vec![2, 4, 8]);
            assert_eq!(*budget_s, 600.0);
        }
        other => panic!("expected the study, got {other:?}"),
    }
    // One point at a time, each asked for by the controller.
    let mut asked = vec![1];
    let mut a = a;
    let mut now = 1.0;
    while let Some(Action::StudyPoint { scale, .. }) = a.last().cloned() {
        now += 10.0;
        a = c.handle(
            now,
            Event::StudyPoint {
                kernel: 0,
                scale,
                cost: Some(vec![(Stage::Measure, 5.0)]),
            },
        );
        if let Some(Action::StudyPoint { scale, .. }) = a.last() {
            asked.push(*scale);
        }
    }
    assert_eq!(asked, vec![1, 2, 4, 8]);
    assert!(
        matches!(
            &a[0],
            Action::StudyEnd {
                kernel: 0,
                cut_short: None,
                ..
            }
        ),
        "{a:?}"
    );
    assert!(
        matches!(&a[1], Action::KernelDone { kernel: 0, .. }),
        "{a:?}"
    );
    assert!(matches!(&a[2], Action::Stop { .. }), "{a:?}");
    // The controller charges nothing itself: its ledger is the journal's charges,
    // which the dispatcher hands it (the study's, by point, with its pattern).
    assert_eq!(c.ledger().spent().gpu_s, 0.0);
}

/// A simsearch study begun after its baseline (charged through `hear`).
fn begun_study(b: Budgets) -> (Controller, Vec<Action>) {
    let mut c = controller(vec![spec("simsearch")], study_only(), b);
    c.handle(0.0, Event::Started);
    let a = hear(
        &mut c,
        1.0,
        Event::Baseline {
            kernel: 0,
            result: result(true, None, Some(underfilled()), 2.0),
        },
    );
    (c, a)
}

#[test]
fn a_study_past_its_own_budget_is_cut_short_and_says_why() {
    let (mut c, a) = begun_study(budgets(DEFAULT_BUDGETS_TOML));
    assert!(
        matches!(a.last(), Some(Action::StudyPoint { scale: 1, .. })),
        "{a:?}"
    );
    // 400 s a point against the pattern's 600 s: a third point is not started.
    let mut a = a;
    let mut points = 0;
    while let Some(Action::StudyPoint { scale, .. }) = a.last().cloned() {
        points += 1;
        a = hear(
            &mut c,
            10.0 * points as f64,
            Event::StudyPoint {
                kernel: 0,
                scale,
                cost: Some(vec![(Stage::Measure, 400.0)]),
            },
        );
    }
    assert_eq!(points, 2, "{a:?}");
    match &a[0] {
        Action::StudyEnd {
            cut_short: Some(why),
            ..
        } => assert!(why.contains("more than the study's 600 s budget"), "{why}"),
        other => panic!("expected the study cut short, got {other:?}"),
    }
    assert!(matches!(&a[1], Action::KernelDone { .. }), "{a:?}");
}

#[test]
fn a_study_point_the_run_cannot_afford_is_not_started() {
    // 36 s of GPU time: the baseline's 2 s leave room to begin; a 20 s point leaves
    // too little for another (the run's limit, not the study's, cuts it short).
    let b = budgets("[run]\ngpu_hours = 0.01\n[limits]\ncandidate_watchdog_seconds = 1\n");
    let (mut c, a) = begun_study(b);
    assert!(
        matches!(a.last(), Some(Action::StudyPoint { scale: 1, .. })),
        "{a:?}"
    );
    let a = hear(
        &mut c,
        25.0,
        Event::StudyPoint {
            kernel: 0,
            scale: 1,
            cost: Some(vec![(Stage::Measure, 20.0)]),
        },
    );
    match &a[0] {
        Action::StudyEnd {
            cut_short: Some(why),
            ..
        } => assert!(!why.contains("study's"), "{why}"),
        other => panic!("expected the study cut short by the run, got {other:?}"),
    }
    assert!(
        !a.iter().any(|x| matches!(x, Action::StudyPoint { .. })),
        "{a:?}"
    );
}

#[test]
fn a_study_the_journal_concluded_early_ends_where_the_record_ends() {
    let (mut c, a) = begun_study(budgets(DEFAULT_BUDGETS_TOML));
    assert!(
        matches!(a.last(), Some(Action::StudyPoint { scale: 1, .. })),
        "{a:?}"
    );
    let a = hear(
        &mut c,
        5.0,
        Event::StudyPoint {
            kernel: 0,
            scale: 1,
            cost: Some(vec![(Stage::Measure, 1.0)]),
        },
    );
    assert!(
        matches!(a.last(), Some(Action::StudyPoint { scale: 2, .. })),
        "{a:?}"
    );
    // The record holds no x2 point but a conclusion: the study ends there.
    let a = c.handle(
        6.0,
        Event::StudyPoint {
            kernel: 0,
            scale: 2,
            cost: None,
        },
    );
    assert!(matches!(&a[0], Action::StudyEnd { .. }), "{a:?}");
    assert!(matches!(&a[1], Action::KernelDone { .. }), "{a:?}");
}

#[test]
fn a_resumed_run_stops_when_the_work_it_asked_for_no_longer_fits() {
    // 36 s of GPU time; the replay asked for a candidate with 10 s spent.
    let b = budgets("[run]\ngpu_hours = 0.01\n[limits]\ncandidate_watchdog_seconds = 1\n");
    let mut c = controller(vec![spec("softmax")], library(), b);
    c.handle(0.0, Event::Started);
    let a = hear(
        &mut c,
        1.0,
        Event::Baseline {
            kernel: 0,
            result: result(true, None, Some(memory_bound()), 10.0),
        },
    );
    assert!(matches!(&a[..], [Action::Evaluate { .. }]), "{a:?}");
    // Nothing more was spent: the work still fits, nothing to do.
    assert!(c.handle(2.0, Event::Resumed).is_empty());
    // The journal held 20 s more of charges than the replay had reached.
    c.charged(&Charge {
        kernel: Some("softmax".into()),
        pattern: None,
        config: None,
        stage: Stage::Idle,
        gpu_s: 20.0,
        wall_s: 20.0,
        dollars: 0.0,
    })
    .unwrap();
    let a = c.handle(3.0, Event::Resumed);
    assert!(
        matches!(
            &a[..],
            [Action::Stop {
                reason: StopReason::GpuHours { .. }
            }]
        ),
        "{a:?}"
    );
    assert!(c.stopped());
}

#[test]
fn no_study_for_a_filled_gpu_or_a_kernel_without_workload_axes() {
    // simsearch with its GPU filled.
    let mut c = controller(
        vec![spec("simsearch")],
        study_only(),
        budgets(DEFAULT_BUDGETS_TOML),
    );
    c.handle(0.0, Event::Started);
    let filled = profile(&[
        ("ctas", 4096.0),
        ("sms", 132.0),
        ("waves", 3.9),
        ("has_workload_axes", 1.0),
    ]);
    let a = c.handle(
        1.0,
        Event::Baseline {
            kernel: 0,
            result: result(true, None, Some(filled), 2.0),
        },
    );
    let a = past_unmoved(a);
    assert!(matches!(&a[0], Action::KernelDone { .. }), "{a:?}");
    // softmax declares no workload axes: even an underfilled profile is not studied.
    let mut c = controller(
        vec![spec("softmax")],
        study_only(),
        budgets(DEFAULT_BUDGETS_TOML),
    );
    c.handle(0.0, Event::Started);
    let a = c.handle(
        1.0,
        Event::Baseline {
            kernel: 0,
            result: result(true, None, Some(underfilled()), 2.0),
        },
    );
    let a = past_unmoved(a);
    assert!(matches!(&a[0], Action::KernelDone { .. }), "{a:?}");
}

/// What the dispatcher does with an event: the work's cost is journaled and handed
/// to the ledger, then the controller hears of the work.
fn hear(c: &mut Controller, now: f64, e: Event) -> Vec<Action> {
    let (kernel, config, cost) = match &e {
        Event::Baseline { kernel, result } => (*kernel, Some("baseline".into()), &result.cost),
        Event::Evaluated {
            kernel,
            config,
            result,
        } => (*kernel, Some(config.to_string()), &result.cost),
        Event::Compared { kernel, cost } => (*kernel, None, cost),
        Event::StudyPoint {
            kernel,
            cost: Some(cost),
            ..
        } => (*kernel, None, cost),
        _ => return c.handle(now, e),
    };
    let cost = cost.clone();
    let name = c.spec(kernel).unwrap().name.clone();
    for (stage, s) in cost {
        c.charged(&Charge {
            kernel: Some(name.clone()),
            pattern: None,
            config: config.clone(),
            stage,
            gpu_s: s,
            wall_s: s,
            dollars: 0.0,
        })
        .unwrap();
    }
    c.handle(now, e)
}

/// Drives `c` to its next action of interest, answering every evaluation with
/// `answer(kernel, pattern)` (verdict) at `secs` each.
fn drive(
    c: &mut Controller,
    mut a: Vec<Action>,
    answer: &dyn Fn(usize, &str) -> Verdict,
    secs: &dyn Fn(usize) -> f64,
    until: &dyn Fn(&Action) -> bool,
    trail: &mut Vec<Action>,
) -> Option<Action> {
    for _ in 0..1000 {
        trail.extend(a.iter().cloned());
        if let Some(hit) = a.iter().find(|x| until(x)) {
            return Some(hit.clone());
        }
        let next = a.iter().find_map(|x| match x {
            Action::Evaluate {
                kernel,
                pattern,
                config,
                ..
            } => Some(Event::Evaluated {
                kernel: *kernel,
                config: config.clone(),
                result: result(
                    true,
                    Some(answer(*kernel, pattern)),
                    Some(memory_bound()),
                    secs(*kernel),
                ),
            }),
            Action::MeasureBaseline { kernel, .. } => Some(Event::Baseline {
                kernel: *kernel,
                result: result(true, None, Some(memory_bound()), secs(*kernel)),
            }),
            Action::FinalComparison { kernel, .. } => Some(Event::Compared {
                kernel: *kernel,
                cost: vec![(Stage::Measure, secs(*kernel))],
            }),
            _ => None,
        })?;
        a = hear(c, 1.0, next);
    }
    None
}

#[test]
fn the_bandit_tries_first_the_pattern_that_paid_on_earlier_kernels() {
    // Two patterns of one tier and priority; file order puts `blocks` first.
    let pattern = |name: &str, role: &str, dir: &str| {
        (
            PathBuf::from(format!("patterns/{name}.toml")),
            format!("name = \"{name}\"\nkind = \"moves\"\ntier = \"launch\"\nrationale = \"x\"\n[[move]]\nrole = \"{role}\"\ndirection = \"{dir}\"\n"),
        )
    };
    let lib = Library::parse(&[
        pattern("blocks", "block", "any"),
        pattern("vectors", "vector", "up"),
    ])
    .unwrap();
    let mut c = controller(
        vec![spec("rowsum"), spec("layernorm")],
        lib,
        budgets(DEFAULT_BUDGETS_TOML),
    );
    let a = c.handle(0.0, Event::Started);
    // Only wider vectors pay.
    let answer = |_: usize, p: &str| {
        if p == "vectors" {
            Verdict::Fast
        } else {
            Verdict::Same
        }
    };
    let mut trail = Vec::new();
    let first_of =
        |k: usize| move |x: &Action| matches!(x, Action::Evaluate { kernel, .. } if *kernel == k);
    let hit = drive(&mut c, a, &answer, &|_| 1.0, &first_of(0), &mut trail).unwrap();
    assert!(
        matches!(&hit, Action::Evaluate { pattern, .. } if pattern == "blocks"),
        "untried patterns go in file order: {hit:?}"
    );
    let hit = drive(
        &mut c,
        vec![hit],
        &answer,
        &|_| 1.0,
        &first_of(1),
        &mut trail,
    )
    .unwrap();
    assert!(
        matches!(&hit, Action::Evaluate { pattern, .. } if pattern == "vectors"),
        "the pattern that paid on rowsum goes first on layernorm: {hit:?}"
    );
}

#[test]
fn a_kernel_past_its_share_of_the_budget_is_paused_and_resumed_after_the_others() {
    // One GPU-hour over two kernels: 1800 s each. softmax's candidates cost 400 s.
    let mut c = controller(
        vec![spec("softmax"), spec("rowsum")],
        library(),
        budgets("[run]\ngpu_hours = 1.0\n"),
    );
    let a = c.handle(0.0, Event::Started);
    let mut trail = Vec::new();
    let secs = |k: usize| if k == 0 { 400.0 } else { 1.0 };
    let hit = drive(
        &mut c,
        a,
        &|_, _| Verdict::Same,
        &secs,
        &|x| matches!(x, Action::KernelPaused { .. }),
        &mut trail,
    )
    .expect("softmax is paused");
    assert!(
        matches!(&hit, Action::KernelPaused { kernel: 0, reason } if reason.contains("share")),
        "{hit:?}"
    );
    let evaluated_before: Vec<Candidate> = trail
        .iter()
        .filter_map(|x| match x {
            Action::Evaluate {
                kernel: 0, config, ..
            } => Some(config.clone()),
            _ => None,
        })
        .collect();
    // 400 s each after a 400 s baseline: the fifth candidate is refused by the share.
    assert_eq!(evaluated_before.len(), 4, "{trail:?}");
    let pos = trail
        .iter()
        .position(|x| matches!(x, Action::KernelPaused { .. }))
        .unwrap();
    assert!(
        matches!(
            trail.get(pos + 1),
            Some(Action::MeasureBaseline { kernel: 1, .. })
        ),
        "rowsum starts when softmax pauses: {trail:?}"
    );
    // rowsum runs to its end; then softmax resumes where it stopped.
    let mut trail2 = Vec::new();
    let hit = drive(
        &mut c,
        trail[pos + 1..].to_vec(),
        &|_, _| Verdict::Same,
        &secs,
        &|x| matches!(x, Action::Evaluate { kernel: 0, .. }),
        &mut trail2,
    )
    .expect("softmax resumes");
    assert!(
        trail2
            .iter()
            .any(|x| matches!(x, Action::KernelDone { kernel: 1, .. })),
        "{trail2:?}"
    );
    let Action::Evaluate { config, .. } = hit else {
        unreachable!()
    };
    assert!(!evaluated_before.contains(&config), "{config} again");
}

#[test]
fn a_together_pattern_steps_a_tile_and_its_warps_at_once() {
    let lib = Library::parse(&[(
        PathBuf::from("patterns/tile-with-warps.toml"),
        std::fs::read_to_string(root().join("patterns/tile-with-warps.toml")).unwrap(),
    )])
    .unwrap();
    let mut c = controller(vec![spec("gemm")], lib, budgets(DEFAULT_BUDGETS_TOML));
    c.handle(0.0, Event::Started);
    let p = profile(&[("has_tile", 1.0), ("has_parallelism", 1.0)]);
    let a = c.handle(
        1.0,
        Event::Baseline {
            kernel: 0,
            result: result(true, None, Some(p), 2.0),
        },
    );
    let (_, pattern, first) = evaluate_of(&a).unwrap();
    assert_eq!(pattern, "tile-with-warps");
    let base = spec("gemm").baseline();
    let mut all = vec![first.clone()];
    all.extend(c.queued(0));
    // From BM=BN=32 BK=16 WM=WN=1 (every tunable at its smallest): one of the three
    // tiles up with one of the two warp counts up, six ways, all allowed.
    assert_eq!(all.len(), 6, "{all:?}");
    for cfg in &all {
        let moved: Vec<&String> = cfg
            .config
            .0
            .iter()
            .filter(|(n, v)| base.0.get(*n) != Some(v))
            .map(|(n, _)| n)
            .collect();
        assert_eq!(moved.len(), 2, "{cfg}");
        assert!(moved
            .iter()
            .any(|n| ["BM", "BN", "BK"].contains(&n.as_str())));
        assert!(moved.iter().any(|n| ["WM", "WN"].contains(&n.as_str())));
        assert!(moved.iter().all(|n| cfg.config.0[*n] > base.0[*n]), "{cfg}");
    }
    // Not slower: the next step the same way, both tunables again, goes first.
    let target = |bm: i64, wm: i64| {
        let mut c = base.clone();
        c.0.insert("BM".into(), bm);
        c.0.insert("WM".into(), wm);
        c
    };
    let mut cur = first;
    for _ in 0..6 {
        let a = c.handle(
            2.0,
            Event::Evaluated {
                kernel: 0,
                config: cur.clone(),
                result: result(true, Some(Verdict::Same), None, 2.0),
            },
        );
        let (_, _, next) = evaluate_of(&a).unwrap();
        if cur == target(64, 2).into() {
            assert_eq!(next, target(128, 4).into());
            return;
        }
        cur = next;
    }
    panic!("BM=64 WM=2 was never evaluated");
}

/// Looking ahead for a run on several GPUs.
#[path = "ahead_tests.rs"]
mod ahead;
