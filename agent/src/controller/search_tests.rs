//! The model search after the patterns, driven with scripted events: it takes over
//! when the library has nothing left, never measures a configuration twice, reaches
//! the optimum of a space whose values interact, replays the same choices from the
//! same events, stops on its ROI, and is off when the budgets say so; and it is
//! interleaved with patterns that stopped paying.

use std::path::{Path, PathBuf};

use super::*;
use crate::budget::DEFAULT_BUDGETS_TOML;
use crate::spec::space::SearchSpace;
use crate::spec::Config;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn spec(name: &str) -> KernelSpec {
    KernelSpec::load(&root().join("kernels").join(name)).unwrap()
}

/// A library with nothing that moves a knob (only the workload study, which does
/// not apply to these kernels): the search is all there is.
fn nothing_moves() -> Library {
    Library::parse(&[(
        PathBuf::from("patterns/workload-batching.toml"),
        std::fs::read_to_string(root().join("patterns/workload-batching.toml")).unwrap(),
    )])
    .unwrap()
}

fn controller(s: KernelSpec, budgets: &str) -> Controller {
    let b = Budgets::parse(budgets, Path::new("budgets.toml")).unwrap();
    let ledger = Ledger::for_device(&b, "NVIDIA H100 80GB HBM3");
    Controller::new(vec![s], nothing_moves(), b, ledger)
}

/// gemv's time as a function of its knobs with an interaction: the best WARPS
/// depends on VEC (wider loads want fewer warps), and NSPEC matters a little.
fn time_us(c: &Config) -> f64 {
    let w = (c.0["WARPS"] as f64).log2();
    let v = (c.0["VEC"] as f64).log2();
    let n = c.0["NSPEC"] as f64;
    100.0 * (1.0 + 0.3 * (w - (3.0 - v)).powi(2) + 0.2 * (2.0 - v)) * (1.0 + 0.01 * n)
}

fn result(c: &Config, verdict: Option<Verdict>) -> CandidateResult {
    CandidateResult {
        passed: true,
        outcome: "passed".into(),
        verdict,
        speedup: None,
        profile: Some(Profile {
            signals: [("time_us".to_string(), time_us(c))].into_iter().collect(),
        }),
        cost: vec![(Stage::Measure, 1.0)],
    }
}

/// Runs gemv to the end against `time_us`, the A/B verdict read off the times.
/// Returns every action.
fn night(budgets: &str) -> Vec<Action> {
    let s = spec("gemv");
    let base = s.baseline();
    let mut c = controller(s, budgets);
    let mut all = c.handle(0.0, Event::Started);
    let mut a = c.handle(
        1.0,
        Event::Baseline {
            kernel: 0,
            result: result(&base, None),
        },
    );
    let mut best = time_us(&base);
    for step in 0..1000 {
        all.extend(a.clone());
        let Some((config, pattern)) = a.iter().find_map(|x| match x {
            Action::Evaluate {
                config, pattern, ..
            } => Some((config.clone(), pattern.clone())),
            _ => None,
        }) else {
            break;
        };
        assert_eq!(pattern, SEARCH);
        let t = time_us(&config.config);
        let verdict = if t < best / 1.02 {
            best = t;
            Verdict::Fast
        } else if t > best * 1.02 {
            Verdict::Slow
        } else {
            Verdict::Same
        };
        let mut r = result(&config.config, Some(verdict));
        r.speedup = Some(best / t);
        a = c.handle(
            2.0 + step as f64,
            Event::Evaluated {
                kernel: 0,
                config,
                result: r,
            },
        );
    }
    all
}

fn evaluated(actions: &[Action]) -> Vec<Config> {
    actions
        .iter()
        .filter_map(|x| match x {
            Action::Evaluate { config, .. } => Some(config.config.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_search_takes_over_reaches_the_optimum_and_tries_nothing_twice() {
    let actions = night(DEFAULT_BUDGETS_TOML);
    // Said at the start: nothing in this library moves gemv's knobs.
    assert!(matches!(&actions[1], Action::Unmoved { tunables, .. }
        if tunables.len() == 3 && tunables.iter().all(|t| t.contains("only the model search"))));
    let tried = evaluated(&actions);
    let s = spec("gemv");
    let valid: Vec<Config> = SearchSpace::new(&s).valid().collect();
    let optimum = valid.iter().map(time_us).fold(f64::INFINITY, f64::min);
    let mut unique = tried.clone();
    unique.sort_by_key(|c| format!("{c}"));
    unique.dedup();
    assert_eq!(unique.len(), tried.len(), "a configuration measured twice");
    assert!(
        tried.iter().all(|c| valid.contains(c)),
        "a forbidden configuration"
    );
    let found = tried.iter().map(time_us).fold(f64::INFINITY, f64::min);
    assert!(
        (found - optimum).abs() < 1e-9,
        "found {found}, optimum {optimum}"
    );
    // It got there in fewer evaluations than the space has.
    let at = tried.iter().position(|c| time_us(c) == optimum).unwrap() + 1;
    assert!(
        at < valid.len() / 2,
        "optimum after {at} of {}",
        valid.len()
    );
    // Each candidate carries the model's prediction.
    assert!(actions
        .iter()
        .any(|x| matches!(x, Action::Evaluate { prediction: Some(p), .. }
        if p.note.as_deref().is_some_and(|n| n.contains("Gaussian process")))));
    // It ends when the space is done (ROI allowing) with the kernel done.
    assert!(actions
        .iter()
        .any(|x| matches!(x, Action::KernelDone { .. })));
}

#[test]
fn the_same_events_replay_the_same_choices() {
    assert_eq!(night(DEFAULT_BUDGETS_TOML), night(DEFAULT_BUDGETS_TOML));
}

#[test]
fn the_search_is_dropped_when_it_spends_its_budget_without_a_gain() {
    // A pattern budget of one second: twice that without a FAST verdict ends it.
    let b = DEFAULT_BUDGETS_TOML.replace("pattern_minutes = 60.0", "pattern_minutes = 0.02");
    assert_ne!(b, DEFAULT_BUDGETS_TOML);
    let actions = night(&b);
    let n = evaluated(&actions).len();
    let valid = SearchSpace::new(&spec("gemv")).valid().count();
    assert!(n < valid - 1, "{n} of {valid}");
    assert!(actions
        .iter()
        .any(|x| matches!(x, Action::Pivot { pattern, .. } if pattern == SEARCH)));
}

#[test]
fn with_the_search_off_the_kernel_is_done_when_the_patterns_are() {
    let b = DEFAULT_BUDGETS_TOML.replace("after_patterns = true", "after_patterns = false");
    let actions = night(&b);
    assert!(evaluated(&actions).is_empty());
    assert!(matches!(&actions[1], Action::Unmoved { tunables, .. }
        if tunables.iter().all(|t| t.contains("stays at its baseline"))));
    assert!(actions
        .iter()
        .any(|x| matches!(x, Action::KernelDone { .. })));
}

/// conv2d under three patterns of one tier that move its blocks, tiles and variant a
/// step at a time, each candidate's verdict from `verdict(pattern, config)`. Returns
/// the evaluations, in order, with their patterns.
fn interleaved_night(
    interleave: bool,
    verdict: &dyn Fn(&str, &Config) -> Verdict,
) -> Vec<(String, Config)> {
    use crate::patterns::{Body, Direction, Move, Tier};
    use crate::spec::Role;
    let moves = |role| {
        Body::Moves(vec![Move {
            role,
            direction: Direction::Any,
        }])
    };
    let patterns = vec![
        crate::testutil::pattern("blocks", Tier::Launch, moves(Role::Block)),
        crate::testutil::pattern("tiles", Tier::Launch, moves(Role::Tile)),
        crate::testutil::pattern("variants", Tier::Launch, moves(Role::Variant)),
    ];
    let text =
        DEFAULT_BUDGETS_TOML.replace("interleave = false", &format!("interleave = {interleave}"));
    let b = Budgets::parse(&text, Path::new("budgets.toml")).unwrap();
    assert_eq!(b.search.interleave, interleave);
    let ledger = Ledger::for_device(&b, "NVIDIA H100 80GB HBM3");
    let s = spec("conv2d");
    let base = s.baseline();
    let mut c = Controller::new(vec![s], Library { patterns }, b, ledger);
    c.handle(0.0, Event::Started);
    let conv = |c: &Config| {
        let v = |k: &str| c.0[k] as f64;
        100.0 + (v("BX") - 64.0).abs() + 3.0 * (v("TY") - 4.0).abs() - 10.0 * v("SHMEM")
    };
    let measured = |c: &Config, verdict: Option<Verdict>| CandidateResult {
        passed: true,
        outcome: "passed".into(),
        verdict,
        speedup: verdict.map(|v| if v == Verdict::Fast { 1.1 } else { 0.9 }),
        profile: Some(Profile {
            signals: [("time_us".to_string(), conv(c))].into_iter().collect(),
        }),
        cost: vec![(Stage::Measure, 1.0)],
    };
    let mut a = c.handle(
        1.0,
        Event::Baseline {
            kernel: 0,
            result: measured(&base, None),
        },
    );
    let mut out = Vec::new();
    for step in 0..12 {
        let Some((config, pattern)) = a.iter().find_map(|x| match x {
            Action::Evaluate {
                config, pattern, ..
            } => Some((config.clone(), pattern.clone())),
            _ => None,
        }) else {
            break;
        };
        let v = verdict(&pattern, &config.config);
        out.push((pattern, config.config.clone()));
        let r = measured(&config.config, Some(v));
        a = c.handle(
            2.0 + step as f64,
            Event::Evaluated {
                kernel: 0,
                config,
                result: r,
            },
        );
    }
    out
}

#[test]
fn the_search_is_interleaved_when_the_patterns_stop_paying_and_they_resume_after() {
    // Every candidate is SLOW: once the model has a point more than conv2d's six
    // tunables, a search candidate comes before the patterns' next one.
    let night = interleaved_night(true, &|_, _| Verdict::Slow);
    let patterns: Vec<&str> = night.iter().map(|(p, _)| p.as_str()).collect();
    let first = patterns
        .iter()
        .position(|p| *p == SEARCH)
        .expect("a search candidate");
    // Baseline plus six candidates measured: seven points.
    assert_eq!(first, 6, "{patterns:?}");
    // A pattern's candidate follows it: the search did not wait for the library.
    assert_ne!(patterns[first + 1], SEARCH, "{patterns:?}");
    assert!(patterns[first + 1..].contains(&"variants"), "{patterns:?}");
    // Two pattern misses in a row before each interleaved search candidate, while
    // the patterns last.
    let last_pattern = patterns.iter().rposition(|p| *p != SEARCH).unwrap();
    for (i, p) in patterns.iter().enumerate().take(last_pattern) {
        if *p == SEARCH && i > 0 && patterns[i - 1] != SEARCH {
            assert!(i >= 2 && patterns[i - 2] != SEARCH, "{patterns:?}");
        }
    }
    let mut configs: Vec<String> = night.iter().map(|(_, c)| c.to_string()).collect();
    let n = configs.len();
    configs.sort();
    configs.dedup();
    assert_eq!(configs.len(), n, "a configuration measured twice");
}

#[test]
fn a_new_best_from_the_search_sends_every_pattern_back_to_work_around_it() {
    // The first search candidate is FAST: the stashed line of attack is dropped and
    // the next candidate is a pattern's step from the new best.
    let night = interleaved_night(true, &|p, _| {
        if p == SEARCH {
            Verdict::Fast
        } else {
            Verdict::Slow
        }
    });
    let first = night.iter().position(|(p, _)| p == SEARCH).unwrap();
    let best = &night[first].1;
    let (next_pattern, next) = &night[first + 1];
    assert_ne!(next_pattern, SEARCH);
    let differ = best.0.iter().filter(|(k, v)| next.0[*k] != **v).count();
    assert_eq!(differ, 1, "{best} then {next}");
}

#[test]
fn interleaving_replays_the_same_choices() {
    let slow = |_: &str, _: &Config| Verdict::Slow;
    assert_eq!(
        interleaved_night(true, &slow),
        interleaved_night(true, &slow)
    );
}

#[test]
fn by_default_the_search_waits_for_the_patterns() {
    let night = interleaved_night(false, &|_, _| Verdict::Slow);
    let patterns: Vec<&str> = night.iter().map(|(p, _)| p.as_str()).collect();
    // Four block steps, two tile steps and one variant step, then the search.
    let first = patterns
        .iter()
        .position(|p| *p == SEARCH)
        .expect("a search candidate");
    assert_eq!(first, 7, "{patterns:?}");
    assert!(
        patterns[first..].iter().all(|p| *p == SEARCH),
        "{patterns:?}"
    );
}
