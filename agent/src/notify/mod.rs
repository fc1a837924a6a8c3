//! Run notifications (issue 17, item 6): a [`Notice`] (the run ended, a kernel's
//! first gain, the run failed) POSTed as JSON to each webhook of `nightshift.toml`'s
//! `[notify]` ([`crate::settings::Notify`]), in the webhook's format.
//!
//! The loop calls [`Notifier::send`], which returns at once: the POSTs run in a task
//! of their own, so a slow or dead webhook never holds up the GPU. At the end of a
//! run, where the runtime may stop right after, it awaits [`Notifier::send_now`]
//! instead, which takes at most the retry policy's worst case (by default 4 attempts
//! of 10 s and 7 s of backoff, or up to 30 s per `Retry-After`).
//!
//! Each webhook gets its own attempts: a lost connection, a timeout, a 429 or a 5xx
//! is tried again after the server's `Retry-After` (at most [`MAX_RETRY_WAIT`]) or a
//! doubling backoff; another answer is final. What happened to each is a
//! [`Delivery`]: failing to notify is a result, never an error of the run.
//!
//! A webhook's URL is a secret (a Slack webhook's path is its credential), so it
//! appears only as [`redact_url`] has it — in a [`Delivery`], an error and a log
//! line alike — and error texts from the HTTP client are built without it.
//!
//! Sending each notice once (a kernel's first gain only once per run, the end once)
//! is the caller's to keep, by [`Notice::key`].

mod notice;
mod of_run;

#[cfg(test)]
mod tests;

use std::fmt;
use std::time::Duration;

use serde_json::Value;
use tokio::task::{JoinHandle, JoinSet};

use crate::http::{error_chain, read_limited, retry_after, retry_wait};
use crate::settings::{Notify, Webhook};

pub use notice::{Gain, Notice, SpendLine};
pub use of_run::{commit_gain, end_notice, gains, notify_end, spend_line};

/// Attempts after the first.
pub const DEFAULT_RETRIES: u32 = 3;
/// The wait after the first failed attempt; doubled after each next one.
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);
/// One attempt, from connecting to the answer's status.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// No wait between attempts is longer, whatever `Retry-After` asks.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);

/// The most of a failing answer's body read, and the most of it kept in an error.
const MAX_ERROR_BODY_READ: usize = 64 << 10;
const MAX_ERROR_BODY_KEPT: usize = 300;

/// What became of one notice at one webhook (journaled as it is).
pub use crate::journal::Delivery;

/// Sends notices to the configured webhooks. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    webhooks: Vec<Webhook>,
    /// Err: why no HTTP client could be built (every delivery then says so).
    client: Result<reqwest::Client, String>,
    retries: u32,
    backoff: Duration,
    timeout: Duration,
}

/// How one attempt ended.
enum Attempt {
    Delivered(u16),
    Failed {
        status: Option<u16>,
        error: String,
        /// Worth another attempt (lost connection, timeout, 429, 5xx).
        retry: bool,
        retry_after: Option<Duration>,
    },
}

impl Notifier {
    /// A notifier for `settings`' webhooks, with the default retry policy. Never
    /// fails: should no HTTP client be possible, each delivery reports why. With no
    /// webhooks it sends nothing.
    pub fn new(settings: &Notify) -> Notifier {
        Notifier {
            webhooks: settings.webhooks.clone(),
            client: client(true),
            retries: DEFAULT_RETRIES,
            backoff: DEFAULT_BACKOFF,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same notifier with another retry policy: `retries` attempts after the
    /// first, `backoff` before the second (doubled each time after), `timeout` for
    /// each attempt.
    pub fn with_retry(mut self, retries: u32, backoff: Duration, timeout: Duration) -> Self {
        self.retries = retries;
        self.backoff = backoff;
        self.timeout = timeout;
        self
    }

    /// The same notifier ignoring `HTTP_PROXY` and the like: the tests' servers are
    /// on 127.0.0.1 whatever proxy the machine running them sets.
    #[cfg(test)]
    pub(crate) fn without_proxy(mut self) -> Self {
        self.client = client(false);
        self
    }

    /// No webhook is configured.
    pub fn is_empty(&self) -> bool {
        self.webhooks.is_empty()
    }

    /// Sends `notice` to every webhook in the background and returns at once; the
    /// handle yields one [`Delivery`] per webhook, in the configured order.
    ///
    /// The task is spawned on the current tokio runtime, so it makes progress while
    /// the caller awaits something else, and stops with the runtime (use
    /// [`Notifier::send_now`] where the runtime is about to end). Called outside any
    /// runtime, it sends from a thread and a runtime of its own; should the system
    /// refuse even those, the handle yields a cancelled `JoinError`. Never panics.
    pub fn send(&self, notice: &Notice) -> JoinHandle<Vec<Delivery>> {
        let this = self.clone();
        let notice = notice.clone();
        let work = async move { this.send_now(&notice).await };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => rt.spawn(work),
            Err(_) => spawn_outside_runtime(work),
        }
    }

    /// Sends `notice` to every webhook, all at once, and waits until each is
    /// delivered or has failed for good (bounded by the retry policy). One
    /// [`Delivery`] per webhook, in the configured order; none with no webhooks.
    pub async fn send_now(&self, notice: &Notice) -> Vec<Delivery> {
        let mut set = JoinSet::new();
        for (i, w) in self.webhooks.iter().enumerate() {
            let this = self.clone();
            let url = w.url.clone();
            let body = notice.body(w.format);
            set.spawn(async move { (i, this.deliver(&url, &body).await) });
        }
        let mut out: Vec<Option<Delivery>> = vec![None; self.webhooks.len()];
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((i, d)) => out[i] = Some(d),
                Err(e) => tracing::error!("a notification task failed: {e}"),
            }
        }
        out.into_iter()
            .zip(&self.webhooks)
            .map(|(d, w)| {
                d.unwrap_or_else(|| Delivery {
                    url: redact_url(&w.url),
                    ok: false,
                    attempts: 0,
                    status: None,
                    error: Some("the sending task failed".to_string()),
                })
            })
            .collect()
    }

    /// One webhook: attempts until delivered, refused for good, or out of retries.
    async fn deliver(&self, url: &str, body: &Value) -> Delivery {
        let shown = redact_url(url);
        let client = match &self.client {
            Ok(c) => c,
            Err(e) => {
                let error = format!("the HTTP client cannot be set up: {e}");
                tracing::warn!(webhook = %shown, "notification not sent: {error}");
                return Delivery {
                    url: shown,
                    ok: false,
                    attempts: 0,
                    status: None,
                    error: Some(error),
                };
            }
        };
        let mut attempts = 0;
        loop {
            attempts += 1;
            let outcome = tokio::time::timeout(self.timeout, attempt(client, url, body))
                .await
                .unwrap_or_else(|_| Attempt::Failed {
                    status: None,
                    error: format!("no answer within {:.1} s", self.timeout.as_secs_f64()),
                    retry: true,
                    retry_after: None,
                });
            let (status, error, retry, asked) = match outcome {
                Attempt::Delivered(code) => {
                    tracing::debug!(webhook = %shown, attempts, "notification delivered");
                    return Delivery {
                        url: shown,
                        ok: true,
                        attempts,
                        status: Some(code),
                        error: None,
                    };
                }
                Attempt::Failed {
                    status,
                    error,
                    retry,
                    retry_after,
                } => (status, error, retry, retry_after),
            };
            if !retry || attempts > self.retries {
                tracing::warn!(
                    webhook = %shown,
                    attempts,
                    "notification not delivered: {error}"
                );
                return Delivery {
                    url: shown,
                    ok: false,
                    attempts,
                    status,
                    error: Some(error),
                };
            }
            let wait = retry_wait(attempts, asked, self.backoff, MAX_RETRY_WAIT);
            tracing::debug!(
                webhook = %shown,
                attempts,
                wait_s = wait.as_secs_f64(),
                "notification attempt failed, retrying: {error}"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

impl fmt::Debug for Notifier {
    /// The webhooks as [`redact_url`] shows them: a Debug print must not leak them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hooks: Vec<String> = self
            .webhooks
            .iter()
            .map(|w| format!("{} ({:?})", redact_url(&w.url), w.format))
            .collect();
        f.debug_struct("Notifier")
            .field("webhooks", &hooks)
            .field("client", &self.client.as_ref().map(|_| "ready"))
            .field("retries", &self.retries)
            .field("backoff", &self.backoff)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// One POST of `body` to `url`.
async fn attempt(client: &reqwest::Client, url: &str, body: &Value) -> Attempt {
    let resp = match client.post(url).json(body).send().await {
        Ok(r) => r,
        Err(e) => {
            return Attempt::Failed {
                status: None,
                error: format!(
                    "cannot be reached: {}",
                    scrub(&error_chain(&e.without_url()), url)
                ),
                retry: true,
                retry_after: None,
            }
        }
    };
    let status = resp.status();
    if status.is_success() {
        return Attempt::Delivered(status.as_u16());
    }
    let asked = retry_after(resp.headers());
    // The answer's text (Slack's "invalid_token", "no_service") says why.
    let text = read_limited(resp, MAX_ERROR_BODY_READ)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let text = crate::propose::truncate(&scrub(&text, url), MAX_ERROR_BODY_KEPT);
    let code = status.as_u16();
    let mut error = format!("answered HTTP {code}");
    if !text.is_empty() {
        error = format!("{error}: {text}");
    }
    Attempt::Failed {
        status: Some(code),
        error,
        retry: code == 429 || status.is_server_error(),
        retry_after: asked,
    }
}

/// The HTTP client: redirects are not followed (a webhook that moved is reported,
/// and the body never goes to a host the settings do not name).
fn client(proxy: bool) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("nightshift/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none());
    if !proxy {
        b = b.no_proxy();
    }
    b.build().map_err(|e| error_chain(&e.without_url()))
}

/// `url` as it may be shown: `scheme://host[:port]/…`, the path, query, fragment
/// and any user name or password cut (a Slack webhook's path is its secret).
pub fn redact_url(url: &str) -> String {
    let Ok(u) = reqwest::Url::parse(url.trim()) else {
        return "(not a URL)".to_string();
    };
    let host = u.host_str().unwrap_or_default();
    let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
    let bare = u.path() == "/" && u.query().is_none() && u.fragment().is_none();
    let rest = if bare { "/" } else { "/…" };
    format!("{}://{host}{port}{rest}", u.scheme())
}

/// `text` with `url` replaced by its redacted form, and its path, query and
/// password by `…`: an error text from below must not carry the secret, whatever
/// part of it the text chose to quote.
fn scrub(text: &str, url: &str) -> String {
    let mut out = text.replace(url.trim(), &redact_url(url));
    if let Ok(u) = reqwest::Url::parse(url.trim()) {
        let path_query = match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        };
        let parts = [
            path_query.as_str(),
            u.path(),
            u.query().unwrap_or_default(),
            u.password().unwrap_or_default(),
        ];
        for part in parts.into_iter().filter(|p| p.len() > 1) {
            out = out.replace(part, "…");
        }
    }
    out
}

/// [`Notifier::send`] without a runtime: a runtime of its own on a thread of its
/// own, which ends when the sending does.
fn spawn_outside_runtime(
    work: impl std::future::Future<Output = Vec<Delivery>> + Send + 'static,
) -> JoinHandle<Vec<Delivery>> {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("notifications not sent: no runtime to send them from: {e}");
            return cancelled();
        }
    };
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    let handle = rt.spawn(async move {
        let deliveries = work.await;
        let _ = done.send(());
        deliveries
    });
    let drive = move || {
        rt.block_on(async {
            let _ = finished.await;
        })
    };
    // On failure the closure, and with it the runtime, is dropped: the task is
    // cancelled and the handle says so.
    if let Err(e) = std::thread::Builder::new()
        .name("nightshift-notify".into())
        .spawn(drive)
    {
        tracing::error!("notifications not sent: no thread to send them from: {e}");
    }
    handle
}

/// A handle that yields a cancelled `JoinError` at once.
fn cancelled() -> JoinHandle<Vec<Delivery>> {
    // A runtime without I/O or timers opens nothing, so building one cannot fail.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime without drivers opens no resource");
    // Dropping the runtime before the task ever ran cancels it.
    rt.spawn(async { Vec::new() })
}
