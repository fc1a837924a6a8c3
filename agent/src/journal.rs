//! The run journal, `reports/<run-id>/journal.jsonl`: everything a run did, one JSON
//! record per line, appended and fsynced one record at a time. It is the only source
//! for reports, `status` and resume, so a record that [`Journal::append`] returned
//! for survives kill -9 and power loss, and a record cut short by a crash is
//! reported and dropped rather than making the whole journal unreadable.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::budget::{Breakdown, Budgets, Charge, Remaining, Spend, StopReason};
use crate::evaluate::Evaluation;
use crate::measure::Verdict;
use crate::patterns::Prediction;
use crate::study::StudyResult;

/// The journal's file name inside its run directory.
pub const FILE_NAME: &str = "journal.jsonl";

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// 0 for the first record, then one more for each: a gap means lost records.
    pub seq: u64,
    /// When it was appended, in milliseconds since the Unix epoch.
    pub t_ms: u64,
    pub event: Event,
}

/// What happened. Free-form payloads are JSON values where their final shape
/// belongs to another stage (the evaluation record, the budgets as parsed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// The first record of a run.
    RunStarted {
        run_id: String,
        /// The GPU's model name.
        device: String,
        /// The budgets the run was started with.
        budgets: Typed<Budgets>,
        /// The run's own branch (`nightshift/<run-id>`), once there is one.
        #[serde(default)]
        git_branch: Option<String>,
        /// The kernels the run was given, in order: a resume tunes these and no
        /// others. (Empty in journals written before kernel lists were recorded.)
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        kernels: Vec<RunKernel>,
        /// The options the run was started with: a resume measures with these.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        options: Option<RunOptions>,
    },
    /// The machine a process of the run measured on: the device as the driver
    /// reports it (`DeviceInfo`) and its measured ceilings (`Ceilings`). Written by
    /// each process of the run (a resumed run writes its own).
    Machine {
        device: Value,
        ceilings: Value,
        /// The measurement options (`MeasureOpts`: stop rule, seed of the bootstrap),
        /// so every interval can be recomputed from the raw samples.
        #[serde(default)]
        measure: Value,
        /// The nightshift version that measured.
        nightshift: String,
    },
    /// The run was picked up again after it stopped or crashed.
    Resumed {
        device: String,
        /// What was dropped from the end of the journal, if a crash cut a record
        /// short.
        #[serde(default)]
        dropped: Option<String>,
        /// Seconds from the journal's last record to this resume: the daemon was
        /// not running (the machine may still have been billed). The wall limit
        /// counts them; GPU-hours and dollars do not.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "opt_nonfinite"
        )]
        down_s: Option<f64>,
        /// What this resume changed against the run's recorded kernels, options or
        /// specs, accepted with `--force`, one line each.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        forced: Vec<String>,
        /// The kernels from here on, when `--force` changed them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kernels: Option<Vec<RunKernel>>,
        /// The options from here on, when `--force` changed them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        options: Option<RunOptions>,
        /// The budgets from here on, when flags changed them.
        #[serde(default, skip_serializing_if = "Typed::is_null")]
        budgets: Typed<Budgets>,
    },
    /// A pattern proposed candidates for a kernel.
    Proposal {
        kernel: String,
        pattern: String,
        /// What the pattern expects and why, in its own words.
        prediction: String,
        /// The same as a number and a note (None in journals written before it was
        /// recorded: the report then reads the number from the words).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        predicted: Option<Prediction>,
        /// Candidate configurations, as `Config`'s display.
        configs: Vec<String>,
    },
    /// One candidate was compiled, validated and (if correct) measured.
    Evaluated {
        kernel: String,
        config: String,
        #[serde(default)]
        pattern: Option<String>,
        /// `passed`, `incorrect`, `hung`, ...
        outcome: String,
        #[serde(default, with = "opt_nonfinite")]
        median_us: Option<f64>,
        /// The full evaluation record.
        #[serde(default)]
        evaluation: Typed<Evaluation>,
    },
    /// An interleaved A/B comparison of a candidate against the current best.
    Verdict {
        kernel: String,
        config: String,
        baseline: String,
        verdict: Verdict,
        #[serde(with = "crate::nonfinite")]
        speedup: f64,
        #[serde(with = "crate::nonfinite")]
        ci_lo: f64,
        #[serde(with = "crate::nonfinite")]
        ci_hi: f64,
        /// Interleaved A/B pairs the verdict rests on.
        #[serde(default)]
        pairs: Option<usize>,
        /// The gain the interval had to clear for FAST.
        #[serde(default, with = "opt_nonfinite")]
        min_gain: Option<f64>,
        /// The evaluation record of the current best as re-measured in this
        /// comparison (its raw samples sit beside the candidate's).
        #[serde(default, skip_serializing_if = "Typed::is_null")]
        against: Typed<Evaluation>,
    },
    /// A winner was committed on the run's branch.
    Commit {
        kernel: String,
        config: String,
        sha: String,
    },
    /// A candidate's change was undone (it was not better, or not correct).
    Revert {
        kernel: String,
        config: String,
        reason: String,
    },
    /// The loop gave up on a pattern for a kernel.
    Pivot {
        kernel: String,
        pattern: String,
        reason: String,
    },
    /// At the end of a kernel whose best moved: the best configuration measured
    /// interleaved with the baseline, so the gain of the whole run has one interval
    /// (the product of the steps' point estimates has none).
    FinalComparison {
        kernel: String,
        baseline: String,
        best: String,
        /// None (`not_compared` on disk) when one side failed: then the numbers are
        /// NaN.
        #[serde(with = "final_verdict")]
        verdict: Option<Verdict>,
        #[serde(with = "crate::nonfinite")]
        speedup: f64,
        #[serde(with = "crate::nonfinite")]
        ci_lo: f64,
        #[serde(with = "crate::nonfinite")]
        ci_hi: f64,
        #[serde(default)]
        pairs: Option<usize>,
        #[serde(default)]
        baseline_evaluation: Typed<Evaluation>,
        #[serde(default)]
        best_evaluation: Typed<Evaluation>,
    },
    /// The loop has nothing more to do for a kernel.
    KernelDone { kernel: String, reason: String },
    /// A kernel spent its share of the budget while others wait; it resumes later.
    KernelPaused { kernel: String, reason: String },
    /// One measurement of a study: `config` with the workload axes x `scale`.
    StudyPoint {
        kernel: String,
        pattern: String,
        config: String,
        scale: i64,
        problem: String,
        outcome: String,
        #[serde(default, with = "opt_nonfinite")]
        median_us: Option<f64>,
        evaluation: Typed<Evaluation>,
    },
    /// A study's conclusion, from its points (`result` is a `StudyResult`).
    Study {
        kernel: String,
        pattern: String,
        config: String,
        /// Why it measured fewer scales than asked, if it did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cut_short: Option<String>,
        result: Typed<StudyResult>,
    },
    /// GPU time spent, as charged to the ledger: replaying these rebuilds it.
    Charge(Charge),
    /// A snapshot of the ledger, for reports and `status`. It always equals the
    /// sum of the `charge` records before it (a resumed run rebuilds its ledger from
    /// them before it decides anything).
    Budget {
        spent: Spend,
        #[serde(default)]
        remaining: Option<Remaining>,
        /// By stage, kernel and pattern.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        breakdown: Option<Breakdown>,
    },
    /// The last record of a run that stopped cleanly.
    RunFinished {
        /// For a person.
        reason: String,
        /// For a program, when the run stopped on a limit, a signal or nothing left.
        #[serde(default)]
        stop: Option<StopReason>,
    },
}

/// A kernel of a run, as the run was given it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunKernel {
    /// The spec's name.
    pub name: String,
    /// Its directory relative to the repository root (`/`-separated).
    pub dir: String,
    /// [`crate::spec::KernelSpec::content_hash`] of the spec as it was when the run
    /// started.
    pub hash: String,
}

/// The measurement and search options of a run, as it was started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunOptions {
    #[serde(with = "crate::nonfinite")]
    pub min_gain: f64,
    /// Longest sampling of one pair, seconds.
    #[serde(with = "crate::nonfinite")]
    pub max_time_s: f64,
    #[serde(with = "crate::nonfinite")]
    pub target_noise: f64,
    #[serde(with = "crate::nonfinite")]
    pub energy_ms: f64,
    /// The CUDA device ordinal.
    pub gpu: usize,
    /// The pattern library's directory, as given.
    pub patterns: String,
    /// A digest of its files' names and contents.
    pub patterns_hash: String,
}

/// An append-only journal file open for writing.
#[derive(Debug)]
pub struct Journal {
    file: File,
    path: PathBuf,
    next_seq: u64,
    /// Bytes of whole records in the file: where a failed write is cut back to.
    len: u64,
    /// Set when a failed write could not be cut back: appending after a partial
    /// line would corrupt the middle of the journal, so nothing more is written.
    broken: bool,
}

impl Journal {
    /// Starts the journal of a new run at `<reports_dir>/<run_id>/journal.jsonl`,
    /// creating the directories. Fails if that journal already exists: a run that
    /// exists is resumed with [`Journal::open_append`], never overwritten.
    pub fn create(reports_dir: &Path, run_id: &str) -> io::Result<Journal> {
        check_run_id(run_id)?;
        let dir = reports_dir.join(run_id);
        fs::create_dir_all(&dir).map_err(|e| with_path(e, "create run directory", &dir))?;
        let path = dir.join(FILE_NAME);
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    io::Error::new(
                        e.kind(),
                        format!(
                            "create journal {}: a journal already exists there (resume the run instead)",
                            path.display()
                        ),
                    )
                } else {
                    with_path(e, "create journal", &path)
                }
            })?;
        // The new file's directory entry must survive a power cut too.
        sync_dir(&dir).map_err(|e| with_path(e, "sync run directory", &dir))?;
        Ok(Journal {
            file,
            path,
            next_seq: 0,
            len: 0,
            broken: false,
        })
    }

    /// Opens an existing journal to resume its run. A last record cut short by a
    /// crash is cut off the file (and reported in the returned read) so that the
    /// file stays one record per line; numbering continues after the last record.
    pub fn open_append(path: &Path) -> Result<(Journal, JournalRead), JournalError> {
        let read = read(path)?;
        let io_err = |action: &'static str| {
            move |source| JournalError::Io {
                action,
                path: path.to_path_buf(),
                source,
            }
        };
        let mut file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io_err("open journal"))?;
        if let Some(torn) = &read.torn {
            file.set_len(torn.offset)
                .and_then(|()| file.sync_data())
                .map_err(io_err("cut the torn last record off journal"))?;
        }
        if read.needs_newline {
            file.write_all(b"\n")
                .and_then(|()| file.sync_data())
                .map_err(io_err("end the last line of journal"))?;
        }
        let len = file
            .metadata()
            .map_err(io_err("read the length of journal"))?
            .len();
        let journal = Journal {
            file,
            path: path.to_path_buf(),
            next_seq: read.records.last().map_or(0, |r| r.seq + 1),
            len,
            broken: false,
        };
        Ok((journal, read))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `seq` the next record will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Appends `event` stamped with the current time; returns its `seq` once the
    /// record is on disk.
    pub fn append(&mut self, event: &Event) -> io::Result<u64> {
        let t_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.append_at(event, t_ms)
    }

    /// Appends `event` stamped `t_ms` (for replays and tests that need fixed
    /// times); returns its `seq` once the record is on disk.
    ///
    /// The line goes out in one write and is then fsynced (`sync_data`), so the
    /// file holds either the whole record or, after a crash mid-write, a cut-short
    /// last line that [`read`] tolerates and [`Journal::open_append`] removes.
    pub fn append_at(&mut self, event: &Event, t_ms: u64) -> io::Result<u64> {
        if self.broken {
            return Err(io::Error::other(format!(
                "append to journal {}: an earlier write failed and could not be undone",
                self.path.display()
            )));
        }
        #[derive(Serialize)]
        struct RecordRef<'a> {
            seq: u64,
            t_ms: u64,
            event: &'a Event,
        }
        let seq = self.next_seq;
        let mut line = serde_json::to_vec(&RecordRef { seq, t_ms, event }).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "encode record {seq} for journal {}: {e}",
                    self.path.display()
                ),
            )
        })?;
        line.push(b'\n');
        let written = self
            .file
            .write_all(&line)
            .and_then(|()| self.file.flush())
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Cut any partial line back off, so the next record starts a line.
            if self
                .file
                .set_len(self.len)
                .and_then(|()| self.file.sync_data())
                .is_err()
            {
                self.broken = true;
            }
            return Err(with_path(e, "append to journal", &self.path));
        }
        self.len += line.len() as u64;
        self.next_seq += 1;
        Ok(seq)
    }
}

/// A journal as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalRead {
    pub records: Vec<Record>,
    /// A last line that is not a whole record: a crash while it was being written.
    pub torn: Option<TornTail>,
    /// The last record is whole but its newline was never written.
    needs_newline: bool,
}

/// The unreadable last line of a journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// 1-based line number.
    pub line: usize,
    /// Byte offset where it starts: the journal's whole records end here.
    pub offset: u64,
    /// Its length in bytes.
    pub bytes: u64,
    /// Why it does not parse.
    pub error: String,
}

impl std::fmt::Display for TornTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {}: the last record was cut short ({} bytes, not a whole record: {})",
            self.line, self.bytes, self.error
        )
    }
}

/// A journal that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A line before the last is not a record: this is not crash damage.
    #[error("{}:{line}: not a journal record: {message}", path.display())]
    Corrupt {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// Records missing, repeated or out of order.
    #[error("{}:{line}: record seq {found} where {expected} was expected (records lost or out of order)", path.display())]
    Sequence {
        path: PathBuf,
        line: usize,
        expected: u64,
        found: u64,
    },
}

/// Reads a whole journal. Every line must be a record, numbered 0, 1, 2, ...;
/// the last line alone may be cut short or garbled (a crash mid-write), and is
/// then returned apart as [`JournalRead::torn`] instead of failing the read.
pub fn read(path: &Path) -> Result<JournalRead, JournalError> {
    let bytes =
        crate::files::read_bytes(path, crate::files::MAX_JOURNAL_BYTES).map_err(|source| {
            JournalError::Io {
                action: "read journal",
                path: path.to_path_buf(),
                source,
            }
        })?;
    parse(&bytes, path)
}

/// [`read`] on bytes already in memory; `path` names the file in errors.
pub fn parse(bytes: &[u8], path: &Path) -> Result<JournalRead, JournalError> {
    let mut out = JournalRead {
        records: Vec::new(),
        torn: None,
        needs_newline: false,
    };
    let mut pos = 0;
    let mut line = 0;
    while pos < bytes.len() {
        line += 1;
        let (end, next) = match bytes[pos..].iter().position(|b| *b == b'\n') {
            Some(i) => (pos + i, pos + i + 1),
            None => (bytes.len(), bytes.len()),
        };
        let is_last = next >= bytes.len();
        match serde_json::from_slice::<Record>(&bytes[pos..end]) {
            Ok(r) => {
                if let Some(m) = bad_timing(&r.event) {
                    return Err(JournalError::Corrupt {
                        path: path.to_path_buf(),
                        line,
                        message: m,
                    });
                }
                let expected = out.records.last().map_or(0, |p| p.seq + 1);
                if r.seq != expected {
                    return Err(JournalError::Sequence {
                        path: path.to_path_buf(),
                        line,
                        expected,
                        found: r.seq,
                    });
                }
                out.records.push(r);
                out.needs_newline = end == bytes.len();
            }
            Err(e) if is_last => {
                out.torn = Some(TornTail {
                    line,
                    offset: pos as u64,
                    bytes: (bytes.len() - pos) as u64,
                    error: e.to_string(),
                });
            }
            Err(e) => {
                return Err(JournalError::Corrupt {
                    path: path.to_path_buf(),
                    line,
                    message: e.to_string(),
                });
            }
        }
        pos = next;
    }
    Ok(out)
}

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

/// A timing in a record that is not a time (non-positive or not finite): a journal
/// that says a kernel took -16.58 µs is wrong, not a result to report.
fn bad_timing(e: &Event) -> Option<String> {
    let time = |what: &str, x: f64| -> Option<String> {
        (!(x.is_finite() && x > 0.0)).then(|| format!("{what} {x} µs is not a time"))
    };
    let eval = |v: &Typed<Evaluation>| -> Option<String> {
        match v {
            Typed::Read(e) => {
                let m = e.measurement.as_ref()?;
                if let Some(e) = m
                    .summary
                    .as_ref()
                    .and_then(|s| time("a median of", s.median))
                {
                    return Some(e);
                }
                m.samples.iter().find_map(|s| time("a sample of", s.us))
            }
            // Not an evaluation this version reads: its timings are checked all the same.
            Typed::Unreadable(v) => {
                let m = v.get("measurement")?;
                if let Some(x) = m.pointer("/summary/median").and_then(Value::as_f64) {
                    if let Some(e) = time("a median of", x) {
                        return Some(e);
                    }
                }
                m.get("samples")?
                    .as_array()?
                    .iter()
                    .filter_map(|s| s.get("us").and_then(Value::as_f64))
                    .find_map(|x| time("a sample of", x))
            }
            Typed::Unread => None,
        }
    };
    match e {
        Event::Evaluated {
            median_us,
            evaluation,
            ..
        }
        | Event::StudyPoint {
            median_us,
            evaluation,
            ..
        } => median_us
            .and_then(|x| time("a median of", x))
            .or_else(|| eval(evaluation)),
        Event::Verdict { against, .. } => eval(against),
        Event::FinalComparison {
            baseline_evaluation,
            best_evaluation,
            ..
        } => eval(baseline_evaluation).or_else(|| eval(best_evaluation)),
        _ => None,
    }
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

fn with_path(e: io::Error, action: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{action} {}: {e}", path.display()))
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    // Directories cannot be opened as files here; their entries are durable
    // with the file's own sync.
    Ok(())
}

/// [`crate::nonfinite`] for an optional value.
/// A payload typed as this version reads it, or kept as it was written when this
/// version cannot read it (a record of another version): the journal still reads,
/// and whatever the payload would have answered is measured again.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Typed<T> {
    /// Boxed: an evaluation is large beside the other records.
    Read(Box<T>),
    /// As written (`null` when absent).
    #[default]
    Unread,
    Unreadable(Value),
}

impl<T> Typed<T> {
    /// The payload, when this version reads it.
    pub fn get(&self) -> Option<&T> {
        match self {
            Typed::Read(t) => Some(&**t),
            _ => None,
        }
    }

    /// Absent (`null` on disk).
    pub fn is_null(&self) -> bool {
        matches!(self, Typed::Unread)
    }
}

impl<T> From<T> for Typed<T> {
    fn from(t: T) -> Self {
        Typed::Read(Box::new(t))
    }
}

impl<T: Serialize> Serialize for Typed<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Typed::Read(t) => t.serialize(s),
            Typed::Unread => s.serialize_unit(),
            Typed::Unreadable(v) => v.serialize(s),
        }
    }
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Typed<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        if v.is_null() {
            return Ok(Typed::Unread);
        }
        Ok(match T::deserialize(&v) {
            Ok(t) => Typed::Read(Box::new(t)),
            Err(_) => Typed::Unreadable(v),
        })
    }
}

/// A final comparison's verdict as the journal writes it.
pub fn final_verdict_name(v: Option<Verdict>) -> &'static str {
    v.map_or("not_compared", Verdict::as_str)
}

/// A final comparison's verdict on disk: `FAST`, `SLOW`, `SAME`, `AMBIGUOUS`, or
/// `not_compared` when one side failed.
mod final_verdict {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::measure::Verdict;

    const NOT_COMPARED: &str = "not_compared";

    pub fn serialize<S: Serializer>(v: &Option<Verdict>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => v.serialize(s),
            None => s.serialize_str(NOT_COMPARED),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Verdict>, D::Error> {
        let text = String::deserialize(d)?;
        if text == NOT_COMPARED {
            return Ok(None);
        }
        serde_json::from_value(serde_json::Value::String(text))
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

mod opt_nonfinite {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct F(#[serde(with = "crate::nonfinite")] f64);

    pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        v.map(F).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Ok(Option::<F>::deserialize(d)?.map(|f| f.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::json;

    use crate::budget::{Limit, Stage};

    fn charge(kernel: &str, config: &str, stage: Stage, s: f64) -> Charge {
        Charge {
            kernel: Some(kernel.to_string()),
            pattern: Some("vectorize".to_string()),
            config: Some(config.to_string()),
            stage,
            gpu_s: s,
            wall_s: s,
        }
    }

    /// One event of every kind, with the non-finite numbers JSON cannot hold.
    fn every_event() -> Vec<Event> {
        vec![
            Event::RunStarted {
                run_id: "r1".into(),
                device: "NVIDIA H100 80GB HBM3".into(),
                budgets: Typed::Unreadable(json!({"run": {"wall_s": 28800.0}})),
                git_branch: Some("nightshift/r1".into()),
                kernels: vec![RunKernel {
                    name: "softmax".into(),
                    dir: "kernels/softmax".into(),
                    hash: "0123456789abcdef".into(),
                }],
                options: Some(RunOptions {
                    min_gain: 0.02,
                    max_time_s: 3.0,
                    target_noise: 0.005,
                    energy_ms: 200.0,
                    gpu: 0,
                    patterns: "patterns".into(),
                    patterns_hash: "fedcba9876543210".into(),
                }),
            },
            Event::Resumed {
                device: "NVIDIA H100 80GB HBM3".into(),
                dropped: Some("line 9: cut short".into()),
                down_s: Some(192.5),
                forced: vec!["--min-gain 0.05: the run measures with 0.02".into()],
                kernels: None,
                options: None,
                budgets: Typed::Unreadable(json!({"run": {"wall_s": 3600.0}})),
            },
            Event::Proposal {
                kernel: "softmax".into(),
                pattern: "vectorize".into(),
                prediction: "memory-bound at 60% of DRAM: wider loads, +10%".into(),
                predicted: None,
                configs: vec!["BLOCK=128 VEC=2".into(), "BLOCK=128 VEC=4".into()],
            },
            Event::Evaluated {
                kernel: "softmax".into(),
                config: "BLOCK=128 VEC=2".into(),
                pattern: Some("vectorize".into()),
                outcome: "passed".into(),
                median_us: Some(12.5),
                evaluation: Typed::Unreadable(json!({"outcome": "passed", "max_rel_err": "nan"})),
            },
            Event::Evaluated {
                kernel: "softmax".into(),
                config: "BLOCK=128 VEC=4".into(),
                pattern: None,
                outcome: "hung".into(),
                median_us: None,
                evaluation: Typed::Unread,
            },
            Event::Verdict {
                kernel: "softmax".into(),
                config: "BLOCK=128 VEC=2".into(),
                baseline: "BLOCK=128 VEC=1".into(),
                verdict: Verdict::Fast,
                speedup: f64::INFINITY,
                ci_lo: 1.05,
                ci_hi: f64::NEG_INFINITY,
                pairs: Some(40),
                min_gain: Some(0.02),
                against: Typed::Unreadable(json!({"config": "BLOCK=128 VEC=1"})),
            },
            Event::Commit {
                kernel: "softmax".into(),
                config: "BLOCK=128 VEC=2".into(),
                sha: "0123abcd".into(),
            },
            Event::Revert {
                kernel: "softmax".into(),
                config: "BLOCK=128 VEC=4".into(),
                reason: "hung".into(),
            },
            Event::Pivot {
                kernel: "softmax".into(),
                pattern: "vectorize".into(),
                reason: "three candidates without a FAST verdict".into(),
            },
            Event::Charge(Charge {
                kernel: None,
                pattern: None,
                config: None,
                stage: Stage::Idle,
                gpu_s: 1.5,
                wall_s: f64::NAN,
            }),
            Event::Budget {
                spent: Spend {
                    wall_s: 10.0,
                    gpu_s: 9.0,
                    dollars: 0.01,
                },
                remaining: Some(Remaining {
                    seconds: 100.0,
                    binding: Some(Limit::GpuHours),
                    wall_s: f64::INFINITY,
                    gpu_s: 100.0,
                    dollars_s: f64::INFINITY,
                }),
                breakdown: Some(crate::budget::Breakdown::default()),
            },
            Event::RunFinished {
                reason: "stopped by SIGINT".into(),
                stop: Some(StopReason::Signal {
                    signal: "SIGINT".into(),
                }),
            },
            Event::KernelDone {
                kernel: "softmax".into(),
                reason: "no applicable pattern has anything left to try".into(),
            },
            Event::KernelPaused {
                kernel: "softmax".into(),
                reason: "spent its share".into(),
            },
            Event::Machine {
                device: json!({"name": "NVIDIA H100 80GB HBM3"}),
                ceilings: json!({"dram_gbs": 3000.0}),
                measure: json!({"seed": 24301}),
                nightshift: "0.1.0".into(),
            },
            Event::StudyPoint {
                kernel: "attention".into(),
                pattern: "workload-batching".into(),
                config: "VARIANT=1".into(),
                scale: 2,
                problem: "B=64 H=8".into(),
                outcome: "passed".into(),
                median_us: Some(12.5),
                evaluation: Typed::Unreadable(json!({"outcome": "passed"})),
            },
            Event::Study {
                kernel: "attention".into(),
                pattern: "workload-batching".into(),
                config: "VARIANT=1".into(),
                cut_short: Some("budget".into()),
                result: Typed::Unreadable(json!({"knee": 4})),
            },
            Event::FinalComparison {
                kernel: "softmax".into(),
                baseline: "BLOCK=128 VEC=1".into(),
                best: "BLOCK=128 VEC=2".into(),
                verdict: None,
                speedup: f64::NAN,
                ci_lo: f64::NAN,
                ci_hi: f64::NAN,
                pairs: None,
                baseline_evaluation: Typed::Unreadable(json!({"outcome": "passed"})),
                best_evaluation: Typed::Unread,
            },
        ]
    }

    /// Records compared as JSON: NaN is not equal to itself.
    fn as_json<T: Serialize>(x: &T) -> String {
        serde_json::to_string(x).unwrap()
    }

    fn new_journal(dir: &Path) -> Journal {
        Journal::create(dir, "r1").unwrap()
    }

    fn append_all(j: &mut Journal, events: &[Event]) {
        for (i, e) in events.iter().enumerate() {
            assert_eq!(j.append_at(e, 1_000 + i as u64).unwrap(), i as u64);
        }
    }

    /// The child process of the SIGKILL test below: appends records until it is killed.
    #[test]
    #[ignore = "run by a_journal_writer_killed_with_sigkill_loses_and_duplicates_nothing"]
    fn journal_writer_child() {
        let dir = std::env::var_os("NIGHTSHIFT_JOURNAL_CHILD_DIR").expect("run by the parent test");
        let mut j = Journal::create(Path::new(&dir), "killed").unwrap();
        for i in 0u64.. {
            // Records of varying length, so the kill lands at any byte of a line.
            j.append(&Event::Revert {
                kernel: "softmax".into(),
                config: format!("N={i}"),
                reason: "x".repeat((i % 97) as usize * 13),
            })
            .unwrap();
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_journal_writer_killed_with_sigkill_loses_and_duplicates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("killed").join(FILE_NAME);
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "journal::tests::journal_writer_child",
                "--ignored",
                "--test-threads=1",
            ])
            .env("NIGHTSHIFT_JOURNAL_CHILD_DIR", dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        while fs::metadata(&path).map_or(0, |m| m.len()) < 64 * 1024 {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(60),
                "the child wrote too little"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let (mut j, got) = Journal::open_append(&path).unwrap();
        let n = got.records.len() as u64;
        assert!(n > 10, "only {n} records");
        for (i, r) in got.records.iter().enumerate() {
            // No gap, no duplicate: record i is the i-th append.
            assert_eq!(r.seq, i as u64);
            match &r.event {
                Event::Revert { config, .. } => assert_eq!(config, &format!("N={i}")),
                other => panic!("unexpected {other:?}"),
            }
        }
        // The run goes on where it stopped, and the file reads whole again.
        assert_eq!(
            j.append(&Event::KernelDone {
                kernel: "softmax".into(),
                reason: "resumed".into()
            })
            .unwrap(),
            n
        );
        let again = read(&path).unwrap();
        assert_eq!(again.records.len() as u64, n + 1);
        assert!(again.torn.is_none());
    }

    #[test]
    fn every_event_round_trips_with_non_finite_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = new_journal(dir.path());
        let events = every_event();
        append_all(&mut j, &events);
        let back = read(j.path()).unwrap();
        assert_eq!(back.torn, None);
        assert_eq!(back.records.len(), events.len());
        for (i, (r, e)) in back.records.iter().zip(&events).enumerate() {
            assert_eq!(r.seq, i as u64);
            assert_eq!(r.t_ms, 1_000 + i as u64);
            assert_eq!(as_json(&r.event), as_json(e));
        }
        let verdict = back
            .records
            .iter()
            .find_map(|r| match &r.event {
                Event::FinalComparison { speedup, .. } => Some(*speedup),
                _ => None,
            })
            .expect("a final comparison");
        assert!(verdict.is_nan());
    }

    #[test]
    fn verdicts_are_typed_and_written_as_every_journal_wrote_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = new_journal(dir.path());
        append_all(&mut j, &every_event());
        let text = fs::read_to_string(j.path()).unwrap();
        assert!(text.contains(r#""verdict":"FAST""#), "{text}");
        assert!(text.contains(r#""verdict":"not_compared""#), "{text}");
        // Every fixture journal (written by earlier versions) reads into the types.
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journals");
        let mut verdicts = 0;
        for f in fs::read_dir(&fixtures).unwrap() {
            let path = f.unwrap().path();
            if path.extension().is_some_and(|x| x == "jsonl") {
                let read = read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                verdicts += read
                    .records
                    .iter()
                    .filter(|r| matches!(r.event, Event::Verdict { .. }))
                    .count();
            }
        }
        assert!(verdicts > 10, "{verdicts}");
        let bad = r#"{"kernel":"k","baseline":"a","best":"b","verdict":"fastish","speedup":1.0,"ci_lo":1.0,"ci_hi":1.0}"#;
        let e =
            serde_json::from_str::<Event>(&format!(r#"{{"kind":"final_comparison",{}"#, &bad[1..]));
        assert!(e.is_err(), "{e:?}");
    }

    #[test]
    fn a_record_whose_timing_is_not_a_time_is_an_error_naming_its_line() {
        let dir = tempfile::tempdir().unwrap();
        for (median, sample) in [(Some(-16.58), 1.0), (Some(f64::NAN), 1.0), (Some(3.0), 0.0)] {
            let _ = fs::remove_dir_all(dir.path().join("r1"));
            let mut j = new_journal(dir.path());
            append_all(&mut j, &every_event()[..2]);
            j.append_at(
                &Event::Evaluated {
                    kernel: "softmax".into(),
                    config: "BLOCK=64".into(),
                    pattern: None,
                    outcome: "passed".into(),
                    median_us: median,
                    evaluation: Typed::Unreadable(
                        json!({"measurement": {"samples": [{"us": sample}]}}),
                    ),
                },
                9,
            )
            .unwrap();
            let e = read(j.path()).unwrap_err();
            assert!(matches!(e, JournalError::Corrupt { line: 3, .. }), "{e}");
            assert!(e.to_string().contains("is not a time"), "{e}");
        }
    }

    #[test]
    fn a_record_is_one_json_line_with_its_kind() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = new_journal(dir.path());
        let e = Event::Commit {
            kernel: "softmax".into(),
            config: "BLOCK=256 VEC=4".into(),
            sha: "0123abcd".into(),
        };
        j.append_at(&e, 1_700_000_000_000).unwrap();
        let text = fs::read_to_string(dir.path().join("r1").join(FILE_NAME)).unwrap();
        assert_eq!(
            text,
            "{\"seq\":0,\"t_ms\":1700000000000,\"event\":{\"kind\":\"commit\",\
             \"kernel\":\"softmax\",\"config\":\"BLOCK=256 VEC=4\",\"sha\":\"0123abcd\"}}\n"
        );
    }

    #[test]
    fn each_append_is_on_disk_before_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = new_journal(dir.path());
        let path = j.path().to_path_buf();
        for (i, e) in every_event().iter().enumerate() {
            let seq = j.append(e).unwrap();
            // Read through a separate handle, as a crash-time reader would.
            let on_disk = read(&path).unwrap();
            assert_eq!(on_disk.records.len(), i + 1);
            assert_eq!(on_disk.records[i].seq, seq);
            assert!(on_disk.records[i].t_ms > 1_600_000_000_000);
        }
        assert_eq!(j.next_seq(), every_event().len() as u64);
    }

    #[test]
    fn create_refuses_to_overwrite_a_journal() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = new_journal(dir.path());
        j.append_at(&every_event()[0], 1).unwrap();
        let e = Journal::create(dir.path(), "r1").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert!(e.to_string().contains("resume"), "{e}");
        assert_eq!(read(j.path()).unwrap().records.len(), 1);
    }

    #[test]
    fn create_refuses_a_run_id_that_is_not_one_directory() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", ".", "..", "../escape", "a/b", "a b"] {
            let e = Journal::create(dir.path(), bad).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}: {e}");
        }
        Journal::create(dir.path(), "2025-11-21T02.30_softmax").unwrap();
    }

    #[test]
    fn seq_continues_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = {
            let mut j = new_journal(dir.path());
            append_all(&mut j, &every_event()[..2]);
            j.path().to_path_buf()
        };
        let (mut j, before) = Journal::open_append(&path).unwrap();
        assert_eq!(before.records.len(), 2);
        assert_eq!(before.torn, None);
        assert_eq!(j.next_seq(), 2);
        assert_eq!(j.append_at(&every_event()[2], 5).unwrap(), 2);
        let seqs: Vec<u64> = read(&path).unwrap().records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [0, 1, 2]);
    }

    #[test]
    fn an_empty_journal_reads_as_no_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = new_journal(dir.path()).path().to_path_buf();
        let (j, r) = Journal::open_append(&path).unwrap();
        assert_eq!(r.records, []);
        assert_eq!(r.torn, None);
        assert_eq!(j.next_seq(), 0);
    }

    /// A journal of `n` whole records followed by `tail`, as a crash leaves it.
    fn crashed_journal(dir: &Path, n: usize, tail: &[u8]) -> PathBuf {
        let mut j = new_journal(dir);
        append_all(&mut j, &every_event()[..n]);
        let path = j.path().to_path_buf();
        drop(j);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(tail).unwrap();
        path
    }

    #[test]
    fn a_last_line_cut_short_is_reported_and_cut_off_on_resume() {
        let dir = tempfile::tempdir().unwrap();
        let whole = fs::read(crashed_journal(dir.path(), 3, b"")).unwrap().len() as u64;
        fs::remove_dir_all(dir.path().join("r1")).unwrap();
        let tail = b"{\"seq\":3,\"t_ms\":12,\"event\":{\"kind\":\"com";
        let path = crashed_journal(dir.path(), 3, tail);

        let r = read(&path).unwrap();
        assert_eq!(r.records.len(), 3);
        let torn = r.torn.clone().unwrap();
        assert_eq!(
            (torn.line, torn.offset, torn.bytes),
            (4, whole, tail.len() as u64)
        );
        assert!(
            torn.to_string()
                .starts_with("line 4: the last record was cut short"),
            "{torn}"
        );

        let (mut j, on_open) = Journal::open_append(&path).unwrap();
        assert_eq!(on_open, r);
        assert_eq!(fs::metadata(&path).unwrap().len(), whole);
        assert_eq!(j.append_at(&every_event()[6], 13).unwrap(), 3);
        let after = read(&path).unwrap();
        assert_eq!(after.torn, None);
        assert_eq!(after.records.len(), 4);
        assert!(matches!(after.records[3].event, Event::Commit { .. }));
    }

    #[test]
    fn a_garbled_last_line_is_tolerated_like_a_short_one() {
        // Some filesystems leave zeros where the unsynced end of a file was.
        let dir = tempfile::tempdir().unwrap();
        let path = crashed_journal(dir.path(), 2, &[0u8; 64]);
        let r = read(&path).unwrap();
        assert_eq!((r.records.len(), r.torn.as_ref().unwrap().line), (2, 3));
        let path2 = {
            let d = dir.path().join("other");
            crashed_journal(&d, 2, b"not json at all\n")
        };
        let r = read(&path2).unwrap();
        assert_eq!((r.records.len(), r.torn.as_ref().unwrap().bytes), (2, 16));
        let (mut j, _) = Journal::open_append(&path2).unwrap();
        j.append_at(&every_event()[2], 3).unwrap();
        assert_eq!(read(&path2).unwrap().records.len(), 3);
    }

    #[test]
    fn a_whole_last_record_without_its_newline_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let line =
            "{\"seq\":1,\"t_ms\":9,\"event\":{\"kind\":\"run_finished\",\"reason\":\"done\"}}";
        let path = crashed_journal(dir.path(), 1, line.as_bytes());
        let r = read(&path).unwrap();
        assert_eq!((r.records.len(), r.torn.clone()), (2, None));
        let (mut j, _) = Journal::open_append(&path).unwrap();
        assert_eq!(j.append_at(&every_event()[1], 10).unwrap(), 2);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.contains(&format!("{line}\n")));
    }

    #[test]
    fn a_corrupt_line_in_the_middle_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = crashed_journal(dir.path(), 2, b"{garbage}\n");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(
            b"{\"seq\":3,\"t_ms\":1,\"event\":{\"kind\":\"run_finished\",\"reason\":\"x\"}}\n",
        )
        .unwrap();
        let e = read(&path).unwrap_err();
        assert!(matches!(e, JournalError::Corrupt { line: 3, .. }), "{e}");
        let shown = e.to_string();
        assert!(
            shown.starts_with(&format!("{}:3: not a journal record", path.display())),
            "{shown}"
        );
        // Resume refuses too, and leaves the file alone.
        let len = fs::metadata(&path).unwrap().len();
        assert!(Journal::open_append(&path).is_err());
        assert_eq!(fs::metadata(&path).unwrap().len(), len);
    }

    #[test]
    fn a_missing_record_is_an_error_naming_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = crashed_journal(
            dir.path(),
            2,
            b"{\"seq\":3,\"t_ms\":1,\"event\":{\"kind\":\"run_finished\",\"reason\":\"x\"}}\n",
        );
        match read(&path).unwrap_err() {
            JournalError::Sequence {
                line,
                expected,
                found,
                ..
            } => assert_eq!((line, expected, found), (3, 2, 3)),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn reading_a_missing_journal_names_it() {
        let e = read(Path::new("/nonexistent/r1/journal.jsonl")).unwrap_err();
        // The message names it; the cause is its source, printed once after it.
        assert_eq!(e.to_string(), "read journal /nonexistent/r1/journal.jsonl");
        let cause = std::error::Error::source(&e).expect("the io error as its source");
        assert!(cause.is::<io::Error>(), "{cause}");
    }

    #[test]
    fn resume_summarizes_what_a_crashed_run_did() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = new_journal(dir.path());
        let evaluated = |config: &str, outcome: &str| Event::Evaluated {
            kernel: "softmax".into(),
            config: config.into(),
            pattern: Some("vectorize".into()),
            outcome: outcome.into(),
            median_us: (outcome == "passed").then_some(10.0),
            evaluation: Typed::Unread,
        };
        let commit = |config: &str, sha: &str| Event::Commit {
            kernel: "softmax".into(),
            config: config.into(),
            sha: sha.into(),
        };
        let events = vec![
            every_event()[0].clone(),
            Event::Charge(charge("softmax", "VEC=2", Stage::Compile, 1.0)),
            Event::Charge(charge("softmax", "VEC=2", Stage::Measure, 3.0)),
            evaluated("VEC=2", "passed"),
            commit("VEC=2", "aaaa"),
            Event::Charge(charge("softmax", "VEC=4", Stage::Validate, 30.0)),
            evaluated("VEC=4", "hung"),
            Event::Revert {
                kernel: "softmax".into(),
                config: "VEC=4".into(),
                reason: "hung".into(),
            },
            Event::Budget {
                spent: Spend {
                    wall_s: 34.0,
                    gpu_s: 34.0,
                    dollars: 34.0 / 900.0,
                },
                remaining: None,
                breakdown: None,
            },
            Event::Charge(charge("softmax", "VEC=8", Stage::Measure, 2.0)),
            evaluated("VEC=8", "passed"),
            commit("VEC=8", "bbbb"),
            Event::RunFinished {
                reason: "wall-time limit".into(),
                stop: None,
            },
        ];
        append_all(&mut j, &events);
        let r = crate::state::RunState::from_records(&read(j.path()).unwrap().records);
        assert_eq!(r.run_id.as_deref(), Some("r1"));
        assert_eq!(r.git_branch.as_deref(), Some("nightshift/r1"));
        assert_eq!(r.evaluated.len(), 3);
        assert!(r.was_evaluated("softmax", "VEC=4"));
        assert!(!r.was_evaluated("softmax", "VEC=1"));
        assert!(!r.was_evaluated("gemm", "VEC=2"));
        assert_eq!(
            r.evaluated[&("softmax".into(), "VEC=4".into())].outcome,
            "hung"
        );
        assert_eq!(r.committed["softmax"].config, "VEC=8");
        assert_eq!(r.committed["softmax"].sha, "bbbb");
        assert_eq!(r.finished.as_deref(), Some("wall-time limit"));
        assert_eq!(r.last_budget.map(|s| s.gpu_s), Some(34.0));
        assert_eq!((r.first_t_ms, r.last_t_ms), (Some(1_000), Some(1_012)));
        assert_eq!(r.next_seq, events.len() as u64);
        let ledger = r.ledger(4.0).unwrap();
        assert_eq!(ledger.spent().gpu_s, 36.0);
        assert_eq!(ledger.projection("softmax", None, 1).samples, 3);

        // Picked up again: no longer finished.
        let path = j.path().to_path_buf();
        drop(j);
        let (mut j, _) = Journal::open_append(&path).unwrap();
        j.append_at(&every_event()[1], 2_000).unwrap();
        let r = crate::state::RunState::from_records(&read(&path).unwrap().records);
        assert_eq!((r.finished, r.resumes), (None, 1));
    }
}
