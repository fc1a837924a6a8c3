//! What a notification says: the texts, keys and bodies of each notice.

use super::*;
use crate::settings::WebhookFormat;

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
