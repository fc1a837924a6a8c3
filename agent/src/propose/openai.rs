//! The `openai` proposer: one POST to `{base_url}/chat/completions` of any
//! OpenAI-compatible endpoint, retried with backoff on 429 (honouring `Retry-After`),
//! 5xx and lost connections, each attempt under the configured timeout, the answer
//! read chunk by chunk up to [`MAX_ANSWER_BYTES`]. The kernel is the answer's fenced
//! code block ([`extract_code`]).

use std::time::{Duration, Instant};

use reqwest::header::{HeaderValue, AUTHORIZATION};
use serde::Deserialize;
use serde_json::json;

use super::{
    messages, redact, token_dollars, truncate, Proposal, ProposalError, ProposalErrorKind,
    ProposalRequest, Usage, MAX_ANSWER_BYTES, MAX_ERROR_TEXT,
};
use crate::http::{error_chain, read_limited, retry_after, retry_wait};
use crate::settings::OpenAiSettings;

/// Languages a fenced block may be tagged with to be taken as the kernel.
const FENCE_LANGUAGES: [&str; 7] = ["cuda", "cu", "c++", "cpp", "cxx", "c", ""];

/// The longest wait between two attempts (a `Retry-After` is honoured up to it).
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// A client for one configured endpoint. Holds no key: the key is read from its
/// environment variable for each call.
#[derive(Debug, Clone)]
pub struct OpenAiProposer {
    settings: OpenAiSettings,
    client: reqwest::Client,
    /// The first wait after a 5xx or a lost connection; doubled each retry.
    backoff: Duration,
    /// No wait is longer, whatever `Retry-After` asks.
    max_wait: Duration,
    /// Answers read up to this many bytes.
    limit: usize,
}

/// Why one attempt failed, and whether another may be made.
enum Attempt {
    /// Try again after the wait (the server's `Retry-After`, or None: backoff).
    Retry(Option<Duration>, ProposalErrorKind),
    Fatal(ProposalErrorKind),
}

impl OpenAiProposer {
    pub fn new(settings: OpenAiSettings) -> Result<Self, ProposalError> {
        let client = reqwest::Client::builder()
            .connect_timeout(settings.timeout.min(Duration::from_secs(30)))
            .build()
            .map_err(|e| {
                ProposalError::new(ProposalErrorKind::Client(e.to_string()), Usage::default())
            })?;
        Ok(OpenAiProposer {
            settings,
            client,
            backoff: Duration::from_secs(1),
            max_wait: MAX_WAIT,
            limit: MAX_ANSWER_BYTES,
        })
    }

    /// The same proposer with other waits between attempts (tests wait less).
    pub fn with_waits(mut self, backoff: Duration, max_wait: Duration) -> Self {
        self.backoff = backoff;
        self.max_wait = max_wait;
        self
    }

    /// The same proposer ignoring `HTTP_PROXY` and the like: the tests' servers are
    /// on 127.0.0.1 whatever proxy the machine running them sets.
    #[cfg(test)]
    pub(crate) fn without_proxy(mut self) -> Self {
        let timeout = self.settings.timeout.min(Duration::from_secs(30));
        if let Ok(c) = reqwest::Client::builder()
            .connect_timeout(timeout)
            .no_proxy()
            .build()
        {
            self.client = c;
        }
        self
    }

    /// The longest wait between two attempts.
    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }

    pub fn settings(&self) -> &OpenAiSettings {
        &self.settings
    }

    /// The key, read from its environment variable now (None: no key configured).
    fn key(&self) -> Result<Option<String>, ProposalErrorKind> {
        let Some(var) = &self.settings.api_key_env else {
            return Ok(None);
        };
        let why = match std::env::var(var) {
            Ok(k) if !k.trim().is_empty() => return Ok(Some(k.trim().to_string())),
            Ok(_) => "empty",
            Err(std::env::VarError::NotPresent) => "not set",
            Err(std::env::VarError::NotUnicode(_)) => "not valid text",
        };
        Err(ProposalErrorKind::Key {
            var: var.clone(),
            why,
        })
    }

    /// The request body: the model, the two messages and the sampling options set.
    pub fn body(&self, req: &ProposalRequest) -> serde_json::Value {
        let (system, user) = messages(req);
        let s = &self.settings;
        let mut body = json!({
            "model": s.model,
            "messages": [
                { "role": "system", "content": system },
                { "role": "user", "content": user },
            ],
        });
        if let Some(map) = body.as_object_mut() {
            if let Some(t) = s.temperature {
                map.insert("temperature".into(), json!(t));
            }
            if let Some(p) = s.top_p {
                map.insert("top_p".into(), json!(p));
            }
            if let Some(m) = s.max_tokens {
                map.insert("max_tokens".into(), json!(m));
            }
        }
        body
    }

    /// Asks the endpoint for a proposal.
    pub async fn propose(&self, req: &ProposalRequest) -> Result<Proposal, ProposalError> {
        let started = Instant::now();
        let spent = |usage: Usage| Usage {
            latency_s: started.elapsed().as_secs_f64(),
            ..usage
        };
        let key = self
            .key()
            .map_err(|k| ProposalError::new(k, spent(Usage::default())))?;
        let body = self.body(req);
        let prompt_bytes = body.to_string().len();
        let attempts = self.settings.retries.saturating_add(1);
        let mut attempt = 0;
        let answer = loop {
            attempt += 1;
            let outcome = tokio::time::timeout(
                self.settings.timeout,
                self.attempt(&body, key.as_deref(), attempt),
            )
            .await;
            let (wait, kind) = match outcome {
                Ok(Ok(bytes)) => break bytes,
                // Not retried: a generation that ran out of time would likely run out
                // again, and each try may be billed.
                Err(_) => {
                    let after_s = self.settings.timeout.as_secs_f64();
                    let kind = ProposalErrorKind::Timeout { after_s };
                    return Err(ProposalError::new(kind, spent(Usage::default())));
                }
                Ok(Err(Attempt::Fatal(kind))) => {
                    return Err(ProposalError::new(kind, spent(Usage::default())))
                }
                Ok(Err(Attempt::Retry(wait, kind))) => (wait, kind),
            };
            if attempt >= attempts {
                return Err(ProposalError::new(kind, spent(Usage::default())));
            }
            tokio::time::sleep(retry_wait(attempt, wait, self.backoff, self.max_wait)).await;
        };
        let (proposal, usage) = self.read_answer(&answer, prompt_bytes, key.as_deref());
        match proposal {
            Ok((source, explanation)) => Ok(Proposal {
                source,
                explanation,
                usage: spent(usage),
            }),
            Err(reason) => Err(ProposalError::new(
                ProposalErrorKind::Malformed(reason),
                spent(usage),
            )),
        }
    }

    /// One POST: the answer's bytes on a 2xx, else why not.
    async fn attempt(
        &self,
        body: &serde_json::Value,
        key: Option<&str>,
        attempt: u32,
    ) -> Result<Vec<u8>, Attempt> {
        let url = format!("{}/chat/completions", self.settings.base_url);
        let mut rb = self.client.post(url).json(body);
        if let Some(k) = key {
            let mut v = HeaderValue::from_str(&format!("Bearer {k}")).map_err(|_| {
                Attempt::Fatal(ProposalErrorKind::Key {
                    var: self.settings.api_key_env.clone().unwrap_or_default(),
                    why: "not valid in an HTTP header",
                })
            })?;
            v.set_sensitive(true);
            rb = rb.header(AUTHORIZATION, v);
        }
        let transport = |e: reqwest::Error| {
            // The URL is the configured base URL; the error names no header.
            let reason = redact(&error_chain(&e), key);
            Attempt::Retry(
                None,
                ProposalErrorKind::Transport {
                    attempts: attempt,
                    reason,
                },
            )
        };
        let resp = rb.send().await.map_err(transport)?;
        let status = resp.status();
        let retry_after = retry_after(resp.headers());
        if status.is_success() {
            return read_limited(resp, self.limit).await.map_err(|e| match e {
                Some(e) => transport(e),
                None => Attempt::Fatal(ProposalErrorKind::TooLarge { limit: self.limit }),
            });
        }
        // An error's body is read for its message, within the same limit.
        let text = read_limited(resp, self.limit)
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let body = truncate(&redact(text.trim(), key), MAX_ERROR_TEXT);
        let code = status.as_u16();
        let kind = if code == 429 {
            ProposalErrorKind::RateLimited { attempts: attempt }
        } else {
            ProposalErrorKind::Status {
                status: code,
                attempts: attempt,
                body,
            }
        };
        if code == 429 || code == 408 || status.is_server_error() {
            Err(Attempt::Retry(retry_after, kind))
        } else {
            Err(Attempt::Fatal(kind))
        }
    }

    /// The proposal in a 2xx answer, and its usage (estimated when the endpoint
    /// reports none, or when the answer is not JSON at all).
    fn read_answer(
        &self,
        answer: &[u8],
        prompt_bytes: usize,
        key: Option<&str>,
    ) -> (Result<(String, String), String>, Usage) {
        let estimate = |out_bytes: usize| {
            let (i, o) = (
                prompt_bytes.div_ceil(4) as u64,
                out_bytes.div_ceil(4) as u64,
            );
            Usage {
                input_tokens: i,
                output_tokens: o,
                dollars: token_dollars(i, o, &self.settings.prices),
                latency_s: 0.0,
                estimated: true,
            }
        };
        let c: Completion = match serde_json::from_slice(answer) {
            Ok(c) => c,
            Err(e) => {
                let reason = format!("the answer is not chat-completions JSON ({e})");
                return (Err(reason), estimate(answer.len()));
            }
        };
        let choice = c.choices.into_iter().next();
        let content = choice.as_ref().and_then(|c| c.message.content.clone());
        let usage = match c.usage {
            Some(u) => Usage {
                input_tokens: u.prompt_tokens,
                output_tokens: u.completion_tokens,
                dollars: token_dollars(u.prompt_tokens, u.completion_tokens, &self.settings.prices),
                latency_s: 0.0,
                estimated: false,
            },
            None => estimate(content.as_deref().map_or(answer.len(), str::len)),
        };
        let Some(content) = content else {
            let why = if choice.is_none() {
                "no choices"
            } else {
                "a choice with no message content"
            };
            return (Err(format!("the answer holds {why}")), usage);
        };
        let content = redact(&content, key);
        let cut = choice
            .and_then(|c| c.finish_reason)
            .is_some_and(|r| r == "length");
        let result = match extract_code(&content) {
            Ok((code, rest)) => Ok((code, rest)),
            Err(e) if cut => Err(format!(
                "{e}; the answer was cut at max_tokens (finish_reason \"length\"): raise `max_tokens`"
            )),
            Err(e) => Err(e),
        };
        (result, usage)
    }
}

/// The kernel in a model's answer: the longest fenced block tagged as CUDA or C++
/// (or untagged), and the text around it as the explanation.
pub fn extract_code(content: &str) -> Result<(String, String), String> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, usize)> = None; // (start of the fence line, first code byte)
    let mut unclosed = false;
    let mut at = 0;
    for line in content.split_inclusive('\n') {
        let t = line.trim();
        match open {
            None => {
                if let Some(lang) = t.strip_prefix("```") {
                    let lang = lang.trim().to_ascii_lowercase();
                    if FENCE_LANGUAGES.contains(&lang.as_str()) {
                        open = Some((at, at + line.len()));
                    } else {
                        open = Some((at, usize::MAX)); // another language: skipped
                    }
                }
            }
            Some((fence, code)) if t == "```" => {
                if code != usize::MAX {
                    blocks.push((fence, code, at, at + line.len()));
                }
                open = None;
            }
            Some(_) => {}
        }
        at += line.len();
    }
    if let Some((_, code)) = open {
        unclosed = code != usize::MAX;
    }
    let Some(&(fence, code, end, after)) = blocks.iter().max_by_key(|(_, c, e, _)| e - c) else {
        return Err(if unclosed {
            "its ```cuda block is not closed (the answer was cut short)".to_string()
        } else {
            "it holds no ```cuda fenced code block".to_string()
        });
    };
    let source = content[code..end].to_string();
    if source.trim().is_empty() {
        return Err("its ```cuda block is empty".to_string());
    }
    let explanation = [content[..fence].trim(), content[after..].trim()]
        .into_iter()
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n");
    Ok((source, explanation))
}

/// The parts of a chat-completions answer read (others are ignored).
#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<ApiUsage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ChoiceMessage,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    content: Option<String>,
}

#[derive(Deserialize)]
struct ApiUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}
