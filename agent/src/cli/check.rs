//! `nightshift check`: the regression gate. `--record` measures each kernel's
//! committed configuration (its `tuned.toml`, else the spec's baseline) and writes a
//! baseline file; without it, the same configurations are measured with the recorded
//! timing method and judged against the file with the A/B rule (exit 1 on SLOW beyond
//! the threshold). Prints a Markdown table for a pull-request comment, or --json.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use super::{clear_progress, exit, CheckArgs};
use crate::evaluate::{Options, Session};
use crate::gate::{self, BaselineFile, Decision, Recorded};
use crate::measure::stats::Summary;
use crate::measure::TimingMethod;
use crate::spec::{Config, KernelSpec};
use crate::tuned;
use crate::vocab::{MethodChoice, Outcome};

/// The kernel directories to check: those named, else every `kernels/*/kernel.toml`.
fn kernel_dirs(named: &[PathBuf]) -> Result<Vec<PathBuf>> {
    if !named.is_empty() {
        return Ok(named.to_vec());
    }
    let mut v: Vec<PathBuf> = std::fs::read_dir("kernels")
        .context("no kernels named and no ./kernels directory")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("kernel.toml").is_file())
        .collect();
    v.sort();
    Ok(v)
}

/// The configuration committed for a kernel: its tuned.toml, else its baseline.
fn committed(spec: &KernelSpec, dir: &Path) -> Result<Config> {
    let p = dir.join(tuned::FILE_NAME);
    // No tuned.toml: the baseline. One that cannot be read is an error, never a
    // silent fallback to the baseline.
    let c = match crate::files::read_text(&p, crate::files::MAX_INPUT_BYTES) {
        Ok(t) => tuned::read(&t).with_context(|| format!("reading {}", p.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(spec.baseline()),
        Err(e) => bail!("{}: {e}", p.display()),
    };
    let sets: Vec<(String, i64)> = c.0.into_iter().collect();
    let c = spec
        .with_overrides(&spec.baseline(), &sets)
        .map_err(|e| anyhow!("{}: {e}", p.display()))?;
    let bad = spec.violated(&spec.problem, &c);
    if !bad.is_empty() {
        bail!("{}: {c} violates {}", p.display(), bad.join(", "));
    }
    Ok(c)
}

pub fn run(a: &CheckArgs, opts: Options) -> i32 {
    super::exit_code(go(a, opts))
}

fn go(a: &CheckArgs, mut opts: Options) -> Result<i32> {
    let mut kernels = Vec::new();
    for d in kernel_dirs(&a.kernels)? {
        let spec = KernelSpec::load(&d)?;
        let config = committed(&spec, &d)?;
        kernels.push((spec, config));
    }
    if kernels.is_empty() {
        bail!("no kernels to check");
    }
    let recorded = if a.record {
        None
    } else {
        let b = BaselineFile::load(&a.baseline).map_err(|e| anyhow!(e))?;
        for (spec, config) in &kernels {
            let r = b
                .kernels
                .iter()
                .find(|r| r.kernel == spec.name)
                .ok_or_else(|| {
                    anyhow!(
                        "{} has no recorded baseline for {}; record it with `nightshift check --record`",
                        a.baseline.display(),
                        spec.name
                    )
                })?;
            if r.config != config.to_string() {
                eprintln!(
                    "note: {}: the committed configuration is {config}; the baseline recorded {} (they are compared all the same)",
                    spec.name, r.config
                );
            }
        }
        Some(b)
    };
    // The recorded bootstrap seed, so a check recomputes intervals as the record did.
    if let Some(b) = &recorded {
        opts.measure.seed = b.seed;
    }
    let seed = opts.measure.seed;
    let mut session = match super::start_session(opts) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let device = session.device.name.clone();
    if let Some(b) = &recorded {
        if let Err(e) = b.check_device(&device, a.force) {
            session.shutdown();
            bail!(e);
        }
    }
    let result = measure_all(a, &mut session, &kernels, recorded.as_ref(), seed);
    session.shutdown();
    let (records, decisions) = result?;
    clear_progress();
    if a.record {
        let b = BaselineFile {
            version: gate::FILE_VERSION,
            device: device.clone(),
            date: crate::runs::today(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            seed,
            kernels: records,
        };
        let text = serde_json::to_string_pretty(&b)?;
        std::fs::write(&a.baseline, text)
            .with_context(|| format!("writing {}", a.baseline.display()))?;
        if a.common.json {
            println!("{}", serde_json::to_string_pretty(&b)?);
        } else {
            for r in &b.kernels {
                println!(
                    "{:<10} {}: {:.2} µs [{:.2}, {:.2}] ({}, {} samples)",
                    r.kernel,
                    r.config,
                    r.median_us,
                    r.ci_lo_us,
                    r.ci_hi_us,
                    r.method,
                    r.samples.len()
                );
            }
            println!("recorded {} on {device}", a.baseline.display());
        }
        return Ok(exit::OK);
    }
    let b = recorded.expect("checked");
    if a.common.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "device": device, "baseline": a.baseline, "threshold": a.threshold,
                "decisions": decisions, "fails": gate::exit_code(&decisions) != 0,
            }))?
        );
    } else {
        print!("{}", gate::markdown(&decisions, &b, &device, a.threshold));
    }
    Ok(gate::exit_code(&decisions))
}

type Measured = (Vec<Recorded>, Vec<Decision>);

fn measure_all(
    a: &CheckArgs,
    session: &mut Session,
    kernels: &[(KernelSpec, Config)],
    recorded: Option<&BaselineFile>,
    seed: u64,
) -> Result<Measured> {
    let mut records = Vec::new();
    let mut decisions = Vec::new();
    for (spec, config) in kernels {
        let r = recorded.and_then(|b| b.kernels.iter().find(|r| r.kernel == spec.name));
        // The recorded timing method, so both sides are timed alike.
        session.opts.measure.method = match r.map(|r| r.method.as_str()) {
            Some("cold") => MethodChoice::Cold,
            Some(_) => MethodChoice::Batch,
            None => MethodChoice::Auto,
        };
        let mut samples: Vec<f64> = Vec::new();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let e = session
                .evaluate(spec, config, true)
                .map_err(|e| anyhow!("{}: {e}", spec.name))?;
            if e.outcome != Outcome::Passed {
                match r {
                    Some(r) => decisions.push(gate::rejected(r, e.outcome.describe())),
                    None => bail!(
                        "{} {config} does not pass validation ({}); nothing recorded",
                        spec.name,
                        e.outcome.describe()
                    ),
                }
                break;
            }
            samples.extend(e.kept_samples());
            let Some(r) = r else {
                let s = Summary::of(&samples, seed).ok_or_else(|| anyhow!("no samples"))?;
                let method = match e.measurement.as_ref().map(|m| m.method) {
                    Some(TimingMethod::Batch { .. }) => "batch",
                    _ => "cold",
                };
                records.push(Recorded {
                    kernel: spec.name.clone(),
                    config: config.to_string(),
                    problem: e.problem.clone(),
                    method: method.into(),
                    median_us: s.median,
                    ci_lo_us: s.ci_lo,
                    ci_hi_us: s.ci_hi,
                    samples,
                });
                break;
            };
            let mut d = gate::judge(r, &samples, a.threshold, seed, attempts);
            // What was measured now; the recorded configuration beside it if it differs.
            if r.config != config.to_string() {
                d.config = format!("{config} (recorded: {})", r.config);
            }
            let again = d.verdict == crate::measure::Verdict::Ambiguous && attempts <= a.retries;
            if !again {
                decisions.push(d);
                break;
            }
        }
    }
    Ok((records, decisions))
}
