//! The pattern library without a GPU: the shipped files load, every error path names
//! the file, the line and the key, and applicability follows the signals and tiers.

use std::path::{Path, PathBuf};

use super::*;
use crate::spec::Config;

fn shipped() -> Library {
    Library::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../patterns"))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn one(text: &str) -> Result<Library, SpecError> {
    Library::parse(&[(PathBuf::from("patterns/p.toml"), text.to_string())])
}

const MOVES: &str = r#"name = "p"
kind = "moves"
tier = "constant"
when = "memory_bound == 1"
rationale = "because"

[[move]]
role = "vector"
direction = "up"
"#;

fn signals(pairs: &[(&str, f64)]) -> Signals {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[test]
fn the_shipped_library_loads_with_the_required_patterns() {
    let lib = shipped();
    let names: Vec<&str> = lib.patterns.iter().map(|p| p.name.as_str()).collect();
    for n in [
        "parallelism-first",
        "start-simple",
        "roi-pivot",
        "vectorize-memory",
        "occupancy",
        "tile-size",
        "unroll",
        "variant-select",
        "workload-batching",
        "launch-bounds",
        "max-registers",
        "restrict-const",
        "unroll-pragma",
        "fast-math",
        "cache-policy",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    assert_eq!(lib.tier_order(), Tier::ALL.to_vec());
    assert_eq!(lib.pivot_factor(), 2.0);
    for p in &lib.patterns {
        assert!(!p.rationale.is_empty(), "{} has no rationale", p.name);
    }
}

#[test]
fn an_underfilled_launch_puts_parallelism_first_and_tiers_in_order() {
    let lib = shipped();
    // The similarity search baseline on the H100: 100 CTAs on 132 SMs, memory-light.
    let s = signals(&[
        ("ctas", 100.0),
        ("sms", 132.0),
        ("waves", 0.08),
        ("memory_bound", 0.0),
        ("compute_bound", 1.0),
        ("dram_fraction", 0.001),
        ("compute_fraction", 0.003),
        ("occupancy", 0.25),
        ("spill_bytes", 8.0),
        ("has_vector", 0.0),
        ("has_tile", 1.0),
        ("has_unroll", 0.0),
        ("has_variant", 1.0),
        ("has_workload_axes", 1.0),
    ]);
    let names: Vec<&str> = lib.applicable(&s).iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names.first(), Some(&"parallelism-first"), "{names:?}");
    assert!(names.contains(&"workload-batching"));
    assert!(
        names.contains(&"occupancy"),
        "spills make it apply too: {names:?}"
    );
    assert!(names.contains(&"variant-select"));
    assert!(!names.contains(&"vectorize-memory"), "{names:?}");
    // Tiers never decrease along the list.
    let tiers: Vec<Tier> = lib.applicable(&s).iter().map(|p| p.tier).collect();
    assert!(tiers.windows(2).all(|w| w[0] <= w[1]), "{tiers:?}");
    // A full GPU: parallelism-first no longer applies.
    let mut full = s.clone();
    full.insert("ctas".into(), 4096.0);
    full.insert("waves".into(), 3.9);
    let names: Vec<&str> = lib
        .applicable(&full)
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert!(!names.contains(&"parallelism-first"), "{names:?}");
}

#[test]
fn a_condition_on_a_missing_signal_does_not_hold() {
    let lib = one(MOVES).unwrap();
    assert!(lib.applicable(&signals(&[])).is_empty());
    assert_eq!(lib.applicable(&signals(&[("memory_bound", 1.0)])).len(), 1);
}

#[test]
fn errors_name_the_file_line_and_key() {
    // An unknown key.
    let e = one(&MOVES.replace("rationale", "ratonale")).unwrap_err();
    assert_eq!(e.path, PathBuf::from("patterns/p.toml"));
    assert_eq!(e.line, Some(5));
    assert!(e.message.contains("ratonale"), "{e}");
    // A condition on something that is not a signal.
    let e = one(&MOVES.replace("memory_bound == 1", "memory_bond == 1")).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("when"));
    assert_eq!(e.line, Some(4));
    assert!(e.message.contains("memory_bond"), "{e}");
    // Malformed expressions, roles, tiers and kinds.
    let e = one(&MOVES.replace("memory_bound == 1", "memory_bound ==")).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("when"));
    let e = one(&MOVES.replace("\"vector\"", "\"vectr\"")).unwrap_err();
    assert_eq!(e.line, Some(8), "{e}");
    let e = one(&MOVES.replace("\"constant\"", "\"cheap\"")).unwrap_err();
    assert_eq!(e.line, Some(3), "{e}");
    let e = one(&MOVES.replace("\"moves\"", "\"magic\"")).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("kind"));
    // A moves pattern with no move, a tier missing, a bad budget and prediction.
    let bare = MOVES.split("[[move]]").next().unwrap().to_string();
    assert_eq!(one(&bare).unwrap_err().key.as_deref(), Some("move"));
    let e = one(&MOVES.replace("tier = \"constant\"\n", "")).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("tier"));
    let e = one(&MOVES.replace("rationale", "budget_minutes = -5\nrationale")).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("budget_minutes"));
    let e = one(&format!("{MOVES}\n[predict]\nspeedup = 0.5\n")).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("predict.speedup"));
}

#[test]
fn rules_and_studies_are_checked() {
    let rule =
        "name = \"r\"\nkind = \"rule\"\nrule = \"roi-pivot\"\nfactor = 3.0\nrationale = \"x\"\n";
    let lib = one(rule).unwrap();
    assert_eq!(lib.pivot_factor(), 3.0);
    assert!(
        lib.applicable(&signals(&[])).is_empty(),
        "rules are not moves"
    );
    let e = one(&rule.replace("factor = 3.0", "factor = 0.5")).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("factor"));
    let e = one(&rule.replace("roi-pivot", "roi-pivott")).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("rule"));
    let order = "name = \"o\"\nkind = \"rule\"\nrule = \"tier-order\"\norder = [\"launch\", \"launch\", \"variant\", \"source\"]\nrationale = \"x\"\n";
    assert_eq!(one(order).unwrap_err().key.as_deref(), Some("order"));
    let study = "name = \"s\"\nkind = \"study\"\nstudy = \"workload-batching\"\ntier = \"launch\"\nscale = [2, 1]\nrationale = \"x\"\n";
    assert_eq!(one(study).unwrap_err().key.as_deref(), Some("scale"));
    // `together` belongs to moves only.
    let e = one(&rule.replace("rationale", "together = true\nrationale")).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("together"));
    let lib = one(&MOVES.replace("rationale", "together = true\nrationale")).unwrap();
    assert!(lib.patterns[0].together);
    assert!(!one(MOVES).unwrap().patterns[0].together);
    // Two patterns with one name, or two rules of one kind.
    let files = vec![
        (PathBuf::from("patterns/a.toml"), MOVES.to_string()),
        (PathBuf::from("patterns/b.toml"), MOVES.to_string()),
    ];
    let e = Library::parse(&files).unwrap_err();
    assert!(e.message.contains("already defined"), "{e}");
    let files = vec![
        (PathBuf::from("patterns/a.toml"), rule.to_string()),
        (
            PathBuf::from("patterns/b.toml"),
            rule.replace("\"r\"", "\"r2\""),
        ),
    ];
    let e = Library::parse(&files).unwrap_err();
    assert!(e.message.contains("roi-pivot"), "{e}");
}

const REWRITE: &str = r#"name = "r"
kind = "rewrite"
tier = "source"
when = "registers > 32"
rationale = "because"
rewrite = "max-registers"
steps = ["count={max(32, registers * 3 / 4)}", "count={registers - 8}", "count={BLOCK / 2}", "count=64"]
"#;

fn config(pairs: &[(&str, i64)]) -> Config {
    Config(pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect())
}

#[test]
fn rewrite_steps_resolve_over_signals_and_tunables() {
    let lib = one(REWRITE).unwrap();
    let p = &lib.patterns[0];
    assert!(
        matches!(&p.body, Body::Rewrite { rewrite, steps, .. } if rewrite == "max-registers" && steps.len() == 4)
    );
    let s = signals(&[("registers", 64.0)]);
    assert_eq!(
        p.rewrite_texts(&s, &config(&[("BLOCK", 256)])),
        [
            "max-registers:count=48",
            "max-registers:count=56",
            "max-registers:count=128",
            "max-registers:count=64",
        ]
    );
    // Duplicates dropped, order kept; a tunable the config lacks leaves its step out.
    assert_eq!(
        p.rewrite_texts(&signals(&[("registers", 72.0)]), &config(&[])),
        ["max-registers:count=54", "max-registers:count=64"]
    );
    // A missing signal leaves its steps out; a value out of the rewrite's range too.
    assert_eq!(
        p.rewrite_texts(&signals(&[]), &config(&[("BLOCK", 20)])),
        ["max-registers:count=64"]
    );
    // A fraction is not an integer: `floor` or integer division say how to round.
    let frac = REWRITE.replace(
        "\"count={registers - 8}\", \"count={BLOCK / 2}\", ",
        "\"count={registers * 0.75}\", \"count={floor(registers * 0.75)}\", ",
    );
    let lib = one(&frac).unwrap();
    assert_eq!(
        lib.patterns[0].rewrite_texts(&signals(&[("registers", 63.0)]), &config(&[])),
        ["max-registers:count=47", "max-registers:count=64"]
    );
    // Other kinds propose no rewrite; no steps is one step with the defaults.
    assert!(one(MOVES).unwrap().patterns[0]
        .rewrite_texts(&s, &config(&[]))
        .is_empty());
    let bare = REWRITE
        .replace("max-registers", "restrict-const")
        .lines()
        .filter(|l| !l.starts_with("steps"))
        .collect::<Vec<_>>()
        .join("\n");
    let lib = one(&bare).unwrap();
    assert_eq!(
        lib.patterns[0].rewrite_texts(&s, &config(&[])),
        ["restrict-const"]
    );
}

#[test]
fn every_shipped_rewrite_pattern_proposes_texts_the_rewrite_engine_parses() {
    let lib = shipped();
    let mut spec = crate::spec::KernelSpec::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernels/softmax"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // As a run gives it: the library's own rewrites.
    spec.edits = lib.edits();
    // Every signal measured, the register-heavy profile the rewrites are for.
    let mut s: Signals = crate::profile::SIGNALS
        .iter()
        .map(|(n, _)| (n.to_string(), 1.0))
        .collect();
    for (k, v) in [
        ("registers", 64.0),
        ("threads_per_block", 256.0),
        ("active_blocks_per_sm", 4.0),
        ("occupancy", 0.25),
    ] {
        s.insert(k.into(), v);
    }
    let mut covered = Vec::new();
    for p in &lib.patterns {
        let Body::Rewrite { rewrite, edit, .. } = &p.body else {
            continue;
        };
        if edit.is_none() {
            covered.push(rewrite.as_str());
        }
        let texts = p.rewrite_texts(&s, &spec.baseline());
        assert!(!texts.is_empty(), "{} proposes nothing", p.name);
        for t in &texts {
            let r = crate::rewrite::Rewrite::parse(t, &spec)
                .unwrap_or_else(|e| panic!("{}: `{t}`: {e}", p.name));
            assert_eq!(r.name(), rewrite);
        }
        if p.name == "max-registers" {
            assert_eq!(texts, ["max-registers:count=48", "max-registers:count=32"]);
        }
    }
    covered.sort();
    let mut all = crate::rewrite::NAMES.to_vec();
    all.sort();
    assert_eq!(covered, all, "one shipped pattern per built-in");
}

#[test]
fn malformed_rewrite_patterns_name_the_key() {
    let err = |text: &str| one(text).unwrap_err();
    let e = err(&REWRITE.replace("rewrite = \"max-registers\"", "rewrite = \"max-regs\""));
    assert_eq!(
        (e.key.as_deref(), e.line),
        (Some("rewrite"), Some(6)),
        "{e}"
    );
    assert!(
        e.message.contains("max-regs") && e.message.contains("launch-bounds"),
        "{e}"
    );
    let e = err(&REWRITE.replace("rewrite = \"max-registers\"\n", ""));
    assert_eq!(e.key.as_deref(), Some("rewrite"), "{e}");
    // Steps: an unknown key, a bad expression, an unknown name, a literal out of range.
    for (step, want) in [
        (
            "cnt=40",
            "`cnt` is not a parameter of max-registers (it takes: count)",
        ),
        ("count={registers * (2}", "not an expression"),
        ("count={registers *}", "expected 2 arguments"),
        ("count={registers > 3}", "not a number"),
        ("count={regs - 8}", "`regs`"),
        ("count={Block}", "the signals are"),
        ("count=8", "not an integer in 16..=255"),
        ("count=40,count=48", "given twice"),
        ("count", "not key=value"),
        ("count={registers", "without its `}`"),
        ("count={{registers}}", "do not nest"),
    ] {
        let e = err(&REWRITE.replace("\"count=64\"", &format!("{step:?}")));
        assert_eq!(
            (e.key.as_deref(), e.line),
            (Some("steps"), Some(7)),
            "{step}: {e}"
        );
        assert!(e.message.contains(want), "{step}: {e}");
    }
    let e = err(&REWRITE.replace("steps = [", "steps = [] #"));
    assert_eq!(e.key.as_deref(), Some("steps"), "{e}");
    let e = err(&REWRITE
        .replace("\"max-registers\"", "\"fast-math\"")
        .replace("steps = [", "steps = [\"part=fastest\"] #"));
    assert!(e.message.contains("part `fastest`"), "{e}");
    // Keys of other kinds in a rewrite pattern, and a rewrite's keys in other kinds.
    let e = err(&format!(
        "{REWRITE}\n[[move]]\nrole = \"block\"\ndirection = \"up\"\n"
    ));
    assert_eq!(e.key.as_deref(), Some("move"), "{e}");
    let e = err(&REWRITE.replace("rationale", "together = true\nrationale"));
    assert_eq!(e.key.as_deref(), Some("together"), "{e}");
    let e = err(&MOVES.replace("rationale", "rewrite = \"fast-math\"\nrationale"));
    assert_eq!(e.key.as_deref(), Some("rewrite"), "{e}");
    let e = err(&MOVES.replace("rationale", "steps = [\"part=all\"]\nrationale"));
    assert_eq!(e.key.as_deref(), Some("steps"), "{e}");
    let e = err(&MOVES.replace("\"moves\"", "\"magic\""));
    assert!(e.message.contains("`rewrite`"), "{e}");
}

const EDIT: &str = r##"name = "outer"
kind = "rewrite"
tier = "source"
rationale = "because"
steps = ["factor=2", "factor={BLOCK / 64}"]

[edit]
query = "(for_statement body: (compound_statement (for_statement))) @loop"
capture = "loop"
place = "before"
template = "#pragma unroll {factor}\n"
"##;

#[test]
fn a_pattern_may_declare_its_own_rewrite_checked_at_load() {
    let lib = one(EDIT).unwrap_or_else(|e| panic!("{e}"));
    let edits = lib.edits();
    assert_eq!(edits.len(), 1);
    assert_eq!(edits[0].name, "outer");
    let texts = lib.patterns[0].rewrite_texts(&Signals::new(), &config(&[("BLOCK", 256)]));
    assert_eq!(texts, ["outer:factor=2", "outer:factor=4"]);

    let err = |text: &str| one(text).unwrap_err();
    let e = err(&EDIT.replace("(compound_statement (for_statement))", "(nope)"));
    assert_eq!(e.key.as_deref(), Some("edit.query"), "{e}");
    let e = err(&EDIT.replace("capture = \"loop\"", "capture = \"other\""));
    assert!(e.message.contains("no capture `@other`"), "{e}");
    let e = err(&EDIT.replace("factor=2", "unroll=2"));
    assert_eq!(e.key.as_deref(), Some("steps"), "{e}");
    let e = err(&EDIT.replace("steps = [\"factor=2\", \"factor={BLOCK / 64}\"]", ""));
    assert!(e.message.contains("does not give `factor`"), "{e}");
    let e = err(&EDIT.replace(
        "name = \"outer\"",
        "name = \"outer\"\nrewrite = \"unroll-pragma\"",
    ));
    assert_eq!(e.key.as_deref(), Some("rewrite"), "{e}");
    let e = err(&EDIT.replace("name = \"outer\"", "name = \"unroll-pragma\""));
    assert!(e.message.contains("built-in"), "{e}");
    let e = err(&EDIT.replace("place = \"before\"", "place = \"around\""));
    assert!(e.line.is_some(), "{e}");
    let moves_with_edit = format!(
        "{MOVES}\n[edit]\nquery = \"(for_statement) @l\"\nplace = \"before\"\ntemplate = \"x\"\n"
    );
    assert_eq!(err(&moves_with_edit).key.as_deref(), Some("edit"));
}
