//! The `openai` proposer against a chat-completions server on 127.0.0.1.

use std::time::Instant;

use super::*;
use crate::propose::openai::extract_code;
use crate::testutil::server::{completion, http, Reply, Server};

fn answer() -> String {
    format!("Here is the kernel:\n\n```cuda\n{KERNEL}```\n\nEach row is split across CTAs.\n")
}

async fn ask(
    server: &Server,
    tweak: impl FnOnce(&mut OpenAiSettings),
) -> Result<Proposal, ProposalError> {
    let mut s = openai_settings(&server.base_url);
    tweak(&mut s);
    openai(s).propose(&request()).await
}

#[tokio::test]
async fn a_well_formed_answer_is_a_proposal_with_its_cost() {
    let server = Server::start(vec![completion(&answer(), 1_234_567, 7_654_321)]);
    let p = ask(&server, |_| {}).await.unwrap();
    assert_eq!(p.source, KERNEL);
    assert_eq!(
        p.explanation,
        "Here is the kernel:\n\nEach row is split across CTAs."
    );
    assert_eq!(
        (p.usage.input_tokens, p.usage.output_tokens),
        (1_234_567, 7_654_321)
    );
    assert!(!p.usage.estimated);
    // 1 234 567 x $2.50/M + 7 654 321 x $10/M = $3.0864175 + $76.54321
    assert!(
        (p.usage.dollars - 79.629_627_5).abs() < 1e-9,
        "{}",
        p.usage.dollars
    );
    assert_eq!((p.usage.dollars * 100.0).round() / 100.0, 79.63);
    assert!(p.usage.latency_s > 0.0);

    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert!(
        reqs[0]
            .head
            .starts_with("POST /v1/chat/completions HTTP/1.1"),
        "{}",
        reqs[0].head
    );
    assert_eq!(
        reqs[0].header("authorization"),
        None,
        "no key configured, none sent"
    );
    let body = reqs[0].json();
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["temperature"], 0.2);
    assert_eq!(body["max_tokens"], 8000);
    assert!(body.get("top_p").is_none(), "unset options are not sent");
    assert_eq!(body["messages"][0]["role"], "system");
    assert!(body["messages"][0]["content"]
        .as_str()
        .unwrap()
        .contains("```cuda"));
    let user = body["messages"][1]["content"].as_str().unwrap();
    for part in [
        "Split each row across several CTAs",
        "rowsum(const float* __restrict__ x",
        "float8",
        "ctas = 64",
    ] {
        assert!(user.contains(part), "`{part}` not in the prompt:\n{user}");
    }
}

#[tokio::test]
async fn the_key_is_read_from_its_variable_at_call_time_and_sent_as_a_bearer() {
    let var = "NIGHTSHIFT_TEST_KEY_BEARER";
    let server = Server::start(vec![completion(&answer(), 10, 10)]);
    let p = openai(OpenAiSettings {
        api_key_env: Some(var.into()),
        ..openai_settings(&server.base_url)
    });
    std::env::remove_var(var);
    let e = p.propose(&request()).await.unwrap_err();
    assert!(
        matches!(&e.kind, ProposalErrorKind::Key { var: v, why: "not set" } if v == var),
        "{e}"
    );
    assert!(e.to_string().contains(var), "{e}");
    assert!(server.requests().is_empty(), "nothing sent without the key");
    std::env::set_var(var, "sk-later-value");
    p.propose(&request()).await.unwrap();
    let reqs = server.requests();
    assert_eq!(
        reqs[0].header("authorization").as_deref(),
        Some("Bearer sk-later-value")
    );
}

#[tokio::test]
async fn an_answer_without_a_fence_is_malformed_and_still_charged() {
    let server = Server::start(vec![completion("I would split the rows.", 1000, 200)]);
    let e = ask(&server, |_| {}).await.unwrap_err();
    let ProposalErrorKind::Malformed(reason) = &e.kind else {
        panic!("{e:?}")
    };
    assert!(reason.contains("no ```cuda fenced code block"), "{reason}");
    assert_eq!((e.spent.input_tokens, e.spent.output_tokens), (1000, 200));
    assert!(
        (e.spent.dollars - 0.0045).abs() < 1e-12,
        "{}",
        e.spent.dollars
    );
    assert_eq!(
        server.requests().len(),
        1,
        "a malformed answer is not asked again"
    );
}

#[tokio::test]
async fn truncated_json_is_malformed_with_an_estimated_cost() {
    let full = match completion(&answer(), 10, 10) {
        Reply::Http { body, .. } => body,
        _ => unreachable!(),
    };
    let server = Server::start(vec![http(200, &[], &full[..full.len() / 2])]);
    let e = ask(&server, |_| {}).await.unwrap_err();
    assert!(
        matches!(&e.kind, ProposalErrorKind::Malformed(r) if r.contains("not chat-completions JSON")),
        "{e}"
    );
    assert!(
        e.spent.estimated && e.spent.input_tokens > 0 && e.spent.dollars > 0.0,
        "{:?}",
        e.spent
    );
}

#[tokio::test]
async fn an_answer_cut_at_max_tokens_says_so() {
    let body = serde_json::json!({
        "choices": [{ "message": { "content": "```cuda\nextern \"C\" __global__ void rowsum(" }, "finish_reason": "length" }],
    });
    let server = Server::start(vec![http(200, &[], body.to_string().as_bytes())]);
    let e = ask(&server, |_| {}).await.unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("not closed") && msg.contains("max_tokens"),
        "{msg}"
    );
    assert!(e.spent.estimated, "no usage in the answer: estimated");
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out_then_answered() {
    let server = Server::start(vec![
        http(429, &[("Retry-After", "1")], b"{\"error\":\"slow down\"}"),
        completion(&answer(), 10, 10),
    ]);
    let t = Instant::now();
    let p = ask(&server, |_| {}).await.unwrap();
    let waited = t.elapsed().as_secs_f64();
    assert!(
        (1.0..5.0).contains(&waited),
        "waited {waited} s, Retry-After says 1"
    );
    assert!(
        p.usage.latency_s >= 1.0,
        "latency counts the wait: {:?}",
        p.usage
    );
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn a_retry_after_beyond_the_cap_is_capped() {
    let server = Server::start(vec![
        http(503, &[("Retry-After", "3600")], b"busy"),
        completion(&answer(), 10, 10),
    ]);
    let t = Instant::now();
    ask(&server, |_| {}).await.unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "capped at 2 s in tests"
    );
}

#[tokio::test]
async fn a_500_is_retried_then_answered() {
    let server = Server::start(vec![http(500, &[], b"oops"), completion(&answer(), 10, 10)]);
    let p = ask(&server, |_| {}).await.unwrap();
    assert_eq!(p.source, KERNEL);
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn retries_exhausted_name_the_last_status_and_the_attempts() {
    let server = Server::start(vec![http(502, &[], b"bad gateway")]);
    let e = ask(&server, |s| s.retries = 2).await.unwrap_err();
    assert!(
        matches!(&e.kind, ProposalErrorKind::Status { status: 502, attempts: 3, body } if body == "bad gateway"),
        "{e:?}"
    );
    assert_eq!(server.requests().len(), 3);
    assert_eq!(e.spent.dollars, 0.0);

    let server = Server::start(vec![http(429, &[("Retry-After", "0")], b"")]);
    let e = ask(&server, |s| s.retries = 1).await.unwrap_err();
    assert!(
        matches!(e.kind, ProposalErrorKind::RateLimited { attempts: 2 }),
        "{e:?}"
    );
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn a_client_error_is_not_retried() {
    let server = Server::start(vec![http(400, &[], b"{\"error\":\"unknown model\"}")]);
    let e = ask(&server, |_| {}).await.unwrap_err();
    assert!(
        matches!(&e.kind, ProposalErrorKind::Status { status: 400, attempts: 1, body } if body.contains("unknown model")),
        "{e:?}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_closed_port_is_a_transport_error_after_the_retries() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut s = openai_settings(&format!("http://127.0.0.1:{port}/v1"));
    s.retries = 2;
    let e = openai(s).propose(&request()).await.unwrap_err();
    assert!(
        matches!(&e.kind, ProposalErrorKind::Transport { attempts: 3, .. }),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_server_that_does_not_answer_times_out_once() {
    let server = Server::start(vec![Reply::Sleep(Duration::from_secs(5))]);
    let t = Instant::now();
    let e = ask(&server, |s| s.timeout = Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ProposalErrorKind::Timeout { .. }), "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(server.requests().len(), 1, "a timeout is not retried");
}

#[tokio::test]
async fn a_50_mb_answer_is_too_large_and_not_read_whole() {
    for content_length in [false, true] {
        let server = Server::start(vec![Reply::Huge {
            len: 50 << 20,
            content_length,
        }]);
        let t = Instant::now();
        let e = ask(&server, |_| {}).await.unwrap_err();
        assert!(
            matches!(e.kind, ProposalErrorKind::TooLarge { limit } if limit == MAX_ANSWER_BYTES),
            "{e:?}"
        );
        assert!(e.to_string().contains("4 MiB"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert_eq!(server.requests().len(), 1);
    }
}

#[test]
fn dollars_are_exact_to_the_cent() {
    let p = |i, o| TokenPrices {
        input_per_mtok: i,
        output_per_mtok: o,
    };
    assert_eq!(token_dollars(0, 0, &p(3.0, 15.0)), 0.0);
    assert_eq!(token_dollars(1_000_000, 1_000_000, &p(3.0, 15.0)), 18.0);
    // 0.1 + 0.2 != 0.3 in f64; counted in picodollars it is.
    assert_eq!(token_dollars(100_000, 200_000, &p(1.0, 1.0)), 0.3);
    assert_eq!(token_dollars(333_333, 0, &p(0.15, 0.0)), 0.049_999_95);
    // A night of calls summed call by call still lands on the cent.
    let total: f64 = (0..1000)
        .map(|_| token_dollars(12_345, 2_345, &p(2.5, 10.0)))
        .sum();
    assert_eq!((total * 100.0).round(), 5431.0, "{total}");
    assert!(token_dollars(u64::MAX, u64::MAX, &p(1e6, 1e6)).is_finite());
    assert_eq!(token_dollars(5, 5, &p(f64::NAN, -1.0)), 0.0);
}

#[test]
fn the_code_block_is_the_longest_tagged_as_cuda_or_cpp() {
    for tag in ["cuda", "c++", "cpp", "CUDA", "", "cu"] {
        let text = format!("x\n```{tag}\nint a;\n```\ny");
        let (code, rest) = extract_code(&text).unwrap_or_else(|e| panic!("{tag}: {e}"));
        assert_eq!(
            (code.as_str(), rest.as_str()),
            ("int a;\n", "x\n\ny"),
            "{tag}"
        );
    }
    let text = "```python\nprint(1)\n```\n```cuda\nshort\n```\n```cpp\nthe whole\nkernel\n```\n";
    assert_eq!(extract_code(text).unwrap().0, "the whole\nkernel\n");
    assert!(extract_code("```python\nprint(1)\n```")
        .unwrap_err()
        .contains("no ```cuda"));
    assert!(extract_code("```cuda\nint a;\n")
        .unwrap_err()
        .contains("not closed"));
    assert!(extract_code("```cuda\n\n```")
        .unwrap_err()
        .contains("empty"));
    assert!(extract_code("").is_err());
}
