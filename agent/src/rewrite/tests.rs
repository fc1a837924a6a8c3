//! The rewrite engine on small kernels written here and on every bundled kernel.

use std::path::Path;

use super::*;

const K: &str = r#"#include "x.cuh"
extern "C" __global__ void
scale(const float* __restrict__ a, float *b, float const* c, int n, float s) {
    for (int i = 0; i < n; ++i) {
        for (int j = 0; j < 4; j++) b[i] += a[j] * c[j];
#pragma unroll 2
        for (int j = 0; j < 2; j++) b[i] *= s;
        if (n > 3) for (int q = 0; q < 3; q++) b[q] = 0;
    }
}
__global__ void other(float* x) { for (int i = 0; i < 8; i++) x[i] = 0; }
"#;

fn changed(a: Applied) -> Variant {
    match a {
        Applied::Changed(v) => v,
        Applied::NotApplicable(why) => panic!("not applicable: {why}"),
    }
}

fn not_applicable(a: Applied) -> String {
    match a {
        Applied::Changed(v) => panic!("changed:\n{}", v.diff),
        Applied::NotApplicable(why) => why,
    }
}

#[test]
fn the_tree_finds_the_entry_its_parameters_and_its_loops() {
    let p = tree::parse(K).unwrap();
    assert!(p.errors().is_empty(), "{:?}", p.errors());
    let e = p.entry("scale").unwrap();
    let by = |n: &str| e.params.iter().find(|p| p.name == n).unwrap().clone();
    assert!(by("a").pointer && by("a").pointee_const && by("a").restrict);
    assert!(by("b").pointer && !by("b").pointee_const && !by("b").restrict);
    assert!(
        by("c").pointee_const,
        "`float const*` is a pointer to const"
    );
    assert!(!by("n").pointer);
    assert_eq!(e.loops.len(), 4);
    assert!(!e.loops[0].inner);
    assert_eq!(e.loops[2].pragma.as_deref(), Some("unroll 2"));
    assert!(e.launch_bounds.is_none());
    assert!(p.entry("missing").is_none());
    // Only the entry's own loops.
    assert!(p.entry("other").unwrap().loops.len() == 1);
}

#[test]
fn launch_bounds_are_added_or_changed_keeping_the_threads_expression() {
    let r = Rewrite::LaunchBounds {
        max_threads: None,
        default_threads: 256,
        min_blocks: 2,
    };
    let v = changed(r.apply("scale", K, &[]).unwrap());
    assert!(
        v.source.contains("__launch_bounds__(256, 2)\nscale("),
        "{}",
        v.source
    );
    assert!(v.diff.contains("+__launch_bounds__(256, 2)"), "{}", v.diff);
    // Again with a different minimum: the existing attribute is edited in place.
    let src = K.replace("void\nscale", "void __launch_bounds__(THREADS)\nscale");
    let v = changed(
        Rewrite::LaunchBounds {
            max_threads: None,
            default_threads: 1024,
            min_blocks: 3,
        }
        .apply("scale", &src, &[])
        .unwrap(),
    );
    assert!(
        v.source.contains("__launch_bounds__(THREADS, 3)"),
        "{}",
        v.source
    );
    assert_eq!(v.source.matches("__launch_bounds__").count(), 1);
    let why = not_applicable(
        Rewrite::LaunchBounds {
            max_threads: None,
            default_threads: 1024,
            min_blocks: 3,
        }
        .apply("scale", &v.source, &[])
        .unwrap(),
    );
    assert!(why.contains("already"), "{why}");
}

#[test]
fn restrict_const_qualifies_read_only_pointers_only() {
    let r = Rewrite::RestrictConst {
        params: vec!["a".into(), "c".into(), "n".into()],
    };
    let v = changed(r.apply("scale", K, &[]).unwrap());
    assert!(
        v.source.contains("float const* __restrict__ c"),
        "{}",
        v.source
    );
    assert!(v.source.contains("const float* __restrict__ a"));
    assert!(v.source.contains("float *b"), "b is written: untouched");
    assert_eq!(v.source.matches("const const").count(), 0);
    let why = not_applicable(r.apply("scale", &v.source, &[]).unwrap());
    assert!(why.contains("already"), "{why}");
    let none = Rewrite::RestrictConst { params: vec![] };
    assert!(not_applicable(none.apply("scale", K, &[]).unwrap()).contains("io = \"in\""));
}

#[test]
fn unroll_pragmas_go_on_inner_loops_without_one() {
    let v = changed(
        Rewrite::UnrollPragma { factor: 4 }
            .apply("scale", K, &[])
            .unwrap(),
    );
    // The j loop without a pragma and the q loop after `if`, not the outer i loop
    // nor the loop that had `#pragma unroll 2`.
    assert_eq!(
        v.source.matches("#pragma unroll 4").count(),
        2,
        "{}",
        v.source
    );
    assert!(v
        .source
        .contains("        #pragma unroll 4\n        for (int j = 0; j < 4; j++)"));
    assert!(
        v.source.contains(
            "if (n > 3) {\n#pragma unroll 4\n        for (int q = 0; q < 3; q++) b[q] = 0;\n}"
        ),
        "{}",
        v.source
    );
    assert_eq!(v.source.matches("#pragma unroll 2").count(), 1);
    let again = not_applicable(
        Rewrite::UnrollPragma { factor: 8 }
            .apply("scale", &v.source, &[])
            .unwrap(),
    );
    assert!(again.contains("has an unroll pragma"), "{again}");
}

#[test]
fn option_rewrites_replace_their_own_option_and_keep_the_others() {
    let opts = vec!["-DX=1".to_string(), "--maxrregcount=128".to_string()];
    let v = changed(
        Rewrite::MaxRegisters { count: 64 }
            .apply("scale", K, &opts)
            .unwrap(),
    );
    assert_eq!(v.options, vec!["-DX=1", "--maxrregcount=64"]);
    assert_eq!(v.source, K);
    assert!(v.diff.is_empty());
    assert!(not_applicable(
        Rewrite::MaxRegisters { count: 64 }
            .apply("scale", K, &v.options)
            .unwrap()
    )
    .contains("already"));
    let v = changed(
        Rewrite::FastMath(FastMath::Ftz)
            .apply("scale", K, &[])
            .unwrap(),
    );
    assert_eq!(v.options, vec!["--ftz=true"]);
    let v = changed(
        Rewrite::CachePolicy {
            policy: "cg".into(),
        }
        .apply("scale", K, &[])
        .unwrap(),
    );
    assert_eq!(v.options, vec!["--ptxas-options=-dlcm=cg"]);
}

#[test]
fn an_edit_that_breaks_the_parse_is_refused_and_a_missing_entry_is_an_error() {
    let err = Rewrite::UnrollPragma { factor: 2 }
        .apply("nope", K, &[])
        .unwrap_err();
    assert_eq!(err, RewriteError::NoEntry("nope".into()));
    // The check every source rewrite passes through, on an edit that breaks it.
    let broken = apply_edits(
        K,
        vec![Edit {
            range: K.find("{\n").unwrap()..K.find("{\n").unwrap() + 1,
            text: "(".into(),
        }],
    );
    let before = tree::parse(K).unwrap().errors().len();
    let after = tree::parse(&broken).unwrap().errors().len();
    assert!(after > before, "{after} <= {before}");
}

#[test]
fn parse_reads_names_and_parameters_and_names_what_is_wrong() {
    let spec = KernelSpec::load(&bundled().join("softmax")).unwrap();
    let r = Rewrite::parse("launch-bounds:min_blocks=2", &spec).unwrap();
    assert!(matches!(
        r,
        Rewrite::LaunchBounds { min_blocks: 2, max_threads: None, default_threads } if default_threads >= 32
    ));
    assert_eq!(r.to_string(), "launch-bounds:min_blocks=2");
    // An explicit thread count replaces the attribute's first argument.
    let explicit = Rewrite::parse("launch-bounds:max_threads=128,min_blocks=1", &spec).unwrap();
    let v = changed(
        explicit
            .apply(&spec.entry, &spec.source, &spec.compile_options)
            .unwrap(),
    );
    assert!(v.source.contains("__launch_bounds__(128, 1)"), "{}", v.diff);
    assert_eq!(
        Rewrite::parse(&r.to_string(), &spec).unwrap(),
        r,
        "its display parses back"
    );
    for (text, want) in [
        ("launch-bound", "unknown rewrite"),
        ("max-registers", "needs count"),
        ("max-registers:count=7", "not an integer in 16..=255"),
        ("fast-math:part=fastest", "one of all"),
        ("cache-policy:policy=cs", "cg or ca"),
        (
            "unroll-pragma:factor=4,depth=2",
            "unknown parameter `depth`",
        ),
        ("unroll-pragma:factor", "not key=value"),
    ] {
        let e = Rewrite::parse(text, &spec).unwrap_err().to_string();
        assert!(e.contains(want), "{text}: {e}");
    }
}

fn bundled() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernels")
}

/// Every built-in, on every bundled kernel: applied with a source that parses no
/// worse and still defines the entry, or not applicable with a reason.
#[test]
fn every_builtin_applies_or_says_why_on_every_bundled_kernel() {
    let mut applied = 0;
    for d in std::fs::read_dir(bundled()).unwrap() {
        let dir = d.unwrap().path();
        if !dir.join("kernel.toml").is_file() {
            continue;
        }
        let spec = KernelSpec::load(&dir).unwrap();
        let before = tree::parse(&spec.source).unwrap();
        assert!(
            before.entry(&spec.entry).is_some(),
            "{}: no entry",
            spec.name
        );
        for name in NAMES {
            let text = match name {
                "max-registers" => "max-registers:count=64".to_string(),
                n => n.to_string(),
            };
            let r = Rewrite::parse(&text, &spec).unwrap();
            match r
                .apply(&spec.entry, &spec.source, &spec.compile_options)
                .unwrap_or_else(|e| panic!("{} {r}: {e}", spec.name))
            {
                Applied::Changed(v) => {
                    applied += 1;
                    let after = tree::parse(&v.source).unwrap();
                    assert!(after.errors().len() <= before.errors().len());
                    assert!(after.entry(&spec.entry).is_some());
                    assert!(
                        v.source != spec.source || v.options != spec.compile_options,
                        "{} {r}: changed nothing",
                        spec.name
                    );
                }
                Applied::NotApplicable(why) => assert!(!why.is_empty()),
            }
        }
    }
    assert!(applied >= 7 * 3, "only {applied} rewrites applied");
}

/// `params` and `check_param` say what `Rewrite::parse` takes: every rewrite's
/// display names only its parameters, with values they accept.
#[test]
fn params_and_check_param_agree_with_parse() {
    let spec = KernelSpec::load(&bundled().join("softmax")).unwrap();
    for text in [
        "launch-bounds",
        "launch-bounds:max_threads=256,min_blocks=3",
        "max-registers:count=40",
        "restrict-const",
        "restrict-const:params=x",
        "unroll-pragma:factor=8",
        "fast-math:part=prec-sqrt",
        "cache-policy:policy=ca",
    ] {
        let r = Rewrite::parse(text, &spec).unwrap();
        let shown = r.to_string();
        let (name, rest) = shown.split_once(':').unwrap();
        assert_eq!(name, r.name());
        for kv in rest.split(',') {
            let (k, v) = kv.split_once('=').unwrap();
            assert!(params(name).contains(&k), "{shown}");
            check_param(name, k, v).unwrap_or_else(|e| panic!("{shown}: {e}"));
        }
    }
    for name in NAMES {
        assert!(!params(name).is_empty(), "{name}");
    }
    assert!(params("launch-bound").is_empty());
    assert!(check_param("max-registers", "count", "15").is_err());
    assert!(check_param("max-registers", "counts", "40")
        .unwrap_err()
        .contains("takes: count"));
    assert!(check_param("fast-math", "part", "ftz").is_ok());
    assert!(check_param("cache-policy", "policy", "cs").is_err());
}

fn outer_unroll() -> edit::QueryEdit {
    edit::QueryEdit {
        name: "unroll-outer".into(),
        query: "(for_statement body: (compound_statement (for_statement))) @outer".into(),
        capture: Some("outer".into()),
        place: edit::Place::Before,
        template: "#pragma unroll {factor}\n".into(),
    }
}

/// A spec of a bundled kernel given one query rewrite.
fn with_edit(kernel: &str, e: edit::QueryEdit) -> KernelSpec {
    let mut spec = KernelSpec::load(&bundled().join(kernel)).unwrap();
    spec.edits = vec![e];
    spec
}

#[test]
fn a_query_rewrite_edits_what_its_query_captures_in_the_entry_kernel_only() {
    let q = outer_unroll();
    assert_eq!(q.params(), ["factor"]);
    let mut spec = with_edit("gemm", q.clone());
    spec.source = K.to_string();
    spec.entry = "scale".into();
    let r = Rewrite::parse("unroll-outer:factor=4", &spec).unwrap();
    assert_eq!(r.to_string(), "unroll-outer:factor=4");
    assert_eq!(r.name(), "unroll-outer");
    let v = changed(r.apply("scale", K, &[]).unwrap());
    // The outer loop of `scale`, at its indentation; not `other`'s loop, not the
    // inner ones.
    assert!(
        v.source
            .contains("    #pragma unroll 4\n    for (int i = 0; i < n; ++i) {"),
        "{}",
        v.source
    );
    assert_eq!(
        v.source.matches("#pragma unroll 4").count(),
        1,
        "{}",
        v.diff
    );
    // Applied again: the pragma is there, nothing to change.
    let why = not_applicable(r.apply("scale", &v.source, &[]).unwrap());
    assert!(why.contains("captures nothing to change"), "{why}");
    // Nor over a pragma of the same kind with another factor.
    let r2 = Rewrite::parse("unroll-outer:factor=2", &spec).unwrap();
    not_applicable(r2.apply("scale", &v.source, &[]).unwrap());
    // A missing or unknown parameter is named.
    let e = Rewrite::parse("unroll-outer", &spec)
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs factor="), "{e}");
    let e = Rewrite::parse("unroll-outer:factor=2,x=1", &spec)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown parameter `x`"), "{e}");
    // Without the pattern's rewrite, the name is unknown.
    spec.edits.clear();
    assert!(matches!(
        Rewrite::parse("unroll-outer:factor=2", &spec),
        Err(RewriteError::Unknown(_))
    ));
}

#[test]
fn a_query_rewrite_that_breaks_the_parse_is_refused_and_a_bad_query_is_named() {
    let mut q = outer_unroll();
    q.place = edit::Place::Replace;
    q.template = "for (;;) {".into();
    q.query = "(for_statement) @outer".into();
    let mut spec = with_edit("gemm", q);
    spec.source = K.to_string();
    spec.entry = "scale".into();
    let r = Rewrite::parse("unroll-outer", &spec).unwrap();
    assert!(matches!(
        r.apply("scale", K, &[]),
        Err(RewriteError::Broke { .. })
    ));
    let mut bad = outer_unroll();
    bad.query = "(for_statement body: (no_such_node)) @outer".into();
    assert!(bad.check().unwrap_err().contains("does not compile"));
    let mut bad = outer_unroll();
    bad.capture = Some("nope".into());
    assert!(bad.check().unwrap_err().contains("no capture `@nope`"));
}

#[test]
fn the_shipped_query_rewrite_applies_or_says_why_on_every_bundled_kernel() {
    let lib = crate::patterns::Library::load(&bundled().join("../patterns")).unwrap();
    let edits = lib.edits();
    assert!(edits.iter().any(|e| e.name == "unroll-outer"), "{edits:?}");
    let mut applied = 0;
    for k in [
        "attention",
        "gemm",
        "gemv",
        "layernorm",
        "rowsum",
        "simsearch",
        "softmax",
    ] {
        let mut spec = KernelSpec::load(&bundled().join(k)).unwrap();
        spec.edits = edits.clone();
        match rewritten(spec, &["unroll-outer:factor=2".to_string()], &[]) {
            Ok(s) => {
                let r = s.rewritten.unwrap();
                assert!(r.source.contains("#pragma unroll 2"), "{k}");
                applied += 1;
            }
            Err(e) => assert!(e.to_string().contains("captures nothing"), "{k}: {e}"),
        }
    }
    assert!(
        applied >= 3,
        "gemm, attention and simsearch have outer loops"
    );
}

#[test]
fn query_rewrites_are_idempotent_with_several_lines_and_replace_the_outer_node() {
    let mut q = outer_unroll();
    q.template = "// unrolled by nightshift\n#pragma unroll {factor}\n".into();
    let mut spec = with_edit("gemm", q);
    spec.source = K.to_string();
    spec.entry = "scale".into();
    let r = Rewrite::parse("unroll-outer:factor=4", &spec).unwrap();
    let v = changed(r.apply("scale", K, &[]).unwrap());
    assert_eq!(v.source.matches("// unrolled by nightshift").count(), 1);
    not_applicable(r.apply("scale", &v.source, &[]).unwrap());
    // A node that does not start its line gets the template on a line of its own.
    let src = K.replace(
        "    for (int i = 0; i < n; ++i) {",
        "    int z = 0; for (int i = 0; i < n; ++i) {",
    );
    let v = changed(r.apply("scale", &src, &[]).unwrap());
    assert!(
        v.source
            .contains("int z = 0; \n// unrolled by nightshift\n#pragma unroll 4\nfor (int i"),
        "{}",
        v.source
    );
    // Replacing nested nodes that start together replaces the outer one.
    let e = edit::QueryEdit {
        name: "zero-index".into(),
        query: "(subscript_expression) @s".into(),
        capture: Some("s".into()),
        place: edit::Place::Replace,
        template: "b[0]".into(),
    };
    let mut spec = with_edit("gemm", e);
    let src = K.replace("b[i] *= s;", "b[i + a[0]] *= s;");
    spec.source = src.clone();
    spec.entry = "scale".into();
    let r = Rewrite::parse("zero-index", &spec).unwrap();
    let v = changed(r.apply("scale", &src, &[]).unwrap());
    assert!(v.source.contains("b[0] *= s;"), "{}", v.diff);
    // Values that would break a candidate's name are refused.
    let spec = with_edit("gemm", outer_unroll());
    for bad in ["a+b", "two words"] {
        let e = Rewrite::parse(&format!("unroll-outer:factor={bad}"), &spec).unwrap_err();
        assert!(e.to_string().contains("not a parameter value"), "{e}");
    }
}

#[test]
fn fast_math_parts_are_not_applicable_under_use_fast_math_either_spelling() {
    let spec = KernelSpec::load(&bundled().join("softmax")).unwrap();
    for all in ["--use_fast_math", "-use_fast_math"] {
        let r = Rewrite::parse("fast-math:part=ftz", &spec).unwrap();
        let why = not_applicable(
            r.apply(&spec.entry, &spec.source, &[all.to_string()])
                .unwrap(),
        );
        assert!(why.contains("already set"), "{why}");
    }
}
