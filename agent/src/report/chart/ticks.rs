//! Axis ticks and how numbers are written on them: SI prefixes with the unit
//! (`1 PFLOP/s`, `100 TFLOP/s`, `4.4 TB/s`, `12 µs`), never `1000000.0`.

use super::{Scale, Unit};

const PREFIXES: [(f64, &str); 9] = [
    (1e15, "P"),
    (1e12, "T"),
    (1e9, "G"),
    (1e6, "M"),
    (1e3, "k"),
    (1.0, ""),
    (1e-3, "m"),
    (1e-6, "µ"),
    (1e-9, "n"),
];

/// A number with at most `sig` significant digits, trailing zeros dropped.
fn sig_digits(v: f64, sig: i32) -> String {
    if v == 0.0 || !v.is_finite() {
        return if v.is_finite() {
            "0".into()
        } else {
            format!("{v}")
        };
    }
    let mag = v.abs().log10().floor() as i32;
    let decimals = (sig - 1 - mag).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A plain number for prose and ticks: up to 3 significant digits (all the integer
/// digits of a large one).
pub(crate) fn number(v: f64) -> String {
    sig_digits(v, 3)
}

/// `v` in `unit` with an SI prefix: `si(4.4e12, "B/s")` is `4.4 TB/s`. Seconds take
/// no prefix above one (`1200 s`, not `1.2 ks`).
pub(crate) fn si(v: f64, unit: &str) -> String {
    si_sig(v, unit, 3)
}

fn si_sig(v: f64, unit: &str, sig: i32) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{} {unit}", sig_digits(v, sig));
    }
    let a = v.abs() * (1.0 + 1e-9);
    let (scale, prefix) = PREFIXES
        .iter()
        .copied()
        .filter(|(s, _)| unit != "s" || *s <= 1.0)
        .find(|(s, _)| a >= *s)
        .unwrap_or(PREFIXES[PREFIXES.len() - 1]);
    format!("{} {prefix}{unit}", sig_digits(v / scale, sig))
}

fn label(unit: &Unit, v: f64, decimals: usize) -> String {
    match unit {
        Unit::Si(u) => si_sig(v, u, 4),
        Unit::Plain(suffix) => {
            let n = if decimals == 0 && v.abs() >= 1e7 {
                format!("{v:e}")
            } else {
                format!("{v:.decimals$}")
            };
            format!("{n}{suffix}")
        }
        Unit::Count => format!("{v:.0}"),
        Unit::Categories(c) => c.get(v.round() as usize).cloned().unwrap_or_default(),
    }
}

/// Evenly spaced round values in [lo, hi]: steps of 1, 2 or 5 times a power of ten.
fn linear(lo: f64, hi: f64, unit: &Unit) -> Vec<(f64, String)> {
    let raw = (hi - lo) / 6.0;
    if !(raw > 0.0 && raw.is_finite()) {
        return vec![(lo, label(unit, lo, 2))];
    }
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let step = if *unit == Unit::Count {
        step.max(1.0)
    } else {
        step
    };
    let decimals = (-(step.log10().floor())).max(0.0) as usize;
    let mut out = Vec::new();
    let mut k = (lo / step).ceil();
    while k * step <= hi * (1.0 + 1e-12) && out.len() < 20 {
        let v = k * step;
        // -0.0 and 1e-17 are written 0.
        let v = if v.abs() < step * 1e-9 { 0.0 } else { v };
        out.push((v, label(unit, v, decimals)));
        k += 1.0;
    }
    out
}

/// The ticks of an axis spanning [lo, hi].
pub(super) fn ticks(unit: &Unit, lo: f64, hi: f64, scale: Scale) -> Vec<(f64, String)> {
    if let Unit::Categories(c) = unit {
        return c
            .iter()
            .enumerate()
            .map(|(i, n)| (i as f64, n.clone()))
            .collect();
    }
    if scale == Scale::Lin {
        return linear(lo, hi, unit);
    }
    let (a, b) = (lo.log10().ceil() as i32, hi.log10().floor() as i32);
    let decades = b - a + 1;
    let stride = if decades > 8 { 2 } else { 1 };
    let mut vals: Vec<f64> = (a..=b)
        .filter(|e| (e - a) % stride == 0)
        .map(|e| 10f64.powi(e))
        .collect();
    if decades < 3 {
        for e in (a - 1)..=b {
            for m in [2.0, 5.0] {
                let v = m * 10f64.powi(e);
                if v >= lo && v <= hi {
                    vals.push(v);
                }
            }
        }
        vals.sort_by(f64::total_cmp);
    }
    if vals.len() < 3 {
        // A narrow range (0.9x to 1.3x): round values in it, placed on the log axis.
        return linear(lo, hi, unit);
    }
    let decimals = vals
        .iter()
        .map(|v| (-(v.log10().floor())).max(0.0) as usize)
        .max()
        .unwrap_or(0);
    vals.into_iter()
        .map(|v| {
            let d = match unit {
                Unit::Plain(_) => (-(v.log10().floor())).max(0.0) as usize,
                _ => decimals,
            };
            (v, label(unit, v, d))
        })
        .collect()
}
