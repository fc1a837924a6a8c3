//! What nightshift's two HTTP clients (the `openai` proposer and the run
//! notifications) share: how long to wait before the next attempt (`Retry-After`,
//! else doubling backoff), bodies read within a limit, and errors on one line.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};

/// The seconds of a `Retry-After` header (its HTTP-date form is not read: the
/// backoff applies then).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// The wait after failed attempt number `attempt` (1 for the first): what the server
/// asked for, else `backoff` doubled for each earlier attempt; never over `max_wait`.
pub fn retry_wait(
    attempt: u32,
    retry_after: Option<Duration>,
    backoff: Duration,
    max_wait: Duration,
) -> Duration {
    let doubled = backoff.saturating_mul(1 << attempt.saturating_sub(1).min(16));
    retry_after.unwrap_or(doubled).min(max_wait)
}

/// Reads a body chunk by chunk: Err(None) past `limit` bytes (nothing more is read).
pub async fn read_limited(
    mut resp: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, Option<reqwest::Error>> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(None);
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(Some)? {
        if out.len() + chunk.len() > limit {
            return Err(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// An error and its causes, on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_reads_seconds_only() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static(" 7 "));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn the_wait_doubles_unless_the_server_says_and_is_capped() {
        let (b, max) = (Duration::from_secs(1), Duration::from_secs(30));
        let waits: Vec<u64> = (1..=6)
            .map(|a| retry_wait(a, None, b, max).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30]);
        let asked = Some(Duration::from_secs(3));
        assert_eq!(retry_wait(5, asked, b, max), Duration::from_secs(3));
        let asked = Some(Duration::from_secs(3600));
        assert_eq!(retry_wait(1, asked, b, max), max);
        assert_eq!(retry_wait(u32::MAX, None, b, Duration::MAX), b * (1 << 16));
    }
}
