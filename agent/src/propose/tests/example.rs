//! The shipped example proposer (`examples/proposer/serve.py`) through the real
//! command proposer: each of its hand-written proposals for the bundled attention
//! passes the checks before the GPU (the parser and the spec evolve; the example
//! must keep working), it serves them in order of the history's length, and it
//! fails past the end. Skipped with a message where there is no `python3`.

use super::*;
use crate::propose::command::CommandProposer;

fn python() -> bool {
    std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test]
async fn the_example_proposer_serves_its_hand_written_proposals_in_order() {
    if !python() {
        eprintln!("skipped: no python3 to run examples/proposer/serve.py");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let serve = root
        .join("examples/proposer/serve.py")
        .display()
        .to_string();
    let p = CommandProposer::new(command_settings(
        &["python3", &serve],
        Duration::from_secs(30),
    ));
    let s = spec("attention");
    let mut req = ProposalRequest {
        kernel: s.name.clone(),
        entry: s.entry.clone(),
        source: s.source.clone(),
        config: s.baseline().0,
        spec: describe(&s),
        signals: BTreeMap::new(),
        pattern: PatternBrief {
            name: "proposal-tensor-cores".into(),
            instruction: "use the tensor cores".into(),
            rationale: "compute-bound on the fp32 pipe".into(),
        },
        history: vec![],
    };
    let mut sources = Vec::new();
    for n in 0..3 {
        let answer = p.propose(&req).await.unwrap_or_else(|e| panic!("{n}: {e}"));
        assert!(
            answer.explanation.contains("written by hand")
                || answer.explanation.contains("Hand-written"),
            "{n}: {}",
            answer.explanation
        );
        check(&s, &answer.source).unwrap_or_else(|e| panic!("proposal {n}: {e}"));
        assert!(!sources.contains(&answer.source), "{n}: served twice");
        sources.push(answer.source);
        req.history.push(PastProposal {
            summary: format!("proposal {n}"),
            outcome: "slower".into(),
            compile_log: None,
            first_failing_check: None,
            verdict: None,
        });
    }
    // The one written not to compile names the macro it lacks; the others define it
    // or do without it.
    assert!(sources[0].contains("KSTRIDE"));
    let e = p.propose(&req).await.unwrap_err();
    assert!(e.to_string().contains("exited"), "{e}");
}
