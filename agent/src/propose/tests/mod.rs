//! Proposers without a network or a GPU: the `openai` client against a real HTTP
//! server in the test process, the `command` proposer against small programs, the
//! checks on the bundled kernels and on broken proposals, and the API key kept out
//! of everything returned.

mod check;
mod command;
mod example;
mod openai;
mod request;
mod secret;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::*;
use crate::settings::{CommandSettings, OpenAiSettings, TokenPrices};
use crate::spec::KernelSpec;

pub fn kernels_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernels")
}

pub fn spec(name: &str) -> KernelSpec {
    KernelSpec::load(&kernels_dir().join(name)).unwrap_or_else(|e| panic!("{e}"))
}

/// A request about the bundled rowsum kernel, with one earlier proposal.
pub fn request() -> ProposalRequest {
    let s = spec("rowsum");
    ProposalRequest {
        kernel: s.name.clone(),
        entry: s.entry.clone(),
        source: s.source.clone(),
        config: s.baseline().0,
        spec: describe(&s),
        signals: BTreeMap::from([("ctas".to_string(), 64.0), ("sms".to_string(), 132.0)]),
        pattern: PatternBrief {
            name: "split-rows".into(),
            instruction: "Split each row across several CTAs and combine the partial sums.".into(),
            rationale: "64 CTAs cannot fill 132 SMs.".into(),
        },
        history: vec![PastProposal {
            summary: "vectorized loads".into(),
            outcome: "compile_failed".into(),
            compile_log: Some("rowsum.cu(12): error: identifier \"float8\" is undefined".into()),
            first_failing_check: None,
            verdict: None,
        }],
    }
}

pub fn openai_settings(base_url: &str) -> OpenAiSettings {
    OpenAiSettings {
        base_url: base_url.to_string(),
        model: "test-model".into(),
        api_key_env: None,
        temperature: Some(0.2),
        top_p: None,
        max_tokens: Some(8000),
        timeout: Duration::from_secs(10),
        retries: 3,
        prices: TokenPrices {
            input_per_mtok: 2.5,
            output_per_mtok: 10.0,
        },
    }
}

/// A proposer that waits 10 ms between attempts (at most 2 s for a Retry-After).
pub fn openai(settings: OpenAiSettings) -> crate::propose::openai::OpenAiProposer {
    crate::propose::openai::OpenAiProposer::new(settings)
        .unwrap()
        .with_waits(Duration::from_millis(10), Duration::from_secs(2))
        .without_proxy()
}

pub fn command_settings(argv: &[&str], timeout: Duration) -> CommandSettings {
    CommandSettings {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        timeout,
        price_per_call: 0.25,
    }
}

/// A small kernel source in an answer.
pub const KERNEL: &str = "extern \"C\" __global__ void rowsum(const float* x, float* y, int rows, int cols) {\n    (void)x; (void)y; (void)rows; (void)cols;\n}\n";
