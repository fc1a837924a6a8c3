//! `nightshift report --verify`: the report rebuilt from the journal's raw samples
//! and compared figure by figure, the journal's own summaries recomputed, every
//! evaluation's charges checked against its timers, and every proposer's bill
//! against the answer it paid for.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::journal::{Event, Record};
use crate::state::RunState;

use super::*;

/// Checks `report` (as read from report.json) against the journal: the report is
/// rebuilt from the raw samples and every figure compared, and every summary the
/// journal recorded is recomputed from its samples (equal to 12 significant digits).
/// Names the first figure that differs.
pub fn verify(report: &Value, run_id: &str, records: &[Record]) -> Result<usize, ReportError> {
    let version = report.get("schema_version").and_then(Value::as_u64);
    if version != Some(SCHEMA_VERSION as u64) {
        return Err(ReportError::Journal(format!(
            "report.json has schema version {}, this nightshift writes {SCHEMA_VERSION}: write it again with `nightshift report {run_id}` to check it",
            version.map_or("(none)".to_string(), |v| v.to_string())
        )));
    }
    let state = RunState::from_records(records);
    let rec = &state.recorded;
    let seed = rec.seed();
    let mut checked = 0usize;
    // The journal's own figures against its raw samples.
    let mut check = |seq: u64, label: String, e: Option<&Evaluation>| -> Result<(), ReportError> {
        let Some(e) = e else { return Ok(()) };
        let (Some(m), Some(t)) = (&e.measurement, timing(e, seed)) else {
            return Ok(());
        };
        let Some(s) = m.summary else { return Ok(()) };
        for (what, found, expected) in [
            ("median_us", s.median, t.median_us),
            ("ci_lo_us", s.ci_lo, t.ci_lo_us),
            ("ci_hi_us", s.ci_hi, t.ci_hi_us),
        ] {
            checked += 1;
            // Journals written before the interpolation of quantiles was made exact
            // can differ in the last bit; a changed sample moves a figure by far more.
            if (found - expected).abs() > 1e-12 * expected.abs() {
                return Err(ReportError::Differs {
                    figure: format!("journal record {seq}: {label} {what}"),
                    found: format!("{found}"),
                    expected: format!("{expected}"),
                });
            }
        }
        Ok(())
    };
    for ev in &rec.evaluations {
        let label = format!("{} {}", ev.kernel, ev.config);
        check(ev.seq, label.clone(), ev.evaluation.as_ref())?;
        if let Some(j) = &ev.verdict {
            let label = format!("{label} (its best, re-measured)");
            check(j.seq, label, j.against.as_ref())?;
        }
    }
    for f in &rec.finals {
        if let Event::FinalComparison {
            kernel,
            baseline_evaluation,
            best_evaluation,
            ..
        } = &f.value
        {
            check(
                f.seq,
                format!("{kernel} final baseline"),
                baseline_evaluation.get(),
            )?;
            check(f.seq, format!("{kernel} final best"), best_evaluation.get())?;
        }
    }
    checked += verify_charges(records)?;
    checked += verify_proposer_charges(records)?;
    let rebuilt = serde_json::to_value(build(run_id, &state))
        .map_err(|e| ReportError::Journal(e.to_string()))?;
    diff(report, &rebuilt, "report", &mut checked)?;
    Ok(checked)
}

/// A page of the report (`report.md`, `report.html`, a plot) against the page the
/// journal renders now: equal line by line, or the first line that differs named.
/// A page written by another version of nightshift is named as such: it cannot be
/// checked until it is written again. Returns the lines compared.
pub fn verify_page(name: &str, found: &str, expected: &str) -> Result<usize, ReportError> {
    // The stamp: `<meta name="generator" ...>` in the page, a comment elsewhere.
    let generator = |t: &str| {
        t.lines().take(12).find_map(|l| {
            l.strip_prefix("<meta name=\"generator\" content=\"")
                .map(|g| g.trim_end_matches("\">").to_string())
                .or_else(|| {
                    l.strip_prefix("<!-- written by ")
                        .map(|g| g.trim_end_matches(" -->").to_string())
                })
        })
    };
    if generator(found) != generator(expected) {
        return Err(ReportError::Journal(format!(
            "{name} was written by {}, this is {}: write it again with `nightshift report <run-id>` to check it",
            generator(found).unwrap_or_else(|| "an earlier nightshift".into()),
            super::GENERATOR
        )));
    }
    let (mut f, mut e) = (found.lines(), expected.lines());
    let mut n = 0;
    loop {
        match (f.next(), e.next()) {
            (None, None) => return Ok(n),
            (a, b) if a == b => n += 1,
            (a, b) => {
                let cut = |s: Option<&str>| {
                    s.map_or("(the end of the file)".to_string(), |s| {
                        let s: String = s.chars().take(160).collect();
                        format!("`{s}`")
                    })
                };
                return Err(ReportError::Differs {
                    figure: format!("{name} line {}", n + 1),
                    found: cut(a),
                    expected: cut(b),
                });
            }
        }
    }
}

/// Each evaluation's charges, by stage, against its own timers: the charges a run
/// journals right before an evaluation's record must be what its timers say
/// (`evaluate::cost_of`). Journals that charged after the record (before that was
/// so) have nothing to check. Returns the figures checked.
pub(crate) fn verify_charges(records: &[Record]) -> Result<usize, ReportError> {
    let mut checked = 0;
    for (i, rec) in records.iter().enumerate() {
        let (kernel, label, eval, against) = match &rec.event {
            Event::Evaluated {
                kernel,
                config,
                evaluation,
                ..
            } => {
                let against = match records.get(i + 1).map(|r| &r.event) {
                    Some(Event::Verdict {
                        kernel: k,
                        config: c,
                        against,
                        ..
                    }) if k == kernel && c == config => eval_of(against),
                    _ => None,
                };
                (kernel, config.clone(), evaluation, against)
            }
            Event::StudyPoint {
                kernel,
                config,
                scale,
                evaluation,
                ..
            } => (
                kernel,
                format!("study x{scale}: {config}"),
                evaluation,
                None,
            ),
            Event::FinalComparison {
                kernel,
                best,
                best_evaluation,
                baseline_evaluation,
                ..
            } => (
                kernel,
                format!("final: {best}"),
                best_evaluation,
                eval_of(baseline_evaluation),
            ),
            _ => continue,
        };
        let Some(e) = eval_of(eval) else { continue };
        let mut charged: BTreeMap<String, f64> = BTreeMap::new();
        for r in records[..i].iter().rev() {
            let Event::Charge(c) = &r.event else { break };
            if c.kernel.as_deref() == Some(kernel.as_str()) && c.config.as_deref() == Some(&label) {
                *charged.entry(c.stage.name().to_string()).or_default() += c.gpu_s;
            }
        }
        if charged.is_empty() {
            continue;
        }
        let mut timers: BTreeMap<String, f64> = BTreeMap::new();
        for (stage, secs) in crate::evaluate::cost_of(&e, against.as_ref()) {
            *timers.entry(stage.name().to_string()).or_default() += secs;
        }
        for (stage, want) in &timers {
            let got = charged.get(stage).copied().unwrap_or(0.0);
            checked += 1;
            if (got - want).abs() > 1e-9 * want.abs().max(1e-9) {
                return Err(ReportError::Differs {
                    figure: format!(
                        "journal record {}: {kernel} {label} charged as {stage}",
                        rec.seq
                    ),
                    found: format!("{got} s"),
                    expected: format!("{want} s by the evaluation's own timers"),
                });
            }
        }
        if let Some(extra) = charged.keys().find(|k| !timers.contains_key(*k)) {
            return Err(ReportError::Differs {
                figure: format!(
                    "journal record {}: {kernel} {label} charged as {extra}",
                    rec.seq
                ),
                found: format!("{} s", charged[extra]),
                expected: "no such stage in the evaluation's timers".into(),
            });
        }
    }
    Ok(checked)
}

/// Each proposer's bill against the answer it paid for: a run charges a question
/// right before it journals the answer, so the charge before each `proposer_answer`
/// record must be the proposer's, of its kernel and pattern, for the dollars its
/// usage says. Returns the figures checked.
pub(crate) fn verify_proposer_charges(records: &[Record]) -> Result<usize, ReportError> {
    let mut checked = 0;
    for (i, rec) in records.iter().enumerate() {
        let Event::ProposerAnswer(a) = &rec.event else {
            continue;
        };
        let want = a.usage.dollars;
        let label = format!(
            "journal record {}: {} {} question {} ({})",
            rec.seq, a.kernel, a.pattern, a.attempt, a.proposer
        );
        checked += 1;
        let charge = i.checked_sub(1).and_then(|j| match &records[j].event {
            Event::Charge(c) if c.stage == crate::budget::Stage::Proposer => Some(c),
            _ => None,
        });
        let Some(c) = charge else {
            return Err(ReportError::Differs {
                figure: format!("{label} charged"),
                found: "no proposer charge right before it".into(),
                expected: format!("${want} by the answer's usage"),
            });
        };
        if c.kernel.as_deref() != Some(a.kernel.as_str())
            || c.pattern.as_deref() != Some(a.pattern.as_str())
        {
            return Err(ReportError::Differs {
                figure: format!("{label} charged to"),
                found: format!(
                    "{} {}",
                    c.kernel.as_deref().unwrap_or("no kernel"),
                    c.pattern.as_deref().unwrap_or("no pattern")
                ),
                expected: format!("{} {}", a.kernel, a.pattern),
            });
        }
        if (c.dollars - want).abs() > 1e-12 * want.abs().max(1e-12) {
            return Err(ReportError::Differs {
                figure: format!("{label} charged"),
                found: format!("${}", c.dollars),
                expected: format!("${want} by the answer's usage"),
            });
        }
    }
    Ok(checked)
}

/// The first path at which `found` and `expected` differ.
fn diff(found: &Value, expected: &Value, path: &str, n: &mut usize) -> Result<(), ReportError> {
    let differs = |f: &Value, e: &Value| ReportError::Differs {
        figure: path.to_string(),
        found: f.to_string(),
        expected: e.to_string(),
    };
    match (found, expected) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, vb) in b {
                let va = a.get(k).unwrap_or(&Value::Null);
                diff(va, vb, &format!("{path}.{k}"), n)?;
            }
            if let Some(k) = a.keys().find(|k| !b.contains_key(*k)) {
                return Err(ReportError::Differs {
                    figure: format!("{path}.{k}"),
                    found: a[k].to_string(),
                    expected: "nothing".into(),
                });
            }
            Ok(())
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return Err(ReportError::Differs {
                    figure: format!("{path} (length)"),
                    found: a.len().to_string(),
                    expected: b.len().to_string(),
                });
            }
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff(x, y, &format!("{path}[{i}]"), n)?;
            }
            Ok(())
        }
        (Value::Number(a), Value::Number(b)) => {
            *n += 1;
            if a.as_f64().map(f64::to_bits) == b.as_f64().map(f64::to_bits) {
                Ok(())
            } else {
                Err(differs(found, expected))
            }
        }
        (a, b) if a == b => Ok(()),
        _ => Err(differs(found, expected)),
    }
}
