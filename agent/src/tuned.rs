//! What an accepted variant puts in git: `kernels/<k>/tuned.toml` (the configuration,
//! with its evidence in comments) and a commit message whose trailers carry the
//! evidence for tools (`git log --format=%(trailers)`).

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::evaluate::Evaluation;
use crate::rewrite::Change;
use crate::spec::{Candidate, Config, REWRITE_SEPARATOR};
use crate::vcs::{commit_message, Workspace};
use crate::vocab::{AbFigures, Outcome};

/// The file a kernel's tuned configuration is committed to, beside its spec.
pub const FILE_NAME: &str = "tuned.toml";

/// The worst error over every validation check: (max abs, max rel).
fn max_error(e: &Evaluation) -> Option<(f64, f64)> {
    e.checks.iter().fold(None, |acc, c| {
        let (a, r) = acc.unwrap_or((0.0, 0.0));
        Some((a.max(c.stats.max_abs), r.max(c.stats.max_rel)))
    })
}

fn changes(previous: &str, config: &Config) -> String {
    let before: std::collections::BTreeMap<&str, &str> = previous
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let moved: Vec<String> = config
        .0
        .iter()
        .filter_map(|(k, v)| {
            let old = before.get(k.as_str()).copied();
            (old != Some(v.to_string().as_str()))
                .then(|| format!("{k} {}->{v}", old.unwrap_or("?")))
        })
        .collect();
    if moved.is_empty() {
        config.to_string()
    } else {
        moved.join(", ")
    }
}

/// One accepted variant of a kernel, with its evidence.
pub struct Accepted<'a> {
    pub run_id: &'a str,
    pub device: &'a str,
    pub kernel: &'a str,
    /// The kernel's directory relative to the repository root.
    pub rel_dir: &'a Path,
    pub pattern: &'a str,
    /// The candidate it replaces, as displayed.
    pub previous: &'a str,
    pub config: &'a Candidate,
    /// A rewritten kernel: its source file relative to the repository root, its
    /// source, and what the rewrites changed.
    pub rewritten: Option<(PathBuf, &'a str, &'a Change)>,
    pub eval: &'a Evaluation,
    pub ab: Option<AbFigures>,
    /// A proposer's source: who wrote it and what it cost (the
    /// `Nightshift-Proposer` trailer).
    pub proposer: Option<String>,
}

/// The rewrites of `config` that `previous` (a candidate's display) did not have.
fn added_rewrites<'a>(previous: &str, config: &'a Candidate) -> Vec<&'a String> {
    let before: Vec<&str> = previous.split(REWRITE_SEPARATOR).skip(1).collect();
    config
        .rewrites
        .iter()
        .filter(|r| !before.contains(&r.as_str()))
        .collect()
}

/// The files and message of one accepted variant.
pub fn commit_files(a: &Accepted) -> (Vec<(PathBuf, String)>, String) {
    let Accepted {
        run_id,
        device,
        kernel: name,
        rel_dir,
        pattern,
        previous,
        config: candidate,
        ref rewritten,
        eval,
        ab,
        ref proposer,
    } = *a;
    let config = &candidate.config;
    let added = added_rewrites(previous, candidate);
    let err = max_error(eval);
    let samples = eval
        .measurement
        .as_ref()
        .map(|m| m.samples.len())
        .unwrap_or(0);
    let speedup = ab
        .map(|a| {
            format!(
                "{:.4}x (95% CI {:.4}-{:.4}, {} verdict, min gain {})",
                a.speedup,
                a.ci_lo,
                a.ci_hi,
                a.verdict.as_str(),
                a.min_gain
                    .map_or("?".into(), |g| format!("{:.1}%", g * 100.0))
            )
        })
        .unwrap_or_else(|| "not compared".into());
    let mut toml = format!(
        "# The configuration of `{name}` that nightshift proved fastest so far.\n\
         # Run {run_id} on {device}, pattern {pattern}: {speedup} over\n\
         # {previous}, measured interleaved against it.\n"
    );
    if let Some((a, r)) = err {
        toml.push_str(&format!(
            "# Validated at every size of the spec: max abs error {a:.3e}, max rel error {r:.3e}.\n"
        ));
    }
    let mut sets: Vec<String> = config
        .0
        .iter()
        .map(|(k, v)| format!("--set {k}={v}"))
        .collect();
    sets.extend(candidate.rewrites.iter().map(|r| format!("--rewrite {r}")));
    let from = if candidate.rewrites.is_empty() {
        ""
    } else {
        " (from the commit the run started at: the rewrites edit the kernel as written)"
    };
    toml.push_str(&format!(
        "# Measure it again{from}: nightshift bench {} {}\n",
        rel_dir.display(),
        sets.join(" ")
    ));
    if let Some((_, _, change)) = rewritten {
        // What the kernel on this branch is: its source is committed beside this
        // file; its NVRTC options are these (the spec's, as the rewrites left them).
        toml.push_str(&format!("rewrites = {}\n", toml_strings(&change.rewrites)));
        toml.push_str(&format!(
            "nvrtc_options = {}\n",
            toml_strings(&change.options)
        ));
    }
    toml.push_str("[config]\n");
    for (k, v) in &config.0 {
        toml.push_str(&format!("{k} = {v}\n"));
    }
    let what = if added.is_empty() {
        changes(
            previous.split(REWRITE_SEPARATOR).next().unwrap_or(""),
            config,
        )
    } else {
        let r: Vec<&str> = added.iter().map(|r| r.as_str()).collect();
        format!("rewrite {}", r.join(", "))
    };
    let summary = format!(
        "{name}: {what} ({pattern}, {})",
        ab.map(|a| format!("{:.3}x", a.speedup))
            .unwrap_or_else(|| "not compared".into())
    );
    let mut trailers = vec![
        ("Nightshift-Run", run_id.to_string()),
        ("Nightshift-Kernel", name.to_string()),
        ("Nightshift-Config", candidate.to_string()),
        ("Nightshift-Pattern", pattern.to_string()),
        ("Nightshift-Speedup", speedup),
        (
            "Nightshift-Pairs",
            ab.and_then(|a| a.pairs)
                .map_or("?".into(), |p| p.to_string()),
        ),
        ("Nightshift-Samples", samples.to_string()),
        ("Nightshift-Device", device.to_string()),
    ];
    if let Some((a, r)) = err {
        trailers.push(("Nightshift-Max-Error", format!("abs {a:.3e}, rel {r:.3e}")));
    }
    if let Some(m) = eval.median_us() {
        trailers.push(("Nightshift-Median-Us", format!("{m:.3}")));
    }
    for r in &added {
        trailers.push(("Nightshift-Rewrite", format!("{pattern} {r}")));
    }
    if let Some(p) = proposer {
        trailers.push(("Nightshift-Proposer", p.clone()));
    }
    debug_assert_eq!(eval.outcome, Outcome::Passed);
    let mut files = vec![(rel_dir.join(FILE_NAME), toml)];
    if let Some((path, source, change)) = rewritten {
        if !change.diff.is_empty() {
            files.push((path.clone(), source.to_string()));
        }
    }
    (files, commit_message(&summary, &trailers))
}

/// A TOML array of strings.
fn toml_strings(v: &[String]) -> String {
    let items: Vec<String> = v
        .iter()
        .map(|s| toml::Value::String(s.clone()).to_string())
        .collect();
    format!("[{}]", items.join(", "))
}

/// The run's commit of `kernel` at `config`, if git has it.
pub fn find_commit(
    ws: &Workspace,
    run_id: &str,
    kernel: &str,
    config: &str,
) -> Result<Option<String>> {
    let want = [
        format!("Nightshift-Run: {run_id}"),
        format!("Nightshift-Kernel: {kernel}"),
        format!("Nightshift-Config: {config}"),
    ];
    Ok(ws
        .log()?
        .into_iter()
        .find(|(_, msg)| want.iter().all(|w| msg.lines().any(|l| l.trim() == w)))
        .map(|(id, _)| id.to_string()))
}

/// What a `tuned.toml` holds.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tuned {
    pub config: Config,
    /// A rewritten kernel's rewrites (its source is committed beside it).
    #[serde(default)]
    pub rewrites: Vec<String>,
    /// The NVRTC options the kernel was compiled with, when rewrites set them (in
    /// place of the spec's `compile_options`).
    #[serde(default)]
    pub nvrtc_options: Vec<String>,
}

/// Reads a `tuned.toml`.
pub fn read_tuned(text: &str) -> Result<Tuned> {
    Ok(toml::from_str(text)?)
}

/// Reads the `[config]` of a `tuned.toml`.
pub fn read(text: &str) -> Result<Config> {
    Ok(read_tuned(text)?.config)
}
