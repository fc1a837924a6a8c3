//! External baselines that run outside the worker: PyTorch, through
//! `kernels/external/torch_baselines.py`, which times the operation a user would
//! otherwise call on the same GPU and prints one JSON object. Its figures are
//! measurements taken by PyTorch on this machine, labelled with how they were taken.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::spec::KernelSpec;

/// One PyTorch timing, as the script reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TorchTiming {
    /// What ran, in the script's words (e.g. "torch.softmax(x, dim=-1), fp32").
    #[serde(rename = "impl")]
    pub op: String,
    pub device: String,
    pub torch: String,
    #[serde(default)]
    pub cuda: Option<String>,
    /// "cold" (L2 flushed before each call) or "batch" (CUDA graph of many calls).
    pub method: String,
    pub median_us: f64,
    pub samples_us: Vec<f64>,
    #[serde(default)]
    pub notes: Vec<String>,
}

/// The script: `NIGHTSHIFT_TORCH_SCRIPT`, else `external/torch_baselines.py` next to
/// the kernel's directory (the bundled layout).
pub fn torch_script(spec: &KernelSpec) -> PathBuf {
    std::env::var_os("NIGHTSHIFT_TORCH_SCRIPT")
        .map(PathBuf::from)
        .unwrap_or_else(|| spec.dir.join("../external/torch_baselines.py"))
}

/// The Python interpreter: `NIGHTSHIFT_PYTHON`, else `python3`.
fn python() -> String {
    std::env::var("NIGHTSHIFT_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Parses the script's stdout: one JSON object, either a timing or `{"error": ...}`.
pub fn parse_torch_output(stdout: &str) -> Result<TorchTiming, String> {
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .map_err(|e| format!("the script's output is not one JSON object ({e})"))?;
    if let Some(err) = v.get("error").and_then(|e| e.as_str()) {
        return Err(err.to_string());
    }
    let t: TorchTiming = serde_json::from_value(v)
        .map_err(|e| format!("the script's output lacks a field nightshift needs ({e})"))?;
    if !(t.median_us.is_finite() && t.median_us > 0.0) || t.samples_us.is_empty() {
        return Err(format!(
            "the script reported an unusable median ({} us over {} samples)",
            t.median_us,
            t.samples_us.len()
        ));
    }
    Ok(t)
}

/// Times the spec's PyTorch equivalent at its default problem on `gpu`. None when
/// the spec names none.
pub fn time_torch(spec: &KernelSpec, gpu: usize) -> Option<Result<TorchTiming, String>> {
    let name = spec.external.torch.as_ref()?;
    Some(run_script(&torch_script(spec), name, spec, gpu))
}

fn run_script(
    script: &Path,
    name: &str,
    spec: &KernelSpec,
    gpu: usize,
) -> Result<TorchTiming, String> {
    if !script.is_file() {
        return Err(format!("{} not found", script.display()));
    }
    let problem: Vec<String> = spec
        .problem
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let out = Command::new(python())
        .arg(script)
        .args(["time", "--kernel", name, "--problem", &problem.join(",")])
        .args(["--device", &format!("cuda:{gpu}")])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match parse_torch_output(&stdout) {
        Ok(t) if out.status.success() => Ok(t),
        Ok(_) => Err(format!("the script exited with {}", out.status)),
        Err(e) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
            Err(format!(
                "{e} (exit {}; stderr: {})",
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ))
        }
    }
}

/// Runs the script's `check` on a directory written by `Session::dump_reference`:
/// PyTorch recomputes the outputs from the same inputs and compares them with the
/// reference kernel's. Returns the script's JSON answer (its `passed` says the verdict).
pub fn torch_check(spec: &KernelSpec, dir: &Path, gpu: usize) -> Result<serde_json::Value, String> {
    let script = torch_script(spec);
    let out = Command::new(python())
        .arg(&script)
        .arg("check")
        .arg(dir)
        .args(["--device", &format!("cuda:{gpu}")])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).map_err(|e| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        format!(
            "{} printed no JSON answer ({e}); stderr: {}",
            script.display(),
            stderr.lines().last().unwrap_or("")
        )
    })?;
    if let Some(err) = v.get("error").and_then(|e| e.as_str()) {
        return Err(err.to_string());
    }
    if v.get("passed").and_then(|p| p.as_bool()).is_none() {
        return Err("the check's answer has no `passed`".into());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_timing_and_rejects_errors_and_nonsense() {
        let ok = r#"{"schema": 1, "kernel": "softmax", "impl": "torch.softmax(x, dim=-1), fp32",
            "problem": {"rows": 4096, "seq_k": 1024}, "device": "NVIDIA H100 80GB HBM3",
            "torch": "2.5.1", "cuda": "12.4", "method": "cold", "samples_us": [20.1, 20.3],
            "median_us": 20.2, "notes": []}"#;
        let t = parse_torch_output(ok).unwrap();
        assert_eq!(t.method, "cold");
        assert_eq!(t.median_us, 20.2);
        assert_eq!(t.op, "torch.softmax(x, dim=-1), fp32");
        let e = parse_torch_output(r#"{"schema": 1, "error": "CUDA is not available"}"#);
        assert_eq!(e.unwrap_err(), "CUDA is not available");
        assert!(parse_torch_output("Traceback (most recent call last):").is_err());
        let zero = ok.replace("\"median_us\": 20.2", "\"median_us\": 0.0");
        assert!(parse_torch_output(&zero).unwrap_err().contains("unusable"));
    }
}
