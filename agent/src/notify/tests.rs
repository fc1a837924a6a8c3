//! Notifications without a network: the texts and bodies, and the sending against a
//! scripted HTTP server on 127.0.0.1 (retries, refusals, dead ports, several
//! webhooks, sending in the background), with the webhook's secret path kept out
//! of everything returned.

use std::time::{Duration, Instant};

use super::*;
use crate::settings::WebhookFormat;
use crate::testutil::server::{http, Reply, Server};

/// The secret part of the tests' webhook URLs.
const SECRET: &str = "/services/T0001/B0002/s3cr3tT0ken";

fn notifier(hooks: &[(String, WebhookFormat)]) -> Notifier {
    let webhooks = hooks
        .iter()
        .map(|(url, format)| Webhook {
            url: url.clone(),
            format: *format,
        })
        .collect();
    Notifier::new(&Notify { webhooks })
        .with_retry(3, Duration::from_millis(10), Duration::from_secs(5))
        .without_proxy()
}

fn one(server: &Server, format: WebhookFormat) -> Notifier {
    notifier(&[(server.url(SECRET), format)])
}

fn ok() -> Reply {
    http(200, &[], b"ok")
}

fn gain(kernel: &str, speedup: f64, lo: f64, hi: f64, commit: Option<&str>) -> Gain {
    Gain {
        kernel: kernel.into(),
        best: "tile=128".into(),
        speedup,
        lo,
        hi,
        verdict: "FAST".into(),
        commit: commit.map(str::to_string),
    }
}

fn spent() -> SpendLine {
    SpendLine {
        gpu_s: 738.0,
        gpu_limit_s: Some(3600.0),
        dollars: 1.2,
        proposer_dollars: 0.3,
        dollars_limit: Some(5.0),
        wall_s: 9000.0,
        wall_limit_s: Some(28_800.0),
    }
}

fn ended(gains: Vec<Gain>) -> Notice {
    Notice::RunEnded {
        run_id: "2026-05-01-0200".into(),
        branch: "nightshift/2026-05-01-0200".into(),
        device: "NVIDIA H200".into(),
        reason: "the GPU budget is spent".into(),
        gains,
        spent: spent(),
        report: Some("reports/2026-05-01-0200/report.md".into()),
    }
}

fn two_gains() -> Vec<Gain> {
    vec![
        gain(
            "gemm",
            1.234,
            1.211,
            1.252,
            Some("abc1234def5678abc1234def5678abc1234def56"),
        ),
        gain("softmax", 1.05, 1.01, 1.09, None),
    ]
}

// ---------------------------------------------------------------------------
// What is said.

#[test]
fn a_run_ended_with_gains_lists_them_with_the_spend_and_the_report() {
    assert_eq!(
        ended(two_gains()).text(),
        "nightshift run 2026-05-01-0200 on NVIDIA H200: stopped: the GPU budget is spent. \
         Gains: gemm 1.23x [1.21, 1.25] FAST via tile=128 (commit abc1234); \
         softmax 1.05x [1.01, 1.09] FAST via tile=128. \
         Branch: nightshift/2026-05-01-0200. \
         Spent 12.3 GPU-min of 60 ($1.20 of $5.00, proposer $0.30) in 2.5 h of 8 h. \
         Report: reports/2026-05-01-0200/report.md"
    );
}

#[test]
fn a_run_ended_without_gains_says_so_and_spends_without_limits() {
    let mut n = ended(vec![]);
    if let Notice::RunEnded {
        spent,
        report,
        reason,
        ..
    } = &mut n
    {
        *spent = SpendLine {
            gpu_s: 90.0,
            wall_s: 600.0,
            ..SpendLine::default()
        };
        *report = None;
        *reason = "every kernel is done.".into();
    }
    assert_eq!(
        n.text(),
        "nightshift run 2026-05-01-0200 on NVIDIA H200: stopped: every kernel is done. \
         No gains. Spent 1.5 GPU-min ($0.00) in 10 min."
    );
}

#[test]
fn figures_that_are_not_numbers_are_said_in_words() {
    let gains = vec![
        gain("gemm", 1.3, f64::NAN, f64::NAN, None),
        gain("rowsum", 1.1, 1.0, f64::INFINITY, None),
        gain("softmax", f64::NAN, f64::NAN, f64::NAN, None),
    ];
    let mut n = ended(gains);
    if let Notice::RunEnded { spent, .. } = &mut n {
        spent.gpu_s = f64::NAN;
        spent.dollars = f64::INFINITY;
        spent.gpu_limit_s = Some(f64::INFINITY);
        spent.wall_s = f64::NAN;
    }
    let text = n.text();
    assert!(text.contains("gemm 1.30x (no interval) FAST"), "{text}");
    assert!(text.contains("rowsum 1.10x (no interval) FAST"), "{text}");
    assert!(
        text.contains("softmax (speedup not measured) FAST"),
        "{text}"
    );
    assert!(text.contains("Spent ? GPU-min ($? of $5.00"), "{text}");
    for raw in ["NaN", "nan", "inf"] {
        assert!(!text.contains(raw), "`{raw}` printed raw: {text}");
    }
}

#[test]
fn a_first_gain_and_an_error_read_as_one_line_each() {
    let g = Notice::FirstGain {
        run_id: "r1".into(),
        kernel: "gemm".into(),
        gain: gain("gemm", 1.5, 1.4, 1.6, Some("0123abc")),
    };
    assert_eq!(
        g.text(),
        "nightshift run r1: first gain: gemm 1.50x [1.40, 1.60] FAST via tile=128 (commit 0123abc)."
    );
    let e = Notice::RunError {
        run_id: "r1".into(),
        error: "the worker died: signal 9".into(),
        report: Some("reports/r1/report.md".into()),
    };
    assert_eq!(
        e.text(),
        "nightshift run r1 failed: the worker died: signal 9. Report: reports/r1/report.md"
    );
}

#[test]
fn keys_name_the_event_and_a_first_gain_its_kernel() {
    let g = Notice::FirstGain {
        run_id: "r1".into(),
        kernel: "gemm".into(),
        gain: gain("gemm", 1.5, 1.4, 1.6, None),
    };
    let e = Notice::RunError {
        run_id: "r1".into(),
        error: "x".into(),
        report: None,
    };
    assert_eq!(ended(vec![]).key(), "run_ended");
    assert_eq!(g.key(), "first_gain:gemm");
    assert_eq!(e.key(), "run_error");
}

#[test]
fn the_json_body_is_the_notice_tagged_by_event_with_its_text() {
    let mut gains = two_gains();
    gains[1].lo = f64::NAN;
    let n = ended(gains);
    let body = n.body(WebhookFormat::Json);
    assert_eq!(body["event"], "run_ended");
    assert_eq!(body["run_id"], "2026-05-01-0200");
    assert_eq!(body["device"], "NVIDIA H200");
    assert_eq!(body["gains"][0]["kernel"], "gemm");
    assert_eq!(body["gains"][0]["speedup"], 1.234);
    assert_eq!(body["gains"][1]["lo"], "nan");
    assert_eq!(body["gains"][1]["commit"], serde_json::Value::Null);
    assert_eq!(body["spent"]["gpu_limit_s"], 3600.0);
    assert_eq!(body["report"], "reports/2026-05-01-0200/report.md");
    assert_eq!(body["text"], n.text());
    let back: Notice = serde_json::from_value(body).unwrap();
    assert_eq!(back.key(), "run_ended");

    let slack = n.body(WebhookFormat::Slack);
    assert_eq!(slack, serde_json::json!({ "text": n.text() }));
}

#[test]
fn redact_url_keeps_scheme_host_and_port_only() {
    let cases = [
        (
            "https://hooks.slack.com/services/T0/B0/XyZ",
            "https://hooks.slack.com/…",
        ),
        (
            "https://user:pa55@chat.example.com:8443/hook?token=abc#frag",
            "https://chat.example.com:8443/…",
        ),
        ("http://127.0.0.1:9000/?k=v", "http://127.0.0.1:9000/…"),
        ("https://[::1]:8080/x", "https://[::1]:8080/…"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com:443/", "https://example.com/"),
        ("not a url /services/x", "(not a URL)"),
    ];
    for (url, want) in cases {
        assert_eq!(redact_url(url), want, "{url}");
    }
}

#[test]
fn scrub_removes_the_url_and_its_parts_from_a_text() {
    let url = "https://u:hunter22@h.example/services/T/B/secret?token=abc";
    let text = format!("error for url ({url}): /services/T/B/secret?token=abc hunter22");
    let s = scrub(&text, url);
    for part in ["services", "secret", "token", "hunter22"] {
        assert!(!s.contains(part), "{s}");
    }
    assert!(s.contains("https://h.example/…"), "{s}");
}

#[test]
fn the_debug_print_of_a_notifier_hides_the_webhooks_paths() {
    let n = notifier(&[(
        format!("https://hooks.example{SECRET}"),
        WebhookFormat::Slack,
    )]);
    let d = format!("{n:?}");
    assert!(d.contains("https://hooks.example/…"), "{d}");
    assert!(!d.contains("s3cr3t"), "{d}");
}

// ---------------------------------------------------------------------------
// How it is sent.

#[tokio::test]
async fn a_slack_webhook_gets_exactly_the_text_as_json() {
    let server = Server::start(vec![ok()]);
    let n = ended(two_gains());
    let d = one(&server, WebhookFormat::Slack).send_now(&n).await;
    let origin = server.url("");
    assert_eq!(
        d,
        [Delivery {
            url: format!("{origin}/…"),
            ok: true,
            attempts: 1,
            status: Some(200),
            error: None,
        }]
    );
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert!(
        reqs[0].head.starts_with(&format!("POST {SECRET} HTTP/1.1")),
        "{}",
        reqs[0].head
    );
    assert_eq!(
        reqs[0].header("content-type").as_deref(),
        Some("application/json")
    );
    let body = reqs[0].json();
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["text"]);
    assert_eq!(body["text"], n.text());
}

#[tokio::test]
async fn a_json_webhook_gets_the_event_and_its_fields() {
    let server = Server::start(vec![ok()]);
    let n = Notice::FirstGain {
        run_id: "r1".into(),
        kernel: "gemm".into(),
        gain: gain("gemm", 1.5, 1.4, 1.6, Some("0123abc")),
    };
    let d = one(&server, WebhookFormat::Json).send_now(&n).await;
    assert!(d[0].ok, "{d:?}");
    let body = server.requests()[0].json();
    assert_eq!(body["event"], "first_gain");
    assert_eq!(body["run_id"], "r1");
    assert_eq!(body["kernel"], "gemm");
    assert_eq!(body["gain"]["speedup"], 1.5);
    assert_eq!(body["gain"]["verdict"], "FAST");
    assert_eq!(body["gain"]["commit"], "0123abc");
    assert_eq!(body["text"], n.text());
}

#[tokio::test]
async fn a_500_then_200_is_retried_and_delivered_once() {
    let server = Server::start(vec![http(500, &[], b"oops"), ok()]);
    let d = one(&server, WebhookFormat::Slack)
        .send_now(&ended(vec![]))
        .await;
    assert!(d[0].ok, "{d:?}");
    assert_eq!((d[0].attempts, d[0].status), (2, Some(200)));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].body, reqs[1].body, "the same message, sent again");
}

#[tokio::test]
async fn a_429_waits_as_long_as_retry_after_says() {
    let server = Server::start(vec![http(429, &[("Retry-After", "1")], b""), ok()]);
    let started = Instant::now();
    let d = one(&server, WebhookFormat::Slack)
        .send_now(&ended(vec![]))
        .await;
    let waited = started.elapsed();
    assert!(d[0].ok, "{d:?}");
    assert_eq!(d[0].attempts, 2);
    // The backoff alone would have been 10 ms.
    assert!(waited >= Duration::from_millis(950), "{waited:?}");
}

#[tokio::test]
async fn a_404_is_not_retried_and_says_why() {
    let server = Server::start(vec![http(404, &[], b"no_service\n"), ok()]);
    let d = one(&server, WebhookFormat::Slack)
        .send_now(&ended(vec![]))
        .await;
    assert!(!d[0].ok);
    assert_eq!((d[0].attempts, d[0].status), (1, Some(404)));
    assert_eq!(d[0].error.as_deref(), Some("answered HTTP 404: no_service"));
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_redirect_is_reported_not_followed() {
    let server = Server::start(vec![
        http(302, &[("Location", "http://127.0.0.1:9/elsewhere")], b""),
        ok(),
    ]);
    let d = one(&server, WebhookFormat::Json)
        .send_now(&ended(vec![]))
        .await;
    assert!(!d[0].ok);
    assert_eq!((d[0].attempts, d[0].status), (1, Some(302)));
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_5xx_that_persists_fails_after_every_retry() {
    let server = Server::start(vec![http(503, &[], b"down")]);
    let d = notifier(&[(server.url(SECRET), WebhookFormat::Slack)])
        .with_retry(2, Duration::from_millis(5), Duration::from_secs(5))
        .send_now(&ended(vec![]))
        .await;
    assert!(!d[0].ok);
    assert_eq!((d[0].attempts, d[0].status), (3, Some(503)));
    assert_eq!(d[0].error.as_deref(), Some("answered HTTP 503: down"));
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn a_webhook_that_does_not_answer_in_time_is_tried_again() {
    let server = Server::start(vec![Reply::Sleep(Duration::from_secs(5)), ok()]);
    let d = notifier(&[(server.url(SECRET), WebhookFormat::Slack)])
        .with_retry(1, Duration::from_millis(5), Duration::from_millis(300))
        .send_now(&ended(vec![]))
        .await;
    assert!(d[0].ok, "{d:?}");
    assert_eq!(d[0].attempts, 2);
}

#[tokio::test]
async fn an_unreachable_port_fails_without_naming_the_path() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}{SECRET}?token=abc");
    let d = notifier(&[(url, WebhookFormat::Slack)])
        .with_retry(1, Duration::from_millis(5), Duration::from_secs(5))
        .send_now(&ended(vec![]))
        .await;
    assert_eq!(d.len(), 1);
    let d = &d[0];
    assert!(!d.ok);
    assert_eq!((d.attempts, d.status), (2, None));
    assert_eq!(d.url, format!("http://127.0.0.1:{port}/…"));
    let error = d.error.as_deref().unwrap();
    assert!(error.starts_with("cannot be reached"), "{error}");
    for part in ["services", "s3cr3t", "token"] {
        assert!(!error.contains(part), "`{part}` in {error}");
    }
    assert!(!format!("{d:?}").contains("s3cr3t"));
}

#[tokio::test]
async fn each_of_several_webhooks_gets_one_message() {
    let server = Server::start(vec![ok()]);
    let paths = ["/hook/a", "/hook/b", "/hook/c"];
    let hooks: Vec<(String, WebhookFormat)> = paths
        .iter()
        .zip([
            WebhookFormat::Slack,
            WebhookFormat::Json,
            WebhookFormat::Slack,
        ])
        .map(|(p, f)| (server.url(p), f))
        .collect();
    let d = notifier(&hooks).send_now(&ended(two_gains())).await;
    assert_eq!(d.len(), 3);
    assert!(d.iter().all(|d| d.ok && d.attempts == 1), "{d:?}");
    let mut got: Vec<String> = server
        .requests()
        .iter()
        .map(|r| r.head.split_whitespace().nth(1).unwrap().to_string())
        .collect();
    got.sort();
    assert_eq!(got, paths);
}

#[tokio::test]
async fn send_returns_at_once_while_the_webhook_is_slow() {
    let server = Server::start(vec![Reply::Late(
        Duration::from_millis(1000),
        Box::new(ok()),
    )]);
    let started = Instant::now();
    let handle = one(&server, WebhookFormat::Slack).send(&ended(vec![]));
    assert!(started.elapsed() < Duration::from_millis(200));
    let d = handle.await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(950));
    assert!(d[0].ok, "{d:?}");
}

#[test]
fn send_outside_a_runtime_still_sends() {
    let server = Server::start(vec![ok()]);
    let handle = one(&server, WebhookFormat::Slack).send(&ended(vec![]));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let d = rt.block_on(handle).unwrap();
    assert!(d[0].ok, "{d:?}");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn no_webhooks_send_nothing() {
    let n = Notifier::new(&Notify::default());
    assert!(n.is_empty());
    assert!(n.send_now(&ended(vec![])).await.is_empty());
    assert!(n.send(&ended(vec![])).await.unwrap().is_empty());
}
