//! Spec parsing: the bundled example and every error path, without a GPU.

use std::path::{Path, PathBuf};

use super::*;

const SOFTMAX: &str = include_str!("../../../kernels/softmax/kernel.toml");

fn sources(p: &Path) -> std::io::Result<String> {
    match p.file_name().and_then(|n| n.to_str()) {
        Some("softmax.cu") | Some("softmax_ref.cu") => Ok("// source".into()),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such file",
        )),
    }
}

fn parse(text: &str) -> Result<KernelSpec, SpecError> {
    KernelSpec::parse(text, &PathBuf::from("kernels/t/kernel.toml"), &sources)
}

/// Replaces the first occurrence of `from` in the example spec.
fn edit(from: &str, to: &str) -> String {
    assert!(
        SOFTMAX.contains(from),
        "the example no longer contains {from:?}"
    );
    SOFTMAX.replacen(from, to, 1)
}

fn err(text: &str) -> SpecError {
    match parse(text) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

fn line_of(text: &str, needle: &str) -> usize {
    text[..text.find(needle).unwrap()].matches('\n').count() + 1
}

#[test]
fn bundled_example_parses_from_disk() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernels/softmax");
    let spec = KernelSpec::load(&dir).unwrap();
    assert_eq!(spec.name, "softmax");
    assert_eq!(spec.entry, "softmax_rows");
    assert!(spec.source.contains("softmax_rows"));
    assert_eq!(spec.tunables.len(), 3);
    assert_eq!(spec.baseline().to_string(), "BLOCK=128 VARIANT=0 VEC=1");
    assert_eq!(spec.validation.sizes.len(), 4);
    assert_eq!(spec.validation.sizes[0]["rows"], 3);
    assert!(matches!(spec.reference, Reference::Kernel { .. }));
}

#[test]
fn search_space_is_lazy_with_known_size_and_restrictions() {
    let spec = parse(SOFTMAX).unwrap();
    let space = spec.space();
    assert_eq!(space.size(), 36);
    let all: Vec<Config> = space.iter().collect();
    assert_eq!(all.len(), 36);
    let distinct: std::collections::BTreeSet<_> = all.iter().collect();
    assert_eq!(distinct.len(), 36);
    assert_eq!(space.get(36), None);
    // seq_k = 1024 admits every VEC.
    assert_eq!(space.valid().count(), 36);
    let odd = edit("seq_k = 1024", "seq_k = 1026");
    let spec = parse(&odd).unwrap();
    let valid: Vec<Config> = spec.space().valid().collect();
    assert_eq!(valid.len(), 24, "VEC=4 is excluded when seq_k % 4 != 0");
    assert!(valid.iter().all(|c| c.0["VEC"] != 4));
}

#[test]
fn plan_evaluates_launch_args_and_cost() {
    let spec = parse(SOFTMAX).unwrap();
    let c = spec
        .with_overrides(&spec.baseline(), &[("BLOCK".into(), 256)])
        .unwrap();
    let p = plan::plan(&spec, &c, &spec.problem).unwrap();
    assert_eq!(p.launch.grid, [4096, 1, 1]);
    assert_eq!(p.launch.block, [256, 1, 1]);
    assert_eq!(p.ref_launch.unwrap().grid, [64, 1, 1]);
    assert_eq!(p.bytes, 2.0 * 4096.0 * 1024.0 * 4.0);
    assert_eq!(p.footprint(), 2 * 4096 * 1024 * 4);
    match &p.args[3] {
        plan::ArgPlan::Scalar { bytes, .. } => assert_eq!(bytes, &1024i32.to_le_bytes().to_vec()),
        other => panic!("{other:?}"),
    }
    assert_eq!(p.label, "rows=4096 seq_k=1024");
    // The warp variant packs BLOCK / 32 rows into a CTA.
    let c = spec.with_overrides(&c, &[("VARIANT".into(), 1)]).unwrap();
    let p = plan::plan(&spec, &c, &spec.problem).unwrap();
    assert_eq!(p.launch.grid, [4096 / 8, 1, 1]);
}

#[test]
fn overrides_are_checked() {
    let spec = parse(SOFTMAX).unwrap();
    let e = spec
        .with_overrides(&spec.baseline(), &[("BLOK".into(), 64)])
        .unwrap_err();
    assert!(e.contains("not a tunable"), "{e}");
    let e = spec
        .with_overrides(&spec.baseline(), &[("BLOCK".into(), 100)])
        .unwrap_err();
    assert!(e.contains("not among its values"), "{e}");
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let text = edit(
        "entry = \"softmax_rows\"",
        "entry = \"softmax_rows\"\nentree = 3",
    );
    let e = err(&text);
    assert_eq!(e.path, PathBuf::from("kernels/t/kernel.toml"));
    assert_eq!(e.line, Some(line_of(&text, "entree")));
    assert!(e.message.contains("entree"), "{e}");
    let shown = e.to_string();
    assert!(shown.starts_with("kernels/t/kernel.toml:"), "{shown}");
}

#[test]
fn unknown_key_inside_a_tunable_is_reported() {
    let text = edit("role = \"vector\"", "role = \"vector\", step = 2");
    let e = err(&text);
    assert_eq!(e.line, Some(line_of(&text, "step = 2")));
    assert!(e.message.contains("step"), "{e}");
}

#[test]
fn unknown_key_inside_an_arg_is_reported() {
    let text = edit("init = \"normal\"", "init = \"normal\"\nalign = 16");
    let e = err(&text);
    assert_eq!(e.line, Some(line_of(&text, "align = 16")));
    assert!(e.message.contains("align"), "{e}");
}

#[test]
fn unknown_role_is_reported() {
    let e = err(&edit("role = \"block\"", "role = \"blocks\""));
    assert!(e.message.contains("blocks"), "{e}");
}

#[test]
fn malformed_toml_is_reported_with_a_line() {
    let text = edit("[problem]", "[problem");
    let e = err(&text);
    assert_eq!(e.line, Some(line_of(&text, "[problem")));
}

#[test]
fn expression_with_unknown_variable_names_the_key() {
    let text = edit("block = [\"BLOCK\", 1, 1]", "block = [\"BLOCKS\", 1, 1]");
    let e = err(&text);
    assert_eq!(e.key.as_deref(), Some("launch.block[0]"));
    assert_eq!(e.line, Some(line_of(&text, "\"BLOCKS\"")));
    assert!(e.message.contains("BLOCKS"), "{e}");
}

#[test]
fn malformed_expression_names_the_key() {
    let e = err(&edit(
        "bytes = \"2 * rows * seq_k * 4\"",
        "bytes = \"2 * (rows * seq_k * 4\"",
    ));
    assert_eq!(e.key.as_deref(), Some("cost.bytes"));
}

#[test]
fn restriction_that_is_not_boolean_or_excludes_baseline() {
    let e = err(&edit(
        "restrictions = [\"seq_k % VEC == 0\"]",
        "restrictions = [\"VEC > 1\"]",
    ));
    assert!(e.message.contains("baseline"), "{e}");
    let text = edit(
        "restrictions = [\"seq_k % VEC == 0\"]",
        "restrictions = [\"seq_k % VEC\"]",
    );
    let e = err(&text);
    assert!(e.message.contains("not a condition"), "{e}");
    assert_eq!(e.key.as_deref(), Some("tune.restrictions[0]"));
    assert_eq!(e.line, Some(line_of(&text, "seq_k % VEC\"")));
}

#[test]
fn an_expression_that_fails_for_the_baseline_names_its_own_line_and_key() {
    for (bad, why) in [
        ("rows / 0", "divid"),
        ("cdiv(-9223372036854775806, -1)", ""),
        ("rows * 9223372036854775807", ""),
    ] {
        let text = edit("len = \"rows * seq_k\"", &format!("len = \"{bad}\""));
        let e = err(&text);
        assert_eq!(e.line, Some(line_of(&text, bad)), "{bad}: {e}");
        assert!(
            e.key.as_deref().is_some_and(|k| k.ends_with(".len")),
            "{bad}: {e}"
        );
        assert!(e.message.to_lowercase().contains(why), "{bad}: {e}");
    }
    let text = edit("len = \"rows * seq_k\"", "len = \"rows *\"");
    let e = err(&text);
    assert_eq!(e.line, Some(line_of(&text, "rows *\"")), "{e}");
    let deep = format!("{}rows{}", "(".repeat(20_000), ")".repeat(20_000));
    let text = edit("len = \"rows * seq_k\"", &format!("len = \"{deep}\""));
    let e = err(&text);
    assert!(e.message.contains("longer than"), "{e}");
}

#[test]
fn a_large_space_with_few_allowed_configurations_loads_at_once() {
    // 8 tunables of 10 values: 10^8 configurations, one of them allowed (the baseline).
    let mut text = edit("[tune]\n", "[tune]\n");
    let tunables: String = (0..8)
        .map(|i| format!("T{i} = {{ values = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], role = \"other\", baseline = 0 }}\n"))
        .collect();
    text = text.replacen("[tune]\n", &format!("[tune]\n{tunables}"), 1);
    let all_zero: Vec<String> = (0..8).map(|i| format!("T{i} == 0")).collect();
    text = text.replacen(
        "restrictions = [\"seq_k % VEC == 0\"]",
        &format!(
            "restrictions = [\"seq_k % VEC == 0\", \"{}\"]",
            all_zero.join(" && ")
        ),
        1,
    );
    let t = std::time::Instant::now();
    let spec = parse(&text).unwrap();
    assert_eq!(spec.tunables.len(), 11);
    assert!(
        t.elapsed() < std::time::Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn restrictions_that_leave_nothing() {
    let text = edit(
        "restrictions = [\"seq_k % VEC == 0\"]",
        "restrictions = [\"BLOCK > 4096\"]",
    );
    let e = err(&text);
    // The baseline is the first configuration checked, so it is named.
    assert!(e.message.contains("violates"), "{e}");
}

#[test]
fn missing_source_is_reported() {
    let e = err(&edit("source = \"softmax.cu\"", "source = \"nope.cu\""));
    assert_eq!(e.key.as_deref(), Some("source"));
    assert!(e.message.contains("nope.cu"), "{e}");
    let e = err(&edit(
        "source = \"softmax_ref.cu\"",
        "source = \"nope_ref.cu\"",
    ));
    assert_eq!(e.key.as_deref(), Some("reference.source"));
}

#[test]
fn tunable_errors() {
    let e = err(&edit("values = [1, 2, 4]", "values = []"));
    assert_eq!(e.key.as_deref(), Some("tune.VEC.values"));
    let e = err(&edit("values = [1, 2, 4]", "values = [1, 2, 2]"));
    assert!(e.message.contains("twice"), "{e}");
    let e = err(&edit("baseline = 128", "baseline = 100"));
    assert_eq!(e.key.as_deref(), Some("tune.BLOCK.baseline"));
    let e = err(&edit("VEC = {", "rows = {"));
    assert!(e.message.contains("same name as a problem size"), "{e}");
}

#[test]
fn arg_errors() {
    let e = err(&edit("type = \"f32*\"", "type = \"float*\""));
    assert_eq!(e.key.as_deref(), Some("arg[0] (x).type"));
    let e = err(&edit("io = \"in\"\n", ""));
    assert_eq!(e.key.as_deref(), Some("arg[0] (x).io"));
    let e = err(&edit("init = \"normal\"", "init = \"gaussian\""));
    assert!(e.message.contains("gaussian"), "{e}");
    let e = err(&edit("value = \"rows\"", "value = \"rows\"\nio = \"in\""));
    assert!(e.message.contains("scalar"), "{e}");
    let e = err(&edit("name = \"y\"", "name = \"x\""));
    assert!(e.message.contains("already declared"), "{e}");
    let e = err(&edit("io = \"out\"", "io = \"in\""));
    assert!(e.message.contains("no argument is an output"), "{e}");
}

#[test]
fn validation_errors() {
    let e = err(&edit(
        "{ rows = 3, seq_k = 1000 }",
        "{ rows = 3, seqk = 1000 }",
    ));
    assert_eq!(e.key.as_deref(), Some("validate.sizes[0].seqk"));
    let e = err(&edit("rtol = 1e-5", "rtol = 1e-5\ntrials = 2"));
    assert_eq!(e.key.as_deref(), Some("validate.trials"));
    let e = err(&edit("rtol = 1e-5", "rtol = -1.0"));
    assert!(e.message.contains("non-negative"), "{e}");
    let spec = parse(&edit(
        "rtol = 1e-5",
        "rtol = 1e-5\ntolerance.f16 = { rtol = 0.05, atol = 0.01 }",
    ))
    .unwrap();
    assert_eq!(spec.validation.tolerance(DType::F16).rtol, 0.05);
    assert_eq!(spec.validation.tolerance(DType::F32).rtol, 1e-5);
}

#[test]
fn problem_errors() {
    let e = err(&edit("rows = 4096", "rows = 0"));
    assert_eq!(e.key.as_deref(), Some("problem.rows"));
    let e = err(&edit(
        "name = \"softmax\"",
        "name = \"softmax\"\nworkload_axes = [\"batch\"]",
    ));
    assert_eq!(e.key.as_deref(), Some("workload_axes"));
}

#[test]
fn reference_must_be_a_kernel_or_the_baseline() {
    let e = err(&edit("entry = \"softmax_ref\"", ""));
    assert_eq!(e.key.as_deref(), Some("reference"));
    let text = SOFTMAX.split("[reference]").next().unwrap().to_string()
        + "[reference]\nbaseline = true\n[cost]\nbytes = \"rows\"\nflops = \"0\"\n";
    let spec = parse(&text).unwrap();
    assert!(matches!(spec.reference, Reference::Baseline));
}

#[test]
fn launch_that_evaluates_to_zero_is_an_outcome_not_a_panic() {
    let spec = parse(&edit(
        "grid = [\"if(VARIANT == 0, rows, cdiv(rows, BLOCK / 32))\", 1, 1]",
        "grid = [\"rows / 8192\", 1, 1]",
    ));
    // rows / 8192 is 0 at the default problem: the baseline itself cannot launch.
    let e = spec.unwrap_err();
    assert!(e.message.contains("grid[0]"), "{e}");
}

#[test]
fn topk_and_scratch_are_checked() {
    // `topk` on a float output.
    let e = err(&edit(
        "len = \"rows * seq_k\"\n\n",
        "len = \"rows * seq_k\"\ntopk = { scores = \"y\", k = 1, range = 1 }\n\n",
    ));
    assert!(e.message.contains("integer output"), "{e}");
    // An integer top-k output whose scores are not a float output of the same length.
    let text = format!(
        "{SOFTMAX}\n[[arg]]\nname = \"idx\"\ntype = \"i32*\"\nio = \"out\"\nlen = \"rows\"\ntopk = {{ scores = \"x\", k = 1, range = \"seq_k\" }}\n"
    );
    let e = err(&text);
    assert_eq!(e.key.as_deref(), Some("arg[4] (idx).topk.scores"), "{e}");
    let ok = text.replace("scores = \"x\"", "scores = \"s\"").replace(
        "name = \"idx\"",
        "name = \"s\"\ntype = \"f32*\"\nio = \"out\"\nlen = \"rows\"\n\n[[arg]]\nname = \"idx\"",
    );
    let spec = parse(&ok).unwrap();
    let p = plan::plan(&spec, &spec.baseline(), &spec.problem).unwrap();
    match &p.args[5] {
        plan::ArgPlan::Buffer { topk: Some(t), .. } => {
            assert_eq!((t.scores, t.k, t.range), (4, 1, 1024));
        }
        other => panic!("{other:?}"),
    }
    // A scratch buffer is poisoned, never initialised.
    let e = err(&edit("io = \"out\"", "io = \"scratch\"\ninit = \"zeros\""));
    assert!(e.message.contains("scratch"), "{e}");
}

#[test]
fn deterministic_is_a_flag_or_bitwise_and_anything_else_names_its_line() {
    let v = parse(SOFTMAX).unwrap().validation;
    assert_eq!((v.deterministic, v.bitwise), (true, false));
    for (value, want) in [
        ("true", (true, false)),
        ("false", (false, false)),
        ("\"bitwise\"", (true, true)),
    ] {
        let text = edit(
            "[validate]\n",
            &format!("[validate]\ndeterministic = {value}\n"),
        );
        let v = parse(&text).unwrap().validation;
        assert_eq!((v.deterministic, v.bitwise), want, "{value}");
    }
    let text = edit("[validate]\n", "[validate]\ndeterministic = \"bitwize\"\n");
    let e = err(&text);
    assert_eq!(e.line, Some(line_of(&text, "bitwize")), "{e}");
    assert!(e.to_string().contains("validate.deterministic"), "{e}");
}

#[test]
fn a_bad_tolerance_names_the_key_the_user_wrote() {
    let text = edit("rtol = 1e-5\n", "rtol = nan\n");
    let e = err(&text);
    assert_eq!(e.key.as_deref(), Some("validate.rtol"), "{e}");
    assert_eq!(e.line, Some(line_of(&text, "rtol = nan")));
    let text = edit("[validate]\n", "[validate]\nlarge_scale = -1\n");
    let e = err(&text);
    assert_eq!(e.key.as_deref(), Some("validate.large_scale"), "{e}");
    assert_eq!(e.line, Some(line_of(&text, "large_scale = -1")));
}

#[test]
fn a_kernel_name_is_one_plain_path_component() {
    for bad in ["../../x", "a/b", ".", "..", "", "a b"] {
        let text = edit("name = \"softmax\"", &format!("name = \"{bad}\""));
        let e = err(&text);
        assert_eq!(e.key.as_deref(), Some("name"), "{bad}: {e}");
        assert_eq!(e.line, Some(line_of(&text, "name = ")), "{bad}: {e}");
    }
}

#[test]
fn sources_and_include_dirs_outside_the_repository_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let repo = d.path().join("repo");
    let k = repo.join("kernels/softmax");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernels/softmax");
    for f in ["kernel.toml", "softmax.cu", "softmax_ref.cu"] {
        std::fs::create_dir_all(&k).unwrap();
        std::fs::copy(src.join(f), k.join(f)).unwrap();
    }
    std::fs::write(d.path().join("outside.cu"), "// not yours\n").unwrap();
    KernelSpec::load(&k).unwrap();
    let toml = std::fs::read_to_string(k.join("kernel.toml")).unwrap();
    for (from, to, key) in [
        (
            "source = \"softmax.cu\"",
            "source = \"../../../outside.cu\"",
            "source",
        ),
        (
            "source = \"softmax.cu\"",
            "source = \"/etc/hostname\"",
            "source",
        ),
        (
            "source = \"softmax.cu\"",
            "source = \"softmax.cu\"\ninclude_dirs = [\"/\"]",
            "include_dirs",
        ),
    ] {
        std::fs::write(k.join("kernel.toml"), toml.replacen(from, to, 1)).unwrap();
        let e = KernelSpec::load(&k).unwrap_err();
        assert_eq!(e.key.as_deref(), Some(key), "{to}: {e}");
        assert!(
            e.to_string().contains("outside") || e.to_string().contains("No such"),
            "{to}: {e}"
        );
    }
    // A header included from outside is refused at the line of its #include.
    std::fs::write(k.join("kernel.toml"), &toml).unwrap();
    let cu = std::fs::read_to_string(k.join("softmax.cu")).unwrap();
    std::fs::write(
        k.join("softmax.cu"),
        format!("#include \"../../../outside.cu\"\n{cu}"),
    )
    .unwrap();
    let e = KernelSpec::load(&k).unwrap_err();
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(1), Some("#include")),
        "{e}"
    );
}
