//! The API key never comes back: every error path of the `openai` proposer is
//! driven against a server that echoes the request's headers (the key among them)
//! into its answers, and the key is searched for in every error's message and
//! Debug output and in every value returned.

use super::*;
use crate::testutil::server::{completion, http, Reply, Server};

const VAR: &str = "NIGHTSHIFT_TEST_SECRET_KEY";

/// A key no text would hold by chance.
fn key() -> String {
    format!(
        "sk-nightshift-test-{}-{:x}",
        std::process::id(),
        0x5eed_cafe_u64
    )
}

/// Everything a caller could see of a result.
fn seen(r: &Result<Proposal, ProposalError>) -> String {
    match r {
        Ok(p) => format!("{p:?} {}", serde_json::to_string(p).unwrap()),
        Err(e) => format!("{e} {e:?} {:?}", e.kind),
    }
}

#[tokio::test]
async fn the_key_appears_in_no_error_debug_output_or_returned_value() {
    let key = key();
    std::env::set_var(VAR, &key);
    let echo_then_fence = format!("{key}\n```cuda\n{KERNEL}// {key}\n```\n{key}");
    let cases: Vec<(&str, Vec<Reply>, u32)> = vec![
        ("success echoing the key", vec![completion(&echo_then_fence, 5, 5)], 0),
        ("401 echoing headers", vec![Reply::Echo { status: 401, prefix: String::new() }], 0),
        ("500s echoing headers", vec![Reply::Echo { status: 500, prefix: String::new() }], 1),
        ("429s echoing headers", vec![Reply::Echo { status: 429, prefix: String::new() }], 1),
        ("200 that is not JSON, echoing", vec![Reply::Echo { status: 200, prefix: "{\"choices\": ".into() }], 0),
        ("no fence, content echoing the key", vec![completion(&format!("no code, but {key}"), 5, 5)], 0),
        ("cut at max_tokens", vec![http(200, &[], serde_json::json!({"choices": [{"message": {"content": format!("```cuda\n{key}")}, "finish_reason": "length"}]}).to_string().as_bytes())], 0),
        ("timeout", vec![Reply::Sleep(Duration::from_secs(3))], 0),
        ("too large", vec![Reply::Huge { len: 8 << 20, content_length: false }], 0),
    ];
    let mut sent_it = false;
    for (what, replies, retries) in cases {
        let server = Server::start(replies);
        let p = openai(OpenAiSettings {
            api_key_env: Some(VAR.into()),
            retries,
            timeout: Duration::from_secs(1),
            ..openai_settings(&server.base_url)
        });
        let r = p.propose(&request()).await;
        let shown = seen(&r);
        assert!(!shown.contains(&key), "{what}: the key is in {shown}");
        assert!(
            !format!("{p:?}").contains(&key),
            "{what}: in the proposer's Debug"
        );
        sent_it |= server.requests().iter().any(|q| q.head.contains(&key));
        if what.starts_with("success") {
            let ok = r.as_ref().unwrap();
            assert!(
                ok.source.contains("[redacted]") && ok.explanation.contains("[redacted]"),
                "{shown}"
            );
        } else {
            assert!(r.is_err(), "{what}: {shown}");
        }
    }
    assert!(
        sent_it,
        "the servers did receive the key: the test would prove nothing otherwise"
    );

    // No server at all: a transport error.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = openai(OpenAiSettings {
        api_key_env: Some(VAR.into()),
        retries: 0,
        ..openai_settings(&format!("http://127.0.0.1:{port}/v1"))
    });
    let r = p.propose(&request()).await;
    assert!(matches!(&r, Err(e) if matches!(e.kind, ProposalErrorKind::Transport { .. })));
    assert!(!seen(&r).contains(&key));

    // A key that cannot be a header value (a newline in it) is refused unrepeated.
    let bad = format!("{key}\nX-Injected: 1");
    std::env::set_var(VAR, &bad);
    let r = p.propose(&request()).await;
    assert!(
        matches!(&r, Err(e) if matches!(e.kind, ProposalErrorKind::Key { .. })),
        "{}",
        seen(&r)
    );
    assert!(!seen(&r).contains(&key));
    std::env::remove_var(VAR);
}
