//! `nightshift report [run-id] [--verify]`: the report files of a run, from its journal.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::{exit, ReportArgs};
use crate::journal;
use crate::report::{self, Report};

/// The files a report writes, under `reports/<run-id>/`.
pub const FILES: [&str; 4] = ["report.md", "report.html", "report.json", "samples.csv"];

/// Builds the report of `run_id` under `reports` and writes its files (each written
/// to a temporary name and renamed, so a crash leaves the previous one whole).
pub fn write(reports: &Path, run_id: &str) -> Result<(Report, Vec<PathBuf>)> {
    let dir = reports.join(run_id);
    let path = dir.join(journal::FILE_NAME);
    let read = journal::read(&path)?;
    if let Some(t) = &read.torn {
        eprintln!("warning: {}: {t}; it is ignored", path.display());
    }
    let state = crate::state::RunState::from_records(&read.records);
    if state.device.as_deref() == Some(crate::dispatch::FAKE_DEVICE) {
        bail!(
            "run {run_id} was driven by a test double, not a GPU: it has no measurement to report"
        );
    }
    let r = report::build(run_id, &state);
    let json = serde_json::to_string_pretty(&r)?;
    let plots = report::plots(&r, &state);
    let names: Vec<String> = plots.iter().map(|p| p.0.clone()).collect();
    let mut files: Vec<(String, String)> = FILES
        .iter()
        .map(|n| n.to_string())
        .zip([
            report::markdown(&r, &names),
            report::html(&r, &plots),
            json,
            report::samples_csv(&state),
        ])
        .collect();
    if !plots.is_empty() {
        std::fs::create_dir_all(dir.join("plots"))?;
    }
    files.extend(plots.into_iter().map(|(n, s)| (format!("plots/{n}"), s)));
    let mut written = Vec::new();
    for (name, text) in files {
        let text = report::stamped(&name, &text);
        let p = dir.join(&name);
        let tmp = dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &p).with_context(|| format!("writing {}", p.display()))?;
        written.push(p);
    }
    Ok((r, written))
}

pub fn run(a: &ReportArgs) -> i32 {
    let id = match a
        .run_id
        .clone()
        .map(Ok)
        .unwrap_or_else(|| crate::runs::latest_run(&a.reports))
    {
        Ok(id) => id,
        Err(e) => {
            eprintln!("error: {e:#}");
            return exit::USAGE;
        }
    };
    if let Err(e) = journal::check_run_id(&id) {
        eprintln!("error: {e}");
        return exit::USAGE;
    }
    let journal_path = a.reports.join(&id).join(journal::FILE_NAME);
    if !journal_path.is_file() {
        eprintln!(
            "error: no run {id}: {} does not exist",
            journal_path.display()
        );
        return exit::USAGE;
    }
    if a.verify {
        return verify(&a.reports, &id);
    }
    match write(&a.reports, &id) {
        Ok((r, files)) => {
            if a.json {
                match serde_json::to_string_pretty(&r) {
                    Ok(t) => println!("{t}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return exit::USAGE;
                    }
                }
            } else {
                for f in files {
                    println!("wrote {}", f.display());
                }
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::USAGE
        }
    }
}

fn verify(reports: &Path, id: &str) -> i32 {
    let go = || -> Result<(usize, Vec<String>)> {
        let dir = reports.join(id);
        let rp = dir.join("report.json");
        let text =
            crate::files::read_text(&rp, crate::files::MAX_JOURNAL_BYTES).with_context(|| {
                format!(
                    "reading {} (write it with `nightshift report {id}`)",
                    rp.display()
                )
            })?;
        let report: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON", rp.display()))?;
        let read = journal::read(&dir.join(journal::FILE_NAME))?;
        let mut n = match report::verify(&report, id, &read.records) {
            Ok(n) => n,
            Err(e) => bail!("{e}"),
        };
        // The pages a person reads, rendered again from the journal.
        let state = crate::state::RunState::from_records(&read.records);
        let r = report::build(id, &state);
        let plots = report::plots(&r, &state);
        let names: Vec<String> = plots.iter().map(|p| p.0.clone()).collect();
        let mut pages = vec!["report.json".to_string()];
        let mut expected = vec![
            ("report.md".to_string(), report::markdown(&r, &names)),
            ("report.html".to_string(), report::html(&r, &plots)),
        ];
        expected.extend(plots.into_iter().map(|(n, s)| (format!("plots/{n}"), s)));
        let mut missing = Vec::new();
        for (name, text) in expected {
            let p = dir.join(&name);
            if !p.is_file() {
                missing.push(name);
                continue;
            }
            let found = crate::files::read_text(&p, crate::files::MAX_JOURNAL_BYTES)
                .with_context(|| format!("reading {}", p.display()))?;
            n += report::verify_page(&name, &found, &report::stamped(&name, &text))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            pages.push(name);
        }
        if !missing.is_empty() {
            pages.push(format!(
                "not written, so not checked: {}",
                missing.join(", ")
            ));
        }
        Ok((n, pages))
    };
    match go() {
        Ok((n, pages)) => {
            println!(
                "verified: {n} figures and lines of reports/{id}/ ({}) and the journal's summaries, recomputed from the raw samples, all equal",
                pages.join(", ")
            );
            exit::OK
        }
        Err(e) => {
            eprintln!("verification failed: {e:#}");
            exit::REJECTED
        }
    }
}

/// `nightshift compare <run-a> <run-b>`.
pub fn compare(a: &super::CompareArgs) -> i32 {
    let load = |id: &str| -> Result<Report> {
        journal::check_run_id(id)?;
        let path = a.reports.join(id).join(journal::FILE_NAME);
        if !path.is_file() {
            bail!("no run {id}: {} does not exist", path.display());
        }
        let read = journal::read(&path)?;
        Ok(report::build(
            id,
            &crate::state::RunState::from_records(&read.records),
        ))
    };
    let (ra, rb) = match (load(&a.run_a), load(&a.run_b)) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e:#}");
            return exit::USAGE;
        }
    };
    match report::compare::compare(&ra, &rb, a.force) {
        Ok(c) => {
            if a.json {
                match serde_json::to_string_pretty(&c) {
                    Ok(t) => println!("{t}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return exit::USAGE;
                    }
                }
            } else {
                print!("{}", report::compare::render(&c));
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::REJECTED
        }
    }
}
