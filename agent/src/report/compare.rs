//! `nightshift compare <run-a> <run-b>`: two runs side by side, from their journals.
//! Measurements taken on different devices, or with different timing methods (cold
//! against batched), are not comparable: refused unless forced, and then the output
//! says so at the top.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{KernelReport, Report, Timing};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Side {
    pub run_id: String,
    pub device: String,
    pub stop: String,
    pub gpu_s: f64,
    /// GPU time at the device's price.
    pub dollars: f64,
    /// A code-writing proposer's bills, apart from the GPU's.
    #[serde(default)]
    pub proposer_dollars: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub kernel: String,
    /// What each run measured for this kernel (None: the kernel was not in it).
    pub a: Option<KernelReport>,
    pub b: Option<KernelReport>,
    pub a_gpu_s: f64,
    pub b_gpu_s: f64,
    /// Best of b over best of a, from their medians: two runs, not interleaved, so
    /// no interval is claimed.
    pub best_ratio: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub a: Side,
    pub b: Side,
    pub rows: Vec<Row>,
    /// What makes the two incomparable, when forced anyway.
    pub forced: Vec<String>,
}

/// The method family of a timing (`cold` or `batch`).
fn family(t: &Timing) -> &str {
    if t.method.starts_with("batch") {
        "batch"
    } else {
        "cold"
    }
}

fn methods(k: &KernelReport) -> BTreeSet<&str> {
    [&k.baseline, &k.best]
        .into_iter()
        .flatten()
        .map(family)
        .collect()
}

/// Lines the two runs up; refuses what cannot be compared unless `force`.
pub fn compare(a: &Report, b: &Report, force: bool) -> Result<Comparison, String> {
    let mut problems = Vec::new();
    if a.device != b.device {
        problems.push(format!(
            "{} ran on {}, {} on {}: times on different devices are not comparable",
            a.run_id, a.device, b.run_id, b.device
        ));
    }
    let mut names: Vec<String> = a.kernels.iter().map(|k| k.kernel.clone()).collect();
    for k in &b.kernels {
        if !names.contains(&k.kernel) {
            names.push(k.kernel.clone());
        }
    }
    let mut rows = Vec::new();
    for n in names {
        let ka = a.kernels.iter().find(|k| k.kernel == n).cloned();
        let kb = b.kernels.iter().find(|k| k.kernel == n).cloned();
        if let (Some(x), Some(y)) = (&ka, &kb) {
            let (mx, my) = (methods(x), methods(y));
            if mx != my {
                problems.push(format!(
                    "{n}: {} timed it {}, {} timed it {}: cold and batched times are not comparable",
                    a.run_id,
                    mx.into_iter().collect::<Vec<_>>().join(" and "),
                    b.run_id,
                    my.into_iter().collect::<Vec<_>>().join(" and ")
                ));
            }
        }
        let best_ratio = match (
            ka.as_ref().and_then(|k| k.best.as_ref()),
            kb.as_ref().and_then(|k| k.best.as_ref()),
        ) {
            (Some(x), Some(y)) => Some(x.median_us / y.median_us),
            _ => None,
        };
        rows.push(Row {
            a_gpu_s: a.spend.by_kernel.get(&n).copied().unwrap_or(0.0),
            b_gpu_s: b.spend.by_kernel.get(&n).copied().unwrap_or(0.0),
            kernel: n,
            a: ka,
            b: kb,
            best_ratio,
        });
    }
    if !problems.is_empty() && !force {
        return Err(format!(
            "not comparable: {}; --force compares them anyway, and says so",
            problems.join("; ")
        ));
    }
    let side = |r: &Report| Side {
        run_id: r.run_id.clone(),
        device: r.device.clone(),
        stop: r.stop.clone(),
        gpu_s: r.spend.gpu_s,
        dollars: r.spend.dollars,
        proposer_dollars: r.spend.proposer.as_ref().map_or(0.0, |p| p.dollars),
    };
    Ok(Comparison {
        a: side(a),
        b: side(b),
        rows,
        forced: problems,
    })
}

fn t(x: Option<&Timing>) -> String {
    x.map_or("-".into(), |t| {
        format!(
            "{:.2} [{:.2}, {:.2}] {}",
            t.median_us, t.ci_lo_us, t.ci_hi_us, t.method
        )
    })
}

/// Side by side, as Markdown.
pub fn render(c: &Comparison) -> String {
    let mut o = String::new();
    if !c.forced.is_empty() {
        o.push_str("**Compared as forced, though not comparable:**\n\n");
        for p in &c.forced {
            o.push_str(&format!("- {p}\n"));
        }
        o.push('\n');
    }
    o.push_str(&format!(
        "| | {} | {} |\n| --- | --- | --- |\n| device | {} | {} |\n| ended | {} | {} |\n| GPU time, cost | {:.0} s, ${:.2} | {:.0} s, ${:.2} |\n\n",
        c.a.run_id,
        c.b.run_id,
        c.a.device,
        c.b.device,
        c.a.stop,
        c.b.stop,
        c.a.gpu_s,
        c.a.dollars,
        c.b.gpu_s,
        c.b.dollars
    ));
    if c.a.proposer_dollars > 0.0 || c.b.proposer_dollars > 0.0 {
        // Apart from the GPU's cost above, never summed into it.
        o.truncate(o.len() - 1);
        o.push_str(&format!(
            "| proposer cost | ${:.4} | ${:.4} |\n\n",
            c.a.proposer_dollars, c.b.proposer_dollars
        ));
    }
    o.push_str("| kernel | run | best configuration | baseline µs [95% CI] | best µs [95% CI] | best vs baseline (interleaved) | GPU s |\n| --- | --- | --- | --- | --- | --- | --- |\n");
    for r in &c.rows {
        for (id, k, s) in [
            (&c.a.run_id, &r.a, r.a_gpu_s),
            (&c.b.run_id, &r.b, r.b_gpu_s),
        ] {
            match k {
                Some(k) => o.push_str(&format!(
                    "| {} | {id} | `{}` | {} | {} | {} | {s:.1} |\n",
                    r.kernel,
                    k.best_config,
                    t(k.baseline.as_ref()),
                    t(k.best.as_ref()),
                    k.speedup.as_ref().map_or("-".into(), |x| format!(
                        "{:.3}x [{:.3}, {:.3}] {}",
                        x.x, x.ci_lo, x.ci_hi, x.verdict
                    )),
                )),
                None => o.push_str(&format!(
                    "| {} | {id} | not in this run | | | | |\n",
                    r.kernel
                )),
            }
        }
    }
    let ratios: Vec<String> = c
        .rows
        .iter()
        .filter_map(|r| r.best_ratio.map(|x| format!("{} {x:.3}x", r.kernel)))
        .collect();
    if !ratios.is_empty() {
        o.push_str(&format!(
            "\nBest of {} against best of {} (ratio of medians from separate runs, no interval claimed; an interleaved `nightshift bench --vs` decides): {}\n",
            c.b.run_id,
            c.a.run_id,
            ratios.join(", ")
        ));
    }
    o
}
