//! `nightshift.toml`: the optional settings at the repository root that are not
//! budgets — which proposer writes code (`[proposer]`: an OpenAI-compatible endpoint
//! or an external command) and where run notifications go (`[notify]`). Parsed
//! strictly like every input: unknown keys, wrong types and values out of range are
//! errors naming the file, the line and the key.
//!
//! The API key itself is never in this file: `api_key_env` names the environment
//! variable that holds it, read when a request is sent (see [`crate::propose`]).

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::spec::toml_text::TomlText;
use crate::spec::SpecError;

#[cfg(test)]
mod tests;

/// The file's name at the repository root.
pub const FILE_NAME: &str = "nightshift.toml";

/// The commented example shipped at the repository root (a test keeps it parseable).
pub const EXAMPLE: &str = include_str!("../../../nightshift.toml.example");

/// An `openai` proposer's request timeout when the file sets none.
pub const DEFAULT_OPENAI_TIMEOUT: Duration = Duration::from_secs(120);
/// A `command` proposer's timeout when the file sets none: an agent program may
/// compile and test before it answers.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(600);
/// Retries of an `openai` request (429 and 5xx answers, lost connections).
pub const DEFAULT_RETRIES: u32 = 3;

/// The longest timeout a proposer may be given: a day.
const MAX_TIMEOUT_S: f64 = 86_400.0;
/// The most retries: beyond this a broken endpoint only burns the night.
const MAX_RETRIES: i64 = 10;

/// A validated `nightshift.toml`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Settings {
    /// None: no proposer is configured (the loop uses its own rewrites only).
    pub proposer: Option<ProposerSettings>,
    pub notify: Notify,
    /// `[worker] launcher`: the command the GPU worker is started through (empty:
    /// started directly), e.g. `["srun", "--gres=gpu:1", "--ntasks=1"]` or
    /// `["ssh", "gpu-host"]`; the worker's own command line follows it.
    pub launcher: Vec<String>,
}

/// Who writes code when a proposal pattern asks for it.
#[derive(Debug, Clone, PartialEq)]
pub enum ProposerSettings {
    OpenAi(OpenAiSettings),
    Command(CommandSettings),
}

impl ProposerSettings {
    /// `openai` or `command`, as written in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            ProposerSettings::OpenAi(_) => "openai",
            ProposerSettings::Command(_) => "command",
        }
    }
}

/// An OpenAI-compatible chat-completions endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiSettings {
    /// Without a trailing `/`; requests go to `{base_url}/chat/completions`.
    pub base_url: String,
    pub model: String,
    /// The name of the environment variable holding the API key; None for a local
    /// server that wants none (no `Authorization` header is sent).
    pub api_key_env: Option<String>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<u32>,
    /// One request, from connecting to the last byte of the answer.
    pub timeout: Duration,
    pub retries: u32,
    pub prices: TokenPrices,
}

/// Dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenPrices {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

/// An external program speaking JSON on stdin and stdout.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandSettings {
    /// The program and its arguments, started without a shell.
    pub argv: Vec<String>,
    pub timeout: Duration,
    /// Dollars charged for each call.
    pub price_per_call: f64,
}

/// Where run notifications are sent.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Notify {
    pub webhooks: Vec<Webhook>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub url: String,
    pub format: WebhookFormat,
}

/// The body a webhook is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// `{"text": "..."}`, which Slack, Mattermost and many chat services accept.
    Slack,
    /// The event as plain JSON.
    Json,
}

impl Settings {
    /// `nightshift.toml` in `root`, or the defaults when there is none.
    pub fn load_optional(root: &Path) -> Result<Settings, SpecError> {
        let path = root.join(FILE_NAME);
        if !path.exists() {
            return Ok(Settings::default());
        }
        Self::load(&path)
    }

    /// Reads and validates a settings file.
    pub fn load(path: &Path) -> Result<Settings, SpecError> {
        let text = crate::files::read_text(path, crate::files::MAX_INPUT_BYTES).map_err(|e| {
            SpecError {
                path: path.to_path_buf(),
                line: None,
                key: None,
                message: format!("cannot read the settings: {e}"),
            }
        })?;
        Self::parse(&text, path)
    }

    /// Validates settings text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Settings, SpecError> {
        let ctx = TomlText::new(text, path);
        let raw: RawSettings = ctx.parse()?;
        let proposer = raw.proposer.map(|p| proposer(&ctx, p)).transpose()?;
        let notify = match raw.notify {
            Some(n) => notify(&ctx, n)?,
            None => Notify::default(),
        };
        let launcher = match raw.worker.and_then(|w| w.launcher) {
            Some(l) => launcher(&ctx, l)?,
            None => vec![],
        };
        Ok(Settings {
            proposer,
            notify,
            launcher,
        })
    }
}

// ---------------------------------------------------------------------------
// As written in TOML: one flat table for both kinds, so that every value keeps its
// span (serde's tagged enums lose them) and a key of the other kind is named.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    proposer: Option<Spanned<RawProposer>>,
    notify: Option<RawNotify>,
    worker: Option<RawWorker>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorker {
    launcher: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProposer {
    kind: Option<Spanned<String>>,
    // openai
    base_url: Option<Spanned<String>>,
    model: Option<Spanned<String>>,
    api_key_env: Option<Spanned<String>>,
    temperature: Option<Spanned<f64>>,
    top_p: Option<Spanned<f64>>,
    max_tokens: Option<Spanned<i64>>,
    retries: Option<Spanned<i64>>,
    price_input_per_mtok: Option<Spanned<f64>>,
    price_output_per_mtok: Option<Spanned<f64>>,
    // command
    argv: Option<Spanned<Vec<String>>>,
    price_per_call: Option<Spanned<f64>>,
    // both
    timeout_s: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    #[serde(default)]
    webhooks: Vec<Spanned<RawWebhook>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
}

type Ctx<'a> = TomlText<'a>;

/// The most words a launcher may have, and the longest word.
const MAX_LAUNCHER_WORDS: usize = 64;
const MAX_LAUNCHER_WORD: usize = 4096;

/// `[worker] launcher`: words, none empty, none with a NUL, not too many.
fn launcher(ctx: &Ctx, raw: Spanned<Vec<String>>) -> Result<Vec<String>, SpecError> {
    let span = raw.span();
    let words = raw.into_inner();
    let bad = |m: String| ctx.err(Some(span.clone()), "worker.launcher", m);
    if words.len() > MAX_LAUNCHER_WORDS {
        return Err(bad(format!(
            "has {} words, more than {MAX_LAUNCHER_WORDS}",
            words.len()
        )));
    }
    for (i, w) in words.iter().enumerate() {
        if w.is_empty() || w.contains('\0') || w.len() > MAX_LAUNCHER_WORD {
            return Err(bad(format!(
                "word {} is empty, holds a NUL or is longer than {MAX_LAUNCHER_WORD} bytes",
                i + 1
            )));
        }
    }
    Ok(words)
}

fn proposer(ctx: &Ctx, raw: Spanned<RawProposer>) -> Result<ProposerSettings, SpecError> {
    let span = raw.span();
    let raw = raw.into_inner();
    let kind = raw.kind.as_ref().ok_or_else(|| {
        ctx.err(
            Some(span.clone()),
            "proposer.kind",
            "is required: \"openai\" or \"command\"",
        )
    })?;
    match kind.get_ref().as_str() {
        "openai" => openai(ctx, &raw, span).map(ProposerSettings::OpenAi),
        "command" => command(ctx, &raw, span).map(ProposerSettings::Command),
        other => Err(ctx.err(
            Some(kind.span()),
            "proposer.kind",
            format!("`{other}` is not a proposer kind (known: openai, command)"),
        )),
    }
}

/// Refuses the keys of the other kind, naming the first one set.
fn foreign(
    ctx: &Ctx,
    kind: &str,
    keys: &[(&str, Option<std::ops::Range<usize>>)],
) -> Result<(), SpecError> {
    match keys.iter().find(|(_, s)| s.is_some()) {
        Some((key, span)) => Err(ctx.err(
            span.clone(),
            &format!("proposer.{key}"),
            format!("is not a setting of a `{kind}` proposer"),
        )),
        None => Ok(()),
    }
}

fn span_of<T>(v: &Option<Spanned<T>>) -> Option<std::ops::Range<usize>> {
    v.as_ref().map(Spanned::span)
}

fn openai(
    ctx: &Ctx,
    raw: &RawProposer,
    span: std::ops::Range<usize>,
) -> Result<OpenAiSettings, SpecError> {
    foreign(
        ctx,
        "openai",
        &[
            ("argv", span_of(&raw.argv)),
            ("price_per_call", span_of(&raw.price_per_call)),
        ],
    )?;
    let base = required(
        ctx,
        raw.base_url.as_ref(),
        &span,
        "base_url",
        "the endpoint, e.g. \"https://api.openai.com/v1\"",
    )?;
    let model = required(
        ctx,
        raw.model.as_ref(),
        &span,
        "model",
        "the model's name at the endpoint",
    )?;
    if model.get_ref().trim().is_empty() {
        return Err(ctx.err(Some(model.span()), "proposer.model", "is empty"));
    }
    let price = |v: &Option<Spanned<f64>>, key: &str| -> Result<f64, SpecError> {
        let key = format!("proposer.{key}");
        let v = v.as_ref().ok_or_else(|| {
            ctx.err(
                Some(span.clone()),
                &key,
                "is required: dollars per million tokens (0 for a local model), so the \
                 proposer's bill is charged to the run's budget",
            )
        })?;
        non_negative(ctx, v, &key, "dollars per million tokens")
    };
    let prices = TokenPrices {
        input_per_mtok: price(&raw.price_input_per_mtok, "price_input_per_mtok")?,
        output_per_mtok: price(&raw.price_output_per_mtok, "price_output_per_mtok")?,
    };
    Ok(OpenAiSettings {
        base_url: base_url(ctx, base)?,
        model: model.get_ref().trim().to_string(),
        api_key_env: raw
            .api_key_env
            .as_ref()
            .map(|v| env_name(ctx, v))
            .transpose()?,
        temperature: raw
            .temperature
            .as_ref()
            .map(|v| in_range(ctx, v, "proposer.temperature", 0.0, 2.0))
            .transpose()?,
        top_p: raw
            .top_p
            .as_ref()
            .map(|v| in_range(ctx, v, "proposer.top_p", f64::MIN_POSITIVE, 1.0))
            .transpose()?,
        max_tokens: raw
            .max_tokens
            .as_ref()
            .map(|v| int_in(ctx, v, "proposer.max_tokens", 1, i64::from(u32::MAX)))
            .transpose()?,
        timeout: timeout(ctx, &raw.timeout_s, DEFAULT_OPENAI_TIMEOUT)?,
        retries: match &raw.retries {
            Some(v) => int_in(ctx, v, "proposer.retries", 0, MAX_RETRIES)?,
            None => DEFAULT_RETRIES,
        },
        prices,
    })
}

/// A string the `openai` kind cannot do without.
fn required<'a>(
    ctx: &Ctx,
    v: Option<&'a Spanned<String>>,
    table: &std::ops::Range<usize>,
    key: &str,
    what: &str,
) -> Result<&'a Spanned<String>, SpecError> {
    v.ok_or_else(|| {
        ctx.err(
            Some(table.clone()),
            &format!("proposer.{key}"),
            format!("is required for an `openai` proposer: {what}"),
        )
    })
}

fn command(
    ctx: &Ctx,
    raw: &RawProposer,
    span: std::ops::Range<usize>,
) -> Result<CommandSettings, SpecError> {
    foreign(
        ctx,
        "command",
        &[
            ("base_url", span_of(&raw.base_url)),
            ("model", span_of(&raw.model)),
            ("api_key_env", span_of(&raw.api_key_env)),
            ("temperature", span_of(&raw.temperature)),
            ("top_p", span_of(&raw.top_p)),
            ("max_tokens", span_of(&raw.max_tokens)),
            ("retries", span_of(&raw.retries)),
            ("price_input_per_mtok", span_of(&raw.price_input_per_mtok)),
            ("price_output_per_mtok", span_of(&raw.price_output_per_mtok)),
        ],
    )?;
    let argv = raw.argv.as_ref().ok_or_else(|| {
        ctx.err(
            Some(span),
            "proposer.argv",
            "is required for a `command` proposer: the program and its arguments, \
             e.g. [\"python3\", \"my_agent.py\"] (no shell)",
        )
    })?;
    let bad = |m: &str| ctx.err(Some(argv.span()), "proposer.argv", m.to_string());
    match argv.get_ref().first() {
        None => return Err(bad("is empty: name the program to start")),
        Some(p) if p.trim().is_empty() => return Err(bad("names an empty program")),
        _ => {}
    }
    if argv.get_ref().iter().any(|a| a.contains('\0')) {
        return Err(bad("holds a NUL character"));
    }
    Ok(CommandSettings {
        argv: argv.get_ref().clone(),
        timeout: timeout(ctx, &raw.timeout_s, DEFAULT_COMMAND_TIMEOUT)?,
        price_per_call: match &raw.price_per_call {
            Some(v) => non_negative(ctx, v, "proposer.price_per_call", "dollars")?,
            None => 0.0,
        },
    })
}

fn notify(ctx: &Ctx, raw: RawNotify) -> Result<Notify, SpecError> {
    let mut webhooks = Vec::new();
    for (i, w) in raw.webhooks.into_iter().enumerate() {
        let span = w.span();
        let w = w.into_inner();
        let key = |k: &str| format!("notify.webhooks[{i}].{k}");
        let url = w
            .url
            .ok_or_else(|| ctx.err(Some(span.clone()), &key("url"), "is required"))?;
        let url = http_url(ctx, &url, &key("url"))?;
        let format = match w.format.as_ref().map(|f| (f.get_ref().as_str(), f.span())) {
            None | Some(("json", _)) => WebhookFormat::Json,
            Some(("slack", _)) => WebhookFormat::Slack,
            Some((other, s)) => {
                return Err(ctx.err(
                    Some(s),
                    &key("format"),
                    format!("`{other}` is not a webhook format (known: slack, json)"),
                ))
            }
        };
        webhooks.push(Webhook { url, format });
    }
    Ok(Notify { webhooks })
}

// ---------------------------------------------------------------------------
// One check per kind of value.

/// An `http(s)://` URL without a query or fragment, returned without a trailing `/`.
fn base_url(ctx: &Ctx, v: &Spanned<String>) -> Result<String, SpecError> {
    let url = http_url(ctx, v, "proposer.base_url")?;
    let parsed = reqwest::Url::parse(&url).ok();
    if parsed.is_some_and(|u| u.query().is_some() || u.fragment().is_some()) {
        return Err(ctx.err(
            Some(v.span()),
            "proposer.base_url",
            "must not carry a query or a fragment: requests go to {base_url}/chat/completions",
        ));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// A URL nightshift may send to. The URL is not repeated in the message: a
/// webhook's URL is itself a secret.
fn http_url(ctx: &Ctx, v: &Spanned<String>, key: &str) -> Result<String, SpecError> {
    let text = v.get_ref().trim();
    let err = |m: &str| ctx.err(Some(v.span()), key, m.to_string());
    let url = reqwest::Url::parse(text).map_err(|e| err(&format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(err("must be an http:// or https:// URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(err("names no host"));
    }
    Ok(text.to_string())
}

/// The name of an environment variable. A value that is not one is not echoed: it
/// may be the key itself, pasted where its variable's name belongs.
fn env_name(ctx: &Ctx, v: &Spanned<String>) -> Result<String, SpecError> {
    let name = v.get_ref().as_str();
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(name.to_string())
    } else {
        Err(ctx.err(
            Some(v.span()),
            "proposer.api_key_env",
            "must be the NAME of the environment variable holding the API key (letters, \
             digits and `_`, e.g. \"OPENAI_API_KEY\"), never the key itself",
        ))
    }
}

fn timeout(ctx: &Ctx, v: &Option<Spanned<f64>>, default: Duration) -> Result<Duration, SpecError> {
    let Some(v) = v else {
        return Ok(default);
    };
    let x = in_range(
        ctx,
        v,
        "proposer.timeout_s",
        f64::MIN_POSITIVE,
        MAX_TIMEOUT_S,
    )?;
    Ok(Duration::from_secs_f64(x))
}

fn non_negative(ctx: &Ctx, v: &Spanned<f64>, key: &str, unit: &str) -> Result<f64, SpecError> {
    let x = *v.get_ref();
    if x.is_finite() && x >= 0.0 {
        Ok(x)
    } else {
        Err(ctx.err(
            Some(v.span()),
            key,
            format!("must be a finite number of {unit}, 0 or more, got {x}"),
        ))
    }
}

fn in_range(ctx: &Ctx, v: &Spanned<f64>, key: &str, lo: f64, hi: f64) -> Result<f64, SpecError> {
    let x = *v.get_ref();
    if x.is_finite() && (lo..=hi).contains(&x) {
        Ok(x)
    } else {
        let lo = if lo == f64::MIN_POSITIVE {
            "above 0".to_string()
        } else {
            format!("at least {lo}")
        };
        Err(ctx.err(
            Some(v.span()),
            key,
            format!("must be {lo} and at most {hi}, got {x}"),
        ))
    }
}

fn int_in<T: TryFrom<i64>>(
    ctx: &Ctx,
    v: &Spanned<i64>,
    key: &str,
    lo: i64,
    hi: i64,
) -> Result<T, SpecError> {
    let x = *v.get_ref();
    (lo..=hi)
        .contains(&x)
        .then(|| T::try_from(x).ok())
        .flatten()
        .ok_or_else(|| {
            ctx.err(
                Some(v.span()),
                key,
                format!("must be an integer from {lo} to {hi}, got {x}"),
            )
        })
}
