//! The journal's records of code-writing proposers and notifications: every
//! question asked with its answer and bill, and every notification sent, so that a
//! report shows them and a resumed run neither asks again nor notifies twice.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::propose::Usage;

/// A question to a code-writing proposer and its answer. The request is journaled
/// as sent, without headers: the API key is never in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProposerAnswer {
    pub kernel: String,
    pub pattern: String,
    /// The question's number around the best it was written from (1 first).
    pub attempt: usize,
    /// The best it was written from (a candidate's name).
    pub against: String,
    /// `openai <model>` or `command <program>`.
    pub proposer: String,
    /// The request (`ProposalRequest` as JSON).
    pub request: Value,
    /// The source answered; None when the proposer failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Its digest, which names it in a candidate (`proposal:<digest>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
    /// Why the proposer could not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why the source failed the checks before the GPU (None: it passed them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    pub usage: Usage,
    /// What it was priced at before it was sent: the most it could cost, dollars...
    #[serde(default)]
    pub bound: f64,
    /// ... and the longest it could hold the GPU, seconds.
    #[serde(default)]
    pub wait_s: f64,
}

/// A notification sent (or given up on) for a run event, by its key
/// (`run_ended`, `first_gain:<kernel>`, `run_error`): written once per key, so a
/// resumed run does not send it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notified {
    pub key: String,
    /// Per webhook (its URL with the path cut): whether it was delivered. Empty in
    /// the record written before sending (the intent: never sent twice).
    pub deliveries: Vec<Delivery>,
}

/// What became of one notice at one webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The webhook as `crate::notify::redact_url` shows it: `scheme://host[:port]/…`.
    pub url: String,
    /// A 2xx answer came back.
    pub ok: bool,
    /// POSTs made (0: none could be, see `error`).
    pub attempts: u32,
    /// The last answer's HTTP status; None when none came back.
    pub status: Option<u16>,
    /// Why the last attempt failed; None when delivered. Holds no URL.
    pub error: Option<String>,
}
