//! Notifications through a whole run against a real webhook receiver in the test
//! process: a kernel's first gain is sent once, in the background, and the end of
//! the run once, even when the daemon was killed (its journal cut anywhere) and the
//! run resumed. The evaluator's figures are made up for the decision logic only.

use std::time::Duration;

use super::*;
use crate::notify::{notify_end, Notifier};
use crate::settings::{Notify, Webhook, WebhookFormat};
use crate::testutil::server::{http, Server};

fn notifier(server: &Server) -> Notifier {
    Notifier::new(&Notify {
        webhooks: vec![Webhook {
            url: server.url("/hooks/T000/B000/secret-path"),
            format: WebhookFormat::Json,
        }],
    })
    .with_retry(1, Duration::from_millis(10), Duration::from_secs(5))
}

fn events(server: &Server) -> Vec<String> {
    server
        .requests()
        .iter()
        .map(|r| r.json()["event"].as_str().unwrap_or("?").to_string())
        .collect()
}

fn with_webhook(repo: &Path, reports: &Path, server: &Server) -> Run {
    let library =
        Library::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../patterns")).unwrap();
    run_full(
        "softmax",
        DEFAULT_BUDGETS_TOML,
        library,
        (repo, reports),
        Scripted::new(vec_wins, variant_broken),
        StopFlag::default(),
        Extras {
            gpus: 0,
            proposer: None,
            notifier: Some(notifier(server)),
            frozen: false,
        },
    )
}

#[test]
fn a_run_killed_anywhere_and_resumed_sends_one_first_gain_and_one_end() {
    let (straight_repo, straight_reports) = (user_repo(), tempfile::tempdir().unwrap());
    let server = Server::start(vec![http(200, &[], b"ok")]);
    let straight = with_webhook(straight_repo.path(), straight_reports.path(), &server);
    assert!(
        !branch_log(straight_repo.path()).is_empty(),
        "the run gains"
    );
    assert_eq!(events(&server), vec!["first_gain"]);
    let n = straight.records.len();
    // Journal cuts: before the first commit, right after it, near the end.
    let first = straight
        .records
        .iter()
        .position(|r| matches!(r.event, J::Commit { .. }))
        .unwrap();
    for cut in [first, first + 1, first + 2, n - 2] {
        let server = Server::start(vec![http(200, &[], b"ok")]);
        let (repo, reports) = (user_repo(), tempfile::tempdir().unwrap());
        with_webhook(repo.path(), reports.path(), &server);
        let path = reports.path().join("r1").join(journal::FILE_NAME);
        let text = std::fs::read_to_string(&path).unwrap();
        let kept: String = text.lines().take(cut).map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, &kept).unwrap();
        // The killed daemon sent what its journal says it sent: the first gain when
        // its intent is in the journal. The resumed one sends the rest, once.
        let told = kept.contains("\"key\":\"first_gain:softmax\"");
        let before = events(&server).len();
        with_webhook(repo.path(), reports.path(), &server);
        for _ in 0..2 {
            notify_end(&notifier(&server), &path, None, Some("report.md".into())).unwrap();
        }
        let got: Vec<String> = events(&server).split_off(before);
        let gains = got.iter().filter(|e| *e == "first_gain").count();
        let ends = got.iter().filter(|e| *e == "run_ended").count();
        assert_eq!(
            (gains, ends),
            (usize::from(!told), 1),
            "cut after record {cut}: {got:?}"
        );
        // Every notice's fate is journaled; the webhook's secret path is not.
        let journal_text = std::fs::read_to_string(&path).unwrap();
        assert!(!journal_text.contains("secret-path"));
        assert!(journal_text.contains("\"ok\":true"));
    }
    // The end message tells why the run stopped, its gain with an interval, and
    // where the report is.
    let server = Server::start(vec![http(200, &[], b"ok")]);
    let path = straight_reports.path().join("r1").join(journal::FILE_NAME);
    assert!(notify_end(
        &notifier(&server),
        &path,
        None,
        Some("reports/r1/report.md".into())
    )
    .unwrap());
    let body = server.requests()[0].json();
    assert_eq!(body["event"], "run_ended");
    assert_eq!(body["gains"][0]["kernel"], "softmax");
    assert!(body["gains"][0]["lo"].as_f64().is_some(), "{body}");
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .contains("reports/r1/report.md"),
        "{body}"
    );
}
