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
        /// A rewritten candidate's rewrites, options and source diff.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rewritten: Option<crate::rewrite::Change>,
        /// The CUDA ordinal of the GPU that measured it (None in journals written
        /// before it was recorded, and for a test double).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gpu: Option<usize>,
        /// Measured ahead of its turn on a free GPU of a run with several, against
        /// the best of that moment: used when the controller asks for it against the
        /// same best, else left as measured (the best moved first).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        ahead: bool,
    },
    /// A rewrite candidate whose rewrites do not apply to the kernel (nothing to
    /// change, or the edit would not parse): never compiled, no GPU time.
    NotApplicable {
        kernel: String,
        pattern: String,
        config: String,
        reason: String,
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
    /// A question to a code-writing proposer and its answer.
    ProposerAnswer(ProposerAnswer),
    /// A proposal that could not be a candidate (the proposer failed, it failed the
    /// checks before the GPU, or it repeats an earlier one): never compiled.
    ProposalInvalid {
        kernel: String,
        pattern: String,
        /// The candidate it would have been, when there was a source.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        config: Option<String>,
        reason: String,
    },
    /// A notification was sent (see [`Notified`]).
    Notified(Notified),
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
    /// Tunables of a kernel no applicable pattern moves, each with why (at the start
    /// of the kernel).
    Unmoved {
        kernel: String,
        tunables: Vec<String>,
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
        /// The CUDA ordinal of the GPU that measured both.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gpu: Option<usize>,
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
        /// The CUDA ordinal of the GPU that measured it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gpu: Option<usize>,
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
    /// The CUDA device ordinal (the first of `gpus`, when several).
    pub gpu: usize,
    /// The CUDA device ordinals of a run on several GPUs (`--gpus`), one worker each
    /// (empty: `gpu` alone). A resume may name others: the same device model is
    /// checked, not the ordinals.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<usize>,
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

mod answers;
mod listing;
mod payload;
mod timing;

pub use answers::{Delivery, Notified, ProposerAnswer};

pub use listing::{check_run_id, runs_by_start, started_ms};

use payload::{final_verdict, opt_nonfinite};
pub use payload::{final_verdict_name, Typed};
use timing::bad_timing;

#[cfg(test)]
mod tests;
