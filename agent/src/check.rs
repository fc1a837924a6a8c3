//! `nightshift check`'s work, over the regression gate (`gate.rs`): each kernel's
//! committed configuration (its `tuned.toml`, else the spec's baseline), measured
//! and recorded into a baseline file (`--record`), or measured with the recorded
//! timing method and judged against that file by the gate, an AMBIGUOUS one measured
//! again up to a cap. Also the record's text and the check's JSON.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use crate::evaluate::{Evaluation, Session};
use crate::gate::{self, BaselineFile, Decision, Recorded};
use crate::measure::stats::Summary;
use crate::measure::{TimingMethod, Verdict};
use crate::spec::{Config, KernelSpec};
use crate::tuned;
use crate::vocab::{MethodChoice, Outcome};

/// One kernel to check: its spec, its committed configuration, and what the baseline
/// file recorded for it (none when recording).
pub struct Kernel {
    pub spec: KernelSpec,
    pub config: Config,
    pub recorded: Option<Recorded>,
}

/// What a check measures, and against what.
pub struct Plan {
    pub kernels: Vec<Kernel>,
    /// The baseline file checked against; none when recording one.
    pub baseline: Option<BaselineFile>,
}

/// What a check found.
pub enum Checked {
    /// `--record`: the baseline file to write, every kernel measured.
    Recorded(BaselineFile),
    /// The gate's decision for each kernel, measured on `device`.
    Judged {
        device: String,
        decisions: Vec<Decision>,
    },
}

/// How the gate judges: the threshold, the re-measurements of an AMBIGUOUS kernel,
/// and whether a baseline of another device model is accepted.
pub struct Rules {
    pub threshold: f64,
    pub retries: usize,
    pub force: bool,
}

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

/// The configuration committed for a kernel: its tuned.toml, else its baseline. A
/// tuned.toml of a rewritten kernel also names the NVRTC options it was kept with:
/// the kernel is checked compiled with them (its reference with the spec's own).
fn committed(spec: &mut KernelSpec, dir: &Path) -> Result<Config> {
    let p = dir.join(tuned::FILE_NAME);
    // No tuned.toml: the baseline. One that cannot be read is an error, never a
    // silent fallback to the baseline.
    let t = match crate::files::read_text(&p, crate::files::MAX_INPUT_BYTES) {
        Ok(t) => tuned::read_tuned(&t).with_context(|| format!("reading {}", p.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(spec.baseline()),
        Err(e) => bail!("{}: {e}", p.display()),
    };
    if !t.nvrtc_options.is_empty() && t.nvrtc_options != spec.compile_options {
        spec.rewritten = Some(crate::spec::Rewritten {
            source: spec.source.clone(),
            options: t.nvrtc_options.clone(),
            rewrites: vec![format!("nvrtc_options of {}", p.display())],
        });
    }
    let sets: Vec<(String, i64)> = t.config.0.into_iter().collect();
    let c = spec
        .with_overrides(&spec.baseline(), &sets)
        .map_err(|e| anyhow!("{}: {e}", p.display()))?;
    let bad = spec.violated(&spec.problem, &c);
    if !bad.is_empty() {
        bail!("{}: {c} violates {}", p.display(), bad.join(", "));
    }
    Ok(c)
}

/// Loads the kernels named (else every bundled one) and their committed
/// configurations; with `baseline` (a check, not a record), the baseline file too,
/// which must hold every kernel. Each kernel whose committed configuration is not
/// the one recorded is a `note` (they are compared all the same).
pub fn plan(
    named: &[PathBuf],
    baseline: Option<&Path>,
    note: &mut dyn FnMut(&str),
) -> Result<Plan> {
    let mut kernels = Vec::new();
    for d in kernel_dirs(named)? {
        let mut spec = KernelSpec::load(&d)?;
        let config = committed(&mut spec, &d)?;
        kernels.push(Kernel {
            spec,
            config,
            recorded: None,
        });
    }
    if kernels.is_empty() {
        bail!("no kernels to check");
    }
    let Some(path) = baseline else {
        return Ok(Plan {
            kernels,
            baseline: None,
        });
    };
    let b = BaselineFile::load(path).map_err(|e| anyhow!(e))?;
    for k in &mut kernels {
        let r = b
            .kernels
            .iter()
            .find(|r| r.kernel == k.spec.name)
            .ok_or_else(|| {
                anyhow!(
                    "{} has no recorded baseline for {}; record it with `nightshift check --record`",
                    path.display(),
                    k.spec.name
                )
            })?;
        if r.config != k.config.to_string() {
            note(&format!(
                "note: {}: the committed configuration is {}; the baseline recorded {} (they are compared all the same)",
                k.spec.name, k.config, r.config
            ));
        }
        k.recorded = Some(r.clone());
    }
    Ok(Plan {
        kernels,
        baseline: Some(b),
    })
}

/// Measures every kernel of the plan on the session's GPU (with the session's seed,
/// which a check takes from the baseline file): recorded into a baseline file
/// stamped with `command`, or judged by the gate under `rules`.
pub fn run(
    sessions: &mut [Session],
    plan: &Plan,
    command: String,
    rules: &Rules,
) -> Result<Checked> {
    let first = sessions.first().ok_or_else(|| anyhow!("no GPU session"))?;
    let device = first.device.name.clone();
    let seed = first.opts.measure.seed;
    if let Some(b) = &plan.baseline {
        b.check_device(&device, rules.force)
            .map_err(|e| anyhow!(e))?;
    }
    // The kernels side by side on the GPUs (one each at a time), kept in the plan's
    // order.
    let work = |s: &mut Session, k: &Kernel| -> Result<Result<Recorded, Decision>> {
        Ok(match &k.recorded {
            None => Ok(record(s, k, seed)?),
            Some(r) => Err(judge(s, k, r, rules, seed)?),
        })
    };
    let mut out: Vec<Option<Result<Recorded, Decision>>> =
        (0..plan.kernels.len()).map(|_| None).collect();
    let items: Vec<&Kernel> = plan.kernels.iter().collect();
    crate::fanout::fan_out(sessions, items, &work, &mut |i, r| {
        out[i] = Some(r);
        Ok(())
    })?;
    let mut records = Vec::new();
    let mut decisions = Vec::new();
    for r in out.into_iter().flatten() {
        match r {
            Ok(rec) => records.push(rec),
            Err(d) => decisions.push(d),
        }
    }
    if plan.baseline.is_some() {
        return Ok(Checked::Judged { device, decisions });
    }
    Ok(Checked::Recorded(BaselineFile {
        version: gate::FILE_VERSION,
        device,
        date: crate::runs::today(),
        command,
        seed,
        kernels: records,
    }))
}

/// Validates and measures a kernel's committed configuration.
fn evaluate(session: &mut Session, k: &Kernel) -> Result<Evaluation> {
    session
        .evaluate(&k.spec, &k.config, true)
        // The worker's error kept as the cause: it exits as infrastructure (3).
        .with_context(|| k.spec.name.clone())
}

/// Measures a kernel for the baseline file (timed as `auto` chooses); one that does
/// not pass validation is an error: nothing is recorded.
fn record(session: &mut Session, k: &Kernel, seed: u64) -> Result<Recorded> {
    session.opts.measure.method = MethodChoice::Auto;
    let e = evaluate(session, k)?;
    if e.outcome != Outcome::Passed {
        bail!(
            "{} {} does not pass validation ({}); nothing recorded",
            k.spec.name,
            k.config,
            e.outcome.describe()
        );
    }
    let samples = e.kept_samples();
    let s = Summary::of(&samples, seed).ok_or_else(|| anyhow!("no samples"))?;
    let method = match e.measurement.as_ref().map(|m| m.method) {
        Some(TimingMethod::Batch { .. }) => "batch",
        _ => "cold",
    };
    Ok(Recorded {
        kernel: k.spec.name.clone(),
        config: k.config.to_string(),
        problem: e.problem.clone(),
        method: method.into(),
        median_us: s.median,
        ci_lo_us: s.ci_lo,
        ci_hi_us: s.ci_hi,
        samples,
    })
}

/// Measures a kernel with the recorded timing method, so both sides are timed alike,
/// and has the gate judge it against `r`; an AMBIGUOUS verdict is measured again (the
/// samples pooled) up to `rules.retries` times. One that no longer passes validation
/// fails whatever its speed.
fn judge(
    session: &mut Session,
    k: &Kernel,
    r: &Recorded,
    rules: &Rules,
    seed: u64,
) -> Result<Decision> {
    session.opts.measure.method = match r.method.as_str() {
        "cold" => MethodChoice::Cold,
        _ => MethodChoice::Batch,
    };
    let mut samples: Vec<f64> = Vec::new();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let e = evaluate(session, k)?;
        if e.outcome != Outcome::Passed {
            return Ok(gate::rejected(r, e.outcome.describe()));
        }
        samples.extend(e.kept_samples());
        let mut d = gate::judge(r, &samples, rules.threshold, seed, attempts);
        // What was measured now; the recorded configuration beside it if it differs.
        if r.config != k.config.to_string() {
            d.config = format!("{} (recorded: {})", k.config, r.config);
        }
        let again = d.verdict == Verdict::Ambiguous && attempts <= rules.retries;
        if !again {
            return Ok(d);
        }
    }
}

/// Writes a recorded baseline file.
pub fn write_baseline(b: &BaselineFile, path: &Path) -> Result<()> {
    let text = serde_json::to_string_pretty(b)?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// What `--record` recorded, a line per kernel, and where.
pub fn render_recorded(b: &BaselineFile, path: &Path) -> String {
    let mut o = String::new();
    for r in &b.kernels {
        o.push_str(&format!(
            "{:<10} {}: {:.2} µs [{:.2}, {:.2}] ({}, {} samples)\n",
            r.kernel,
            r.config,
            r.median_us,
            r.ci_lo_us,
            r.ci_hi_us,
            r.method,
            r.samples.len()
        ));
    }
    o.push_str(&format!("recorded {} on {}\n", path.display(), b.device));
    o
}

/// `check --json`: the device, the baseline file, the threshold, each decision, and
/// whether the check fails.
pub fn json(
    device: &str,
    baseline: &Path,
    threshold: f64,
    decisions: &[Decision],
) -> Result<String> {
    Ok(serde_json::to_string_pretty(&serde_json::json!({
        "device": device, "baseline": baseline, "threshold": threshold,
        "decisions": decisions, "fails": gate::exit_code(decisions) != 0,
    }))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(config: &str) -> Recorded {
        Recorded {
            kernel: "softmax".into(),
            config: config.into(),
            problem: "rows=4096 seq_k=1024".into(),
            method: "cold".into(),
            median_us: 16.5,
            ci_lo_us: 16.25,
            ci_hi_us: 16.75,
            samples: vec![16.25, 16.5, 16.75],
        }
    }

    /// A check's plan without a GPU: the committed configuration, the baseline file's
    /// record for each kernel, a note where they differ, and the texts written.
    #[test]
    fn a_plan_pairs_each_kernel_with_its_record_and_notes_a_different_configuration() {
        let k = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernels/softmax");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.json");
        let mut notes = Vec::new();
        let p = plan(std::slice::from_ref(&k), None, &mut |n| {
            notes.push(n.to_string())
        })
        .unwrap();
        assert!(p.baseline.is_none() && p.kernels[0].recorded.is_none());
        let committed = p.kernels[0].config.to_string();
        let b = BaselineFile {
            version: gate::FILE_VERSION,
            device: "NVIDIA H200".into(),
            date: "2026-01-02".into(),
            command: "nightshift check --record".into(),
            seed: 7,
            kernels: vec![recorded("BLOCK=256 VARIANT=0 VEC=1")],
        };
        write_baseline(&b, &path).unwrap();
        let p = plan(&[k], Some(&path), &mut |n| notes.push(n.to_string())).unwrap();
        assert_eq!(p.baseline.as_ref(), Some(&b));
        assert_eq!(p.kernels[0].recorded.as_ref(), Some(&b.kernels[0]));
        assert_eq!(
            notes,
            [format!("note: softmax: the committed configuration is {committed}; the baseline recorded BLOCK=256 VARIANT=0 VEC=1 (they are compared all the same)")]
        );
        let shown = render_recorded(&b, &path);
        assert_eq!(
            shown,
            format!(
                "softmax    BLOCK=256 VARIANT=0 VEC=1: 16.50 µs [16.25, 16.75] (cold, 3 samples)\nrecorded {} on NVIDIA H200\n",
                path.display()
            )
        );
        let d = gate::rejected(&b.kernels[0], "incorrect".into());
        let j: serde_json::Value =
            serde_json::from_str(&json("NVIDIA H200", &path, 0.05, &[d]).unwrap()).unwrap();
        assert_eq!(j["fails"], true);
        assert_eq!(j["decisions"][0]["outcome"], "incorrect");
    }

    /// A tuned.toml a kept rewrite wrote: its configuration, and the kernel compiled
    /// with the options it was kept with (the spec's own without them).
    #[test]
    fn a_committed_rewrite_is_checked_with_its_nvrtc_options() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernels/softmax");
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("kernels/softmax");
        crate::testutil::copy_dir(&src, &k);
        crate::testutil::copy_dir(&src.join("../include"), &dir.path().join("kernels/include"));
        std::fs::write(
            k.join(tuned::FILE_NAME),
            "rewrites = [\"fast-math:part=all\"]\nnvrtc_options = [\"-std=c++17\", \"--use_fast_math\"]\n[config]\nBLOCK = 256\n",
        )
        .unwrap();
        let p = plan(std::slice::from_ref(&k), None, &mut |_| {}).unwrap();
        let kernel = &p.kernels[0];
        assert_eq!(kernel.config.0["BLOCK"], 256);
        let r = kernel
            .spec
            .rewritten
            .as_ref()
            .expect("compiled with its options");
        assert_eq!(r.options, ["-std=c++17", "--use_fast_math"]);
        assert_eq!(r.source, kernel.spec.source);
        std::fs::write(k.join(tuned::FILE_NAME), "[config]\nBLOCK = 256\n").unwrap();
        let p = plan(&[k], None, &mut |_| {}).unwrap();
        assert!(p.kernels[0].spec.rewritten.is_none());
    }
}
