//! The worker process (`nightshift worker --gpu N`): owns the CUDA context, runs the
//! validation protocol and the measurement protocol, and answers the supervisor over
//! JSON lines. A sticky CUDA error is reported as the candidate's `crashed` outcome and
//! then ends this process; the supervisor starts a fresh one.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::checks::{ref_key, Builtins, Guarded, Kept, Place, RefCache, RefOutputs, GUARD_BYTES};
use super::protocol::*;
use crate::gpu::blas::Blas;
use crate::gpu::ceilings;
use crate::gpu::nvml::Monitor;
use crate::gpu::{
    DeviceBuffer, DeviceMem, DeviceView, Event, Gpu, GpuError, Kernel, Param, Params,
};
use crate::measure::{self, SampleSource, Summary, Telemetry, TimingMethod};
use crate::spec::plan::{ArgPlan, LaunchDims, SizePlan};
use crate::spec::{DType, Io, Tolerance};
use crate::validate::device::GenParams;
use crate::validate::{self, ErrorStats, TrialKind};
use crate::vocab::*;

mod dump;
mod evaluation;
mod launch;
mod measurement;
mod selfcheck;
mod validation;

use launch::{exec, ArgBuffers, Cand};
use measurement::Arm;

/// Host memory that reference outputs may take once the device's share is full.
const HOST_REFERENCE_BYTES: u64 = 4 << 30;

/// Milliseconds since `t`.
fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Writes responses to stdout, one JSON object per line.
struct Link {
    out: std::io::Stdout,
    last_progress: Instant,
}

impl Link {
    fn send(&mut self, r: &Response) {
        let line = serde_json::to_string(r).expect("responses serialize");
        let mut out = self.out.lock();
        // If the parent has gone there is nobody to tell; the next read of stdin ends us.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    fn progress(&mut self, stage: &str) {
        self.last_progress = Instant::now();
        self.send(&Response::Progress {
            stage: stage.to_string(),
        });
    }

    /// Progress at most once a second (for tight loops).
    fn heartbeat(&mut self, stage: &str) {
        if self.last_progress.elapsed() >= Duration::from_secs(1) {
            self.progress(stage);
        }
    }
}

/// Why an evaluation stopped early.
enum Stop {
    /// The candidate failed: an outcome for the report.
    Reject(Outcome),
    /// The infrastructure (or the reference) failed.
    Infra(String),
}

type Step<T> = Result<T, Stop>;

struct Worker {
    gpu: Gpu,
    /// Created on first use.
    blas: Option<Rc<Blas>>,
    monitor: Monitor,
    link: Link,
    cache_dir: PathBuf,
    /// A sticky error was seen: answer, then exit.
    dead: bool,
    /// The validation kernels, once loaded.
    builtins: Option<Builtins>,
    /// Reference outputs by (reference, size, inputs): computed once per worker.
    refs: RefCache<RefOutputs>,
    /// The last reference outputs too large to keep.
    transient: Option<(String, RefOutputs)>,
    /// Jobs that passed validation in this worker, with their checks and note: the
    /// current best is not validated again before every comparison.
    validated: std::collections::HashMap<String, (Vec<Check>, Option<Nondeterminism>)>,
}

/// Entry point of `nightshift worker`. Returns the process exit code.
pub fn run(ordinal: usize, cache_dir: PathBuf) -> i32 {
    let mut link = Link {
        out: std::io::stdout(),
        last_progress: Instant::now(),
    };
    let stdin = std::io::stdin();
    let mut worker: Option<Worker> = None;
    for line in stdin.lock().lines() {
        let Ok(line) = line else { return 1 };
        if line.trim().is_empty() {
            continue;
        }
        let req: Request = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                link.send(&Response::Error {
                    message: format!("malformed request: {e}"),
                });
                continue;
            }
        };
        if let Request::Shutdown = req {
            return 0;
        }
        if let Request::Hello = req {
            match Gpu::open(ordinal) {
                Ok(mut gpu) => {
                    let monitor = Monitor::open(&gpu.info.uuid);
                    gpu.info.system_driver = monitor.driver_version();
                    link.send(&Response::Ready {
                        protocol: PROTOCOL_VERSION,
                        device: Box::new(gpu.info.clone()),
                    });
                    worker = Some(Worker {
                        gpu,
                        blas: None,
                        monitor,
                        link,
                        cache_dir: cache_dir.clone(),
                        dead: false,
                        builtins: None,
                        refs: RefCache::new(0, 0),
                        transient: None,
                        validated: Default::default(),
                    });
                    break;
                }
                Err(e) => {
                    link.send(&Response::Error {
                        message: format!("cannot open CUDA device {ordinal}: {e}"),
                    });
                    return 2;
                }
            }
        }
        link.send(&Response::Error {
            message: "the first request must be hello".into(),
        });
    }
    let Some(mut w) = worker else { return 0 };
    for line in stdin.lock().lines() {
        let Ok(line) = line else { return 1 };
        if line.trim().is_empty() {
            continue;
        }
        let resp = match serde_json::from_str::<Request>(&line) {
            Err(e) => Response::Error {
                message: format!("malformed request: {e}"),
            },
            Ok(Request::Shutdown) => return 0,
            Ok(Request::Hello) => Response::Ready {
                protocol: PROTOCOL_VERSION,
                device: Box::new(w.gpu.info.clone()),
            },
            Ok(Request::Ceilings) => w.ceilings(),
            Ok(Request::Evaluate { job }) => Response::Evaluated {
                report: Box::new(w.evaluate(&job)),
            },
            Ok(Request::Compare {
                a,
                b,
                min_gain,
                lone,
            }) => w.compare(&a, &b, min_gain, lone),
            Ok(Request::DumpReference { job, kernel, dir }) => {
                w.dump_reference(&job, &kernel, &dir)
            }
            Ok(Request::SelfCheck) => w.self_check(),
        };
        w.link.send(&resp);
        if w.dead {
            return 3;
        }
    }
    0
}

fn report(outcome: Outcome) -> WorkerReport {
    WorkerReport {
        outcome,
        function: None,
        checks: vec![],
        measurement: None,
        occupancy: None,
        validate_ms: 0.0,
        measure_ms: 0.0,
        validation: None,
        nondeterministic: None,
    }
}

/// What identifies a job's validation: the compiled candidate, how it runs, its
/// sizes and the validation options.
fn job_key(job: &EvalJob) -> String {
    let text = serde_json::to_string(&(
        &job.kernel,
        &job.via,
        &job.reference,
        &job.sizes,
        &job.validation,
    ))
    .unwrap_or_default();
    crate::digest::of_parts([("job", text.as_bytes())])
}

impl Worker {
    fn ceilings(&mut self) -> Response {
        let Worker {
            gpu,
            link,
            cache_dir,
            monitor,
            ..
        } = self;
        match ceilings::measure(gpu, cache_dir, &mut |s| link.progress(s)) {
            Ok(mut c) => {
                c.sm_clock_mhz = monitor.telemetry().sm_clock_mhz;
                Response::Ceilings {
                    ceilings: Box::new(c),
                }
            }
            Err(e) => Response::Error {
                message: format!("measuring ceilings failed: {e}"),
            },
        }
    }
}
