//! The parent's side of the worker: spawns it, sends one request at a time, watches
//! for progress with a watchdog, kills a worker that stops making progress (`Hung`),
//! notices one that died (`Died`), and starts a fresh one for the next request.
//! The parent never dies because of a candidate.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::protocol::{Request, Response, PROTOCOL_VERSION};
use crate::gpu::DeviceInfo;

/// How to start a worker.
#[derive(Debug, Clone)]
pub struct WorkerCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Started through a launcher (`srun`, `ssh`): killing it asks first (SIGTERM,
    /// which `srun` passes on to the job step) and waits [`TERM_GRACE`] before
    /// SIGKILL, so the worker on the far side ends too and frees its GPU.
    pub launched: bool,
}

/// How long a launched worker has to end after SIGTERM before it is SIGKILLed.
pub const TERM_GRACE: Duration = Duration::from_secs(5);

impl WorkerCommand {
    /// This executable's own `worker` subcommand.
    pub fn this_exe(args: Vec<String>) -> std::io::Result<Self> {
        Ok(WorkerCommand {
            program: std::env::current_exe()?,
            args,
            launched: false,
        })
    }

    /// The same command started through `launcher` (`srun ...`, `ssh host`): the
    /// launcher's first word is run with its other words, then this command's
    /// program and arguments. An empty launcher leaves the command as it is.
    pub fn through(self, launcher: &[String]) -> Self {
        let Some((first, rest)) = launcher.split_first() else {
            return self;
        };
        let mut args = rest.to_vec();
        args.push(self.program.display().to_string());
        args.extend(self.args);
        WorkerCommand {
            program: PathBuf::from(first),
            args,
            launched: true,
        }
    }
}

/// The infrastructure failed: the worker cannot be started or refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("cannot start the GPU worker {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the GPU worker did not start: {0}")]
    Handshake(String),
}

/// The end of one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Done(Response),
    /// No line for longer than the watchdog; the worker was killed.
    Hung {
        stage: String,
        waited: Duration,
    },
    /// The worker exited (or its pipe broke) before answering.
    Died {
        stage: String,
        status: String,
    },
}

enum Line {
    Text(String),
    Eof,
}

struct Proc {
    child: Child,
    stdin: ChildStdin,
    rx: Receiver<Line>,
    /// Ask with SIGTERM before SIGKILL (a launched worker).
    term_first: bool,
}

impl Proc {
    fn kill(mut self) -> String {
        if self.term_first && self.terminated() {
            return match self.child.wait() {
                Ok(s) => s.to_string(),
                Err(e) => format!("unknown ({e})"),
            };
        }
        let _ = self.child.kill();
        match self.child.wait() {
            Ok(s) => s.to_string(),
            Err(e) => format!("unknown ({e})"),
        }
    }

    /// Sends SIGTERM (through `kill`, this crate's one way to signal outside
    /// `gpu/`) and waits up to [`TERM_GRACE`]; whether the launcher ended.
    fn terminated(&mut self) -> bool {
        let asked = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !asked {
            return false;
        }
        let start = std::time::Instant::now();
        while start.elapsed() < TERM_GRACE {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

pub struct Supervisor {
    cmd: WorkerCommand,
    /// Longest silence allowed from the worker while it works on a request.
    pub watchdog: Duration,
    /// How long a worker may take to say `ready` (a launcher may queue for a node):
    /// the watchdog it was created with, and never under a minute.
    startup: Duration,
    proc: Option<Proc>,
    /// Workers started after the first.
    pub restarts: u32,
    starts: u32,
    pub device: Option<DeviceInfo>,
}

impl Supervisor {
    pub fn new(cmd: WorkerCommand, watchdog: Duration) -> Self {
        Supervisor {
            cmd,
            watchdog,
            startup: watchdog.max(Duration::from_secs(60)),
            proc: None,
            restarts: 0,
            starts: 0,
            device: None,
        }
    }

    fn spawn(&mut self) -> Result<(), SupervisorError> {
        let mut cmd = Command::new(&self.cmd.program);
        // Its own process group: a Ctrl-C on the terminal goes to the daemon, which
        // stops cleanly after the current candidate; the worker must not die first
        // and turn that candidate into a `crashed` one.
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd
            .args(&self.cmd.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|source| SupervisorError::Spawn {
                program: self.cmd.program.display().to_string(),
                source,
            })?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(Line::Text(l)).is_err() {
                            return;
                        }
                    }
                    Err(_) => break,
                }
            }
            let _ = tx.send(Line::Eof);
        });
        if self.starts > 0 {
            self.restarts += 1;
        }
        self.starts += 1;
        self.proc = Some(Proc {
            child,
            stdin,
            rx,
            term_first: self.cmd.launched,
        });
        Ok(())
    }

    /// Starts a worker if none is running and checks that it says `ready`.
    pub fn ensure_started(&mut self) -> Result<&DeviceInfo, SupervisorError> {
        if self.proc.is_none() {
            self.spawn()?;
            let watchdog = std::mem::replace(&mut self.watchdog, self.startup);
            let hello = self.exchange(&Request::Hello, &mut |_| {});
            self.watchdog = watchdog;
            match hello {
                Reply::Done(Response::Ready { protocol, device }) => {
                    if protocol != PROTOCOL_VERSION {
                        self.kill();
                        return Err(SupervisorError::Handshake(format!(
                            "the worker speaks protocol {protocol}, this nightshift speaks {PROTOCOL_VERSION}"
                        )));
                    }
                    // A restarted worker (a launcher may place it on another node)
                    // must measure on the same kind of device as the first.
                    let kind = |d: &DeviceInfo| {
                        format!("{} {}, driver {}", d.name, d.arch, d.driver_version)
                    };
                    if let Some(was) = self.device.as_ref().map(kind) {
                        if was != kind(&device) {
                            self.kill();
                            return Err(SupervisorError::Handshake(format!(
                                "the restarted worker is on another device ({}) than the first ({was})",
                                kind(&device)
                            )));
                        }
                    }
                    self.device = Some(*device);
                }
                Reply::Done(Response::Error { message }) => {
                    self.kill();
                    return Err(SupervisorError::Handshake(message));
                }
                Reply::Done(other) => {
                    self.kill();
                    return Err(SupervisorError::Handshake(format!(
                        "unexpected first message {other:?}"
                    )));
                }
                Reply::Hung { waited, .. } => {
                    return Err(SupervisorError::Handshake(format!(
                        "no answer within {:.0} s",
                        waited.as_secs_f64()
                    )));
                }
                Reply::Died { status, .. } => {
                    return Err(SupervisorError::Handshake(format!("it exited ({status})")))
                }
            }
        }
        Ok(self.device.as_ref().expect("set on a successful handshake"))
    }

    /// Sends `req` to a running (or freshly started) worker and waits for its answer,
    /// calling `progress` for each progress line.
    pub fn call(
        &mut self,
        req: &Request,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Reply, SupervisorError> {
        self.ensure_started()?;
        Ok(self.exchange(req, progress))
    }

    /// [`Supervisor::call`], sent once more to a fresh worker when the worker died
    /// under it (a lost node or a preemption behind a launcher; or the request itself
    /// killed it, and then it dies again): the reply, and why the request was sent
    /// again when it was. A hang is not retried: the watchdog already waited.
    pub fn call_retrying(
        &mut self,
        req: &Request,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(Reply, Option<String>), SupervisorError> {
        let first = self.call(req, progress)?;
        let Reply::Died { stage, status } = &first else {
            return Ok((first, None));
        };
        let why = format!(
            "the worker died ({status}) during {stage}; the request was sent once more to a fresh worker"
        );
        // No fresh worker: the death stands as the request's answer (the candidate
        // is recorded and charged); the next request says why none starts.
        match self.call(req, progress) {
            Ok(second) => Ok((second, Some(why))),
            Err(e) => Ok((first, Some(format!("{why}, but none started: {e}")))),
        }
    }

    fn exchange(&mut self, req: &Request, progress: &mut dyn FnMut(&str)) -> Reply {
        let mut stage = "waiting for the worker".to_string();
        let Some(proc) = self.proc.as_mut() else {
            return Reply::Died {
                stage,
                status: "not running".into(),
            };
        };
        let line = serde_json::to_string(req).expect("requests serialize");
        if writeln!(proc.stdin, "{line}")
            .and_then(|_| proc.stdin.flush())
            .is_err()
        {
            let status = self.proc.take().map(Proc::kill).unwrap_or_default();
            return Reply::Died { stage, status };
        }
        let mut last = Instant::now();
        loop {
            let proc = self.proc.as_mut().expect("present while exchanging");
            let remaining = self.watchdog.saturating_sub(last.elapsed());
            match proc.rx.recv_timeout(remaining) {
                Ok(Line::Text(text)) => match serde_json::from_str::<Response>(&text) {
                    Ok(Response::Progress { stage: s }) => {
                        progress(&s);
                        stage = s;
                        last = Instant::now();
                    }
                    Ok(resp) => {
                        if resp.ends_worker() {
                            self.kill();
                        }
                        return Reply::Done(resp);
                    }
                    Err(e) if text.trim_start().starts_with("{\"kind\"") => {
                        // Protocol we cannot read: never wait for the watchdog on it.
                        let status = self.proc.take().map(Proc::kill).unwrap_or_default();
                        return Reply::Died {
                            stage,
                            status: format!(
                                "unreadable answer from the worker ({e}); killed: {status}"
                            ),
                        };
                    }
                    Err(_) => {
                        // Not protocol (a kernel's printf, say): pass it on, it is not progress.
                        tracing::info!(target: "worker", "{text}");
                    }
                },
                Ok(Line::Eof) | Err(RecvTimeoutError::Disconnected) => {
                    let status = self.proc.take().map(Proc::kill).unwrap_or_default();
                    return Reply::Died { stage, status };
                }
                Err(RecvTimeoutError::Timeout) => {
                    let waited = last.elapsed();
                    self.kill();
                    return Reply::Hung { stage, waited };
                }
            }
        }
    }

    /// Kills the worker now (the next call starts a fresh one).
    pub fn kill(&mut self) {
        if let Some(p) = self.proc.take() {
            p.kill();
        }
    }

    pub fn is_running(&self) -> bool {
        self.proc.is_some()
    }

    /// Asks the worker to exit, then makes sure it has.
    pub fn shutdown(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let line = serde_json::to_string(&Request::Shutdown).expect("requests serialize");
            let _ = writeln!(p.stdin, "{line}");
            let _ = p.stdin.flush();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = p.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            p.kill();
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_launcher_goes_before_the_worker_command_and_none_leaves_it() {
        let cmd = || WorkerCommand {
            program: PathBuf::from("/opt/nightshift"),
            args: vec!["worker".into(), "--gpu".into(), "1".into()],
            launched: false,
        };
        let direct = cmd().through(&[]);
        assert_eq!(direct.program, PathBuf::from("/opt/nightshift"));
        assert_eq!(direct.args, ["worker", "--gpu", "1"]);
        let l: Vec<String> = ["srun", "--gres=gpu:1", "--ntasks=1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let srun = cmd().through(&l);
        assert_eq!(srun.program, PathBuf::from("srun"));
        assert_eq!(
            srun.args,
            [
                "--gres=gpu:1",
                "--ntasks=1",
                "/opt/nightshift",
                "worker",
                "--gpu",
                "1"
            ]
        );
    }
}
