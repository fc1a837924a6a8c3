//! Malformed input, generated: every parser nightshift has (specs, budgets, patterns,
//! journals, baseline files, `tuned.toml`, expressions, `nightshift.toml`, proposals
//! and a command proposer's answers) gets mutations of real files and strings of the
//! tokens that broke it before. None may panic or take long, and an error about a
//! file names the file (and a line inside it, when it gives one).
//! A bounded run in CI; raise PROPTEST_CASES for a longer one.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nightshift::budget::Budgets;
use nightshift::patterns::Library;
use nightshift::spec::expr::{Expr, Vars};
use nightshift::spec::KernelSpec;
use proptest::prelude::*;

/// Values that broke parsers before, and their neighbours.
const NASTY: &[&str] = &[
    "nan",
    "inf",
    "-inf",
    "-1",
    "0",
    "1e300",
    "-9223372036854775808",
    "9223372036854775807",
    "18446744073709551616",
    "\"\"",
    "\"../../x\"",
    "\"/etc/passwd\"",
    "\".\"",
    "\"rows *\"",
    "\"rows / 0\"",
    "\"cdiv(-9223372036854775806, -1)\"",
    "\"math::abs(rows)\"",
    "\"shl(rows, 99)\"",
    "[",
    "]",
    "{",
    "}",
    "=",
    "\"",
    "[[arg]]",
    "[tune]",
    "[validate]",
    "true",
    "\"bitwise\"",
    "\u{0}",
    "é",
];

fn mutate(text: &str, edits: &[(usize, usize, usize)]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for &(kind, at, token) in edits {
        if lines.is_empty() {
            lines.push(String::new());
        }
        let i = at % lines.len();
        let tok = NASTY[token % NASTY.len()];
        match kind % 5 {
            0 => {
                lines.remove(i);
            }
            1 => lines.insert(i, tok.to_string()),
            2 => {
                // Replace a value: everything after the first `=` of the line.
                if let Some(eq) = lines[i].find('=') {
                    lines[i] = format!("{}= {tok}", &lines[i][..eq]);
                }
            }
            3 => {
                let l = &lines[i];
                let cut = l
                    .char_indices()
                    .nth(token % (l.chars().count() + 1))
                    .map_or(l.len(), |c| c.0);
                lines[i] = format!("{}{tok}{}", &l[..cut], &l[cut..]);
            }
            _ => {
                let l = lines[i].clone();
                lines.insert(i, l);
            }
        }
    }
    lines.join("\n")
}

fn edits() -> impl Strategy<Value = Vec<(usize, usize, usize)>> {
    prop::collection::vec((0usize..5, 0usize..400, 0usize..200), 1..6)
}

fn quick<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let out = f();
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "{what} took {:?}",
        t.elapsed()
    );
    out
}

fn bundled(path: &str) -> String {
    std::fs::read_to_string(common::repo_root().join(path)).unwrap()
}

/// Sources the spec parser reads: any name resolves to a small kernel.
fn sources(_: &Path) -> std::io::Result<String> {
    Ok("extern \"C\" __global__ void k() {}\n".into())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(160),
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_mutated_spec_parses_or_names_its_file(e in edits(), which in 0usize..3) {
        let name = ["softmax", "rowsum", "attention"][which];
        let text = mutate(&bundled(&format!("kernels/{name}/kernel.toml")), &e);
        let path = PathBuf::from(format!("kernels/{name}/kernel.toml"));
        let lines = text.lines().count() + 1;
        if let Err(err) = quick("a spec", || KernelSpec::parse(&text, &path, &sources)) {
            prop_assert_eq!(&err.path, &path);
            prop_assert!(err.line.is_none_or(|l| l >= 1 && l <= lines), "{}", err);
        }
    }

    #[test]
    fn every_rewrite_of_a_mutated_kernel_applies_refuses_or_errs(e in edits(), which in 0usize..7) {
        use nightshift::rewrite::{Applied, FastMath, Rewrite};
        let (name, entry) = [
            ("attention", "attention_fwd"),
            ("gemm", "gemm_wmma"),
            ("gemv", "gemv_smalln"),
            ("layernorm", "layernorm"),
            ("rowsum", "rowsum"),
            ("simsearch", "simsearch"),
            ("softmax", "softmax_rows"),
        ][which];
        let text = mutate(&bundled(&format!("kernels/{name}/{name}.cu")), &e);
        let all = [
            Rewrite::LaunchBounds { max_threads: None, default_threads: 256, min_blocks: 2 },
            Rewrite::MaxRegisters { count: 64 },
            Rewrite::RestrictConst { params: vec!["x".into(), "A".into(), "Q".into()] },
            Rewrite::UnrollPragma { factor: 4 },
            Rewrite::FastMath(FastMath::All),
            Rewrite::CachePolicy { policy: "cg".into() },
        ];
        for r in all {
            // Applied, not applicable, or an error: never a panic, never slow.
            if let Ok(Applied::Changed(v)) = quick(name, || r.apply(entry, &text, &[])) {
                prop_assert!(v.source != text || !v.options.is_empty(), "{}: {} changed nothing", name, r);
            }
        }
    }

    #[test]
    fn a_mutated_budgets_file_parses_or_names_its_line(e in edits()) {
        let text = mutate(&bundled("budgets.toml"), &e);
        let lines = text.lines().count() + 1;
        if let Err(err) = quick("budgets", || Budgets::parse(&text, Path::new("budgets.toml"))) {
            prop_assert!(err.to_string().starts_with("budgets.toml"), "{}", err);
            prop_assert!(err.line.is_none_or(|l| l >= 1 && l <= lines), "{}", err);
        }
    }

    #[test]
    fn a_mutated_pattern_parses_or_names_its_file(e in edits(), which in 0usize..5) {
        let name = [
            "block-size",
            "occupancy",
            "parallelism-first",
            "rewrite-max-registers",
            "rewrite-fast-math",
        ][which];
        let path = PathBuf::from(format!("patterns/{name}.toml"));
        let text = mutate(&bundled(&format!("patterns/{name}.toml")), &e);
        match quick("a pattern", || Library::parse(&[(path.clone(), text.clone())])) {
            Err(err) => prop_assert_eq!(&err.path, &path),
            // What parses proposes its rewrites without a panic, whatever the signals.
            Ok(lib) => {
                let config = nightshift::spec::Config(
                    [("BLOCK".to_string(), 0), ("VEC".to_string(), i64::MAX)].into_iter().collect(),
                );
                for v in [0.0, -1.0, 0.5, 64.0, 1e300] {
                    let signals = nightshift::profile::SIGNALS
                        .iter()
                        .map(|(n, _)| (n.to_string(), v))
                        .collect();
                    for p in &lib.patterns {
                        let _ = quick("rewrite texts", || p.rewrite_texts(&signals, &config));
                    }
                }
            }
        }
    }

    #[test]
    fn a_mutated_journal_reads_or_names_its_line(cut in 0usize..4000, e in edits()) {
        let text = bundled("agent/tests/fixtures/journals/h100-softmax-finished.jsonl");
        let mut text = mutate(&text[..cut.min(text.len())], &e);
        text.push('\n');
        let path = Path::new("reports/r/journal.jsonl");
        let _ = quick("a journal", || nightshift::journal::parse(text.as_bytes(), path));
    }

    #[test]
    fn a_mutated_baseline_or_tuned_file_is_an_error_not_a_panic(e in edits()) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("nightshift-baseline.json");
        let base = "{\"version\": 1, \"device\": \"d\", \"date\": \"x\", \"command\": \"c\", \"seed\": 1, \"kernels\": [{\"kernel\": \"k\", \"config\": \"A=1\", \"median_us\": 1.0, \"samples\": [1.0, 2.0]}]}";
        std::fs::write(&p, mutate(base, &e)).unwrap();
        let _ = quick("a baseline", || nightshift::gate::BaselineFile::load(&p));
        let tuned = mutate("# tuned\nBLOCK = 256\nVEC = 4\n", &e);
        let _ = quick("tuned.toml", || nightshift::tuned::read(&tuned));
    }

    #[test]
    fn a_mutated_settings_file_parses_or_names_its_line(e in edits()) {
        let text = mutate(&bundled("nightshift.toml.example"), &e);
        let lines = text.lines().count() + 1;
        let path = Path::new("nightshift.toml");
        if let Err(err) = quick("settings", || nightshift::settings::Settings::parse(&text, path)) {
            prop_assert!(err.to_string().starts_with("nightshift.toml"), "{}", err);
            prop_assert!(err.line.is_none_or(|l| l >= 1 && l <= lines), "{}", err);
        }
    }

    #[test]
    fn a_mutated_proposal_is_checked_or_refused_and_an_answer_read_or_refused(
        e in edits(),
        which in 0usize..7,
    ) {
        let dirs = common::bundled_kernels();
        let spec = KernelSpec::load(&dirs[which % dirs.len()]).unwrap();
        let text = mutate(&spec.source, &e);
        let _ = quick("a proposal's check", || nightshift::propose::check(&spec, &text));
        let answer = mutate("{\"source\": \"k\", \"explanation\": \"e\", \"input_tokens\": 1}", &e);
        let _ = quick("an answer", || nightshift::propose::command::parse_answer(answer.as_bytes()));
        let _ = quick("a fence", || nightshift::propose::openai::extract_code(&text));
    }

    #[test]
    fn an_expression_of_any_tokens_evaluates_or_errs(
        toks in prop::collection::vec(0usize..26, 0..40),
        rows in prop::num::i64::ANY,
    ) {
        const T: &[&str] = &[
            "rows", "cols", "1", "0", "-1", "9223372036854775807", "+", "-", "*", "/", "%",
            "^", "(", ")", ",", "cdiv", "min", "max", "if", "==", "&&", "<", "true", "1.5",
            "math::sqrt", "floor",
        ];
        let src: String = toks.iter().map(|t| T[*t]).collect::<Vec<_>>().join(" ");
        let vars: Vars = [("rows".to_string(), rows), ("cols".to_string(), -rows.saturating_abs())]
            .into_iter()
            .collect();
        quick("an expression", || {
            if let Ok(e) = Expr::parse(&src) {
                let _ = e.eval_int(&vars);
                let _ = e.eval_bool(&vars);
                let _ = e.eval_number(&vars);
            }
        });
    }
}
