//! `nightshift space <kernel dir>`: every configuration of a kernel's space that its
//! restrictions allow, each compiled, validated and timed alone with `bench`'s
//! protocols, one after another. Each is appended to `space.jsonl` (synced) as it is
//! measured, so `--resume` continues an interrupted measurement. It is the exhaustive
//! table a search is judged by (`bench/search-efficiency/`): the optimum, and what
//! each configuration cost the GPU to evaluate.
//!
//! The compiles run ahead on the CPU's other cores while the GPU measures; each
//! configuration's compile is timed on its own, and that time is the one recorded (a
//! search that evaluates it pays it).

use std::collections::{BTreeSet, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::evaluate::{compile_all, compile_requests, EvalError, Evaluation, Session};
use crate::measure::TimingMethod;
use crate::spec::space::SearchSpace;
use crate::spec::{Config, KernelSpec};
use crate::vocab::Outcome;

/// The first line of `space.jsonl`: what is measured (a resume must match it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub kernel: String,
    /// The problem, as the evaluations label it.
    pub problem: String,
    /// The tunables, in the spec's order.
    pub tunables: Vec<String>,
    /// Configurations the restrictions allow (all of them are measured).
    pub configurations: usize,
    pub device: String,
    pub command: String,
    pub nightshift: String,
}

/// One configuration as measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub config: Config,
    /// `passed`, `incorrect`, `compile_failed`, `hung`, ...
    pub outcome: String,
    /// Median µs per launch and its 95% interval (passed configurations).
    pub median_us: Option<f64>,
    pub ci_us: Option<(f64, f64)>,
    /// Samples the median rests on, and the timing method.
    pub samples: usize,
    pub method: Option<TimingMethod>,
    /// What evaluating it cost, ms: compiling it alone (cold), validating and
    /// measuring it, and their sum (what a search that picks it pays).
    pub compile_ms: f64,
    pub validate_ms: f64,
    pub measure_ms: f64,
    pub cost_ms: f64,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Line {
    Space(Header),
    Config(Row),
}

/// Every configuration of `spec` that its restrictions allow at its problem, in the
/// space's order.
pub fn configurations(spec: &KernelSpec) -> Vec<Config> {
    SearchSpace::new(spec).valid().collect()
}

/// `space.jsonl` in `out`.
pub fn journal(out: &Path) -> PathBuf {
    out.join("space.jsonl")
}

/// The header and rows of a `space.jsonl` (a last line cut short by a crash is left
/// out: that configuration is measured again).
pub fn read(path: &Path) -> Result<(Header, Vec<Row>)> {
    let mut header = None;
    let mut rows = Vec::new();
    for l in crate::files::read_records::<Line>(path)? {
        match l {
            Line::Space(h) => header = Some(h),
            Line::Config(r) => rows.push(r),
        }
    }
    let header = header.ok_or_else(|| anyhow!("{}: no space header", path.display()))?;
    Ok((header, rows))
}

/// The rows already measured in `out` when `resume` asks to continue; an existing
/// measurement without `resume`, or one of another kernel or problem, is refused.
pub fn resumed(out: &Path, spec: &KernelSpec, resume: bool) -> Result<Vec<Row>> {
    let path = journal(out);
    if !path.exists() {
        return Ok(vec![]);
    }
    if !resume {
        bail!(
            "{} holds a measurement already: --resume continues it, or choose another --out",
            path.display()
        );
    }
    let (h, rows) = read(&path)?;
    let tunables: Vec<String> = spec.tunables.iter().map(|t| t.name.clone()).collect();
    let problem = crate::spec::plan::problem_label(&spec.problem);
    if h.kernel != spec.name || h.tunables != tunables || h.problem != problem {
        bail!(
            "{} measured {} at {} over {}; --resume continues only the same kernel, problem and tunables",
            path.display(),
            h.kernel,
            h.problem,
            h.tunables.join(", ")
        );
    }
    Ok(rows)
}

/// The row of one evaluation, with its cold compile time when one was timed.
pub fn row(e: &Evaluation, cold_compile_ms: Option<f64>) -> Row {
    let s = e.measurement.as_ref().and_then(|m| m.summary);
    let compile_ms = cold_compile_ms.unwrap_or(0.0).max(e.times.compile_ms);
    let reason = (e.outcome != Outcome::Passed).then(|| e.outcome.describe());
    Row {
        config: e.config.clone(),
        outcome: e.outcome.name().into(),
        median_us: s.map(|s| s.median),
        ci_us: s.map(|s| (s.ci_lo, s.ci_hi)),
        samples: s.map_or(0, |s| s.n),
        method: e.measurement.as_ref().map(|m| m.method),
        compile_ms,
        validate_ms: e.times.validate_ms,
        measure_ms: e.times.measure_ms,
        cost_ms: compile_ms + e.times.validate_ms + e.times.measure_ms,
        reason,
    }
}

/// Compiles the configurations ahead of the measurement, `threads` at a time, each
/// timed on its own; the times land in the returned map (by configuration).
fn compile_ahead(
    spec: &KernelSpec,
    todo: Vec<Config>,
    arch: String,
    cache: PathBuf,
    threads: usize,
) -> Arc<Mutex<HashMap<Config, f64>>> {
    let times = Arc::new(Mutex::new(HashMap::new()));
    let out = times.clone();
    let spec = spec.clone();
    std::thread::spawn(move || {
        for chunk in todo.chunks(threads.max(1)) {
            std::thread::scope(|s| {
                for c in chunk {
                    let (spec, arch, cache, out) = (&spec, &arch, &cache, &out);
                    s.spawn(move || {
                        let start = Instant::now();
                        let req = compile_requests(spec, c, arch).0;
                        let _ = compile_all(&[req], cache);
                        let ms = start.elapsed().as_secs_f64() * 1e3;
                        if let Ok(mut m) = out.lock() {
                            m.insert(c.clone(), ms);
                        }
                    });
                }
            });
        }
    });
    times
}

/// What one measured configuration tells the caller's progress line.
pub struct Progress<'a> {
    pub n: usize,
    pub total: usize,
    pub row: &'a Row,
}

/// Measures every configuration of `spec` not in `done`, appending each row to
/// `space.jsonl` in `out`; returns every row, `done`'s first. `Err` is the GPU
/// infrastructure failing or the file not written (what was measured is kept).
pub fn measure(
    session: &mut Session,
    spec: &KernelSpec,
    out: &Path,
    done: Vec<Row>,
    command: String,
    on_row: &mut dyn FnMut(Progress),
) -> Result<Vec<Row>> {
    let all = configurations(spec);
    let measured: BTreeSet<Config> = done.iter().map(|r| r.config.clone()).collect();
    let todo: Vec<Config> = all
        .iter()
        .filter(|c| !measured.contains(*c))
        .cloned()
        .collect();
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let path = journal(out);
    let new = !path.exists();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut append = |l: &Line| -> Result<()> {
        let mut text = serde_json::to_string(l)?;
        text.push('\n');
        file.write_all(text.as_bytes())
            .and_then(|_| file.sync_data())
            .with_context(|| format!("writing {}", path.display()))
    };
    if new {
        append(&Line::Space(Header {
            kernel: spec.name.clone(),
            problem: crate::spec::plan::problem_label(&spec.problem),
            tunables: spec.tunables.iter().map(|t| t.name.clone()).collect(),
            configurations: all.len(),
            device: session.device.name.clone(),
            command,
            nightshift: env!("CARGO_PKG_VERSION").into(),
        }))?;
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get().saturating_sub(1))
        .unwrap_or(1)
        .max(1);
    let cold = compile_ahead(
        spec,
        todo.clone(),
        session.device.arch.clone(),
        session.opts.cache_dir.clone(),
        threads,
    );
    let mut rows = done;
    let total = all.len();
    for c in todo {
        let e = session
            .evaluate(spec, &c, true)
            .map_err(|e: EvalError| anyhow!(e))?;
        let ms = cold.lock().ok().and_then(|m| m.get(&c).copied());
        let r = row(&e, ms);
        append(&Line::Config(r.clone()))?;
        rows.push(r);
        on_row(Progress {
            n: rows.len(),
            total,
            row: rows.last().expect("pushed"),
        });
    }
    Ok(rows)
}

/// The summary of a measured space: its optimum, how many configurations passed, and
/// what measuring all of them cost.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub kernel: String,
    pub configurations: usize,
    pub passed: usize,
    pub best: Option<Row>,
    /// The spec's baseline as measured, and the optimum's speedup over it.
    pub baseline_us: Option<f64>,
    pub best_speedup: Option<f64>,
    /// Configurations within 1% and 3% of the optimum's median.
    pub within_1pct: usize,
    pub within_3pct: usize,
    /// GPU seconds the whole space costs to evaluate (compile, validate, measure).
    pub exhaustive_gpu_s: f64,
}

pub fn summarize(spec: &KernelSpec, rows: &[Row]) -> Summary {
    let passed: Vec<&Row> = rows.iter().filter(|r| r.median_us.is_some()).collect();
    let best = passed
        .iter()
        .min_by(|a, b| a.median_us.partial_cmp(&b.median_us).expect("finite"))
        .map(|r| (*r).clone());
    let opt = best.as_ref().and_then(|b| b.median_us);
    let within = |f: f64| {
        opt.map_or(0, |o| {
            passed
                .iter()
                .filter(|r| r.median_us.is_some_and(|m| m <= o * f))
                .count()
        })
    };
    let base = spec.baseline();
    let baseline_us = rows
        .iter()
        .find(|r| r.config == base)
        .and_then(|r| r.median_us);
    Summary {
        kernel: spec.name.clone(),
        configurations: rows.len(),
        passed: passed.len(),
        best_speedup: baseline_us.zip(opt).map(|(b, o)| b / o),
        best,
        baseline_us,
        within_1pct: within(1.01),
        within_3pct: within(1.03),
        exhaustive_gpu_s: rows.iter().map(|r| r.cost_ms).sum::<f64>() / 1e3,
    }
}

impl Summary {
    /// Lines for a person.
    pub fn render(&self) -> String {
        let mut s = format!(
            "{}: {} configurations measured, {} passed; the whole space cost {:.1} GPU-seconds\n",
            self.kernel, self.configurations, self.passed, self.exhaustive_gpu_s
        );
        match (&self.best, self.best.as_ref().and_then(|b| b.median_us)) {
            (Some(b), Some(m)) => {
                let (lo, hi) = b.ci_us.unwrap_or((m, m));
                s.push_str(&format!(
                    "optimum: {} at {m:.2} µs [{lo:.2}, {hi:.2}]",
                    b.config
                ));
                if let (Some(base), Some(x)) = (self.baseline_us, self.best_speedup) {
                    s.push_str(&format!(" ({x:.2}x the baseline's {base:.2} µs)"));
                }
                s.push_str(&format!(
                    "\nwithin 1% of it: {} configurations; within 3%: {}\n",
                    self.within_1pct, self.within_3pct
                ));
            }
            _ => s.push_str("no configuration passed\n"),
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The benchmark's own kernel: its space is the one the restrictions allow.
    fn spec() -> KernelSpec {
        KernelSpec::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../kernels/conv2d"
        )))
        .unwrap()
    }

    fn passed(config: &Config, median: f64, cost_ms: f64) -> Row {
        Row {
            config: config.clone(),
            outcome: "passed".into(),
            median_us: Some(median),
            ci_us: Some((median * 0.99, median * 1.01)),
            samples: 20,
            method: Some(TimingMethod::Cold),
            compile_ms: cost_ms / 2.0,
            validate_ms: cost_ms / 4.0,
            measure_ms: cost_ms / 4.0,
            cost_ms,
            reason: None,
        }
    }

    #[test]
    fn the_space_is_every_configuration_the_restrictions_allow() {
        let s = spec();
        let all = configurations(&s);
        // The restrictions, written out again.
        let allowed = |c: &Config| {
            let v = |k: &str| c.0[k];
            let threads = v("BX") * v("BY");
            let smem = (v("BX") * v("TX") + 6 + v("PAD")) * (v("BY") * v("TY") + 6) * 4;
            (32..=512).contains(&threads)
                && (v("SHMEM") == 1 || v("PAD") == 0)
                && (v("SHMEM") == 0 || smem <= 49152)
        };
        let every: Vec<Config> = SearchSpace::new(&s).iter().filter(allowed).collect();
        assert_eq!(all, every);
        assert!((200..1000).contains(&all.len()), "{}", all.len());
        assert!(all.contains(&s.baseline()));
    }

    #[test]
    fn the_summary_finds_the_optimum_and_what_the_space_cost() {
        let s = spec();
        let all: Vec<Config> = configurations(&s).into_iter().take(8).collect();
        let mut rows: Vec<Row> = all
            .iter()
            .enumerate()
            .map(|(i, c)| passed(c, 100.0 - i as f64, 1000.0))
            .collect();
        rows[0].outcome = "incorrect".into();
        rows[0].median_us = None;
        let sum = summarize(&s, &rows);
        assert_eq!(sum.passed, 7);
        assert_eq!(sum.best.as_ref().unwrap().config, all[7]);
        assert_eq!(sum.best.as_ref().unwrap().median_us, Some(93.0));
        // 93 x 1.03 = 95.79: 93, 94 and 95.
        assert_eq!(sum.within_3pct, 3);
        assert_eq!(sum.within_1pct, 1);
        assert!((sum.exhaustive_gpu_s - 8.0).abs() < 1e-9);
        // The baseline is not among these rows: no speedup is claimed.
        assert_eq!(sum.baseline_us, None);
        assert_eq!(sum.best_speedup, None);
        let shown = sum.render();
        assert!(shown.contains(&format!("optimum: {}", all[7])), "{shown}");
        let mut with_base = rows.clone();
        with_base.push(passed(&s.baseline(), 186.0, 1000.0));
        let sum = summarize(&s, &with_base);
        assert_eq!(sum.best_speedup, Some(2.0));
    }

    #[test]
    fn a_cut_last_line_is_measured_again_and_another_kernel_is_refused() {
        let s = spec();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        let h = Header {
            kernel: s.name.clone(),
            problem: crate::spec::plan::problem_label(&s.problem),
            tunables: s.tunables.iter().map(|t| t.name.clone()).collect(),
            configurations: 8,
            device: "test".into(),
            command: "nightshift space".into(),
            nightshift: "0".into(),
        };
        let all = configurations(&s);
        let mut text = serde_json::to_string(&Line::Space(h.clone())).unwrap() + "\n";
        text += &(serde_json::to_string(&Line::Config(passed(&all[0], 10.0, 5.0))).unwrap() + "\n");
        text += "{\"kind\":\"config\",\"config\":{\"BX";
        std::fs::write(journal(out), &text).unwrap();
        let rows = resumed(out, &s, true).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].config, all[0]);
        let err = resumed(out, &s, false).unwrap_err().to_string();
        assert!(err.contains("--resume"), "{err}");
        let mut other = s.clone();
        other.name = "other".into();
        let err = resumed(out, &other, true).unwrap_err().to_string();
        assert!(err.contains("only the same kernel"), "{err}");
        // A bad line before the last is an error with its line number.
        let bad = text.replace("\"kind\":\"config\"", "\"kind\":\"nonsense\"");
        std::fs::write(journal(out), bad + "\n{}\n").unwrap();
        let err = resumed(out, &s, true).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }
}
