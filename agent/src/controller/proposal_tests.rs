//! Proposal patterns driven by scripted events: the controller asks only with a
//! proposer, turns an answer into the best plus `proposal:<digest>`, records an
//! answer that cannot be a candidate (and keeps asking up to `attempts`), asks again
//! around a new best, charges the ROI rule for the proposer's bill, and refuses a
//! question the dollar budget cannot pay. The results are made up for the decision
//! logic only.

use std::path::Path;

use super::*;
use crate::budget::DEFAULT_BUDGETS_TOML;
use crate::testutil::proposal_pattern;

fn spec() -> KernelSpec {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    KernelSpec::load(&root.join("kernels/softmax")).unwrap()
}

fn controller_with(budgets: &str, patterns: Vec<Pattern>, proposer: bool) -> Controller {
    // The model search after the patterns is off: these tests end where the
    // library has nothing left.
    let budgets = if budgets.contains("[search]") {
        budgets.replace("after_patterns = true", "after_patterns = false")
    } else {
        format!("{budgets}\n[search]\nafter_patterns = false\n")
    };
    let b = Budgets::parse(&budgets, Path::new("budgets.toml")).unwrap();
    let ledger = Ledger::for_device(&b, "NVIDIA H100 80GB HBM3");
    Controller::new(vec![spec()], Library { patterns }, b, ledger).with_proposer(proposer)
}

fn controller(patterns: Vec<Pattern>) -> Controller {
    controller_with(DEFAULT_BUDGETS_TOML, patterns, true)
}

fn result(verdict: Verdict) -> CandidateResult {
    CandidateResult {
        passed: true,
        outcome: "passed".into(),
        verdict: Some(verdict),
        speedup: Some(if verdict == Verdict::Fast { 1.3 } else { 1.0 }),
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
            result: CandidateResult {
                verdict: None,
                speedup: None,
                ..result(Verdict::Same)
            },
        },
    )
}

fn asked(actions: &[Action]) -> Option<(Candidate, usize)> {
    actions.iter().find_map(|a| match a {
        Action::Propose {
            against, attempt, ..
        } => Some((against.clone(), *attempt)),
        _ => None,
    })
}

fn evaluate_of(actions: &[Action]) -> Option<Candidate> {
    actions.iter().find_map(|a| match a {
        Action::Evaluate { config, .. } => Some(config.clone()),
        _ => None,
    })
}

/// The kernel as written with a comment added: a different source that passes.
fn variant(tag: &str) -> String {
    format!("// {tag}\n{}", spec().source)
}

fn answer(c: &mut Controller, source: Result<String, String>, dollars: f64) -> Vec<Action> {
    c.handle(
        2.0,
        Event::Proposed {
            kernel: 0,
            pattern: "ask".into(),
            answer: source.map(|source| Answer {
                source,
                checked: Ok(()),
            }),
            dollars,
            wait_s: 0.0,
        },
    )
}

#[test]
fn without_a_proposer_a_proposal_pattern_is_passed_over() {
    let mut c = controller_with(
        DEFAULT_BUDGETS_TOML,
        vec![proposal_pattern("ask", 2)],
        false,
    );
    let a = started(&mut c);
    assert!(asked(&a).is_none(), "{a:?}");
    assert!(
        a.iter().any(|x| matches!(x, Action::KernelDone { .. })),
        "{a:?}"
    );
}

#[test]
fn an_answer_is_the_best_plus_its_proposal_and_a_kept_one_is_asked_about_again() {
    let mut c = controller(vec![proposal_pattern("ask", 2)]);
    let a = started(&mut c);
    let base = Candidate::from(spec().baseline());
    assert_eq!(asked(&a), Some((base.clone(), 1)), "{a:?}");

    let a = answer(&mut c, Ok(variant("one")), 0.01);
    let cand = evaluate_of(&a).expect("the proposal is evaluated");
    assert_eq!(cand.config, base.config);
    assert_eq!(cand.rewrites.len(), 1);
    let digest = proposal_digest(&variant("one"));
    assert_eq!(cand.rewrites[0], format!("proposal:{digest}"));
    assert_eq!(
        c.spec(0).unwrap().proposals.get(&digest),
        Some(&variant("one"))
    );

    // Kept: the questions start again around the new best.
    let a = c.handle(
        3.0,
        Event::Evaluated {
            kernel: 0,
            config: cand.clone(),
            result: result(Verdict::Fast),
        },
    );
    assert!(
        a.iter().any(|x| matches!(x, Action::Commit { .. })),
        "{a:?}"
    );
    assert_eq!(asked(&a), Some((cand.clone(), 1)), "{a:?}");

    // A proposal written from a proposal replaces it in the chain.
    let a = answer(&mut c, Ok(variant("two")), 0.01);
    let next = evaluate_of(&a).expect("the second proposal");
    assert_eq!(
        next.rewrites,
        vec![format!("proposal:{}", proposal_digest(&variant("two")))]
    );
}

#[test]
fn an_answer_that_cannot_be_a_candidate_is_recorded_and_the_next_question_follows() {
    let mut c = controller(vec![proposal_pattern("ask", 3)]);
    started(&mut c);
    // The proposer failed.
    let a = answer(&mut c, Err("timed out".into()), 0.0);
    assert!(
        matches!(&a[0], Action::ProposalInvalid { config: None, reason, .. } if reason.contains("timed out")),
        "{a:?}"
    );
    assert_eq!(asked(&a).map(|x| x.1), Some(2), "{a:?}");
    // It failed the checks before the GPU.
    let a = c.handle(
        2.0,
        Event::Proposed {
            kernel: 0,
            pattern: "ask".into(),
            answer: Ok(Answer {
                source: variant("x"),
                checked: Err("the source defines no kernel `softmax`".into()),
            }),
            dollars: 0.0,
            wait_s: 0.0,
        },
    );
    assert!(
        matches!(&a[0], Action::ProposalInvalid { config: Some(_), reason, .. } if reason.contains("defines no kernel")),
        "{a:?}"
    );
    assert!(evaluate_of(&a).is_none(), "never evaluated: {a:?}");
    assert_eq!(asked(&a).map(|x| x.1), Some(3), "{a:?}");
    // The source as it is: nothing to measure.
    let a = answer(&mut c, Ok(spec().source), 0.0);
    assert!(
        matches!(&a[0], Action::ProposalInvalid { reason, .. } if reason.contains("unchanged")),
        "{a:?}"
    );
    // Three questions around one best: the pattern has nothing left.
    assert!(asked(&a).is_none(), "{a:?}");
    assert!(
        a.iter().any(|x| matches!(x, Action::KernelDone { .. })),
        "{a:?}"
    );
}

#[test]
fn the_same_source_twice_is_not_measured_twice() {
    let mut c = controller(vec![proposal_pattern("ask", 3)]);
    started(&mut c);
    let a = answer(&mut c, Ok(variant("same")), 0.0);
    let cand = evaluate_of(&a).unwrap();
    let a = c.handle(
        3.0,
        Event::Evaluated {
            kernel: 0,
            config: cand,
            result: result(Verdict::Slow),
        },
    );
    assert_eq!(asked(&a).map(|x| x.1), Some(2), "{a:?}");
    let a = answer(&mut c, Ok(variant("same")), 0.0);
    assert!(
        matches!(&a[0], Action::ProposalInvalid { reason, .. } if reason.contains("earlier proposal")),
        "{a:?}"
    );
}

#[test]
fn a_question_the_dollar_budget_cannot_pay_stops_the_run() {
    // $1 in all at $3.6 per GPU-hour: the first question costs $0.90 of it.
    let budgets = "[run]\ndollars = 1.0\n[price]\ndefault_per_gpu_hour = 3.6\n";
    let mut c = controller_with(budgets, vec![proposal_pattern("ask", 3)], true);
    started(&mut c);
    let bill = Charge {
        kernel: Some("softmax".into()),
        pattern: Some("ask".into()),
        config: None,
        stage: Stage::Proposer,
        gpu_s: 0.0,
        wall_s: 0.0,
        dollars: 0.90,
    };
    c.charged(&bill).unwrap();
    assert!((c.ledger().spent().proposer_dollars - 0.90).abs() < 1e-12);
    let a = answer(&mut c, Err("malformed".into()), 0.90);
    // The next question is projected at the mean bill ($0.90): it cannot be paid.
    assert!(asked(&a).is_none(), "{a:?}");
    assert!(
        a.iter().any(|x| matches!(
            x,
            Action::Stop {
                reason: StopReason::Dollars { .. }
            }
        )),
        "{a:?}"
    );
}

#[test]
fn the_proposers_bill_counts_toward_the_patterns_roi() {
    // $3.6 per GPU-hour: a dollar is 1000 GPU seconds; the pattern's budget is
    // 5 minutes, so two $0.40 questions (800 s) pass 2 x 300 s and it is dropped.
    let budgets = "[run]\ngpu_hours = 10\n[price]\ndefault_per_gpu_hour = 3.6\n[limits]\npattern_minutes = 5\n";
    let mut c = controller_with(budgets, vec![proposal_pattern("ask", 5)], true);
    started(&mut c);
    let a = answer(&mut c, Err("no".into()), 0.40);
    assert!(asked(&a).is_some(), "{a:?}");
    let a = answer(&mut c, Err("no".into()), 0.40);
    assert!(
        a.iter()
            .any(|x| matches!(x, Action::Pivot { pattern, .. } if pattern == "ask")),
        "{a:?}"
    );
    assert!(asked(&a).is_none(), "{a:?}");
}

#[test]
fn the_source_it_was_shown_handed_back_is_refused_when_the_best_is_rewritten() {
    // The best carries a source rewrite: the proposer is shown the rewritten source,
    // and handing it back unchanged is no proposal (not a comparison of the kernel
    // with itself).
    let mut patterns = vec![crate::testutil::rewrite_pattern(
        "lb",
        "launch-bounds",
        &["min_blocks=2"],
    )];
    patterns.push(proposal_pattern("ask", 2));
    let mut c = controller(patterns);
    let a = started(&mut c);
    let lb = evaluate_of(&a).expect("the rewrite first");
    let a = c.handle(
        3.0,
        Event::Evaluated {
            kernel: 0,
            config: lb.clone(),
            result: result(Verdict::Fast),
        },
    );
    assert_eq!(asked(&a).map(|x| x.0), Some(lb.clone()), "{a:?}");
    let shown = crate::rewrite::version(&spec(), &lb.rewrites)
        .unwrap()
        .0
        .rewritten
        .unwrap()
        .source;
    let a = answer(&mut c, Ok(shown), 0.0);
    assert!(
        matches!(&a[0], Action::ProposalInvalid { reason, .. } if reason.contains("unchanged")),
        "{a:?}"
    );
    assert!(evaluate_of(&a).is_none(), "{a:?}");
}

#[test]
fn on_a_free_gpu_the_time_a_proposer_holds_it_counts_toward_the_roi() {
    // GPU time is free: the bills are $0, but each failed question held the GPU
    // 200 s; past 2 x the 5-minute budget the pattern is dropped.
    let budgets =
        "[run]\ngpu_hours = 10\n[price]\ndefault_per_gpu_hour = 0\n[limits]\npattern_minutes = 5\n";
    let mut c = controller_with(budgets, vec![proposal_pattern("ask", 10)], true);
    started(&mut c);
    let mut pivoted = false;
    for _ in 0..4 {
        let a = c.handle(
            2.0,
            Event::Proposed {
                kernel: 0,
                pattern: "ask".into(),
                answer: Err("no".into()),
                dollars: 0.0,
                wait_s: 200.0,
            },
        );
        if a.iter().any(|x| matches!(x, Action::Pivot { .. })) {
            pivoted = true;
            break;
        }
    }
    assert!(pivoted, "a pattern that only holds the GPU is dropped");
}
