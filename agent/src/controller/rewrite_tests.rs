//! The source tier driven by scripted events: rewrite patterns propose the current
//! best plus one rewrite, a FAST one becomes the current best (knob moves carry its
//! rewrites from then on), and a rewrite that does not apply is recorded without GPU
//! time. The results fed in are made up for the decision logic only.

use std::path::Path;

use super::*;
use crate::budget::DEFAULT_BUDGETS_TOML;
use crate::patterns::Tier;
use crate::testutil::{pattern, rewrite_pattern};

fn spec(name: &str) -> KernelSpec {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    KernelSpec::load(&root.join("kernels").join(name)).unwrap()
}

fn block_size() -> Pattern {
    let moves = vec![crate::patterns::Move {
        role: crate::spec::Role::Block,
        direction: Direction::Any,
    }];
    pattern("block-size", Tier::Launch, Body::Moves(moves))
}

fn controller(kernel: &str, patterns: Vec<Pattern>) -> Controller {
    let b = Budgets::parse(DEFAULT_BUDGETS_TOML, Path::new("budgets.toml")).unwrap();
    let ledger = Ledger::for_device(&b, "NVIDIA H100 80GB HBM3");
    Controller::new(vec![spec(kernel)], Library { patterns }, b, ledger)
}

fn result(verdict: Option<Verdict>) -> CandidateResult {
    CandidateResult {
        passed: true,
        outcome: "passed".into(),
        verdict,
        speedup: verdict.map(|v| if v == Verdict::Fast { 1.3 } else { 1.0 }),
        profile: Some(Profile::default()),
        cost: vec![(Stage::Measure, 1.0)],
    }
}

fn started(c: &mut Controller) -> Vec<Action> {
    c.handle(0.0, Event::Started);
    c.handle(
        1.0,
        Event::Baseline {
            kernel: 0,
            result: result(None),
        },
    )
}

fn evaluate_of(actions: &[Action]) -> Option<(Candidate, Candidate)> {
    actions.iter().find_map(|a| match a {
        Action::Evaluate {
            config, against, ..
        } => Some((config.clone(), against.clone())),
        _ => None,
    })
}

fn evaluated(c: &mut Controller, config: Candidate, v: Verdict) -> Vec<Action> {
    c.handle(
        2.0,
        Event::Evaluated {
            kernel: 0,
            config,
            result: result(Some(v)),
        },
    )
}

#[test]
fn a_rewrite_candidate_is_the_best_plus_one_rewrite_and_a_fast_one_is_the_new_best() {
    let steps = ["min_blocks=2", "min_blocks=3"];
    let mut c = controller(
        "softmax",
        vec![rewrite_pattern("lb", "launch-bounds", &steps)],
    );
    let a = started(&mut c);
    let base = Candidate::from(spec("softmax").baseline());
    let (cand, against) = evaluate_of(&a).expect("a rewrite candidate");
    assert_eq!(against, base);
    assert_eq!(cand.config, base.config);
    assert_eq!(
        cand.rewrites,
        vec!["launch-bounds:min_blocks=2".to_string()]
    );

    let a = evaluated(&mut c, cand.clone(), Verdict::Fast);
    assert!(
        matches!(&a[0], Action::Commit { config, .. } if *config == cand),
        "{a:?}"
    );
    assert_eq!(c.best(0), Some(&cand));
    // The next step replaces the attribute it set, measured against it.
    let (next, against) = evaluate_of(&a).expect("the next step");
    assert_eq!(against, cand);
    assert_eq!(
        next.rewrites,
        vec!["launch-bounds:min_blocks=3".to_string()]
    );
}

#[test]
fn a_rewrite_that_does_not_apply_is_recorded_without_gpu_work() {
    // Every bundled kernel has __launch_bounds__, which --maxrregcount cannot override.
    let mut c = controller(
        "softmax",
        vec![
            rewrite_pattern("mr", "max-registers", &["count=32"]),
            rewrite_pattern("lb", "launch-bounds", &["min_blocks=2"]),
        ],
    );
    let a = started(&mut c);
    let na = a
        .iter()
        .find_map(|x| match x {
            Action::NotApplicable {
                pattern,
                config,
                reason,
                ..
            } => Some((pattern.clone(), config.clone(), reason.clone())),
            _ => None,
        })
        .expect("max-registers is not applicable");
    assert_eq!(na.0, "mr");
    assert_eq!(na.1.rewrites, vec!["max-registers:count=32".to_string()]);
    assert!(na.2.contains("__launch_bounds__"), "{}", na.2);
    // The loop goes on to the next pattern in the same decision.
    let (cand, _) = evaluate_of(&a).expect("launch-bounds next");
    assert_eq!(
        cand.rewrites,
        vec!["launch-bounds:min_blocks=2".to_string()]
    );
}

#[test]
fn knob_moves_after_a_kept_rewrite_carry_it_and_nothing_is_tried_twice() {
    let mut c = controller(
        "softmax",
        vec![
            block_size(),
            rewrite_pattern("lb", "launch-bounds", &["min_blocks=2"]),
        ],
    );
    let mut a = started(&mut c);
    let mut seen: Vec<Candidate> = Vec::new();
    // The launch tier first: every block size SLOW, then the rewrite FAST.
    let kept = loop {
        let (cand, _) = evaluate_of(&a).expect("a candidate");
        assert!(!seen.contains(&cand), "{cand} twice");
        seen.push(cand.clone());
        if !cand.rewrites.is_empty() {
            a = evaluated(&mut c, cand.clone(), Verdict::Fast);
            break cand;
        }
        a = evaluated(&mut c, cand, Verdict::Slow);
    };
    // A new best has a new neighbourhood: block sizes again, from the rewritten kernel.
    let (cand, against) = evaluate_of(&a).expect("block sizes again");
    assert_eq!(against, kept);
    assert_eq!(cand.rewrites, kept.rewrites);
    assert_ne!(cand.config, kept.config);
}

#[test]
fn chained_replaces_a_rewrite_of_the_same_kind_and_stacks_fast_math_parts() {
    use crate::rewrite::chained;
    let chain = vec!["launch-bounds:min_blocks=2".to_string()];
    assert_eq!(
        chained(&chain, "launch-bounds:min_blocks=4"),
        vec!["launch-bounds:min_blocks=4".to_string()]
    );
    let chain = chained(&chain, "fast-math:part=ftz");
    let chain = chained(&chain, "fast-math:part=prec-div");
    assert_eq!(chain.len(), 3, "{chain:?}");
    let r = Candidate {
        config: crate::spec::Config::default(),
        rewrites: chain,
    };
    assert_eq!(
        r.to_string(),
        "(no tunables) + launch-bounds:min_blocks=2 + fast-math:part=ftz + fast-math:part=prec-div"
    );
}
