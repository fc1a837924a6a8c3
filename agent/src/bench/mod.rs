//! `nightshift bench`'s work: one configuration validated and timed, or two measured
//! interleaved under the A/B rule, and on request what a user would otherwise call
//! (the spec's cuBLAS equivalent through the kernel's own protocols, PyTorch through
//! its script), all on the session's GPU. `render.rs` writes the result for a person
//! and [`Bench::json`] for a machine; `references.rs` is `--check-references` (the
//! spec's reference kernel against PyTorch).

pub mod references;
mod render;

pub use render::{render, render_externals};

use serde::Serialize;

use crate::evaluate::external::{self, TorchTiming};
use crate::evaluate::{EvalError, Evaluation, Session};
use crate::gpu::ceilings::Ceilings;
use crate::gpu::DeviceInfo;
use crate::spec::{Config, KernelSpec};
use crate::vocab::{AbResult, Outcome};

/// What a user would otherwise call, measured on the same GPU (`--external`).
#[derive(Serialize, Default)]
pub struct Externals {
    /// The spec's cuBLAS equivalent, through the kernel's own protocols.
    pub cublas: Option<Evaluation>,
    pub cublas_error: Option<String>,
    /// PyTorch, as timed by the script.
    pub torch: Option<TorchTiming>,
    pub torch_error: Option<String>,
}

/// What one bench measured.
pub struct Bench {
    /// The configuration benched, then the one compared with it (if any).
    pub evals: Vec<Evaluation>,
    /// The interleaved comparison of the two, when there are two.
    pub ab: Option<AbResult>,
    /// The external baselines, when asked for and timed.
    pub externals: Option<Externals>,
}

/// `bench --json`'s object.
#[derive(Serialize)]
struct BenchJson<'a> {
    nightshift: &'static str,
    device: &'a DeviceInfo,
    ceilings: &'a Ceilings,
    evaluations: Vec<&'a Evaluation>,
    ab: Option<&'a AbResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    external: Option<&'a Externals>,
    worker_restarts: u32,
}

/// Benches `a` (validated only, with `validate_only`), or `a` and `b` measured
/// interleaved (`b` of its own spec: the same kernel, or the kernel as rewritten);
/// with `external` (and timing), the external baselines too. `Err` is
/// the GPU infrastructure failing; a rejected configuration is an outcome.
pub fn run(
    session: &mut Session,
    spec: &KernelSpec,
    a: &Config,
    b: Option<(&KernelSpec, &Config)>,
    validate_only: bool,
    external: bool,
) -> Result<Bench, EvalError> {
    let (evals, ab) = match b {
        None => (vec![session.evaluate(spec, a, !validate_only)?], None),
        Some(b) => {
            let (x, y, ab) = session.compare_kernels((spec, a), b, false)?;
            (vec![x, y], ab)
        }
    };
    let externals = (external && !validate_only).then(|| externals(session, spec));
    Ok(Bench {
        evals,
        ab,
        externals,
    })
}

/// The spec's cuBLAS equivalent and PyTorch equivalent, each measured or the reason
/// it was not (a failure of theirs is reported, never the bench's).
pub fn externals(session: &mut Session, spec: &KernelSpec) -> Externals {
    let mut x = Externals::default();
    match session.evaluate_cublas(spec) {
        None => {}
        Some(Ok(e)) => x.cublas = Some(e),
        Some(Err(e)) => x.cublas_error = Some(e.to_string()),
    }
    if spec.external.torch.is_some() {
        session.progress("timing the PyTorch equivalent");
    }
    match external::time_torch(spec, session.opts.gpu) {
        None => {}
        Some(Ok(t)) => x.torch = Some(t),
        Some(Err(e)) => x.torch_error = Some(e),
    }
    x
}

impl Bench {
    /// Every configuration benched passed (the command's exit code says so).
    pub fn passed(&self) -> bool {
        self.evals.iter().all(|e| e.outcome == Outcome::Passed)
    }

    /// The report for a person: the configurations, their details, the comparison,
    /// and the external baselines when they were timed.
    pub fn render(&self, spec: &KernelSpec, device: &DeviceInfo, ceilings: &Ceilings) -> String {
        let mut out = render(spec, device, ceilings, &self.evals, self.ab.as_ref());
        if let Some(x) = &self.externals {
            out.push_str(&render_externals(spec, &self.evals, x));
        }
        out
    }

    /// `bench --json`: the device, its ceilings, every evaluation, the comparison and
    /// the external baselines, pretty-printed.
    pub fn json(&self, device: &DeviceInfo, ceilings: &Ceilings, worker_restarts: u32) -> String {
        let j = BenchJson {
            nightshift: env!("CARGO_PKG_VERSION"),
            device,
            ceilings,
            evaluations: self.evals.iter().collect(),
            ab: self.ab.as_ref(),
            external: self.externals.as_ref(),
            worker_restarts,
        };
        serde_json::to_string_pretty(&j).expect("serializable")
    }
}
