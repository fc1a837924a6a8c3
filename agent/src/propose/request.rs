//! What a proposer is asked: the [`ProposalRequest`] (serialized as JSON for a
//! command proposer, rendered as chat messages for a language model by
//! [`messages`]), and [`describe`], the view of a kernel spec it carries.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::spec::{ArgKind, DType, Io, KernelSpec, Role};

/// The largest `kernel.toml` text carried in a request.
const MAX_SPEC_FILE: u64 = 256 << 10;
/// Earlier proposals rendered into a prompt (the latest; the request holds all).
const PROMPT_HISTORY: usize = 12;
/// The most of a compile log rendered into a prompt.
const PROMPT_LOG: usize = 4096;

/// One question to a proposer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProposalRequest {
    /// The spec's `name`.
    pub kernel: String,
    /// The entry kernel's name, which the proposal must keep.
    pub entry: String,
    /// The current best source, whole.
    pub source: String,
    /// The tunables' values the current best is compiled with (`-DNAME=value`).
    pub config: BTreeMap<String, i64>,
    pub spec: SpecView,
    /// The measured profile (`crate::profile::SIGNALS` say what each means).
    pub signals: BTreeMap<String, f64>,
    pub pattern: PatternBrief,
    /// Earlier proposals for this kernel, oldest first.
    pub history: Vec<PastProposal>,
}

/// The proposal pattern that asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternBrief {
    pub name: String,
    /// What to try, in words, for the proposer.
    pub instruction: String,
    /// Why it should help when the pattern's condition holds.
    pub rationale: String,
}

/// An earlier proposal and what became of it, so the proposer can learn within
/// the night.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PastProposal {
    /// What it changed, in a line (its explanation's first line, its pattern).
    pub summary: String,
    /// `proposal_invalid`, `compile_failed`, `incorrect`, `slower`, `kept`...
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compile_log: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failing_check: Option<String>,
    /// The A/B verdict against the best of its time, with its interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
}

/// A kernel spec as a proposer sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecView {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub entry: String,
    /// The entry kernel's parameters, in order.
    pub args: Vec<ArgView>,
    pub tunables: Vec<TunableView>,
    /// Expressions over the problem sizes and the tunables.
    pub launch: LaunchView,
    /// The default problem size.
    pub problem: BTreeMap<String, i64>,
    /// Conditions every configuration satisfies.
    pub restrictions: Vec<String>,
    pub compile_options: Vec<String>,
    pub cost: CostView,
    /// `kernel.toml` as written: its comments say what the arguments mean (layout,
    /// shapes) better than any field. None when it could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_file: Option<String>,
}

/// A parameter of the entry kernel: a buffer (a pointer) or a scalar (by value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgView {
    pub name: String,
    pub dtype: DType,
    /// Whether it is a pointer to `len` elements.
    pub pointer: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io: Option<Io>,
    /// Elements of a buffer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub len: Option<String>,
    /// A scalar's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunableView {
    pub name: String,
    pub values: Vec<i64>,
    pub role: Role,
    pub baseline: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchView {
    pub grid: [String; 3],
    pub block: [String; 3],
    pub shared_bytes: String,
}

/// What one launch moves and computes, as the roofline fractions count it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostView {
    pub bytes: String,
    pub flops: String,
    /// `fp32` or `tensor_f16`.
    pub compute: String,
}

/// The view of `spec` a proposer is given (it reads `kernel.toml` again, for its
/// comments).
pub fn describe(spec: &KernelSpec) -> SpecView {
    let exprs = |e: &[crate::spec::Expr; 3]| e.clone().map(|x| x.src().to_string());
    let args = spec
        .args
        .iter()
        .map(|a| match &a.kind {
            ArgKind::Buffer { dtype, io, len, .. } => ArgView {
                name: a.name.clone(),
                dtype: *dtype,
                pointer: true,
                io: Some(*io),
                len: Some(len.src().to_string()),
                value: None,
            },
            ArgKind::Scalar { dtype, value } => ArgView {
                name: a.name.clone(),
                dtype: *dtype,
                pointer: false,
                io: None,
                len: None,
                value: Some(value.src().to_string()),
            },
        })
        .collect();
    let tunables = spec
        .tunables
        .iter()
        .map(|t| TunableView {
            name: t.name.clone(),
            values: t.values.clone(),
            role: t.role,
            baseline: t.baseline,
            description: t.description.clone(),
        })
        .collect();
    let compute = serde_json::to_value(spec.cost.compute)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    SpecView {
        name: spec.name.clone(),
        description: spec.description.clone(),
        entry: spec.entry.clone(),
        args,
        tunables,
        launch: LaunchView {
            grid: exprs(&spec.launch.grid),
            block: exprs(&spec.launch.block),
            shared_bytes: spec.launch.shared_bytes.src().to_string(),
        },
        problem: spec.problem.clone(),
        restrictions: spec
            .restrictions
            .iter()
            .map(|r| r.src().to_string())
            .collect(),
        compile_options: spec.compile_options.clone(),
        cost: CostView {
            bytes: spec.cost.bytes.src().to_string(),
            flops: spec.cost.flops.src().to_string(),
            compute,
        },
        spec_file: crate::files::read_text(&spec.spec_path, MAX_SPEC_FILE).ok(),
    }
}

const SYSTEM: &str = "You are an expert CUDA kernel engineer. You rewrite one CUDA kernel to \
make it faster, following the instruction you are given. Your kernel is compiled with NVRTC, \
validated against a reference at several problem sizes (odd shapes among them) with fresh \
random inputs, outputs poisoned before each run and guard regions around every buffer, then \
timed against the current best; it is kept only if it is correct and measurably faster.

Rules:
- Keep the entry kernel's name and its parameter list exactly: the same names, in the same \
order, pointers where there are pointers and values where there are values.
- The tunables are compile-time macros set with -DNAME=value (a default under #ifndef is \
fine); use them or not, but never hard-code another value for one.
- The launch (grid, block, dynamic shared memory) is computed from the expressions given: \
your kernel must be correct with exactly that launch.
- Include only the headers the kernel already includes, headers beside it, or standard CUDA \
headers; no absolute paths, no `..`.
- Answer with the complete kernel source in exactly one ```cuda fenced block, then a short \
explanation (a few sentences) of what you changed and why it should be faster.";

/// The chat messages for `req`: (system, user).
pub fn messages(req: &ProposalRequest) -> (String, String) {
    let mut u = String::new();
    // Writing to a String cannot fail.
    let _ = write!(u, "# Kernel `{}` (entry `{}`)\n\n", req.kernel, req.entry);
    if let Some(d) = &req.spec.description {
        let _ = write!(u, "{d}\n\n");
    }
    let p = &req.pattern;
    let _ = write!(
        u,
        "## What to try: {}\n\n{}\n\nWhy: {}\n\n",
        p.name, p.instruction, p.rationale
    );
    interface(&mut u, req);
    if !req.signals.is_empty() {
        u.push_str("## The current best, measured on the GPU\n\n");
        for (k, v) in &req.signals {
            let _ = writeln!(u, "- {k} = {v}");
        }
        u.push('\n');
    }
    history(&mut u, &req.history);
    let _ = write!(
        u,
        "## The current best source\n\n```cuda\n{}\n```\n",
        req.source.trim_end()
    );
    (SYSTEM.to_string(), u)
}

fn interface(u: &mut String, req: &ProposalRequest) {
    let s = &req.spec;
    u.push_str("## Interface (must be kept)\n\nParameters, in order:\n");
    for a in &s.args {
        let _ = match (&a.len, &a.value) {
            (Some(len), _) => writeln!(
                u,
                "- `{}`: pointer to {} elements of {} ({})",
                a.name,
                len,
                a.dtype,
                a.io.map_or("in", io_name)
            ),
            (None, v) => writeln!(
                u,
                "- `{}`: {} by value, = `{}`",
                a.name,
                a.dtype,
                v.as_deref().unwrap_or("?")
            ),
        };
    }
    let _ = writeln!(u, "\nProblem size: {}", pairs(&s.problem));
    if !s.tunables.is_empty() {
        u.push_str("Tunables (macros; the current best's value first):\n");
        for t in &s.tunables {
            let cur = req.config.get(&t.name).copied().unwrap_or(t.baseline);
            let _ = write!(
                u,
                "- {} = {cur} (values {:?}, role {:?})",
                t.name, t.values, t.role
            );
            if let Some(d) = &t.description {
                let _ = write!(u, ": {d}");
            }
            u.push('\n');
        }
    }
    let l = &s.launch;
    let _ = writeln!(
        u,
        "Launch: grid ({}), block ({}), dynamic shared memory {} bytes",
        l.grid.join(", "),
        l.block.join(", "),
        l.shared_bytes
    );
    if !s.restrictions.is_empty() {
        let _ = writeln!(u, "Restrictions: {}", s.restrictions.join("; "));
    }
    if !s.compile_options.is_empty() {
        let _ = writeln!(u, "NVRTC options: {}", s.compile_options.join(" "));
    }
    let _ = writeln!(
        u,
        "Cost per launch: {} bytes, {} flops ({})",
        s.cost.bytes, s.cost.flops, s.cost.compute
    );
    if let Some(f) = &s.spec_file {
        let _ = write!(
            u,
            "\nThe spec (kernel.toml):\n\n```toml\n{}\n```\n",
            f.trim_end()
        );
    }
    u.push('\n');
}

fn history(u: &mut String, history: &[PastProposal]) {
    if history.is_empty() {
        return;
    }
    u.push_str("## Earlier proposals for this kernel (oldest first)\n\n");
    let skip = history.len().saturating_sub(PROMPT_HISTORY);
    if skip > 0 {
        let _ = writeln!(u, "({skip} earlier ones left out)");
    }
    for (i, h) in history.iter().enumerate().skip(skip) {
        let _ = writeln!(u, "{}. {} -> {}", i + 1, h.summary, h.outcome);
        if let Some(c) = &h.first_failing_check {
            let _ = writeln!(u, "   first failing check: {c}");
        }
        if let Some(v) = &h.verdict {
            let _ = writeln!(u, "   verdict: {v}");
        }
        if let Some(log) = &h.compile_log {
            let _ = writeln!(
                u,
                "   compile log:\n```\n{}\n```",
                super::truncate(log.trim_end(), PROMPT_LOG)
            );
        }
    }
    u.push('\n');
}

fn io_name(io: Io) -> &'static str {
    match io {
        Io::In => "in",
        Io::Out => "out",
        Io::Inout => "inout",
        Io::Scratch => "scratch",
    }
}

fn pairs(m: &BTreeMap<String, i64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}
