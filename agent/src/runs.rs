//! The runs under `reports/`: their ids, the lock a live run holds, which ones stopped
//! without finishing (resumable), which started last, and how their time reads
//! (today's date too, which sweeps and baseline files are stamped with).
//! `run`, `status`, `report` and `compare` all find runs here.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};

use crate::journal;
use crate::state::RunState;

/// A run id from the UTC time: `YYYYMMDD-HHMMSS`.
pub fn new_run_id() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Today's date (UTC), `YYYY-MM-DD`: the date a sweep's thresholds and a check's
/// baseline file are stamped with.
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The lock of a run in progress: `reports/<run-id>/lock`, holding the pid.
pub fn lock_path(reports: &Path, run_id: &str) -> PathBuf {
    reports.join(run_id).join("lock")
}

/// The pid of the live process holding the run, if any.
pub fn running_pid(reports: &Path, run_id: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(lock_path(reports, run_id))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let alive = String::from_utf8_lossy(&cmdline).contains("nightshift");
    (alive && pid != std::process::id()).then_some(pid)
}

/// Runs with a journal but no `RunFinished`, and no live process: crashed or killed.
/// They are in the order they started, the latest last.
pub fn unfinished_runs(reports: &Path) -> Vec<String> {
    let Ok(ids) = journal::runs_by_start(reports) else {
        return vec![];
    };
    ids.into_iter()
        .filter(|id| running_pid(reports, id).is_none())
        .filter(|id| {
            // Resumable: started (a RunStarted record), not finished.
            journal::read(&reports.join(id).join(journal::FILE_NAME))
                .map(|r| {
                    let r = RunState::from_records(&r.records);
                    r.finished.is_none() && r.run_id.is_some()
                })
                .unwrap_or(false)
        })
        .collect()
}

/// The run that started last under `reports` (by its journal, not its name).
pub fn latest_run(reports: &Path) -> Result<String> {
    journal::runs_by_start(reports)
        .map_err(|e| anyhow!("cannot read {}: {e}", reports.display()))?
        .pop()
        .ok_or_else(|| anyhow!("no runs under {}", reports.display()))
}

/// `3 min 12 s`, `2 h 05 min`, `41 s`.
pub fn human_duration(s: f64) -> String {
    let t = s.max(0.0).round() as u64;
    if t < 60 {
        format!("{t} s")
    } else if t < 3600 {
        format!("{} min {} s", t / 60, t % 60)
    } else {
        format!("{} h {:02} min", t / 3600, t % 3600 / 60)
    }
}
