//! The `command` proposer against small `sh` programs (a shell only here: the
//! proposer itself starts its argv without one).

use std::time::Instant;

use super::*;
use crate::propose::command::{parse_answer, CommandProposer};

fn sh(script: &str, timeout: Duration) -> CommandProposer {
    CommandProposer::new(command_settings(&["sh", "-c", script], timeout))
}

fn good_answer() -> String {
    serde_json::json!({
        "source": KERNEL,
        "explanation": "split the rows",
        "input_tokens": 1200,
        "output_tokens": 300,
    })
    .to_string()
}

#[tokio::test]
async fn a_good_answer_is_a_proposal_and_the_request_arrives_on_stdin() {
    let d = tempfile::tempdir().unwrap();
    let seen = d.path().join("request.json");
    let answer = d.path().join("answer.json");
    std::fs::write(&answer, good_answer()).unwrap();
    let script = format!("cat > '{}'; cat '{}'", seen.display(), answer.display());
    let p = sh(&script, Duration::from_secs(10))
        .propose(&request())
        .await
        .unwrap();
    assert_eq!(p.source, KERNEL);
    assert_eq!(p.explanation, "split the rows");
    assert_eq!((p.usage.input_tokens, p.usage.output_tokens), (1200, 300));
    assert_eq!(p.usage.dollars, 0.25, "the price per call");
    let got: ProposalRequest = serde_json::from_slice(&std::fs::read(&seen).unwrap()).unwrap();
    assert_eq!(got, request(), "the whole request, as JSON, on stdin");
}

#[tokio::test]
async fn a_program_that_never_reads_its_stdin_still_answers() {
    let mut req = request();
    req.source.push_str(&"// padding\n".repeat(100_000)); // over a pipe's buffer
    let script = format!("printf '%s' '{}'", good_answer().replace('\'', "'\\''"));
    let p = sh(&script, Duration::from_secs(10))
        .propose(&req)
        .await
        .unwrap();
    assert_eq!(p.source, KERNEL);
}

#[tokio::test]
async fn bad_json_is_malformed_and_charged_a_call() {
    let e = sh("cat >/dev/null; echo 'not json'", Duration::from_secs(10))
        .propose(&request())
        .await
        .unwrap_err();
    let ProposalErrorKind::Malformed(r) = &e.kind else {
        panic!("{e:?}")
    };
    assert!(r.contains("not an answer") && r.contains("not json"), "{r}");
    assert_eq!(e.spent.dollars, 0.25);

    let e = sh(
        "cat >/dev/null; echo '{\"source\": \"x\", \"sauce\": 1}'",
        Duration::from_secs(10),
    )
    .propose(&request())
    .await
    .unwrap_err();
    assert!(
        e.to_string().contains("sauce"),
        "an unknown key is named: {e}"
    );
}

#[test]
fn answers_are_read_strictly() {
    assert!(parse_answer(b"").unwrap_err().contains("nothing"));
    assert!(parse_answer(b"{\"source\": \"  \"}")
        .unwrap_err()
        .contains("empty"));
    assert!(parse_answer(&[0xff, 0xfe]).unwrap_err().contains("UTF-8"));
    assert!(parse_answer(b"{\"explanation\": \"x\"}")
        .unwrap_err()
        .contains("source"));
    let a = parse_answer(b"\n{\"source\": \"k\"}\n").unwrap();
    assert_eq!((a.explanation.as_str(), a.input_tokens), ("", None));
}

#[tokio::test]
async fn a_failing_program_reports_its_status_and_the_end_of_its_stderr() {
    let script = "cat >/dev/null; i=0; while [ $i -lt 500 ]; do echo \"noise line $i\" >&2; i=$((i+1)); done; echo 'model not found' >&2; exit 3";
    let e = sh(script, Duration::from_secs(10))
        .propose(&request())
        .await
        .unwrap_err();
    let ProposalErrorKind::Failed { status, stderr } = &e.kind else {
        panic!("{e:?}")
    };
    assert!(status.contains('3'), "{status}");
    assert!(stderr.ends_with("model not found"), "{stderr}");
    assert!(
        stderr.starts_with("[...]") && stderr.len() < MAX_ERROR_TEXT + 16,
        "{}",
        stderr.len()
    );
    assert_eq!(e.spent.dollars, 0.25);
}

#[tokio::test]
async fn a_program_past_its_timeout_is_killed() {
    let t = Instant::now();
    let e = sh("exec sleep 30", Duration::from_millis(300))
        .propose(&request())
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ProposalErrorKind::Timeout { .. }), "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(e.spent.latency_s >= 0.3);
}

#[tokio::test]
async fn what_the_program_started_is_killed_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild");
    // An agent that starts a helper of its own and hangs.
    let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
    let e = sh(&script, Duration::from_millis(500))
        .propose(&request())
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ProposalErrorKind::Timeout { .. }), "{e:?}");
    let pid = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .to_string();
    // Give the kill a moment to land, then the helper is gone.
    let mut alive = true;
    for _ in 0..50 {
        // Gone, or a zombie no one reaped (a container's init may not): not running.
        alive = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| !r.trim_start().starts_with('Z'))
        });
        if !alive {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive, "the helper {pid} outlived its program");
}

#[tokio::test]
async fn endless_output_is_too_large_and_the_program_killed() {
    let t = Instant::now();
    let e = sh("exec yes '{\"source\": \"'", Duration::from_secs(30))
        .propose(&request())
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind, ProposalErrorKind::TooLarge { limit } if limit == MAX_ANSWER_BYTES),
        "{e:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());

    let e = sh(
        "cat >/dev/null; head -c 2000 /dev/zero",
        Duration::from_secs(10),
    )
    .with_limit(1000)
    .propose(&request())
    .await
    .unwrap_err();
    assert!(
        matches!(e.kind, ProposalErrorKind::TooLarge { limit: 1000 }),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_program_that_cannot_be_started_is_named() {
    let p = CommandProposer::new(command_settings(
        &["/nonexistent/agent", "--x"],
        Duration::from_secs(5),
    ));
    let e = p.propose(&request()).await.unwrap_err();
    assert!(
        matches!(&e.kind, ProposalErrorKind::Spawn { program, .. } if program == "/nonexistent/agent"),
        "{e:?}"
    );
    assert_eq!(e.spent.dollars, 0.0, "never started: nothing charged");
    let empty = CommandProposer::new(command_settings(&[], Duration::from_secs(5)));
    let e = empty.propose(&request()).await.unwrap_err();
    assert!(e.to_string().contains("`argv` is empty"), "{e}");
}

#[tokio::test]
async fn arguments_are_passed_without_a_shell() {
    // `$HOME` and `;` reach the program as written: no shell expands them.
    let p = CommandProposer::new(command_settings(
        &[
            "sh",
            "-c",
            "cat >/dev/null; printf '{\"source\": \"%s\"}' \"$1\"",
            "prog",
            "$HOME; rm -rf x",
        ],
        Duration::from_secs(5),
    ));
    let got = p.propose(&request()).await.unwrap();
    assert_eq!(got.source, "$HOME; rm -rf x");
}

#[tokio::test]
async fn proposer_new_dispatches_on_the_kind() {
    let s = crate::settings::ProposerSettings::Command(command_settings(
        &["sh", "-c", "cat >/dev/null; echo '{\"source\": \"k\"}'"],
        Duration::from_secs(5),
    ));
    let p = Proposer::new(&s).unwrap();
    assert_eq!(p.label(), "command sh");
    assert_eq!(p.propose(&request()).await.unwrap().source, "k");
    let o = crate::settings::ProposerSettings::OpenAi(openai_settings("http://127.0.0.1:9/v1"));
    assert_eq!(Proposer::new(&o).unwrap().to_string(), "openai test-model");
}
