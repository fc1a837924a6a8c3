//! The `command` proposer: a program started from an argument list (no shell),
//! given the [`ProposalRequest`] as JSON on stdin, answering one [`Answer`] as JSON
//! on stdout within the timeout. It is killed when the time is up or its stdout
//! grows past [`MAX_ANSWER_BYTES`]; its stderr is kept (the end of it) for the error
//! of a program that fails.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::{
    truncate, Proposal, ProposalError, ProposalErrorKind, ProposalRequest, Usage, MAX_ANSWER_BYTES,
    MAX_ERROR_TEXT,
};
use crate::settings::CommandSettings;

/// What the program writes on stdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    /// The whole kernel source.
    pub source: String,
    #[serde(default)]
    pub explanation: String,
    /// Tokens the program's own model used, if it knows (for the report).
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct CommandProposer {
    settings: CommandSettings,
    limit: usize,
}

/// How a run of the program ended.
enum Ended {
    Exited(std::process::ExitStatus, Vec<u8>),
    TooLarge,
    TimedOut,
}

impl CommandProposer {
    pub fn new(settings: CommandSettings) -> Self {
        CommandProposer {
            settings,
            limit: MAX_ANSWER_BYTES,
        }
    }

    /// The same proposer reading at most `limit` bytes of stdout (tests read less).
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    pub fn settings(&self) -> &CommandSettings {
        &self.settings
    }

    /// Runs the program once for a proposal. Every call that started the program
    /// costs `price_per_call`, whatever it answered.
    pub async fn propose(&self, req: &ProposalRequest) -> Result<Proposal, ProposalError> {
        let started = Instant::now();
        let spent = |tokens: (u64, u64), ran: bool| Usage {
            input_tokens: tokens.0,
            output_tokens: tokens.1,
            dollars: if ran {
                self.settings.price_per_call
            } else {
                0.0
            },
            latency_s: started.elapsed().as_secs_f64(),
            estimated: false,
        };
        let fail = |kind, ran| ProposalError::new(kind, spent((0, 0), ran));
        let input = serde_json::to_vec(req).map_err(|e| {
            fail(
                ProposalErrorKind::Malformed(format!("the request: {e}")),
                false,
            )
        })?;
        let (ended, stderr_tail) = self.run(input).await.map_err(|k| fail(k, false))?;
        match ended {
            Ended::TimedOut => {
                let after_s = self.settings.timeout.as_secs_f64();
                Err(fail(ProposalErrorKind::Timeout { after_s }, true))
            }
            Ended::TooLarge => {
                let limit = self.limit;
                Err(fail(ProposalErrorKind::TooLarge { limit }, true))
            }
            Ended::Exited(status, _) if !status.success() => {
                let kind = ProposalErrorKind::Failed {
                    status: format!("exited with {status}"),
                    stderr: stderr_tail,
                };
                Err(fail(kind, true))
            }
            Ended::Exited(_, out) => {
                let answer = parse_answer(&out)
                    .map_err(|reason| fail(ProposalErrorKind::Malformed(reason), true))?;
                let tokens = (
                    answer.input_tokens.unwrap_or(0),
                    answer.output_tokens.unwrap_or(0),
                );
                Ok(Proposal {
                    source: answer.source,
                    explanation: answer.explanation,
                    usage: spent(tokens, true),
                })
            }
        }
    }
    /// Starts the program, feeds it `input` and waits for it within the timeout
    /// (killed past it, or past the stdout limit): how it ended, and the end of its
    /// stderr. Err: it could not be started.
    async fn run(&self, input: Vec<u8>) -> Result<(Ended, String), ProposalErrorKind> {
        let Some((program, args)) = self.settings.argv.split_first() else {
            return Err(ProposalErrorKind::Spawn {
                program: String::new(),
                reason: "`argv` is empty".into(),
            });
        };
        let spawn_error = |reason: String| ProposalErrorKind::Spawn {
            program: program.clone(),
            reason,
        };
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group: on a timeout the programs it started go too.
            .process_group(0)
            .spawn()
            .map_err(|e| spawn_error(e.to_string()))?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(spawn_error(
                "its standard streams could not be opened".into(),
            ));
        };
        // The request goes in while the answer comes out: a program that writes
        // before it has read all of stdin must not deadlock with us. A program that
        // exits without reading is its own business (the write error is ignored).
        let writer = tokio::spawn(async move {
            let _ = stdin.write_all(&input).await;
            let _ = stdin.shutdown().await;
        });
        let mut err_reader = tokio::spawn(read_tail(stderr, MAX_ERROR_TEXT));
        let limit = self.limit;
        let run = async {
            match read_capped(stdout, limit).await {
                None => Ended::TooLarge,
                Some(out) => match child.wait().await {
                    Ok(status) => Ended::Exited(status, out),
                    Err(_) => Ended::TimedOut,
                },
            }
        };
        let ended = tokio::time::timeout(self.settings.timeout, run)
            .await
            .unwrap_or(Ended::TimedOut);
        if !matches!(ended, Ended::Exited(..)) {
            kill_group(child.id());
            let _ = child.kill().await;
        }
        writer.abort();
        // A child of the program may still hold stderr open: a second at most.
        let tail = tokio::time::timeout(Duration::from_secs(1), &mut err_reader).await;
        err_reader.abort();
        Ok((ended, tail.ok().and_then(Result::ok).unwrap_or_default()))
    }
}

/// Kills the process group `pid` leads (the program and what it started), by the
/// system's `kill`: no signal call of our own outside `gpu/`.
fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The program's stdout read as an [`Answer`].
pub fn parse_answer(out: &[u8]) -> Result<Answer, String> {
    let text = std::str::from_utf8(out)
        .map_err(|e| format!("its stdout is not UTF-8 (byte {} is not)", e.valid_up_to()))?;
    if text.trim().is_empty() {
        return Err("it wrote nothing on stdout".to_string());
    }
    let a: Answer = serde_json::from_str(text.trim()).map_err(|e| {
        format!(
            "its stdout is not an answer (JSON {{\"source\": ..., \"explanation\": ...}}): {e}; \
             it begins: {}",
            truncate(text.trim(), 200)
        )
    })?;
    if a.source.trim().is_empty() {
        return Err("its answer's `source` is empty".to_string());
    }
    Ok(a)
}

/// All of `r`, or None past `limit` bytes (then nothing more is read).
async fn read_capped(mut r: impl AsyncRead + Unpin, limit: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return Some(out),
            Ok(n) if out.len() + n > limit => return None,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// The last `keep` bytes of `r`, read to its end (so the program never blocks on a
/// full stderr pipe), as text.
async fn read_tail(mut r: impl AsyncRead + Unpin, keep: usize) -> String {
    let mut tail: Vec<u8> = Vec::new();
    let mut cut = false;
    let mut buf = vec![0u8; 16 << 10];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > 2 * keep {
            tail.drain(..tail.len() - keep);
            cut = true;
        }
    }
    if tail.len() > keep {
        tail.drain(..tail.len() - keep);
        cut = true;
    }
    let text = String::from_utf8_lossy(&tail).trim().to_string();
    if cut {
        format!("[...] {text}")
    } else {
        text
    }
}
