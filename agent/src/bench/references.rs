//! `bench --check-references`: the spec's reference kernel against PyTorch. The
//! reference runs at every validation size, its inputs and outputs are written under
//! the cache directory (`reference-check/<kernel>/`, one directory per size), and
//! `kernels/external/torch_baselines.py` recomputes each size and says whether it
//! agrees.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::evaluate::external;
use crate::evaluate::{EvalError, Session};
use crate::spec::KernelSpec;

/// PyTorch's answer for one size, or why there is none.
pub struct RefCheck {
    pub dir: PathBuf,
    pub answer: Result<Value, String>,
}

/// Runs the reference at every validation size and writes what PyTorch needs to
/// recompute it (`torch` names the PyTorch equivalent); the directories written, one
/// per size, in a directory emptied first.
pub fn dump(
    session: &mut Session,
    spec: &KernelSpec,
    torch: &str,
) -> Result<Vec<PathBuf>, EvalError> {
    let dir = session
        .opts
        .cache_dir
        .join("reference-check")
        .join(&spec.name);
    let _ = std::fs::remove_dir_all(&dir);
    session.dump_reference(spec, torch, &dir)
}

/// Has PyTorch recompute one size written by [`dump`] on GPU `gpu`.
pub fn check(spec: &KernelSpec, dir: &Path, gpu: usize) -> RefCheck {
    RefCheck {
        dir: dir.to_path_buf(),
        answer: external::torch_check(spec, dir, gpu),
    }
}

impl RefCheck {
    /// PyTorch answered, and agrees.
    pub fn passed(&self) -> bool {
        matches!(&self.answer, Ok(v) if v["passed"].as_bool() == Some(true))
    }

    /// One line for a person: agreement and each output's differences, or the failure.
    pub fn line(&self, kernel: &str) -> String {
        let d = &self.dir;
        match &self.answer {
            Ok(v) => {
                let outs: Vec<String> = v["outputs"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|o| {
                                format!(
                                    "{}: max abs {}, max rel {}, {} bad of {}",
                                    o["arg"].as_str().unwrap_or("?"),
                                    o["max_abs"],
                                    o["max_rel"],
                                    o["bad"],
                                    o["elements"]
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                format!(
                    "{} {}: {} ({})",
                    kernel,
                    d.file_name().unwrap_or_default().to_string_lossy(),
                    if self.passed() {
                        "agrees with PyTorch"
                    } else {
                        "DISAGREES with PyTorch"
                    },
                    outs.join("; ")
                )
            }
            Err(e) => format!("{} {}: check failed: {e}", kernel, d.display()),
        }
    }
}

/// Every size agreed (none failed to answer).
pub fn all_passed(checks: &[RefCheck]) -> bool {
    checks.iter().all(RefCheck::passed)
}

/// `bench --check-references --json`: every size's answer, pretty-printed.
pub fn json(kernel: &str, checks: &[RefCheck]) -> String {
    let answers: Vec<Value> = checks
        .iter()
        .map(|c| {
            serde_json::json!({
                "dir": c.dir,
                "answer": c.answer.as_ref().ok(),
                "error": c.answer.as_ref().err(),
            })
        })
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({
        "kernel": kernel,
        "checks": answers,
        "passed": all_passed(checks),
    }))
    .expect("serializable")
}
