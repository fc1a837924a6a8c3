//! The request: what `describe` takes from a spec, its JSON, and the prompt.

use super::*;

#[test]
fn describe_carries_the_interface_the_proposal_must_keep() {
    let v = describe(&spec("attention"));
    assert_eq!(v.entry, "attention_fwd");
    let names: Vec<(&str, bool)> = v
        .args
        .iter()
        .map(|a| (a.name.as_str(), a.pointer))
        .collect();
    assert_eq!(
        names,
        [
            ("Q", true),
            ("K", true),
            ("V", true),
            ("O", true),
            ("B", false),
            ("H", false),
            ("S", false),
            ("D", false),
            ("causal", false)
        ]
    );
    assert_eq!(v.args[3].io, Some(crate::spec::Io::Out));
    assert_eq!(v.args[0].len.as_deref(), Some("B * H * S * D"));
    assert_eq!(v.args[8].value.as_deref(), Some("mask - 1"));
    assert_eq!(v.launch.block[0], "if(VARIANT == 0, 128, BM * 32)");
    assert_eq!(
        v.tunables
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>(),
        ["BM", "BN", "VARIANT"]
    );
    assert_eq!(v.problem["S"], 512);
    assert_eq!(v.cost.compute, "fp32");
    assert!(v
        .description
        .as_deref()
        .unwrap()
        .contains("attention forward"));
    assert!(v.restrictions.iter().any(|r| r == "D == 64"));
    let file = v.spec_file.as_deref().unwrap();
    assert!(
        file.contains("contiguous [B, H, S, D]"),
        "the spec's comments travel"
    );
}

#[test]
fn the_request_round_trips_as_json_and_refuses_unknown_keys() {
    let r = request();
    let text = serde_json::to_string(&r).unwrap();
    let back: ProposalRequest = serde_json::from_str(&text).unwrap();
    assert_eq!(back, r);
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["surprise"] = serde_json::json!(1);
    assert!(serde_json::from_value::<ProposalRequest>(v).is_err());
}

#[test]
fn the_prompt_holds_the_instruction_the_interface_the_history_and_the_source() {
    let mut r = request();
    r.history.push(PastProposal {
        summary: "shared-memory tiles".into(),
        outcome: "incorrect".into(),
        compile_log: Some(format!("warning\n{}", "x".repeat(10_000))),
        first_failing_check: Some("size rows=257 cols=4099, trial 2: max rel err 0.3".into()),
        verdict: None,
    });
    let (system, user) = messages(&r);
    assert!(system.contains("exactly one ```cuda fenced block"));
    for part in [
        "# Kernel `rowsum` (entry `rowsum`)",
        "## What to try: split-rows",
        "Why: 64 CTAs cannot fill 132 SMs.",
        "- `x`: pointer to rows * cols elements of f32 (in)",
        "- `cols`: i32 by value, = `cols`",
        "- BLOCK = 64 (values [32, 64, 128, 256, 512, 1024], role Block)",
        "Launch: grid (rows, 1, 1), block (BLOCK, 1, 1)",
        "Restrictions: cols % VEC == 0",
        "1. vectorized loads -> compile_failed",
        "identifier \"float8\" is undefined",
        "first failing check: size rows=257",
        "bytes cut]",
        "- sms = 132",
        "```cuda\n// Row sum",
    ] {
        assert!(user.contains(part), "`{part}` not in:\n{user}");
    }
    assert!(user.len() < 20_000, "the long log is cut: {}", user.len());
}

#[test]
fn only_the_latest_history_is_rendered() {
    let mut r = request();
    r.history = (0..30)
        .map(|i| PastProposal {
            summary: format!("try {i}"),
            outcome: "slower".into(),
            compile_log: None,
            first_failing_check: None,
            verdict: Some("SLOW 0.93x [0.91, 0.95]".into()),
        })
        .collect();
    let (_, user) = messages(&r);
    assert!(user.contains("(18 earlier ones left out)") && user.contains("30. try 29 -> slower"));
    assert!(!user.contains("try 5 "));
}
