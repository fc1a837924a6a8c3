//! What the controller says to measure ahead on free GPUs: the baselines first, then
//! its own line and the other kernels' as if nothing in flight were FAST, never what
//! is measured or in flight, never past the budget; and looking ahead changes
//! nothing it decides.

use super::*;

/// Two kernels started: softmax's baseline measured and its first candidate asked
/// for; the controller and that request.
fn two_kernels(b: Budgets) -> (Controller, Action) {
    let mut c = controller(vec![spec("softmax"), spec("layernorm")], library(), b);
    let a = c.handle(0.0, Event::Started);
    assert!(matches!(a[..], [Action::MeasureBaseline { kernel: 0, .. }]));
    let a = hear(
        &mut c,
        1.0,
        Event::Baseline {
            kernel: 0,
            result: result(true, None, Some(memory_bound()), 2.0),
        },
    );
    let pending = past_unmoved(a)
        .into_iter()
        .find(|x| matches!(x, Action::Evaluate { .. }))
        .expect("a first candidate");
    (c, pending)
}

fn nothing_known(_: &Ahead) -> Known {
    Known::Not
}

#[test]
fn the_baselines_come_first_then_the_line_behind_the_request() {
    let (c, pending) = two_kernels(budgets(DEFAULT_BUDGETS_TOML));
    let busy = [Ahead::of(&pending).unwrap()];
    let ahead = c.lookahead(2.0, &pending, 4, (&busy, 0.0), &nothing_known);
    assert_eq!(ahead.len(), 4, "{ahead:?}");
    assert!(
        matches!(ahead[0], Ahead::Baseline { kernel: 1, .. }),
        "{ahead:?}"
    );
    let Action::Evaluate {
        config: asked,
        against,
        ..
    } = &pending
    else {
        unreachable!()
    };
    for a in &ahead[1..] {
        let Ahead::Evaluate {
            kernel,
            config,
            against: best,
            ..
        } = a
        else {
            panic!("{a:?}")
        };
        // Softmax's own line (layernorm's baseline is not measured: its line cannot
        // be seen), against the same best, never the request itself.
        assert_eq!(*kernel, 0);
        assert_eq!(best, against);
        assert_ne!(config, asked);
    }
    let distinct: BTreeSet<String> = ahead.iter().map(|a| format!("{a:?}")).collect();
    assert_eq!(distinct.len(), ahead.len(), "{ahead:?}");
}

#[test]
fn what_is_measured_or_in_flight_is_not_asked_for_again_and_a_measured_baseline_opens_its_line() {
    let (c, pending) = two_kernels(budgets(DEFAULT_BUDGETS_TOML));
    let busy = [Ahead::of(&pending).unwrap()];
    let first = c.lookahead(2.0, &pending, 3, (&busy, 0.0), &nothing_known);
    // Everything of the first look is in flight now; layernorm's baseline measured.
    let mut busy2 = busy.to_vec();
    busy2.extend(first.iter().cloned());
    let known = |a: &Ahead| match a {
        Ahead::Baseline { kernel: 1, .. } => {
            Known::Measured(result(true, None, Some(memory_bound()), 2.0))
        }
        a if busy2.contains(a) => Known::InFlight,
        _ => Known::Not,
    };
    let second = c.lookahead(3.0, &pending, 6, (&busy2, 0.0), &known);
    assert!(!second.is_empty());
    for a in &second {
        assert!(!busy2.contains(a), "{a:?} again");
        assert!(!matches!(a, Ahead::Baseline { .. }), "{a:?}");
    }
    // Layernorm's line is followed too, one piece of each line in turn.
    assert!(
        second.iter().any(|a| a.kernel() == 1) && second.iter().any(|a| a.kernel() == 0),
        "{second:?}"
    );
}

#[test]
fn looking_ahead_never_spends_past_the_budget() {
    // 0.01 GPU-hours = 36 s; each piece is projected at 2 s (the baseline's cost),
    // a 5 s watchdog kept in reserve.
    let b = budgets("[run]\ngpu_hours = 0.01\n[limits]\ncandidate_watchdog_seconds = 5\n");
    let (c, pending) = two_kernels(b);
    let busy = [Ahead::of(&pending).unwrap()];
    let many = c.lookahead(2.0, &pending, 64, (&busy, 0.0), &nothing_known);
    assert!(!many.is_empty() && many.len() < 64, "{}", many.len());
    // With 30 s spent and not handed to the ledger yet, nothing more fits.
    let none = c.lookahead(2.0, &pending, 64, (&busy, 30.0), &nothing_known);
    assert!(none.is_empty(), "{none:?}");
}

#[test]
fn looking_ahead_changes_no_decision() {
    let (mut c, pending) = two_kernels(budgets(DEFAULT_BUDGETS_TOML));
    let busy = [Ahead::of(&pending).unwrap()];
    let before = format!("{:?}", c.queued(0));
    let _ = c.lookahead(2.0, &pending, 8, (&busy, 0.0), &nothing_known);
    assert_eq!(format!("{:?}", c.queued(0)), before);
    // The request's answer is heard as if nothing had been looked at.
    let Action::Evaluate { config, .. } = pending else {
        unreachable!()
    };
    let a = hear(
        &mut c,
        3.0,
        Event::Evaluated {
            kernel: 0,
            config,
            result: result(true, Some(Verdict::Slow), None, 2.0),
        },
    );
    assert!(evaluate_of(&a).is_some(), "{a:?}");
    // A stopped controller looks at nothing.
    let mut s = controller(
        vec![spec("softmax")],
        library(),
        budgets(DEFAULT_BUDGETS_TOML),
    );
    s.handle(
        0.0,
        Event::Interrupted {
            signal: "SIGINT".into(),
        },
    );
    assert!(s
        .lookahead(
            1.0,
            &Action::Stop {
                reason: StopReason::NothingLeft
            },
            4,
            (&[], 0.0),
            &nothing_known
        )
        .is_empty());
}
