//! The check that every timing a record holds is a time.

use serde_json::Value;

use super::{Event, Typed};
use crate::evaluate::Evaluation;

/// A timing in a record that is not a time (non-positive or not finite): a journal
/// that says a kernel took -16.58 µs is wrong, not a result to report.
pub(super) fn bad_timing(e: &Event) -> Option<String> {
    let time = |what: &str, x: f64| -> Option<String> {
        (!(x.is_finite() && x > 0.0)).then(|| format!("{what} {x} µs is not a time"))
    };
    let eval = |v: &Typed<Evaluation>| -> Option<String> {
        match v {
            Typed::Read(e) => {
                let m = e.measurement.as_ref()?;
                if let Some(e) = m
                    .summary
                    .as_ref()
                    .and_then(|s| time("a median of", s.median))
                {
                    return Some(e);
                }
                m.samples.iter().find_map(|s| time("a sample of", s.us))
            }
            // Not an evaluation this version reads: its timings are checked all the same.
            Typed::Unreadable(v) => {
                let m = v.get("measurement")?;
                if let Some(x) = m.pointer("/summary/median").and_then(Value::as_f64) {
                    if let Some(e) = time("a median of", x) {
                        return Some(e);
                    }
                }
                m.get("samples")?
                    .as_array()?
                    .iter()
                    .filter_map(|s| s.get("us").and_then(Value::as_f64))
                    .find_map(|x| time("a sample of", x))
            }
            Typed::Unread => None,
        }
    };
    match e {
        Event::Evaluated {
            median_us,
            evaluation,
            ..
        }
        | Event::StudyPoint {
            median_us,
            evaluation,
            ..
        } => median_us
            .and_then(|x| time("a median of", x))
            .or_else(|| eval(evaluation)),
        Event::Verdict { against, .. } => eval(against),
        Event::FinalComparison {
            baseline_evaluation,
            best_evaluation,
            ..
        } => eval(baseline_evaluation).or_else(|| eval(best_evaluation)),
        _ => None,
    }
}
