//! Proposers that write code (issue 17): given a [`ProposalRequest`] (the kernel's
//! current best source, its spec, its measured profile, the pattern's instruction
//! and the history of earlier proposals), a [`Proposer`] answers a [`Proposal`]: the
//! whole new source, an explanation, and what the answer cost ([`Usage`]).
//!
//! Two kinds, configured in `nightshift.toml` ([`crate::settings`]):
//! - [`openai`]: an OpenAI-compatible chat-completions endpoint over `reqwest`;
//! - [`command`]: any program, request JSON on stdin, answer JSON on stdout.
//!
//! [`check`] is what a proposal must pass before a GPU sees it; its `Err` is the
//! `proposal_invalid` reason. A proposer that fails returns a [`ProposalError`]
//! carrying what the attempt spent, so the ledger is charged for answers it could
//! not use.
//!
//! The API key is read from its environment variable when a request is sent and
//! sent only as a header marked sensitive. It is never stored, and every text that
//! comes back from outside (answers, error bodies, stderr) is passed through
//! [`redact`] before it reaches a value nightshift keeps.

mod check;
pub mod command;
pub mod openai;
mod request;

#[cfg(test)]
mod tests;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::settings::{ProposerSettings, TokenPrices};

pub use check::{check, ALLOWED_SYSTEM_HEADERS, MAX_SOURCE_BYTES};
pub use request::{
    describe, messages, ArgView, CostView, LaunchView, PastProposal, PatternBrief, ProposalRequest,
    SpecView, TunableView,
};

/// The largest answer read from a proposer (an HTTP body, a command's stdout).
pub const MAX_ANSWER_BYTES: usize = 4 << 20;

/// The answer's length assumed for a model's bill bound when `max_tokens` is not
/// set (set it for a bound that holds whatever the model does).
pub const ASSUMED_MAX_OUTPUT: u64 = 32_768;

/// The most of a failing answer's body or a command's stderr kept in an error.
pub const MAX_ERROR_TEXT: usize = 2048;

/// A proposal: the whole kernel source as the proposer would have it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub source: String,
    pub explanation: String,
    pub usage: Usage,
}

/// What one call to a proposer cost.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// At the configured prices (see [`token_dollars`]); a command's price per call.
    pub dollars: f64,
    /// From the first byte sent to the last byte read, retries and waits included.
    pub latency_s: f64,
    /// The endpoint reported no token counts, so they were estimated from the text
    /// (a byte in four).
    #[serde(default)]
    pub estimated: bool,
}

/// Dollars for `input` and `output` tokens at `prices`, exact to a millionth of a
/// cent: the prices are taken to a millionth of a dollar per million tokens
/// (picodollars per token) and the tokens counted in integers.
pub fn token_dollars(input: u64, output: u64, prices: &TokenPrices) -> f64 {
    fn pico_per_token(per_mtok: f64) -> u128 {
        if per_mtok.is_finite() && per_mtok > 0.0 {
            (per_mtok * 1e6).round() as u128
        } else {
            0
        }
    }
    let pico = u128::from(input) * pico_per_token(prices.input_per_mtok)
        + u128::from(output) * pico_per_token(prices.output_per_mtok);
    pico as f64 / 1e12
}

/// A proposer that could not answer, with what the attempt spent (tokens billed for
/// an answer that could not be used; a command's price per call; the time).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind}")]
pub struct ProposalError {
    pub kind: ProposalErrorKind,
    pub spent: Usage,
}

/// Why a proposer could not answer. Messages read after "the proposal failed: ".
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProposalErrorKind {
    #[error("the environment variable `{var}` that holds the API key is {why}")]
    Key { var: String, why: &'static str },
    #[error("the proposer could not be reached ({attempts} attempt(s)): {reason}")]
    Transport { attempts: u32, reason: String },
    #[error("the proposer did not answer within {after_s:.1} s")]
    Timeout { after_s: f64 },
    #[error("the proposer was still rate limited (HTTP 429) after {attempts} attempt(s)")]
    RateLimited { attempts: u32 },
    #[error("the proposer answered HTTP {status} ({attempts} attempt(s)): {body}")]
    Status {
        status: u16,
        attempts: u32,
        body: String,
    },
    #[error("the proposer's answer is larger than the {} MiB nightshift reads", limit >> 20)]
    TooLarge { limit: usize },
    #[error("the proposer's answer cannot be used: {0}")]
    Malformed(String),
    #[error("the command proposer `{program}` cannot be started: {reason}")]
    Spawn { program: String, reason: String },
    #[error("the command proposer {status}; its stderr: {stderr}")]
    Failed { status: String, stderr: String },
    #[error("the HTTP client cannot be set up: {0}")]
    Client(String),
}

impl ProposalError {
    pub fn new(kind: ProposalErrorKind, spent: Usage) -> Self {
        ProposalError { kind, spent }
    }
}

/// A configured proposer.
#[derive(Debug, Clone)]
pub enum Proposer {
    OpenAi(openai::OpenAiProposer),
    Command(command::CommandProposer),
}

impl Proposer {
    pub fn new(settings: &ProposerSettings) -> Result<Proposer, ProposalError> {
        Ok(match settings {
            ProposerSettings::OpenAi(s) => {
                Proposer::OpenAi(openai::OpenAiProposer::new(s.clone())?)
            }
            ProposerSettings::Command(s) => {
                Proposer::Command(command::CommandProposer::new(s.clone()))
            }
        })
    }

    /// Asks for one proposal.
    pub async fn propose(&self, req: &ProposalRequest) -> Result<Proposal, ProposalError> {
        match self {
            Proposer::OpenAi(p) => p.propose(req).await,
            Proposer::Command(p) => p.propose(req).await,
        }
    }

    /// The most the question `req` can cost: a command's price per call; for a
    /// model, every byte of the prompt as a token (a token covers at least a byte)
    /// and `max_tokens` of answer ([`ASSUMED_MAX_OUTPUT`] when unset) at the prices.
    /// What the budget must be able to pay before the question is sent.
    pub fn bill_bound(&self, req: &ProposalRequest) -> f64 {
        match self {
            Proposer::Command(p) => p.settings().price_per_call.max(0.0),
            Proposer::OpenAi(p) => {
                let s = p.settings();
                let (system, user) = messages(req);
                // A few tokens of chat framing per message.
                let prompt = (system.len() + user.len()) as u64 + 64;
                let output = s.max_tokens.map_or(ASSUMED_MAX_OUTPUT, u64::from);
                token_dollars(prompt, output, &s.prices)
            }
        }
    }

    /// The longest a question can hold the GPU idle: a command's timeout; a
    /// model's timeout per attempt, every attempt, and the longest wait between
    /// them. The budget must hold this much GPU time too before it is sent.
    pub fn wait_bound_s(&self) -> f64 {
        match self {
            Proposer::Command(p) => p.settings().timeout.as_secs_f64(),
            Proposer::OpenAi(p) => {
                let s = p.settings();
                let attempts = f64::from(s.retries + 1);
                attempts * s.timeout.as_secs_f64()
                    + f64::from(s.retries) * p.max_wait().as_secs_f64()
            }
        }
    }

    /// `openai <model>` or `command <program>`: for a commit's `Nightshift-Proposer`
    /// trailer and the report (no URL, no key).
    pub fn label(&self) -> String {
        match self {
            Proposer::OpenAi(p) => format!("openai {}", p.settings().model),
            Proposer::Command(p) => {
                let program = p.settings().argv.first().map_or("", String::as_str);
                format!("command {program}")
            }
        }
    }
}

impl fmt::Display for Proposer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// `text` with every occurrence of `secret` replaced (nothing to do when there is
/// no secret or it is too short to be one: a one-letter key would blank the text).
pub fn redact(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if s.len() >= 4 => text.replace(s, "[redacted]"),
        _ => text.to_string(),
    }
}

/// At most `max` bytes of `text` (cut at a character boundary), marked when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... [{} bytes cut]", &text[..end], text.len() - end)
}
