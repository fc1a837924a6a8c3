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

fn budgets(text: &str) -> Budgets {
    Budgets::parse(text, Path::new("budgets.toml")).unwrap()
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

fn evaluate_of(actions: &[Action]) -> Option<(usize, String, Config)> {
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
    assert_eq!((pattern.as_str(), cfg.0["BLOCK"]), ("block-size", 256));
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
    assert_eq!(next.0["BLOCK"], 512);
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
    assert_eq!(next.0["BLOCK"], 64);
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
    let (_, pattern, cfg) = evaluate_of(&a).expect("a candidate");
    // Constant tier (vectorize) before variant tier; no launch-tier pattern applies
    // (no block tunable in this profile).
    assert_eq!(pattern, "vectorize-memory");
    assert_eq!(cfg.0["VEC"], 2);
    assert!(matches!(&a[0], Action::Evaluate { against, .. } if *against == base));
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
    assert_eq!(next.0["VEC"], 4);
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
    assert_eq!((cfg.0["VARIANT"], cfg.0["VEC"]), (1, 2));
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
    assert!(!seen.contains(&spec("softmax").baseline()));
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
    assert_eq!(cfg.0["SPLIT"], 2, "more CTAs per launch first: {cfg}");
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
    let a = c.handle(
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
    assert!(
        c.handle(2.0, Event::Started).is_empty(),
        "a stopped controller does nothing"
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
