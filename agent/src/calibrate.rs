//! `nightshift calibrate`: the A/B rule's error rates, measured on this GPU. Many
//! comparisons of a configuration against itself (every FAST or SLOW is false) and of
//! a kernel against the same kernel slowed by a known busy-wait (power at 2%, 3%, 5%),
//! each through the same protocol a run uses: validation, interleaved sampling with
//! the sequential rule, the check after timing. The work of `nightshift calibrate`,
//! and its report.

use serde::Serialize;

use crate::evaluate::Session;
use crate::measure::stats::wilson;
use crate::measure::Verdict;
use crate::spec::{Config, KernelSpec};
use crate::table;

/// The calibration kernel: a grid-stride copy on one block per SM, so every block runs
/// the whole launch; every block first waits `SPIN` clock cycles, which adds that
/// long to the launch.
const KERNEL: &str = r#"
#ifndef SPIN
#define SPIN 0
#endif
extern "C" __global__ void calibrate(const float* __restrict__ x, float* __restrict__ y, int n) {
    // Every block waits: with one block per SM, every SM starts its share of the work
    // SPIN cycles late, and the launch ends that much later. (One waiting block, or
    // one waiting thread, only shifts work to the others: measured on an H200, a wait
    // of 5% of the launch lengthened it by 1.7%.)
    if (SPIN > 0) {
        const long long t0 = clock64();
        while (clock64() - t0 < (long long)SPIN) { }
    }
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        y[i] = 2.0f * x[i];
}
"#;

const REFERENCE: &str = r#"
extern "C" __global__ void calibrate_ref(const float* x, float* y, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = 2.0f * x[i];
}
"#;

fn spec_text(spins: &[i64], sms: u32) -> String {
    let values: Vec<String> = spins.iter().map(|s| s.to_string()).collect();
    format!(
        r#"name = "calibrate"
description = "a copy whose blocks first wait SPIN cycles: a known slowdown"
source = "calibrate.cu"
entry = "calibrate"

[problem]
n = 16777216

[validate]
sizes = [{{ n = 1000 }}]

[tune]
SPIN = {{ values = [{}], role = "other", baseline = 0 }}

[launch]
grid = [{sms}, 1, 1]
block = [256, 1, 1]

[[arg]]
name = "x"
type = "f32*"
io = "in"
len = "n"

[[arg]]
name = "y"
type = "f32*"
io = "out"
len = "n"

[[arg]]
name = "n"
type = "i32"
value = "n"

[reference]
source = "calibrate_ref.cu"
entry = "calibrate_ref"
launch = {{ grid = ["cdiv(n, 256)", 1, 1], block = [256, 1, 1] }}

[cost]
bytes = "8 * n"
flops = "n"
"#,
        values.join(", ")
    )
}

/// Verdict counts of a set of comparisons.
#[derive(Debug, Default, Serialize)]
pub struct Counts {
    pub comparisons: usize,
    pub fast: usize,
    pub slow: usize,
    pub same: usize,
    pub ambiguous: usize,
    /// Comparisons where a side failed (not counted above).
    pub failed: usize,
    /// Median pairs a verdict rested on.
    pub median_pairs: usize,
}

impl Counts {
    fn add(&mut self, v: Option<Verdict>, pairs: usize, all_pairs: &mut Vec<usize>) {
        self.comparisons += 1;
        match v {
            Some(Verdict::Fast) => self.fast += 1,
            Some(Verdict::Slow) => self.slow += 1,
            Some(Verdict::Same) => self.same += 1,
            Some(Verdict::Ambiguous) => self.ambiguous += 1,
            None => self.failed += 1,
        }
        if v.is_some() {
            all_pairs.push(pairs);
        }
    }
}

/// A rate with its 95% (Wilson) interval.
#[derive(Debug, Serialize)]
pub struct Rate {
    pub count: usize,
    pub of: usize,
    pub rate: f64,
    pub ci_lo: f64,
    pub ci_hi: f64,
}

fn rate(count: usize, of: usize) -> Rate {
    let (lo, hi) = wilson(count, of);
    Rate {
        count,
        of,
        rate: if of > 0 {
            count as f64 / of as f64
        } else {
            f64::NAN
        },
        ci_lo: lo,
        ci_hi: hi,
    }
}

#[derive(Debug, Serialize)]
pub struct Level {
    /// The slowdown aimed at, and the one measured by long separate runs.
    pub target: f64,
    pub spin_cycles: i64,
    pub true_ratio: f64,
    pub counts: Counts,
    /// FAST for the unslowed kernel: the rule's power at this difference.
    pub power: Rate,
}

#[derive(Debug, Serialize)]
pub struct Calibration {
    pub device: String,
    pub date: String,
    pub min_gain: f64,
    pub max_time_s: f64,
    /// The copy's median time, µs (cold).
    pub base_us: f64,
    pub aa: Counts,
    pub false_fast: Rate,
    pub false_slow: Rate,
    pub false_any: Rate,
    pub levels: Vec<Level>,
    /// Wall seconds per comparison, on average.
    pub seconds_per_comparison: f64,
}

/// A directory of this process's own, removed when dropped.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new() -> std::io::Result<Scratch> {
        let d = std::env::temp_dir().join(format!("nightshift-calibrate-{}", std::process::id()));
        std::fs::create_dir_all(&d)?;
        Ok(Scratch(d))
    }
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn load(dir: &std::path::Path, spins: &[i64], sms: u32) -> anyhow::Result<KernelSpec> {
    std::fs::write(dir.join("kernel.toml"), spec_text(spins, sms))?;
    Ok(KernelSpec::load(dir)?)
}

/// Calibrates the A/B rule on the session's GPU: `aa` comparisons of the copy kernel
/// against itself, and `ab` at each known slowdown (2%, 3%, 5%).
pub fn calibrate(s: &mut Session, aa_n: usize, ab_n: usize) -> anyhow::Result<Calibration> {
    let dir = Scratch::new()?;
    std::fs::write(dir.path().join("calibrate.cu"), KERNEL)?;
    std::fs::write(dir.path().join("calibrate_ref.cu"), REFERENCE)?;
    let sms = s.device.sms.max(1);
    let spec = load(dir.path(), &[0], sms)?;
    let base = spec.baseline();
    let e = s.evaluate(&spec, &base, true)?;
    let base_us = e
        .median_us()
        .ok_or_else(|| anyhow::anyhow!("the calibration kernel: {}", e.outcome.describe()))?;
    // Spin cycles for each target slowdown at the device's clock.
    let mhz = s.device.sm_clock_khz as f64 / 1e3;
    let targets = [1.02, 1.03, 1.05];
    let spins: Vec<i64> = targets
        .iter()
        .map(|t| ((t - 1.0) * base_us * mhz).round().max(1.0) as i64)
        .collect();
    let mut all = vec![0];
    all.extend(&spins);
    let spec = load(dir.path(), &all, sms)?;
    let config = |spin: i64| -> anyhow::Result<Config> {
        spec.with_overrides(&spec.baseline(), &[("SPIN".into(), spin)])
            .map_err(anyhow::Error::msg)
    };
    let start = std::time::Instant::now();
    let mut done = 0usize;
    let mut aa = Counts::default();
    let mut pairs = Vec::new();
    for i in 0..aa_n {
        s.progress(&format!("A/A comparison {} of {}", i + 1, aa_n));
        let (_, _, ab) = s.compare(&spec, &base, &base)?;
        aa.add(
            ab.as_ref().map(|x| x.verdict),
            ab.map_or(0, |x| x.pairs),
            &mut pairs,
        );
        done += 1;
    }
    aa.median_pairs = median(&mut pairs);
    // The true ratios, from long separate measurements of each configuration.
    let long = s.opts.measure.rule;
    s.opts.measure.rule.max_time = std::time::Duration::from_secs(5);
    s.opts.measure.rule.target_rel = 0.0005;
    s.opts.measure.rule.max_samples = 20_000;
    let mut medians = Vec::new();
    for spin in &all {
        s.progress(&format!("the true time at SPIN={spin}"));
        let e = s.evaluate(&spec, &config(*spin)?, true)?;
        medians.push(e.median_us().unwrap_or(f64::NAN));
    }
    s.opts.measure.rule = long;
    let mut levels = Vec::new();
    for (li, (target, spin)) in targets.iter().zip(&spins).enumerate() {
        let slow = config(*spin)?;
        let mut c = Counts::default();
        let mut pairs = Vec::new();
        for i in 0..ab_n {
            s.progress(&format!(
                "A/B at {:.0}%: comparison {} of {}",
                100.0 * (target - 1.0),
                i + 1,
                ab_n
            ));
            // The slowed kernel is the incumbent: the unslowed one should be FAST.
            let (_, _, ab) = s.compare(&spec, &slow, &base)?;
            c.add(
                ab.as_ref().map(|x| x.verdict),
                ab.map_or(0, |x| x.pairs),
                &mut pairs,
            );
            done += 1;
        }
        c.median_pairs = median(&mut pairs);
        let power = rate(c.fast, c.comparisons - c.failed);
        levels.push(Level {
            target: *target,
            spin_cycles: *spin,
            true_ratio: medians[li + 1] / medians[0],
            counts: c,
            power,
        });
    }
    let decided = aa.comparisons - aa.failed;
    Ok(Calibration {
        device: s.device.name.clone(),
        date: crate::runs::new_run_id()[..8].to_string(),
        min_gain: s.opts.min_gain,
        max_time_s: s.opts.measure.rule.max_time.as_secs_f64(),
        base_us,
        false_fast: rate(aa.fast, decided),
        false_slow: rate(aa.slow, decided),
        false_any: rate(aa.fast + aa.slow, decided),
        aa,
        levels,
        seconds_per_comparison: start.elapsed().as_secs_f64() / done.max(1) as f64,
    })
}

fn median(xs: &mut [usize]) -> usize {
    if xs.is_empty() {
        return 0;
    }
    xs.sort_unstable();
    xs[xs.len() / 2]
}

fn pct(r: &Rate) -> String {
    format!(
        "{}/{} = {:.1}% [{:.1}%, {:.1}%]",
        r.count,
        r.of,
        100.0 * r.rate,
        100.0 * r.ci_lo,
        100.0 * r.ci_hi
    )
}

/// The calibration for a person: the false verdicts of A against itself, and the
/// rule's power at each slowdown.
pub fn render(c: &Calibration) -> String {
    let mut o = format!(
        "A/B calibration on {} ({}): min gain {:.0}%, time cap {:.1} s per comparison, the copy kernel at {:.1} µs (cold)\n\n",
        c.device,
        c.date,
        100.0 * c.min_gain,
        c.max_time_s,
        c.base_us
    );
    o.push_str(&format!(
        "A against itself, {} comparisons (median {} pairs): FAST {}, SLOW {}, SAME {}, AMBIGUOUS {}, failed {}\n",
        c.aa.comparisons, c.aa.median_pairs, c.aa.fast, c.aa.slow, c.aa.same, c.aa.ambiguous, c.aa.failed
    ));
    o.push_str(&format!(
        "  false FAST {}\n  false SLOW {}\n  false FAST or SLOW {}\n\n",
        pct(&c.false_fast),
        pct(&c.false_slow),
        pct(&c.false_any)
    ));
    let rows: Vec<Vec<String>> = c
        .levels
        .iter()
        .map(|l| {
            vec![
                format!("{:.0}%", 100.0 * (l.target - 1.0)),
                format!("{:.4}x", l.true_ratio),
                l.counts.comparisons.to_string(),
                l.counts.median_pairs.to_string(),
                format!(
                    "{} / {} / {} / {}",
                    l.counts.fast, l.counts.same, l.counts.ambiguous, l.counts.slow
                ),
                pct(&l.power),
            ]
        })
        .collect();
    o.push_str(&table::render(
        &[
            "slowdown aimed at",
            "true ratio (long runs)",
            "comparisons",
            "median pairs",
            "FAST / SAME / AMBIGUOUS / SLOW",
            "power (FAST), 95% CI",
        ],
        &rows,
    ));
    o.push_str(&format!(
        "\n{:.2} s per comparison (validation once, then warm-up, sampling, the check after timing)\n",
        c.seconds_per_comparison
    ));
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_calibration_spec_parses_with_its_slowdowns() {
        let d = Scratch::new().unwrap();
        std::fs::write(d.path().join("calibrate.cu"), KERNEL).unwrap();
        std::fs::write(d.path().join("calibrate_ref.cu"), REFERENCE).unwrap();
        let spec = load(d.path(), &[0, 40, 60, 100], 132).unwrap();
        assert_eq!(spec.tunables[0].values, vec![0, 40, 60, 100]);
        let c = spec
            .with_overrides(&spec.baseline(), &[("SPIN".into(), 60)])
            .unwrap();
        assert_eq!(c.0["SPIN"], 60);
    }
}
