use super::stop::human_s;
use super::*;

use proptest::prelude::*;

const PATH: &str = "budgets.toml";

fn parse(text: &str) -> Result<Budgets, SpecError> {
    Budgets::parse(text, Path::new(PATH))
}

fn err(text: &str) -> SpecError {
    match parse(text) {
        Ok(b) => panic!("expected an error, parsed {b:?} from\n{text}"),
        Err(e) => e,
    }
}

/// 1-based line of the first line containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("`{needle}` not in the text"))
        + 1
}

/// Asserts that an error names the file, the line holding `needle`, and `key`.
fn assert_names(e: &SpecError, text: &str, needle: &str, key: &str) {
    assert_eq!(e.path, Path::new(PATH), "{e}");
    assert_eq!(e.line, Some(line_of(text, needle)), "{e}");
    assert_eq!(e.key.as_deref(), Some(key), "{e}");
    let shown = e.to_string();
    let prefix = format!("{PATH}:{}: `{key}`: ", line_of(text, needle));
    assert!(
        shown.starts_with(&prefix),
        "{shown} does not start with {prefix}"
    );
}

fn gpu_only(gpu_hours: f64, watchdog_s: f64) -> Budgets {
    parse(&format!(
        "[run]\ngpu_hours = {gpu_hours}\n[limits]\ncandidate_watchdog_seconds = {watchdog_s}\n"
    ))
    .unwrap()
}

fn charge(kernel: &str, pattern: Option<&str>, config: &str, stage: Stage, s: f64) -> Charge {
    Charge {
        kernel: Some(kernel.to_string()),
        pattern: pattern.map(str::to_string),
        config: Some(config.to_string()),
        stage,
        gpu_s: s,
        wall_s: s,
        dollars: 0.0,
    }
}

// -- budgets.toml ------------------------------------------------------

#[test]
fn shipped_budgets_parse() {
    let b = parse(DEFAULT_BUDGETS_TOML).unwrap();
    assert_eq!(b.run.wall, Some(Duration::from_secs(8 * 3600)));
    assert_eq!(b.run.gpu, Some(Duration::from_secs(8 * 3600)));
    assert_eq!(b.run.dollars, Some(40.0));
    assert_eq!(b.price.default_per_gpu_hour, Some(3.0));
    assert_eq!(b.price.models.get("NVIDIA H100 80GB HBM3"), Some(&4.0));
    assert_eq!(b.limits.iteration, Duration::from_secs(30 * 60));
    assert_eq!(b.limits.candidate_watchdog, Duration::from_secs(30));
    assert_eq!(b.limits.pattern, Duration::from_secs(60 * 60));
}

#[test]
fn shipped_budgets_document_every_key() {
    for key in [
        "[run]",
        "wall_hours",
        "gpu_hours",
        "dollars",
        "[price]",
        "default_per_gpu_hour",
        "[price.models]",
        "[limits]",
        "iteration_minutes",
        "candidate_watchdog_seconds",
        "pattern_minutes",
    ] {
        assert!(
            DEFAULT_BUDGETS_TOML.contains(key),
            "budgets.toml lacks {key}"
        );
    }
}

#[test]
fn left_out_limits_take_their_defaults() {
    let b = parse("[run]\nwall_hours = 2\n").unwrap();
    assert_eq!(b.run.wall, Some(Duration::from_secs(7200)));
    assert_eq!(b.run.gpu, None);
    assert_eq!(b.run.dollars, None);
    assert_eq!(b.limits, Limits::default());
    assert_eq!(b.price, Prices::default());
}

#[test]
fn unknown_key_in_run_names_file_line_and_key() {
    let text = "[run]\nwall_hours = 8\nwal_hours = 2\n";
    let e = err(text);
    assert_names(&e, text, "wal_hours = 2", "run.wal_hours");
    assert!(e.message.contains("wal_hours"), "{e}");
}

#[test]
fn unknown_key_in_limits_names_file_line_and_key() {
    let text = "[run]\nwall_hours = 8\n\n[limits]  # time limits\nwatchdog_seconds = 30\n";
    let e = err(text);
    assert_names(&e, text, "watchdog_seconds", "limits.watchdog_seconds");
}

#[test]
fn unknown_table_names_file_line_and_key() {
    let text = "[run]\nwall_hours = 8\n[limit]\niteration_minutes = 3\n";
    let e = err(text);
    assert_names(&e, text, "[limit]", "limit");
}

#[test]
fn misspelt_price_key_is_an_error_not_a_model() {
    let text = "[run]\nwall_hours = 8\n[price]\ndefault_per_gpu_hr = 3\n";
    let e = err(text);
    assert_names(&e, text, "default_per_gpu_hr", "price.default_per_gpu_hr");
}

#[test]
fn bad_numbers_name_file_line_and_key() {
    let keys = [
        ("run", "wall_hours"),
        ("run", "gpu_hours"),
        ("run", "dollars"),
        ("limits", "iteration_minutes"),
        ("limits", "candidate_watchdog_seconds"),
        ("limits", "pattern_minutes"),
    ];
    for (table, key) in keys {
        for bad in ["-1.0", "0", "nan", "inf", "-inf"] {
            let text = if table == "run" {
                let other = if key == "gpu_hours" {
                    "wall_hours"
                } else {
                    "gpu_hours"
                };
                format!("[run]\n{other} = 1\n{key} = {bad}\n[price]\ndefault_per_gpu_hour = 1\n")
            } else {
                format!("[run]\ngpu_hours = 1\n[{table}]\n{key} = {bad}\n")
            };
            let e = err(&text);
            assert_names(
                &e,
                &text,
                &format!("{key} = {bad}"),
                &format!("{table}.{key}"),
            );
            assert!(e.message.contains("positive, finite"), "{e}");
        }
    }
}

#[test]
fn a_number_too_large_for_a_duration_is_an_error_not_a_panic() {
    let text = "[run]\nwall_hours = 1e300\n";
    let e = err(text);
    assert_names(&e, text, "wall_hours", "run.wall_hours");
    assert!(e.message.contains("too long"), "{e}");
}

#[test]
fn wrong_type_names_the_key() {
    let text = "[run]\nwall_hours = \"8\"\n";
    let e = err(text);
    assert_names(&e, text, "wall_hours", "run.wall_hours");
}

#[test]
fn run_with_no_limit_is_an_error() {
    let text = "\n[run]\n# wall_hours = 8\n";
    let e = err(text);
    assert_names(&e, text, "[run]", "run");
    assert!(e.message.contains("at least one"), "{e}");

    let e = err("[limits]\npattern_minutes = 10\n");
    assert_eq!(e.key.as_deref(), Some("run"));
    assert!(e.message.contains("at least one"), "{e}");
}

#[test]
fn dollars_without_a_default_price_is_an_error() {
    let text = "[run]\ndollars = 10\n[price.models]\n\"NVIDIA H100\" = 4\n";
    let e = err(text);
    assert_names(&e, text, "dollars = 10", "price.default_per_gpu_hour");
}

#[test]
fn dollars_as_the_only_limit_on_a_free_device_is_an_error() {
    let text =
        "[run]\ndollars = 10\n[price]\ndefault_per_gpu_hour = 2\n[price.models]\n\"My Box\" = 0\n";
    let e = err(text);
    assert_names(&e, text, "\"My Box\" = 0", "price.models.\"My Box\"");
    assert!(e.message.contains("never stop"), "{e}");
    // With another limit, a free device is fine.
    let ok = text.replace("dollars = 10", "dollars = 10\nwall_hours = 1");
    assert_eq!(parse(&ok).unwrap().price_per_gpu_hour("my box"), 0.0);
}

#[test]
fn bad_prices_name_file_line_and_key() {
    let text = "[run]\nwall_hours = 1\n[price]\ndefault_per_gpu_hour = -3\n";
    assert_names(
        &err(text),
        text,
        "default_per_gpu_hour",
        "price.default_per_gpu_hour",
    );
    let text = "[run]\nwall_hours = 1\n[price.models]\n\"NVIDIA H100\" = nan\n";
    assert_names(&err(text), text, "H100", "price.models.\"NVIDIA H100\"");
    let text = "[run]\nwall_hours = 1\n[price.models]\n\"NVIDIA H100\" = \"4$\"\n";
    assert_names(&err(text), text, "H100", "price.models.\"NVIDIA H100\"");
}

#[test]
fn the_same_model_twice_ignoring_case_is_an_error() {
    let text = "[run]\nwall_hours = 1\n[price.models]\n\"NVIDIA H100\" = 4\n\"nvidia h100\" = 3\n";
    let e = err(text);
    assert_eq!(e.line, Some(line_of(text, "nvidia h100")), "{e}");
    assert!(e.message.contains("same model"), "{e}");
}

#[test]
fn price_is_the_models_else_the_default_else_free() {
    let b = parse(DEFAULT_BUDGETS_TOML).unwrap();
    assert_eq!(b.price_per_gpu_hour("NVIDIA H100 80GB HBM3"), 4.0);
    assert_eq!(b.price_per_gpu_hour(" nvidia h100 80gb hbm3 "), 4.0);
    assert_eq!(b.price_per_gpu_hour("NVIDIA H200"), 5.0);
    assert_eq!(b.price_per_gpu_hour("NVIDIA GeForce RTX 4090"), 3.0);
    let free = parse("[run]\nwall_hours = 1\n").unwrap();
    assert_eq!(free.price_per_gpu_hour("NVIDIA H100 80GB HBM3"), 0.0);
}

#[test]
fn load_names_a_missing_file() {
    let e = Budgets::load(Path::new("/nonexistent/budgets.toml")).unwrap_err();
    assert_eq!(e.path, Path::new("/nonexistent/budgets.toml"));
    assert!(e.message.contains("cannot read"), "{e}");
}

#[test]
fn budgets_round_trip_through_json_in_seconds() {
    let b = parse(DEFAULT_BUDGETS_TOML).unwrap();
    let v = serde_json::to_value(&b).unwrap();
    assert_eq!(v["run"]["wall_s"], 28800.0);
    assert_eq!(v["limits"]["candidate_watchdog_s"], 30.0);
    let back: Budgets = serde_json::from_value(v).unwrap();
    assert_eq!(back, b);
}

// -- the ledger --------------------------------------------------------

#[test]
fn ledger_totals_by_stage_kernel_and_pattern() {
    let mut l = Ledger::new(3.6);
    l.charge(&charge(
        "softmax",
        Some("vectorize"),
        "VEC=2",
        Stage::Compile,
        1.0,
    ))
    .unwrap();
    l.charge(&charge(
        "softmax",
        Some("vectorize"),
        "VEC=2",
        Stage::Measure,
        3.0,
    ))
    .unwrap();
    l.charge(&charge("gemm", Some("tile"), "TM=64", Stage::Validate, 2.0))
        .unwrap();
    l.charge(&Charge {
        kernel: None,
        pattern: None,
        config: None,
        stage: Stage::Idle,
        gpu_s: 4.0,
        wall_s: 5.0,
        dollars: 0.0,
    })
    .unwrap();
    let s = l.spent();
    assert_eq!(s.gpu_s, 10.0);
    assert_eq!(s.wall_s, 11.0);
    assert!((s.dollars - 0.01).abs() < 1e-12, "{s:?}");
    assert_eq!(l.by_kernel()["softmax"].gpu_s, 4.0);
    assert_eq!(l.by_kernel()["gemm"].gpu_s, 2.0);
    assert_eq!(l.by_kernel().len(), 2);
    assert_eq!(l.by_pattern()["vectorize"].gpu_s, 4.0);
    assert_eq!(l.by_stage()[&Stage::Idle].wall_s, 5.0);
    assert_eq!(l.by_stage()[&Stage::Measure].gpu_s, 3.0);
    assert_eq!(l.attack("softmax", "vectorize").gpu_s, 4.0);
    assert_eq!(l.attack("gemm", "vectorize").gpu_s, 0.0);
}

#[test]
fn dollars_follow_the_device_price() {
    let b = parse(DEFAULT_BUDGETS_TOML).unwrap();
    let mut l = Ledger::for_device(&b, "NVIDIA H100 80GB HBM3");
    l.charge(&charge("softmax", None, "B=1", Stage::Measure, 3600.0))
        .unwrap();
    assert_eq!(l.spent().dollars, 4.0);
    assert_eq!(Ledger::new(f64::NAN).price_per_gpu_hour(), 0.0);
}

#[test]
fn charge_refuses_nan_and_negative_times() {
    let mut l = Ledger::new(1.0);
    for bad in [f64::NAN, -1.0, f64::INFINITY] {
        let e = l
            .charge(&charge("softmax", None, "B=1", Stage::Measure, bad))
            .unwrap_err();
        assert!(e.to_string().contains("gpu_s"), "{e}");
    }
    assert_eq!(l.spent(), Spend::default());
    assert_eq!(l.projection("softmax", None, 1).basis, Basis::Default);
}

#[test]
fn remaining_is_the_tightest_limit_in_gpu_seconds() {
    // 1 h wall, 2 GPU-hours, $3 at $4/h = 45 min of GPU time.
    let b = parse(
        "[run]\nwall_hours = 1\ngpu_hours = 2\ndollars = 3\n[price]\ndefault_per_gpu_hour = 4\n",
    )
    .unwrap();
    let mut l = Ledger::new(4.0);
    let r = l.remaining(&b, 0.0);
    assert_eq!(r.binding, Some(Limit::Dollars));
    assert!((r.seconds - 2700.0).abs() < 1e-9, "{r:?}");
    assert_eq!(r.wall_s, 3600.0);
    assert_eq!(r.gpu_s, 7200.0);
    // Late in the night, wall time binds.
    let r = l.remaining(&b, 3500.0);
    assert_eq!(r.binding, Some(Limit::WallTime));
    assert_eq!(r.seconds, 100.0);
    // Overrun: negative headroom, zero seconds.
    l.charge(&charge("k", None, "c", Stage::Measure, 3000.0))
        .unwrap();
    let r = l.remaining(&b, 0.0);
    assert_eq!(r.binding, Some(Limit::Dollars));
    assert!(r.dollars_s < 0.0);
    assert_eq!(r.seconds, 0.0);
    // A limit left out never binds.
    let r = Ledger::new(4.0).remaining(&gpu_only(1.0, 30.0), 1e9);
    assert_eq!(r.binding, Some(Limit::GpuHours));
    assert_eq!(r.wall_s, f64::INFINITY);
}

#[test]
fn projection_without_history_is_the_stated_default() {
    let l = Ledger::new(0.0);
    let p = l.projection("softmax", Some("vectorize"), 4);
    assert_eq!(p.basis, Basis::Default);
    assert_eq!(p.per_candidate_s, DEFAULT_CANDIDATE_S);
    assert_eq!(p.seconds, 4.0 * DEFAULT_CANDIDATE_S);
    assert_eq!(l.project("softmax", None, 0), 0.0);
}

#[test]
fn projection_learns_from_the_kernel_then_all_kernels() {
    let mut l = Ledger::new(0.0);
    // gemm candidates: 10 s and 20 s (a candidate's stages add up).
    l.charge(&charge("gemm", Some("tile"), "TM=64", Stage::Compile, 4.0))
        .unwrap();
    l.charge(&charge("gemm", Some("tile"), "TM=64", Stage::Measure, 6.0))
        .unwrap();
    l.charge(&charge(
        "gemm",
        Some("tile"),
        "TM=128",
        Stage::Measure,
        20.0,
    ))
    .unwrap();
    // Time with no config is no candidate's.
    l.charge(&Charge {
        config: None,
        ..charge("gemm", None, "", Stage::External, 100.0)
    })
    .unwrap();
    let p = l.projection("gemm", None, 3);
    assert_eq!(
        (p.basis, p.samples, p.per_candidate_s),
        (Basis::Kernel, 2, 15.0)
    );
    assert_eq!(p.seconds, 45.0);
    // A kernel with no history of its own borrows everyone's.
    let p = l.projection("softmax", None, 2);
    assert_eq!(
        (p.basis, p.samples, p.seconds),
        (Basis::AllKernels, 2, 30.0)
    );
    // softmax candidates are cheap: 1 s each.
    l.charge(&charge(
        "softmax",
        Some("vectorize"),
        "VEC=2",
        Stage::Measure,
        1.0,
    ))
    .unwrap();
    let p = l.projection("softmax", Some("vectorize"), 2);
    assert_eq!((p.basis, p.samples, p.seconds), (Basis::Kernel, 1, 2.0));
}

#[test]
fn projection_prefers_the_pattern_once_it_has_enough_history() {
    let mut l = Ledger::new(0.0);
    for i in 0..MIN_PATTERN_SAMPLES {
        l.charge(&charge(
            "gemm",
            Some("split_k"),
            &format!("SK={i}"),
            Stage::Measure,
            30.0,
        ))
        .unwrap();
    }
    l.charge(&charge("gemm", Some("tile"), "TM=64", Stage::Measure, 2.0))
        .unwrap();
    let p = l.projection("gemm", Some("split_k"), 1);
    assert_eq!(
        (p.basis, p.samples, p.seconds),
        (Basis::Pattern, MIN_PATTERN_SAMPLES, 30.0)
    );
    // `tile` has one candidate: too few, so the kernel's mean is used.
    let p = l.projection("gemm", Some("tile"), 1);
    assert_eq!(p.basis, Basis::Kernel);
    assert_eq!(p.seconds, (3.0 * 30.0 + 2.0) / 4.0);
}

#[test]
fn admit_allows_work_inside_the_budget_and_refuses_work_past_it() {
    let b = gpu_only(1.0, 30.0);
    let mut l = Ledger::new(0.0);
    l.charge(&charge("k", None, "c", Stage::Measure, 3000.0))
        .unwrap();
    // 600 s left: 500 s + 30 s reserve fits, 580 s + 30 s does not.
    assert_eq!(l.admit(&b, 500.0, 0.0), Ok(()));
    assert_eq!(l.admit(&b, 570.0, 0.0), Ok(()));
    let stop = l.admit(&b, 580.0, 0.0).unwrap_err();
    assert_eq!(
        stop,
        StopReason::GpuHours {
            limit_s: 3600.0,
            spent_s: 3000.0,
            needed_s: 610.0
        }
    );
    assert!(stop.describe().contains("GPU-hours"), "{stop}");
}

#[test]
fn admit_refuses_on_wall_time_and_dollars_too() {
    // 1 h of wall time; $1 at $2 per GPU-hour is 1800 GPU seconds.
    let b = parse(
        "[run]\nwall_hours = 1\ndollars = 1\n[price]\ndefault_per_gpu_hour = 2\n\
         [limits]\ncandidate_watchdog_seconds = 10\n",
    )
    .unwrap();
    let l = Ledger::for_device(&b, "any");
    assert_eq!(l.admit(&b, 90.0, 3500.0), Ok(()));
    match l.admit(&b, 100.0, 3500.0) {
        Err(StopReason::WallTime {
            limit_s,
            elapsed_s,
            needed_s,
        }) => assert_eq!((limit_s, elapsed_s, needed_s), (3600.0, 3500.0, 110.0)),
        other => panic!("{other:?}"),
    }
    assert_eq!(l.admit(&b, 1790.0, 0.0), Ok(()));
    match l.admit(&b, 1800.0, 0.0) {
        Err(StopReason::Dollars {
            limit,
            spent,
            needed,
        }) => {
            assert_eq!((limit, spent), (1.0, 0.0));
            assert!((needed - 1810.0 * 2.0 / 3600.0).abs() < 1e-12);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn admit_refuses_a_projection_that_is_not_a_number() {
    let b = gpu_only(1.0, 30.0);
    let l = Ledger::new(0.0);
    for p in [f64::NAN, f64::INFINITY] {
        assert!(matches!(
            l.admit(&b, p, 0.0),
            Err(StopReason::GpuHours { needed_s, .. }) if needed_s.is_infinite()
        ));
    }
    // A negative projection is treated as free work, still with the reserve.
    assert_eq!(l.admit(&b, -5.0, 0.0), Ok(()));
}

#[test]
fn the_deadline_is_one_watchdog_past_the_projection() {
    let b = gpu_only(1.0, 30.0);
    assert_eq!(b.deadline(12.5), Duration::from_secs_f64(42.5));
    assert_eq!(b.deadline(-1.0), Duration::from_secs(30));
    assert_eq!(b.deadline(f64::NAN), Duration::MAX);
    assert_eq!(b.deadline(1e300), Duration::MAX);
}

#[test]
fn malformed_toml_is_reported_with_a_line() {
    let text = "[run]\nwall_hours = 8\n[limits\n";
    let e = err(text);
    assert_eq!(e.line, Some(3), "{e}");
}

#[test]
fn work_admitted_at_the_edge_ends_exactly_at_the_limit_when_it_hangs() {
    // 100 s left, 30 s watchdog: 70 s of work is the most admitted, and if that
    // candidate hangs at the end of its projection it is killed a watchdog
    // later, spending the budget to the second and not beyond.
    let b = gpu_only(1.0, 30.0);
    let mut l = Ledger::new(0.0);
    l.charge(&charge("k", None, "a", Stage::Measure, 3500.0))
        .unwrap();
    assert_eq!(l.admit(&b, 70.0, 0.0), Ok(()));
    assert!(l.admit(&b, 70.5, 0.0).is_err());
    l.charge(&charge("k", None, "b", Stage::Measure, 70.0 + 30.0))
        .unwrap();
    assert_eq!(l.spent().gpu_s, 3600.0);
    assert!(l.admit(&b, 0.0, 0.0).is_err());
}

/// Runs the loop's use of the ledger: project one candidate, ask, and spend
/// `cost(projection, watchdog, draw)`; returns the GPU seconds spent and the
/// wall seconds elapsed.
fn simulate(b: &Budgets, draws: &[f64], cost: impl Fn(f64, f64, f64) -> f64) -> (f64, f64) {
    let w = b.limits.candidate_watchdog.as_secs_f64();
    let mut l = Ledger::for_device(b, "NVIDIA H100 80GB HBM3");
    let mut now = 0.0;
    for (i, d) in draws.iter().enumerate() {
        let p = l.project("k", None, 1);
        if l.admit(b, p, now).is_err() {
            break;
        }
        let s = cost(p, w, *d);
        now += s;
        l.charge(&charge("k", None, &i.to_string(), Stage::Measure, s))
            .unwrap();
    }
    (l.spent().gpu_s, now)
}

fn three_limits() -> Budgets {
    parse(
        "[run]\nwall_hours = 0.5\ngpu_hours = 0.4\ndollars = 1.5\n\
         [price]\ndefault_per_gpu_hour = 4\n[limits]\ncandidate_watchdog_seconds = 30\n",
    )
    .unwrap()
}

proptest! {
    /// Every candidate ends by its deadline (projection + one watchdog): the
    /// run never spends past any limit, whatever the candidates cost.
    #[test]
    fn admitted_work_stays_inside_every_limit(
        draws in proptest::collection::vec(0.0f64..=1.0, 1..400),
    ) {
        let b = three_limits();
        let (gpu, wall) = simulate(&b, &draws, |p, w, d| d * (p + w));
        prop_assert!(gpu <= 0.4 * 3600.0 + 1e-6);
        prop_assert!(wall <= 0.5 * 3600.0 + 1e-6);
        prop_assert!(gpu * 4.0 / 3600.0 <= 1.5 + 1e-9);
    }

    /// A candidate that runs a whole watchdog past its projection and then
    /// hangs (killed one more watchdog later) overruns by at most one watchdog.
    #[test]
    fn a_late_hang_overruns_by_at_most_one_watchdog(
        draws in proptest::collection::vec(0.0f64..=1.0, 1..400),
    ) {
        let b = three_limits();
        let (gpu, wall) = simulate(&b, &draws, |p, w, d| d * (p + 2.0 * w));
        // Dollars bind first: 1.5 $ at 4 $/h is 1350 GPU seconds.
        prop_assert!(gpu <= 1350.0 + 30.0 + 1e-6, "{gpu}");
        prop_assert!(wall <= 0.5 * 3600.0 + 30.0 + 1e-6);
    }
}

#[test]
fn stop_reasons_describe_themselves_and_round_trip() {
    let reasons = [
        StopReason::WallTime {
            limit_s: 28800.0,
            elapsed_s: 28700.0,
            needed_s: 250.0,
        },
        StopReason::GpuHours {
            limit_s: 28800.0,
            spent_s: 28750.0,
            needed_s: f64::INFINITY,
        },
        StopReason::Dollars {
            limit: 40.0,
            spent: 39.9,
            needed: 0.25,
        },
        StopReason::Signal {
            signal: "SIGTERM".into(),
        },
        StopReason::NothingLeft,
    ];
    let shown: Vec<String> = reasons.iter().map(StopReason::describe).collect();
    assert!(
        shown[0].starts_with("wall-time limit: 7h 58m of 8h 00m elapsed"),
        "{}",
        shown[0]
    );
    assert!(shown[0].contains("4m 10s"), "{}", shown[0]);
    assert!(shown[1].contains("7.99 of 8.00 GPU-hours"), "{}", shown[1]);
    assert!(shown[2].contains("$39.90 of $40.00"), "{}", shown[2]);
    assert_eq!(shown[3], "stopped by SIGTERM");
    for r in &reasons {
        let j = serde_json::to_string(r).unwrap();
        let back: StopReason = serde_json::from_str(&j).unwrap();
        assert_eq!(&back, r, "{j}");
    }
    let j = serde_json::to_value(&reasons[0]).unwrap();
    assert_eq!(j["reason"], "wall_time");
}

#[test]
fn human_durations() {
    assert_eq!(human_s(12.34), "12.3s");
    assert_eq!(human_s(245.0), "4m 05s");
    assert_eq!(human_s(7620.0), "2h 07m");
    assert_eq!(human_s(-30.0), "-30.0s");
    assert_eq!(human_s(f64::INFINITY), "infs");
}

#[test]
fn the_search_after_the_patterns_is_on_unless_the_file_turns_it_off() {
    assert!(
        parse("[run]\ngpu_hours = 1\n")
            .unwrap()
            .search
            .after_patterns
    );
    let b = parse("[run]\ngpu_hours = 1\n[search]\nafter_patterns = false\n").unwrap();
    assert!(!b.search.after_patterns);
    let e = parse("[run]\ngpu_hours = 1\n[search]\nafter_pattern = false\n").unwrap_err();
    assert!(e.to_string().contains("after_pattern"), "{e}");
    let e = parse("[run]\ngpu_hours = 1\n[search]\nafter_patterns = 1\n").unwrap_err();
    assert!(e.to_string().contains("search"), "{e}");
    // Interleaving the search with the patterns is asked for, never assumed.
    assert!(!parse("[run]\ngpu_hours = 1\n").unwrap().search.interleave);
    assert!(!b.search.interleave);
    let b = parse("[run]\ngpu_hours = 1\n[search]\ninterleave = true\n").unwrap();
    assert!(b.search.interleave && b.search.after_patterns);
    let e = parse("[run]\ngpu_hours = 1\n[search]\nafter_patterns = false\ninterleave = true\n")
        .unwrap_err();
    assert!(e.to_string().contains("search.interleave"), "{e}");
    // Budgets journaled before the setting existed read as interleave off.
    let old: Search = serde_json::from_str(r#"{"after_patterns":true}"#).unwrap();
    assert!(old.after_patterns && !old.interleave);
}
