//! Turns a spec, a configuration and a problem size into a concrete plan: launch
//! dimensions, buffer lengths, scalar bytes and the cost model, all plain numbers that
//! the worker can execute without knowing about expressions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::expr::Number;
use super::{ArgKind, Config, Init, Io, KernelSpec, Launch, Reference, Vars};
use crate::spec::DType;

/// Launch dimensions after evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchDims {
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub shared_bytes: u32,
}

impl LaunchDims {
    pub fn ctas(&self) -> u64 {
        self.grid.iter().map(|&g| g as u64).product()
    }
    pub fn threads_per_block(&self) -> u64 {
        self.block.iter().map(|&b| b as u64).product()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ArgPlan {
    Buffer {
        name: String,
        dtype: DType,
        len: u64,
        io: Io,
        init: Init,
        large_scale: f64,
        /// Validated as top-k index sets (see `spec::TopK`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topk: Option<TopKPlan>,
    },
    Scalar {
        name: String,
        dtype: DType,
        /// Little-endian bytes as passed to the kernel.
        bytes: Vec<u8>,
        shown: String,
    },
}

impl ArgPlan {
    pub fn name(&self) -> &str {
        match self {
            ArgPlan::Buffer { name, .. } | ArgPlan::Scalar { name, .. } => name,
        }
    }
    pub fn dtype(&self) -> DType {
        match self {
            ArgPlan::Buffer { dtype, .. } | ArgPlan::Scalar { dtype, .. } => *dtype,
        }
    }
}

/// A cuBLAS operation nightshift can time as an external baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlasOp {
    /// f32 in, f32 out (`cublasSgemm`; TF32 is not enabled).
    Sgemm,
    /// f16 in, f32 out, f32 accumulation (`cublasGemmEx`, CUBLAS_COMPUTE_32F).
    GemmF16F32,
}

impl BlasOp {
    pub fn describe(self) -> &'static str {
        match self {
            BlasOp::Sgemm => "cuBLAS sgemm (fp32, no TF32)",
            BlasOp::GemmF16F32 => "cuBLAS GemmEx (fp16 in, fp32 out and accumulation)",
        }
    }
}

/// One cuBLAS call at one size: row-major C[m, n] = A[m, k] . B[k, n], with the
/// buffers given by their positions among the args.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlasCall {
    pub op: BlasOp,
    pub m: i32,
    pub n: i32,
    pub k: i32,
    pub a: usize,
    pub b: usize,
    pub c: usize,
}

/// A top-k index output at one size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopKPlan {
    /// Position of the scores output among the args.
    pub scores: usize,
    pub k: u64,
    pub range: u64,
}

/// Everything needed to run one configuration at one problem size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SizePlan {
    /// Axes and values, e.g. `rows=4096 cols=1024`.
    pub label: String,
    pub problem: BTreeMap<String, i64>,
    pub args: Vec<ArgPlan>,
    pub launch: LaunchDims,
    /// The reference kernel's launch (for a baseline reference, the baseline's launch;
    /// None only in plans recorded before that was so).
    pub ref_launch: Option<LaunchDims>,
    pub bytes: f64,
    pub flops: f64,
    /// The spec's cuBLAS equivalent at this size, if it names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blas: Option<BlasCall>,
}

impl SizePlan {
    /// Bytes of all buffers together.
    pub fn footprint(&self) -> u64 {
        self.args
            .iter()
            .map(|a| match a {
                ArgPlan::Buffer { dtype, len, .. } => len * dtype.size() as u64,
                ArgPlan::Scalar { .. } => 0,
            })
            .sum()
    }
}

pub fn problem_label(problem: &Vars) -> String {
    let parts: Vec<String> = problem.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join(" ")
}

fn dims(launch: &Launch, vars: &Vars, what: &str) -> Result<LaunchDims, String> {
    let eval = |e: &super::Expr, key: String, min: i64| -> Result<u32, String> {
        let v = e.eval_int(vars).map_err(|m| format!("{key}: {m}"))?;
        if v < min || v > u32::MAX as i64 {
            return Err(format!(
                "{key} = `{}` evaluates to {v}, outside {min}..={}",
                e.src(),
                u32::MAX
            ));
        }
        Ok(v as u32)
    };
    let mut grid = [1u32; 3];
    let mut block = [1u32; 3];
    for i in 0..3 {
        grid[i] = eval(&launch.grid[i], format!("{what}.grid[{i}]"), 1)?;
        block[i] = eval(&launch.block[i], format!("{what}.block[{i}]"), 1)?;
    }
    let shared_bytes = eval(&launch.shared_bytes, format!("{what}.shared_bytes"), 0)?;
    Ok(LaunchDims {
        grid,
        block,
        shared_bytes,
    })
}

/// Plans `config` at `problem`. Errors are plain messages (the configuration cannot be
/// run at this size), which the caller records as an outcome.
fn topk_plan(
    spec: &KernelSpec,
    t: &super::TopK,
    vars: &Vars,
    name: &str,
    len: i64,
) -> Result<TopKPlan, String> {
    let k =
        t.k.eval_int(vars)
            .map_err(|m| format!("arg {name}.topk.k: {m}"))?;
    let range = t
        .range
        .eval_int(vars)
        .map_err(|m| format!("arg {name}.topk.range: {m}"))?;
    if k <= 0 || len % k != 0 {
        return Err(format!(
            "arg {name}.topk.k = {k} must be positive and divide the buffer's length {len}"
        ));
    }
    if range < k {
        return Err(format!(
            "arg {name}.topk.range = {range} leaves fewer than k = {k} distinct indices"
        ));
    }
    let scores = spec
        .args
        .iter()
        .position(|a| a.name == t.scores)
        .ok_or_else(|| format!("arg {name}.topk.scores: no argument `{}`", t.scores))?;
    Ok(TopKPlan {
        scores,
        k: k as u64,
        range: range as u64,
    })
}

pub fn plan(spec: &KernelSpec, config: &Config, problem: &Vars) -> Result<SizePlan, String> {
    let vars = spec.vars(problem, config);
    let launch = dims(&spec.launch, &vars, "launch")?;
    // The reference runs with the baseline's values, whatever the candidate's are: a
    // baseline reference is the baseline configuration, launched as the baseline is.
    let ref_vars = spec.vars(problem, &spec.baseline());
    let ref_launch = match &spec.reference {
        Reference::Kernel { launch, .. } => Some(dims(launch, &ref_vars, "reference.launch")?),
        Reference::Baseline => Some(dims(&spec.launch, &ref_vars, "launch")?),
    };
    let mut args = Vec::new();
    for a in &spec.args {
        match &a.kind {
            ArgKind::Buffer {
                dtype,
                io,
                len,
                init,
                large_scale,
                topk,
            } => {
                let n = len
                    .eval_int(&vars)
                    .map_err(|m| format!("arg {}.len: {m}", a.name))?;
                if n <= 0 {
                    return Err(format!(
                        "arg {}.len = `{}` evaluates to {n}; a buffer needs at least one element",
                        a.name,
                        len.src()
                    ));
                }
                args.push(ArgPlan::Buffer {
                    name: a.name.clone(),
                    dtype: *dtype,
                    len: n as u64,
                    io: *io,
                    init: *init,
                    large_scale: large_scale.unwrap_or(spec.validation.large_scale),
                    topk: match topk {
                        None => None,
                        Some(t) => Some(topk_plan(spec, t, &vars, &a.name, n)?),
                    },
                });
            }
            ArgKind::Scalar { dtype, value } => {
                let v = value
                    .eval_number(&vars)
                    .map_err(|m| format!("arg {}.value: {m}", a.name))?;
                let mut bytes = Vec::new();
                let shown = match v {
                    Number::Int(i) if !dtype.is_float() => {
                        dtype.encode_int(i, &mut bytes);
                        i.to_string()
                    }
                    _ => {
                        if !dtype.is_float() {
                            return Err(format!(
                                "arg {} is {dtype} but `{}` is fractional",
                                a.name,
                                value.src()
                            ));
                        }
                        dtype.encode(v.as_f64(), &mut bytes);
                        format!("{}", v.as_f64())
                    }
                };
                args.push(ArgPlan::Scalar {
                    name: a.name.clone(),
                    dtype: *dtype,
                    bytes,
                    shown,
                });
            }
        }
    }
    let bytes = spec
        .cost
        .bytes
        .eval_number(&vars)
        .map_err(|m| format!("cost.bytes: {m}"))?
        .as_f64();
    let flops = spec
        .cost
        .flops
        .eval_number(&vars)
        .map_err(|m| format!("cost.flops: {m}"))?
        .as_f64();
    if !(bytes >= 0.0 && flops >= 0.0) {
        return Err(format!(
            "the cost model gives bytes={bytes}, flops={flops}; both must be non-negative"
        ));
    }
    Ok(SizePlan {
        label: problem_label(problem),
        problem: problem.clone(),
        args,
        launch,
        ref_launch,
        bytes,
        flops,
        blas: match &spec.external.cublas {
            None => None,
            Some(c) => Some(blas_call(spec, c, &vars)?),
        },
    })
}

fn blas_call(spec: &KernelSpec, c: &super::Cublas, vars: &Vars) -> Result<BlasCall, String> {
    let dim = |e: &super::Expr, key: &str| -> Result<i32, String> {
        let v = e
            .eval_int(vars)
            .map_err(|m| format!("external.cublas.{key}: {m}"))?;
        i32::try_from(v)
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| format!("external.cublas.{key} = {v} is not a positive 32-bit size"))
    };
    let pos = |name: &str| {
        spec.args
            .iter()
            .position(|a| a.name == name)
            .ok_or_else(|| format!("external.cublas: no argument `{name}`"))
    };
    Ok(BlasCall {
        op: c.op,
        m: dim(&c.m, "m")?,
        n: dim(&c.n, "n")?,
        k: dim(&c.k, "k")?,
        a: pos(&c.a)?,
        b: pos(&c.b)?,
        c: pos(&c.c)?,
    })
}
