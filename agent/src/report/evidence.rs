//! The evidence behind every kept change and every final comparison: the two arms'
//! raw samples as they were measured (interleaved: sample i of each arm is pair i),
//! drawn side by side with their medians and the speedup's interval, and as a
//! timeline of the pairs so drift or a throttled stretch shows.

use serde::{Deserialize, Serialize};

use super::chart::{self, Axis, Chart, Key, Line, Mark, Scale, Shape, Unit};
use super::{speedup, timing, Speedup};
use crate::evaluate::Evaluation;
use crate::journal::Event;
use crate::state::recorded::{Decision, Recorded};

/// One arm of an interleaved comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Arm {
    pub config: String,
    /// Every sample, µs per launch, in the order measured.
    pub samples_us: Vec<f64>,
    /// Indices of the samples taken while the clock was throttled (left out of
    /// every statistic).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub throttled: Vec<usize>,
    /// Median of the samples that count.
    pub median_us: f64,
}

/// A comparison whose verdict a reader may want to see the samples of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub kernel: String,
    /// `kept <sha>` (a commit, measured against the best of its time) or `final
    /// comparison` (the best against the baseline at the end).
    pub what: String,
    /// The pattern of a kept change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The reference arm: the best before the change, or the baseline.
    pub a: Arm,
    /// The candidate, or the best.
    pub b: Arm,
    /// B over A, recomputed from the samples.
    pub speedup: Speedup,
}

fn arm(config: &str, e: &Evaluation, seed: u64) -> Option<Arm> {
    let m = e.measurement.as_ref()?;
    Some(Arm {
        config: config.to_string(),
        samples_us: m.samples.iter().map(|s| s.us).collect(),
        throttled: m
            .samples
            .iter()
            .enumerate()
            .filter(|(_, s)| s.throttled)
            .map(|(i, _)| i)
            .collect(),
        median_us: timing(e, seed)?.median_us,
    })
}

/// Every kept change (with the best it was measured beside) and every final
/// comparison the journal holds, in journal order.
pub(super) fn evidence(rec: &Recorded, seed: u64) -> Vec<Evidence> {
    let mut out: Vec<(u64, Evidence)> = Vec::new();
    for ev in &rec.evaluations {
        let (Some(Decision::Committed { sha, .. }), Some(j), Some(e)) =
            (&ev.decision, &ev.verdict, &ev.evaluation)
        else {
            continue;
        };
        let Some(a) = &j.against else { continue };
        let min_gain = j.figures.min_gain.unwrap_or(0.02);
        if let (Some(arm_a), Some(arm_b), Some(s)) = (
            arm(&j.baseline, a, seed),
            arm(&ev.config, e, seed),
            speedup(a, e, seed, min_gain),
        ) {
            out.push((
                ev.seq,
                Evidence {
                    kernel: ev.kernel.clone(),
                    what: format!("kept {}", &sha[..sha.len().min(10)]),
                    pattern: ev.pattern.clone(),
                    a: arm_a,
                    b: arm_b,
                    speedup: s,
                },
            ));
        }
    }
    for f in &rec.finals {
        let Event::FinalComparison {
            kernel,
            baseline,
            best,
            baseline_evaluation,
            best_evaluation,
            ..
        } = &f.value
        else {
            continue;
        };
        let (Some(a), Some(b)) = (baseline_evaluation.get(), best_evaluation.get()) else {
            continue;
        };
        if let (Some(arm_a), Some(arm_b), Some(s)) = (
            arm(baseline, a, seed),
            arm(best, b, seed),
            speedup(a, b, seed, 0.02),
        ) {
            out.push((
                f.seq,
                Evidence {
                    kernel: kernel.clone(),
                    what: "final comparison".into(),
                    pattern: None,
                    a: arm_a,
                    b: arm_b,
                    speedup: s,
                },
            ));
        }
    }
    out.sort_by_key(|(seq, _)| *seq);
    out.into_iter().map(|(_, e)| e).collect()
}

/// A deterministic spread of the samples across their column (no randomness: the
/// same report draws the same picture).
fn jitter(i: usize) -> f64 {
    // The fractional part of i times the golden ratio, centred: evenly spread.
    let f = (i as f64 * 0.618_033_988_749_895).fract();
    (f - 0.5) * 0.5
}

fn names(e: &Evidence) -> (String, String) {
    if e.what == "final comparison" {
        ("baseline".into(), "best".into())
    } else {
        ("best before".into(), "candidate".into())
    }
}

fn title(e: &Evidence) -> String {
    let s = &e.speedup;
    format!(
        "{} {}: {}x [{}, {}] {}",
        e.kernel,
        e.what,
        chart::number(s.x),
        chart::number(s.ci_lo),
        chart::number(s.ci_hi),
        s.verdict
    )
}

/// The two arms' samples side by side on one time axis (the throttled ones hollow),
/// each median as a bar, and on the candidate's column the interval of the speedup
/// as the range of times it allows (the reference's median over the interval's
/// ends).
pub(crate) fn samples_chart(e: &Evidence) -> Option<String> {
    let (na, nb) = names(e);
    let mut c = Chart::new(
        format!("{}: the samples", title(e)),
        Axis::new(
            "",
            Unit::Categories(vec![na.clone(), nb.clone()]),
            Scale::Lin,
        ),
        Axis::new("time per launch", Unit::Si("s"), Scale::Lin),
    )
    .note(format!(
        "each dot one sample; bar: median; bracket: the reference's median over the ends of the speedup's 95% interval ({} min gain)",
        chart::number(e.speedup.min_gain * 100.0) + "%"
    ));
    for (col, (arm, name, color)) in [(&e.a, &na, chart::color(0)), (&e.b, &nb, chart::color(1))]
        .into_iter()
        .enumerate()
    {
        for (i, us) in arm.samples_us.iter().enumerate() {
            let throttled = arm.throttled.contains(&i);
            c.marks.push(
                Mark::new(
                    col as f64 + jitter(i),
                    us * 1e-6,
                    color,
                    format!(
                        "{name} `{}` sample {}: {}{}",
                        arm.config,
                        i + 1,
                        chart::si(us * 1e-6, "s"),
                        if throttled {
                            " (throttled, not counted)"
                        } else {
                            ""
                        }
                    ),
                )
                .size(2.5)
                .hollow(throttled),
            );
        }
        let m = arm.median_us * 1e-6;
        c.lines.push(
            Line::new(
                vec![(col as f64 - 0.35, m), (col as f64 + 0.35, m)],
                chart::GREY,
                format!("{name} median {}", chart::si(m, "s")),
            )
            .width(3.0),
        );
    }
    // B's time under the interval's ends: A's median / speedup.
    let a = e.a.median_us * 1e-6;
    let (hi_t, lo_t) = (a / e.speedup.ci_lo, a / e.speedup.ci_hi);
    let x = 1.42;
    // Too few pairs leave the interval unbounded: no bracket to draw.
    let bounded = hi_t.is_finite() && lo_t.is_finite() && lo_t > 0.0;
    c.lines.push(Line::new(
        if bounded {
            vec![(x - 0.04, lo_t), (x, lo_t), (x, hi_t), (x - 0.04, hi_t)]
        } else {
            vec![]
        },
        "#000000",
        format!(
            "speedup {}x, 95% interval [{}, {}]: {} to {}",
            chart::number(e.speedup.x),
            chart::number(e.speedup.ci_lo),
            chart::number(e.speedup.ci_hi),
            chart::si(lo_t, "s"),
            chart::si(hi_t, "s")
        ),
    ));
    c.legend = vec![
        (
            format!("{na}: {}", short(&e.a.config)),
            Key::Swatch(chart::color(0)),
        ),
        (
            format!("{nb}: {}", short(&e.b.config)),
            Key::Swatch(chart::color(1)),
        ),
        ("median".into(), Key::Line(chart::GREY, false)),
        (
            format!(
                "speedup {}x [{}, {}]",
                chart::number(e.speedup.x),
                chart::number(e.speedup.ci_lo),
                chart::number(e.speedup.ci_hi)
            ),
            Key::Line("#000000", false),
        ),
    ];
    if throttled(e) {
        c.legend.push((
            "throttled (not counted)".into(),
            Key::Mark(Shape::Circle, chart::GREY, false),
        ));
    }
    c.svg()
}

fn throttled(e: &Evidence) -> bool {
    !(e.a.throttled.is_empty() && e.b.throttled.is_empty())
}

/// A configuration cut to a legend's width.
fn short(config: &str) -> String {
    const MAX: usize = 48;
    if config.chars().count() <= MAX {
        config.to_string()
    } else {
        format!("{}…", config.chars().take(MAX - 1).collect::<String>())
    }
}

/// The pairs in the order they were measured: both arms' samples over the pair
/// index, so a drift, a throttled stretch or a warm-up shows.
pub(crate) fn pairs_chart(e: &Evidence) -> Option<String> {
    let (na, nb) = names(e);
    let mut c = Chart::new(
        format!("{}: the pairs in order", title(e)),
        Axis::new("pair (in the order measured)", Unit::Count, Scale::Lin),
        Axis::new("time per launch", Unit::Si("s"), Scale::Lin),
    )
    .note("the two arms were measured interleaved: sample i of each is pair i");
    for (arm, name, color) in [(&e.a, &na, chart::color(0)), (&e.b, &nb, chart::color(1))] {
        let pts: Vec<(f64, f64)> = arm
            .samples_us
            .iter()
            .enumerate()
            .map(|(i, us)| (i as f64 + 1.0, us * 1e-6))
            .collect();
        c.lines.push(Line::new(pts, color, name.clone()).width(1.0));
        for (i, us) in arm.samples_us.iter().enumerate() {
            let throttled = arm.throttled.contains(&i);
            let mark = Mark::new(
                i as f64 + 1.0,
                us * 1e-6,
                color,
                format!(
                    "{name} pair {}: {}{}",
                    i + 1,
                    chart::si(us * 1e-6, "s"),
                    if throttled {
                        " (throttled, not counted)"
                    } else {
                        ""
                    }
                ),
            );
            c.marks.push(if throttled {
                mark.shape(Shape::Cross)
            } else {
                mark.size(1.8)
            });
        }
    }
    c.legend = vec![
        (na, Key::Line(chart::color(0), false)),
        (nb, Key::Line(chart::color(1), false)),
    ];
    if throttled(e) {
        c.legend.push((
            "throttled (not counted)".into(),
            Key::Mark(Shape::Cross, chart::GREY, false),
        ));
    }
    c.svg()
}
