//! The report of a journal with a proposer's questions, written record by record:
//! every outcome a question can have, the kept source's diff, GPU and proposer money
//! apart, and `--verify` catching a bill that was changed. The samples are made up;
//! they stay in this test.

use std::path::Path;

use serde_json::{json, Value};

use crate::budget::{Budgets, Charge, Stage};
use crate::dispatch::fake::made_up;
use crate::evaluate::{cost_of, Evaluation};
use crate::journal::{Event, ProposerAnswer, Record};
use crate::measure::{Sample, Verdict};
use crate::propose::Usage;
use crate::report::{build, markdown, verify, Report};
use crate::rewrite::Change;
use crate::spec::{Config, KernelSpec};
use crate::state::RunState;
use crate::validate::{ErrorStats, TrialKind};
use crate::vocab::Outcome;

const BASE: &str = "BLOCK=128 VARIANT=0 VEC=1";
const SHA: &str = "0123456789abcdef0123";
const DIFF: &str =
    "--- a/softmax.cu\n+++ b/softmax.cu\n@@ -1,1 +1,2 @@\n+// faster\n #include \"common.cuh\"\n";

fn spec() -> KernelSpec {
    KernelSpec::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernels/softmax")).unwrap()
}

/// A passed evaluation with 30 raw samples around `us` (no summary: the report
/// computes its own).
fn measured(us: f64) -> Evaluation {
    let mut e = made_up(&spec(), &Config::default(), true);
    let m = e.measurement.as_mut().unwrap();
    m.summary = None;
    m.samples = (0..30)
        .map(|i| Sample {
            us: us * (1.0 + 0.001 * (((i * 7 + us as usize) % 11) as f64 - 5.0)),
            sm_clock_mhz: Some(1980),
            throttled: false,
        })
        .collect();
    e
}

fn failed(outcome: Outcome) -> Evaluation {
    let mut e = made_up(&spec(), &Config::default(), true);
    e.outcome = outcome;
    e.measurement = None;
    e
}

fn candidate(digest: &str) -> String {
    format!("{BASE} + proposal:{digest}")
}

/// A journal being written, one record at a time.
#[derive(Default)]
struct Journal(Vec<Record>);

impl Journal {
    fn push(&mut self, event: Event) {
        let seq = self.0.len() as u64;
        self.0.push(Record {
            seq,
            t_ms: 1_700_000_000_000 + seq * 1000,
            event,
        });
    }

    /// A question and its bill, as the dispatcher journals them.
    fn ask(&mut self, attempt: usize, answer: Answer) {
        self.push(Event::Charge(Charge {
            kernel: Some("softmax".into()),
            pattern: Some("ask".into()),
            config: None,
            stage: Stage::Proposer,
            gpu_s: 0.0,
            wall_s: 0.0,
            dollars: answer.usage.dollars,
        }));
        self.push(Event::ProposerAnswer(ProposerAnswer {
            kernel: "softmax".into(),
            pattern: "ask".into(),
            attempt,
            against: BASE.into(),
            proposer: "openai test-model".into(),
            request: json!({}),
            source: answer.digest.map(|d| format!("// {d}\n")),
            digest: answer.digest.map(str::to_string),
            explanation: answer.digest.map(|d| format!("proposal {d}\nmore words")),
            error: answer.error.map(str::to_string),
            check: answer.check.map(str::to_string),
            usage: answer.usage,
            bound: 0.0,
            wait_s: 0.0,
        }));
    }

    /// A candidate's charges (from its own timers) and its record.
    fn evaluated(
        &mut self,
        config: &str,
        pattern: Option<&str>,
        e: Evaluation,
        against: Option<&Evaluation>,
    ) {
        for (stage, s) in cost_of(&e, against) {
            self.push(Event::Charge(Charge {
                kernel: Some("softmax".into()),
                pattern: pattern.map(str::to_string),
                config: Some(config.into()),
                stage,
                gpu_s: s,
                wall_s: s,
                dollars: 0.0,
            }));
        }
        self.push(Event::Evaluated {
            ahead: false,
            gpu: None,
            kernel: "softmax".into(),
            config: config.into(),
            pattern: pattern.map(str::to_string),
            outcome: e.outcome.name().into(),
            median_us: None,
            evaluation: e.into(),
            rewritten: pattern.map(|_| Change {
                rewrites: vec![config.split(" + ").last().unwrap().to_string()],
                options: vec![],
                diff: DIFF.into(),
            }),
        });
    }

    /// A candidate measured against the best, its verdict and what was done.
    fn compared(&mut self, config: &str, us: f64, verdict: Verdict, kept: bool) {
        let (a, b) = (measured(100.0), measured(us));
        self.evaluated(config, Some("ask"), b, Some(&a));
        self.push(Event::Verdict {
            kernel: "softmax".into(),
            config: config.into(),
            baseline: BASE.into(),
            verdict,
            speedup: 100.0 / us,
            ci_lo: 100.0 / us - 0.01,
            ci_hi: 100.0 / us + 0.01,
            pairs: Some(30),
            min_gain: Some(0.02),
            against: a.into(),
        });
        self.decided(config, kept, verdict.as_str());
    }

    fn decided(&mut self, config: &str, kept: bool, reason: &str) {
        self.push(if kept {
            Event::Commit {
                kernel: "softmax".into(),
                config: config.into(),
                sha: SHA.into(),
            }
        } else {
            Event::Revert {
                kernel: "softmax".into(),
                config: config.into(),
                reason: reason.into(),
            }
        });
    }

    fn invalid(&mut self, config: Option<String>, reason: &str) {
        self.push(Event::ProposalInvalid {
            kernel: "softmax".into(),
            pattern: "ask".into(),
            config,
            reason: reason.into(),
        });
    }
}

#[derive(Default)]
struct Answer {
    digest: Option<&'static str>,
    error: Option<&'static str>,
    check: Option<&'static str>,
    usage: Usage,
}

fn usage(input: u64, output: u64, dollars: f64, latency_s: f64, estimated: bool) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        dollars,
        latency_s,
        estimated,
    }
}

/// A night on softmax with six questions: the proposer failed; a source refused
/// before the GPU; one that does not compile; one that is wrong; one no faster; one
/// faster, kept. Then a bill whose answer the run was killed before journaling.
fn night() -> Vec<Record> {
    let mut j = Journal::default();
    let budgets = "[run]\ndollars = 5\n[price]\ndefault_per_gpu_hour = 3.0\n";
    j.push(Event::RunStarted {
        run_id: "p1".into(),
        device: "NVIDIA H100 80GB HBM3".into(),
        budgets: Budgets::parse(budgets, Path::new("budgets.toml"))
            .unwrap()
            .into(),
        git_branch: Some("nightshift/p1".into()),
        kernels: vec![],
        options: None,
    });
    j.push(Event::Machine {
        device: json!({"name": "NVIDIA H100 80GB HBM3"}),
        ceilings: Value::Null,
        measure: json!({"seed": 1}),
        nightshift: "test".into(),
    });
    j.evaluated(BASE, None, measured(100.0), None);
    let timed_out = "timed out after 120 s";
    j.ask(
        1,
        Answer {
            error: Some(timed_out),
            usage: usage(900, 0, 0.02, 120.0, false),
            ..Default::default()
        },
    );
    j.invalid(None, &format!("the proposer failed: {timed_out}"));
    let refused = "defines no kernel `softmax_rows`";
    j.ask(
        2,
        Answer {
            digest: Some("aaaa11112222"),
            check: Some(refused),
            usage: usage(1500, 700, 0.03, 9.5, true),
            ..Default::default()
        },
    );
    j.invalid(Some(candidate("aaaa11112222")), refused);
    j.ask(
        3,
        Answer {
            digest: Some("bbbb11112222"),
            usage: usage(1600, 800, 0.01, 8.0, false),
            ..Default::default()
        },
    );
    let log = "kernel.cu(3): warning: unused variable\nkernel.cu(7): error: identifier \"MARK\" is undefined\n\n1 error detected";
    j.evaluated(
        &candidate("bbbb11112222"),
        Some("ask"),
        failed(Outcome::CompileFailed { log: log.into() }),
        None,
    );
    j.decided(&candidate("bbbb11112222"), false, "compile_failed");
    j.ask(
        4,
        Answer {
            digest: Some("cccc11112222"),
            usage: usage(1700, 900, 0.01, 7.0, false),
            ..Default::default()
        },
    );
    let wrong = Outcome::Incorrect {
        size: "rows=4096 cols=1000".into(),
        trial: 1,
        kind: TrialKind::Normal,
        arg: "y".into(),
        stats: Box::new(ErrorStats {
            elements: 4_096_000,
            max_abs: 0.5,
            max_rel: 2.0,
            rel_l2: 0.01,
            bad: 1000,
            unwritten: 0,
            non_finite: 0,
            first_bad: None,
        }),
        stage: None,
    };
    j.evaluated(&candidate("cccc11112222"), Some("ask"), failed(wrong), None);
    j.decided(&candidate("cccc11112222"), false, "incorrect");
    j.ask(
        5,
        Answer {
            digest: Some("dddd11112222"),
            usage: usage(1800, 1000, 0.02, 6.0, false),
            ..Default::default()
        },
    );
    j.compared(&candidate("dddd11112222"), 100.0, Verdict::Same, false);
    j.ask(
        6,
        Answer {
            digest: Some("eeee11112222"),
            usage: usage(1900, 1100, 0.05, 5.0, false),
            ..Default::default()
        },
    );
    j.compared(&candidate("eeee11112222"), 80.0, Verdict::Fast, true);
    // Billed, then killed before the answer was journaled.
    j.push(Event::Charge(Charge {
        kernel: Some("softmax".into()),
        pattern: Some("ask".into()),
        config: None,
        stage: Stage::Proposer,
        gpu_s: 0.0,
        wall_s: 0.0,
        dollars: 0.04,
    }));
    j.0
}

fn report(records: &[Record]) -> Report {
    build("p1", &RunState::from_records(records))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn every_question_is_reported_with_its_bill_and_what_came_of_it() {
    let r = report(&night());
    let outcomes: Vec<&str> = r.proposals.iter().map(|p| p.outcome.as_str()).collect();
    assert_eq!(
        outcomes,
        [
            "proposer_failed",
            "proposal_invalid",
            "compile_failed",
            "incorrect",
            "passed",
            "passed"
        ]
    );
    let p = &r.proposals;
    assert_eq!(p[0].detail, "timed out after 120 s");
    assert_eq!(
        (p[0].candidate.as_deref(), p[0].decision.as_str()),
        (None, "-")
    );
    assert_eq!(p[1].detail, "defines no kernel `softmax_rows`");
    assert!(p[1].estimated && p[1].input_tokens == 1500 && close(p[1].dollars, 0.03));
    assert_eq!(
        p[2].detail,
        "kernel.cu(7): error: identifier \"MARK\" is undefined"
    );
    assert_eq!(p[2].compile_log.len(), 3, "{:?}", p[2].compile_log);
    assert!(
        p[3].detail
            .starts_with("wrong `y` at rows=4096 cols=1000, trial 1"),
        "{}",
        p[3].detail
    );
    assert_eq!(p[3].decision, "not kept");
    assert!(p[3].gpu_s > 0.0 && p[3].gpu_dollars > 0.0);
    // The verdicts are recomputed from the samples, not read from the records.
    let same = p[4].speedup.as_ref().unwrap();
    assert!(same.ci_lo <= 1.0 && 1.0 <= same.ci_hi, "{same:?}");
    assert_eq!(p[4].decision, "not kept");
    assert!(p[4].diff.is_empty());
    let fast = p[5].speedup.as_ref().unwrap();
    assert_eq!(fast.verdict, "FAST");
    assert!(p[5].detail.starts_with("FAST 1.2"), "{}", p[5].detail);
    assert_eq!(p[5].decision, "kept 0123456789");
    assert_eq!(p[5].diff, DIFF);
    assert_eq!(p[5].explanation.as_deref(), Some("proposal eeee11112222"));
    // A proposer's source is reported with its question, not among the rewrites.
    assert!(r.rewrites.is_empty(), "{:?}", r.rewrites);

    let md = markdown(&r, &[]);
    for want in [
        "## Proposals",
        "| 1 | softmax | ask | 1 | openai test-model | 900 / 0 | $0.0200 | 120.0 s | proposer failed: timed out after 120 s | - | - |",
        "| 1500 / 700 (estimated) | $0.0300 | 9.5 s | proposal_invalid: defines no kernel `softmax_rows` | - | - |",
        "compile_failed: kernel.cu(7): error: identifier \"MARK\" is undefined",
        "```text\nkernel.cu(3): warning: unused variable\nkernel.cu(7): error",
        "incorrect: wrong `y` at rows=4096 cols=1000, trial 1",
        "| passed: SAME ",
        "| kept 0123456789 |",
        &format!("### #6 softmax `{}` (kept 0123456789)", candidate("eeee11112222")),
        "The proposer: proposal eeee11112222",
        &format!("```diff\n{DIFF}```"),
    ] {
        assert!(md.contains(want), "{want}\n\n{md}");
    }
    assert!(!md.contains("## Source rewrites"), "{md}");
}

#[test]
fn gpu_and_proposer_money_are_side_by_side_and_never_mixed() {
    let recs = night();
    let r = report(&recs);
    let s = &r.spend;
    let p = s.proposer.as_ref().unwrap();
    // Six answered bills and one the run was killed before answering.
    assert!(close(p.dollars, 0.18), "{p:?}");
    assert_eq!((p.questions, p.unanswered, p.estimated), (6, 1, 1));
    assert_eq!((p.input_tokens, p.output_tokens), (9400, 4500));
    // GPU dollars are the GPU time at the price, as the ledger prices it; the total
    // is what the dollar budget counts.
    assert!(close(s.dollars, s.gpu_s * 3.0 / 3600.0));
    assert!(close(p.total_dollars, s.dollars + 0.18));
    let mut ledger = crate::budget::Ledger::new(3.0);
    for rec in &recs {
        if let Event::Charge(c) = &rec.event {
            ledger.charge(c).unwrap();
        }
    }
    let spent = ledger.spent();
    assert!(close(spent.dollars, p.total_dollars) && close(spent.proposer_dollars, p.dollars));
    let ask = &p.by_pattern["ask"];
    assert!(close(ask.proposer_dollars, 0.18));
    assert!(close(
        ask.gpu_dollars,
        ledger.by_pattern()["ask"].dollars - 0.18
    ));
    assert_eq!(ask.questions, 6);
    assert!(close(
        ask.mean_latency_s.unwrap(),
        (120.0 + 9.5 + 8.0 + 7.0 + 6.0 + 5.0) / 6.0
    ));
    let none = &p.by_pattern["none"];
    assert!(none.gpu_s > 0.0 && none.proposer_dollars == 0.0 && none.mean_latency_s.is_none());
    assert!(close(p.by_kernel["softmax"].proposer_dollars, 0.18));
    // The line of attack and the pattern carry the bills apart from their GPU cost.
    assert_eq!(r.lines.len(), 1);
    assert!(close(r.lines[0].proposer_dollars, 0.18));
    assert!(close(r.patterns[0].proposer_dollars, 0.18));
    assert!(r
        .caveats
        .iter()
        .any(|c| c.starts_with("1 proposer bill(s) have no answer")));
    assert!(r
        .caveats
        .iter()
        .any(|c| c.starts_with("1 question(s) were answered without token counts")));

    let md = markdown(&r, &[]);
    for want in [
        &format!("${:.4} GPU (at $3.00/GPU-h) + $0.1800 proposer = ${:.4}", s.dollars, p.total_dollars),
        "GPU and proposer money by kernel",
        "| kernel | GPU time | GPU $ | proposer $ | total $ | questions | tokens in / out | mean latency |",
        "| pattern | candidates | committed | GPU time | GPU cost | proposer cost | gain bought |",
        " GPU + $0.1800 proposer",
        "proposer 0.0 s (its bills, $0.1800, are in dollars)",
    ] {
        assert!(md.contains(want), "{want}\n\n{md}");
    }
    // Counted from the rows: the ask row says what the tables add up to.
    assert!(md.contains("| ask | "), "{md}");
}

#[test]
fn verify_catches_a_proposer_bill_that_was_changed() {
    let recs = night();
    let json = serde_json::to_value(report(&recs)).unwrap();
    verify(&json, "p1", &recs).unwrap();
    let mut bad = recs.clone();
    let bill = bad
        .iter_mut()
        .filter(|r| matches!(&r.event, Event::Charge(c) if c.stage == Stage::Proposer))
        .nth(5)
        .unwrap();
    let Event::Charge(c) = &mut bill.event else {
        unreachable!()
    };
    c.dollars = 0.5;
    // Against the report as written, and against one rebuilt from the changed
    // journal: the bill no longer matches the answer it paid for.
    let err = verify(&json, "p1", &bad).unwrap_err().to_string();
    assert!(
        err.contains("softmax ask question 6") && err.contains("$0.5"),
        "{err}"
    );
    let rebuilt = serde_json::to_value(report(&bad)).unwrap();
    let err = verify(&rebuilt, "p1", &bad).unwrap_err().to_string();
    assert!(err.contains("question 6"), "{err}");
    // A report edited by hand is caught at the figure edited.
    let mut edited = json.clone();
    edited["spend"]["proposer"]["by_pattern"]["ask"]["proposer_dollars"] = json!(0.01);
    let err = verify(&edited, "p1", &recs).unwrap_err().to_string();
    assert!(
        err.contains("report.spend.proposer.by_pattern.ask.proposer_dollars"),
        "{err}"
    );
}

#[test]
fn a_run_without_a_proposer_has_no_proposals_and_no_proposer_money() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/journals/h100-softmax-finished.jsonl");
    let recs = crate::journal::read(&path).unwrap().records;
    let r = build("soft5", &RunState::from_records(&recs));
    assert!(r.proposals.is_empty() && r.spend.proposer.is_none());
    let json = serde_json::to_value(&r).unwrap();
    assert!(json.get("proposals").is_none() && json["spend"].get("proposer").is_none());
    assert!(json["lines"][0].get("proposer_dollars").is_none());
    let md = markdown(&r, &[]);
    assert!(
        !md.contains("## Proposals") && !md.contains("proposer"),
        "{md}"
    );
}
