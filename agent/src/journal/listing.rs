//! The runs under `reports/`: their ids, checked, and when each started.

use std::fs::{self, File};
use std::io;
use std::path::Path;

use super::{Record, FILE_NAME};

/// When the run of the journal at `path` started: its first record's time (None when
/// the journal is unreadable, empty, or not a regular file).
pub fn started_ms(path: &Path) -> Option<u64> {
    use std::io::{BufRead, Read};
    if !fs::metadata(path).ok()?.is_file() {
        return None;
    }
    let mut line = String::new();
    io::BufReader::new(File::open(path).ok()?.take(1 << 20))
        .read_line(&mut line)
        .ok()?;
    serde_json::from_str::<Record>(line.trim_end())
        .ok()
        .map(|r| r.t_ms)
}

/// The run ids under `reports` with a journal, the latest started last (by the time
/// in their journals, not by name: a run named `test` is not the latest for that).
pub fn runs_by_start(reports: &Path) -> io::Result<Vec<String>> {
    let mut runs: Vec<(u64, String)> = fs::read_dir(reports)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|id| check_run_id(id).is_ok())
        .filter_map(|id| Some((started_ms(&reports.join(&id).join(FILE_NAME))?, id)))
        .collect();
    runs.sort();
    Ok(runs.into_iter().map(|(_, id)| id).collect())
}

/// Run ids name a directory under `reports/`: one plain path component.
pub fn check_run_id(run_id: &str) -> io::Result<()> {
    let ok = !run_id.is_empty()
        && run_id != "."
        && run_id != ".."
        && run_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{run_id}` is not a run id: use letters, digits, `-`, `_` and `.`"),
        ))
    }
}
