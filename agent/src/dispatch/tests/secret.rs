//! Issue 17's promises about the `openai` proposer, kept over a whole night through
//! the dispatcher against a chat-completions server in the test process (no GPU, no
//! network): the API key is written nowhere (journal, report, git, the run's
//! summary) even by an endpoint that echoes it back; every answer is billed its
//! tokens at the configured prices, to the cent; and a dollar budget stops a run
//! whose proposer is expensive before a question it could not pay. The evaluator's
//! figures are made up for the decision logic only.

use std::time::Duration;

use super::*;
use crate::propose::{openai::OpenAiProposer, Proposer};
use crate::settings::{OpenAiSettings, TokenPrices};
use crate::testutil::proposal_pattern;
use crate::testutil::server::{completion, completion_body, http, Reply, Server};

/// $2.50 and $10.00 per million input and output tokens.
const PRICES: TokenPrices = TokenPrices {
    input_per_mtok: 2.5,
    output_per_mtok: 10.0,
};

/// A budget the proposer's bills do not reach, GPU time at $3 an hour.
const ROOMY: &str = "[run]\ngpu_hours = 10\n[price]\ndefault_per_gpu_hour = 3.0\n";

/// What the fields of a journaled request are: a `ProposalRequest`, nothing else.
const REQUEST_FIELDS: [&str; 8] = [
    "config", "entry", "history", "kernel", "pattern", "signals", "source", "spec",
];

fn softmax() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernels/softmax/softmax.cu"),
    )
    .unwrap()
}

/// A model's answer holding `source` in a ```cuda block.
fn fenced(source: &str) -> String {
    format!("Here is the kernel.\n\n```cuda\n{source}```\n\nEach row is read once.\n")
}

/// The first half of a chat-completions body: an answer cut short, not JSON.
fn cut_answer(source: &str) -> String {
    let whole = String::from_utf8(completion_body(&fenced(source), 900, 700)).unwrap();
    whole[..whole.len() / 2].to_string()
}

/// Dollars for the tokens at [`PRICES`], computed here in floating point.
fn price(input: u64, output: u64) -> f64 {
    (input as f64 * 2.5 + output as f64 * 10.0) / 1e6
}

fn openai(server: &Server, key_var: Option<&str>) -> Proposer {
    let settings = OpenAiSettings {
        base_url: server.base_url.clone(),
        model: "test-model".into(),
        api_key_env: key_var.map(str::to_string),
        temperature: Some(0.2),
        top_p: None,
        max_tokens: Some(8000),
        timeout: Duration::from_secs(20),
        retries: 2,
        prices: PRICES,
    };
    Proposer::OpenAi(
        OpenAiProposer::new(settings)
            .unwrap()
            .with_waits(Duration::from_millis(10), Duration::from_secs(1))
            .without_proxy(),
    )
}

/// A night on the bundled softmax with one proposal pattern asking four questions
/// around each best; `MARK_FAST` in a proposal makes it FAST.
fn night(repo: &Path, reports: &Path, proposer: Proposer, budgets: &str) -> Run {
    let library = Library {
        patterns: vec![proposal_pattern("ask", 4)],
    };
    let mut ev = Scripted::new(|_, _| false, |_| false);
    ev.marks = true;
    run_full(
        "softmax",
        budgets,
        library,
        (repo, reports),
        ev,
        StopFlag::default(),
        Extras {
            gpus: 0,
            proposer: Some(proposer),
            notifier: None,
            frozen: false,
        },
    )
}

/// The dollars of each proposer charge, in journal order.
fn proposer_charges(records: &[Record]) -> Vec<f64> {
    records
        .iter()
        .filter_map(|r| match &r.event {
            J::Charge(c) if c.stage == Stage::Proposer => Some(c.dollars),
            _ => None,
        })
        .collect()
}

/// Every plain file under `dir`, `.git` included (links are not followed).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let t = std::fs::symlink_metadata(&p).unwrap().file_type();
            if t.is_dir() {
                todo.push(p);
            } else if t.is_file() {
                out.push(p);
            }
        }
    }
    out
}

fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Everything a run wrote or said, by where: every file under the reports and the
/// repository (its worktrees and `.git` too), the history of every branch with its
/// patches, every git object uncompressed (reachable or not), the summary's Debug
/// and JSON.
fn everything(repo: &Path, reports: &Path, summary: &RunSummary) -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<(String, Vec<u8>)> = files_under(reports)
        .into_iter()
        .chain(files_under(repo))
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    let git = |args: &[&str]| sh(repo, args).into_bytes();
    all.push(("git log --all -p".into(), git(&["log", "--all", "-p"])));
    all.push((
        "every git object".into(),
        git(&["cat-file", "--batch-all-objects", "--batch"]),
    ));
    all.push((
        "the summary's Debug".into(),
        format!("{summary:?}").into_bytes(),
    ));
    all.push((
        "the summary's JSON".into(),
        serde_json::to_vec(summary).unwrap(),
    ));
    all
}

fn leaks(all: &[(String, Vec<u8>)], key: &str) -> Vec<String> {
    all.iter()
        .filter(|(_, text)| holds(text, key.as_bytes()))
        .map(|(at, _)| at.clone())
        .collect()
}

/// Every key of every object in `v`, at any depth.
fn keys(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                out.push(k.clone());
                keys(x, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| keys(x, out)),
        _ => {}
    }
}

#[test]
fn the_api_key_is_written_nowhere_over_a_night_an_echoing_endpoint_and_its_report() {
    let n: u64 = rand::random();
    let var = format!("NIGHTSHIFT_TEST_KEY_{n:016X}");
    let key = format!("sk-nightshift-{n:016x}-{:x}", std::process::id());
    std::env::set_var(&var, &key);
    let src = softmax();
    let server = Server::start(vec![
        // 1: a 500 echoing the request's head (the key in it), then a good answer.
        Reply::Echo {
            status: 500,
            prefix: "upstream failed; you sent:\n".into(),
        },
        completion(&fenced(&format!("// tidied\n{src}")), 1_200, 900),
        // 2: an answer cut short.
        http(
            200,
            &[],
            cut_answer(&format!("// MARK_FAST\n{src}")).as_bytes(),
        ),
        // 3: a faster source, with the request's head around the code and its
        // Authorization header inside it: the key would be committed unless redacted.
        Reply::EchoCompletion {
            content: format!(
                "You sent:\n{{head}}\n```cuda\n// MARK_FAST\n// asked with {{authorization}}\n\
                 {src}```\nSigned {{authorization}}.\n"
            ),
            prompt_tokens: 1_500,
            completion_tokens: 1_100,
        },
        // Then every question is refused with the request's head echoed.
        Reply::Echo {
            status: 400,
            prefix: "bad request: ".into(),
        },
    ]);
    let (repo, reports) = (user_repo(), tempfile::tempdir().unwrap());
    let r = night(
        repo.path(),
        reports.path(),
        openai(&server, Some(&var)),
        ROOMY,
    );
    std::env::remove_var(&var);
    assert_eq!(
        r.summary.stop_reason,
        Some(StopReason::NothingLeft),
        "{}",
        r.summary.stop
    );

    // The endpoint did receive the key, in every request: the test can fail.
    let reqs = server.requests();
    let bearer = format!("Bearer {key}");
    assert!(
        reqs.iter()
            .all(|q| q.header("authorization").as_deref() == Some(bearer.as_str())),
        "{reqs:?}"
    );
    // Three questions around the kernel as written (the third kept), four around
    // the kept source, all refused; the first one asked twice (a 500).
    let a = answers(&r.records);
    assert_eq!(a.len(), 7, "{a:#?}");
    assert_eq!(reqs.len(), 8);
    assert!(a[0].error.is_none() && a[0].source.as_deref().unwrap().starts_with("// tidied"));
    assert!(
        a[1].error
            .as_deref()
            .unwrap()
            .contains("not chat-completions JSON"),
        "{:?}",
        a[1].error
    );
    // What was echoed is kept, redacted: in the source, its explanation and errors.
    let echoed = a[2].source.as_deref().unwrap();
    assert!(
        echoed.starts_with("// MARK_FAST\n// asked with Bearer [redacted]\n"),
        "{echoed}"
    );
    let explanation = a[2].explanation.as_deref().unwrap().to_ascii_lowercase();
    assert!(
        explanation.contains("authorization: bearer [redacted]"),
        "{explanation}"
    );
    for x in &a[3..] {
        let e = x.error.as_deref().unwrap();
        assert!(
            e.contains("HTTP 400") && e.to_ascii_lowercase().contains("bearer [redacted]"),
            "{e}"
        );
    }
    // The echoed proposal is the one committed, redacted.
    assert_eq!(branch_log(repo.path()).len(), 1);
    let show = sh(repo.path(), &["show", "--format=%B", "nightshift/r1"]);
    assert!(show.contains("+// asked with Bearer [redacted]"), "{show}");

    // A journaled request is the request as built, with no header in it.
    for x in &a {
        let fields: Vec<&str> = x
            .request
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert!(
            fields.iter().all(|f| REQUEST_FIELDS.contains(f)) && fields.contains(&"source"),
            "{fields:?}"
        );
        let mut all = Vec::new();
        keys(&x.request, &mut all);
        assert!(
            !all.iter().any(|k| {
                let k = k.to_ascii_lowercase();
                k.contains("authorization") || k.contains("header") || k.contains("key")
            }),
            "{all:?}"
        );
    }

    // The report, its plots too, then everything written is searched for the key.
    let (_, written) = crate::cli::report::write(reports.path(), "r1").unwrap();
    for f in ["report.md", "report.json"] {
        assert!(written.iter().any(|p| p.ends_with(f)), "{written:?}");
    }
    let all = everything(repo.path(), reports.path(), &r.summary);
    let found = leaks(&all, &key);
    assert!(found.is_empty(), "the key is in {found:?}");
    // What was searched held what was echoed (redacted): the journal, the history of
    // the branch, the worktree's source.
    let has = |at: &dyn Fn(&str) -> bool| {
        all.iter()
            .any(|(p, t)| at(p) && holds(t, b"Bearer [redacted]"))
    };
    assert!(has(&|p| p.ends_with(journal::FILE_NAME)));
    assert!(has(&|p| p == "git log --all -p"));
    assert!(has(&|p| p.ends_with("softmax.cu")));
    // The search finds a key where there is one.
    std::fs::write(reports.path().join("r1").join("planted.txt"), &bearer).unwrap();
    let all = everything(repo.path(), reports.path(), &r.summary);
    assert_eq!(leaks(&all, &key).len(), 1);
}

#[test]
fn every_answer_is_billed_its_tokens_at_the_prices_through_the_ledger() {
    let src = softmax();
    let cut = cut_answer(&src);
    let server = Server::start(vec![
        Reply::Echo {
            status: 500,
            prefix: String::new(),
        },
        completion(&fenced(&format!("// tidied\n{src}")), 12_345, 6_789),
        // Billed though it holds no code.
        completion("I would split each row across two warps.", 1_001, 333),
        // Not JSON: no usage, so estimated at a token per 4 bytes each way.
        http(200, &[], cut.as_bytes()),
        completion(&fenced(&format!("// MARK_FAST\n{src}")), 54_321, 9_876),
        // A refusal has no usage: nothing billed.
        Reply::Echo {
            status: 400,
            prefix: String::new(),
        },
    ]);
    let (repo, reports) = (user_repo(), tempfile::tempdir().unwrap());
    let r = night(repo.path(), reports.path(), openai(&server, None), ROOMY);
    assert_eq!(
        r.summary.stop_reason,
        Some(StopReason::NothingLeft),
        "{}",
        r.summary.stop
    );
    let reqs = server.requests();
    let a = answers(&r.records);
    assert_eq!(a.len(), 8, "{a:#?}");
    assert_eq!(reqs.len(), 9);
    // The cut answer's request is the fourth sent (the first question was sent twice).
    let (ei, eo) = (
        reqs[3].body.len().div_ceil(4) as u64,
        cut.len().div_ceil(4) as u64,
    );
    let mut expected = vec![
        (12_345, 6_789, false),
        (1_001, 333, false),
        (ei, eo, true),
        (54_321, 9_876, false),
    ];
    expected.resize(a.len(), (0, 0, false));
    let charges = proposer_charges(&r.records);
    assert_eq!(charges.len(), a.len(), "one charge per question");
    for (i, (x, (input, output, estimated))) in a.iter().zip(&expected).enumerate() {
        let u = &x.usage;
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.estimated),
            (*input, *output, *estimated),
            "question {}",
            i + 1
        );
        let bill = price(*input, *output);
        assert!(
            (u.dollars - bill).abs() < 1e-12,
            "question {}: {u:?}",
            i + 1
        );
        assert!(
            (charges[i] - bill).abs() < 1e-12,
            "question {}: charged {}, billed {bill}",
            i + 1,
            charges[i]
        );
    }
    // $0.0987525 + $0.0058325 + the estimate + $0.2345625.
    let total = 0.098_752_5 + 0.005_832_5 + price(ei, eo) + 0.234_562_5;
    let spent = r.summary.spent;
    assert!(
        (spent.proposer_dollars - total).abs() < 1e-9,
        "{spent:?} against {total}"
    );
    assert_eq!(
        (spent.proposer_dollars * 100.0).round(),
        (total * 100.0).round()
    );
    // The run's dollars are its GPU time at $3/h and the proposer's bill.
    assert!(
        (spent.dollars - (spent.gpu_s * 3.0 / 3600.0 + total)).abs() < 1e-9,
        "{spent:?}"
    );
    // The kept proposal's commit says what it cost.
    let msg = sh(repo.path(), &["log", "-1", "--format=%B", "nightshift/r1"]);
    assert!(
        msg.contains(
            "Nightshift-Proposer: openai test-model; 54321 input + 9876 output tokens; $0.2346;"
        ),
        "{msg}"
    );
}

#[test]
fn a_dollar_budget_stops_an_expensive_proposer_before_a_question_it_cannot_pay() {
    let src = softmax();
    let budgets = "[run]\ndollars = 1.0\n[price]\ndefault_per_gpu_hour = 3.0\n";
    // Tokens per answer, what that costs, and the questions $1.00 pays for: the first
    // is asked before any bill is known; each next one at the mean bill so far.
    for ((input, output), cost, questions) in
        [((40_000, 50_000), 0.60, 1), ((20_000, 40_000), 0.45, 2)]
    {
        assert!((price(input, output) - cost).abs() < 1e-12);
        let replies = (0..6)
            .map(|i| completion(&fenced(&format!("// try {i}\n{src}")), input, output))
            .collect();
        let server = Server::start(replies);
        let (repo, reports) = (user_repo(), tempfile::tempdir().unwrap());
        let r = night(repo.path(), reports.path(), openai(&server, None), budgets);
        let spent = r.summary.spent;
        assert!(
            matches!(r.summary.stop_reason, Some(StopReason::Dollars { .. })),
            "${cost}: {}",
            r.summary.stop
        );
        assert!(spent.dollars <= 1.0, "${cost}: {spent:?}");
        assert_eq!(server.requests().len(), questions, "${cost}");
        assert_eq!(answers(&r.records).len(), questions, "${cost}");
        assert!(
            (spent.proposer_dollars - cost * questions as f64).abs() < 1e-9,
            "${cost}: {spent:?}"
        );
        // Each answer's candidate was evaluated; one more question would have broken
        // the budget (the stop was not early).
        let evaluated = r
            .records
            .iter()
            .filter(
                |x| matches!(&x.event, J::Evaluated { config, .. } if config.contains("proposal:")),
            )
            .count();
        assert_eq!(evaluated, questions, "${cost}");
        assert!(spent.dollars + cost > 1.0, "${cost}: {spent:?}");
    }
}
