//! Kernel specs: `kernels/<name>/kernel.toml` parsed strictly (unknown keys are errors
//! naming file, line and key), validated into typed values with parsed expressions.

mod args;
pub mod confine;
mod ctx;
pub mod expr;
pub mod plan;
mod raw;
pub mod space;
pub mod toml_text;
pub mod types;
mod validate;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use ctx::Ctx;
use raw::RawSpec;
use validate::validate;

pub use expr::{Expr, Vars};
pub use space::{Candidate, Config, SearchSpace, REWRITE_SEPARATOR};
pub use types::DType;

/// A spec that cannot be used, with the place that says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(k) = &self.key {
            write!(f, ": `{k}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// What a tunable controls; patterns choose moves by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Block,
    Tile,
    Vector,
    Unroll,
    Parallelism,
    Variant,
    Stages,
    Other,
}

/// Whether the kernel reads, writes, or reads and writes a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Io {
    In,
    Out,
    Inout,
    /// Workspace: poisoned before each run, never compared (its contents are the
    /// kernel's business; a counter that must be left as found is `inout` instead).
    Scratch,
}

/// How the input values of a buffer are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "dist", rename_all = "lowercase")]
pub enum Init {
    /// Standard normal, signed.
    Normal,
    /// Uniform in [low, high).
    Uniform { low: f64, high: f64 },
    /// Uniform integers in [low, high).
    Randint { low: i64, high: i64 },
    /// Every element the same value.
    Constant { value: f64 },
}

/// The arithmetic ceiling a kernel's FLOPs are compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComputeKind {
    /// FP32 FMA on the CUDA cores.
    Fp32,
    /// FP16 inputs, FP32 accumulation on the tensor cores.
    TensorF16,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Tolerance {
    pub rtol: f64,
    pub atol: f64,
}

impl Tolerance {
    /// The default tolerance of a dtype when the spec names none.
    pub fn default_for(d: DType) -> Tolerance {
        match d {
            DType::F16 => Tolerance {
                rtol: 1e-2,
                atol: 1e-3,
            },
            DType::Bf16 => Tolerance {
                rtol: 2e-2,
                atol: 1e-2,
            },
            DType::F32 => Tolerance {
                rtol: 1e-5,
                atol: 1e-6,
            },
            DType::F64 => Tolerance {
                rtol: 1e-12,
                atol: 1e-14,
            },
            _ => Tolerance {
                rtol: 0.0,
                atol: 0.0,
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct Tunable {
    pub name: String,
    pub values: Vec<i64>,
    pub role: Role,
    pub baseline: i64,
    /// What it controls, in words (for a proposer), as the spec says.
    pub description: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Launch {
    pub grid: [Expr; 3],
    pub block: [Expr; 3],
    pub shared_bytes: Expr,
}

#[derive(Debug, Clone)]
pub enum ArgKind {
    Buffer {
        dtype: DType,
        io: Io,
        len: Expr,
        init: Init,
        large_scale: Option<f64>,
        topk: Option<Box<TopK>>,
    },
    Scalar {
        dtype: DType,
        value: Expr,
    },
}

/// An integer output holding the indices of the `k` best entries per row (with their
/// scores in another output, best first). Validated as index sets: the scores must
/// match the reference position by position, and an index may differ from the
/// reference's only where the two sets' boundary scores tie within tolerance.
#[derive(Debug, Clone)]
pub struct TopK {
    /// The float output holding the scores, index-aligned with this one.
    pub scores: String,
    /// Entries per row.
    pub k: Expr,
    /// Every index must lie in `0..range`.
    pub range: Expr,
}

#[derive(Debug, Clone)]
pub struct Arg {
    pub name: String,
    pub kind: ArgKind,
}

// One per spec: the size difference between the variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Reference {
    /// A separate, plainly written kernel with the same arguments.
    Kernel {
        source_path: PathBuf,
        source: String,
        entry: String,
        launch: Launch,
    },
    /// The spec's own baseline configuration is the reference.
    Baseline,
}

#[derive(Debug, Clone)]
pub struct Validation {
    /// Full problems (the default problem is not among them).
    pub sizes: Vec<Vars>,
    pub trials: u32,
    pub large_scale: f64,
    /// Absolute tolerance in the large-magnitude trial (outputs that grow with their
    /// inputs, such as sums and products, need one in their own units).
    pub large_atol: Option<f64>,
    /// Run each candidate twice on the same inputs (the race check).
    pub deterministic: bool,
    /// ... and require the two runs to agree bit for bit (`deterministic = "bitwise"`).
    pub bitwise: bool,
    pub tolerances: BTreeMap<DType, Tolerance>,
}

impl Validation {
    pub fn tolerance(&self, d: DType) -> Tolerance {
        self.tolerances
            .get(&d)
            .copied()
            .unwrap_or_else(|| Tolerance::default_for(d))
    }
}

#[derive(Debug, Clone)]
pub struct Cost {
    pub bytes: Expr,
    pub flops: Expr,
    pub compute: ComputeKind,
}

/// A validated kernel spec.
#[derive(Debug, Clone)]
pub struct KernelSpec {
    pub name: String,
    /// The kernel in one line, as the spec says (for a proposer and the report).
    pub description: Option<String>,
    pub dir: PathBuf,
    pub spec_path: PathBuf,
    pub source_path: PathBuf,
    pub source: String,
    pub entry: String,
    pub problem: Vars,
    pub workload_axes: Vec<String>,
    pub tunables: Vec<Tunable>,
    pub restrictions: Vec<Expr>,
    pub launch: Launch,
    pub args: Vec<Arg>,
    pub reference: Reference,
    pub validation: Validation,
    pub cost: Cost,
    pub compile_options: Vec<String>,
    /// Header directories (the spec's own directory is always searched first).
    pub include_dirs: Vec<PathBuf>,
    pub external: External,
    /// The kernel as rewritten (source and NVRTC options), for the candidate only:
    /// its reference is always compiled from `source` and `compile_options` as the
    /// spec gives them, so a rewrite is checked against the original kernel.
    pub rewritten: Option<Rewritten>,
    /// The rewrites the pattern library declares itself (a query and a template),
    /// which rewrite texts may name; given to the spec with the library.
    pub edits: Vec<crate::rewrite::edit::QueryEdit>,
    /// Sources a code-writing proposer answered in this run, by digest, which a
    /// candidate's `proposal:<digest>` rewrite names.
    pub proposals: std::collections::BTreeMap<String, String>,
}

/// A candidate's kernel after source or compiler-option rewrites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    pub source: String,
    /// The candidate's NVRTC options in place of the spec's `compile_options`.
    pub options: Vec<String>,
    /// The rewrites applied, in order (`name:key=value,...`).
    pub rewrites: Vec<String>,
}

/// What a user would otherwise run for this kernel, measured on the same GPU so
/// results can be stated as a fraction of it.
#[derive(Debug, Clone, Default)]
pub struct External {
    /// The kernel's name for `kernels/external/torch_baselines.py`.
    pub torch: Option<String>,
    /// The same product through cuBLAS (row-major C[m, n] = A[m, k] . B[k, n]).
    pub cublas: Option<Cublas>,
}

#[derive(Debug, Clone)]
pub struct Cublas {
    pub op: plan::BlasOp,
    pub a: String,
    pub b: String,
    pub c: String,
    pub m: Expr,
    pub n: Expr,
    pub k: Expr,
}

impl KernelSpec {
    /// Loads `<dir>/kernel.toml` and the sources it names.
    pub fn load(dir: &Path) -> Result<Self, SpecError> {
        let spec_path = dir.join("kernel.toml");
        let text =
            crate::files::read_text(&spec_path, crate::files::MAX_INPUT_BYTES).map_err(|e| {
                SpecError {
                    path: spec_path.clone(),
                    line: None,
                    key: None,
                    message: format!("cannot read the spec: {e}"),
                }
            })?;
        // Sources and headers only from inside the spec's repository.
        let root = confine::root_of(dir);
        let spec = Self::parse(&text, &spec_path, &|p| {
            confine::inside(p, &root)?;
            crate::files::read_text(p, crate::files::MAX_INPUT_BYTES)
        })?;
        let outside = |key: &str, e: std::io::Error| SpecError {
            path: spec_path.clone(),
            line: None,
            key: Some(key.to_string()),
            message: e.to_string(),
        };
        for d in &spec.include_dirs {
            confine::inside(d, &root).map_err(|e| outside("include_dirs", e))?;
        }
        let mut dirs = vec![spec.dir.clone()];
        dirs.extend(spec.include_dirs.iter().cloned());
        let mut files = vec![(spec.source_path.clone(), spec.source.clone())];
        if let Reference::Kernel {
            source_path,
            source,
            ..
        } = &spec.reference
        {
            files.push((source_path.clone(), source.clone()));
        }
        let mut seen = BTreeSet::new();
        for (path, text) in &files {
            confine::check_includes(path, text, &dirs, &root, &mut seen, 16)?;
        }
        Ok(spec)
    }

    /// A digest of everything the spec makes nightshift compile and run: the spec
    /// file, its kernel and reference sources, and the headers beside it and in its
    /// include directories, by name and content (not by path: a run's worktree and
    /// the user's checkout agree when the files do).
    pub fn content_hash(&self) -> String {
        let spec_text = std::fs::read(&self.spec_path).unwrap_or_default();
        let reference = match &self.reference {
            Reference::Kernel { source, .. } => source.as_bytes(),
            Reference::Baseline => &[],
        };
        let mut dirs: Vec<&Path> = vec![&self.dir];
        dirs.extend(self.include_dirs.iter().map(PathBuf::as_path));
        let headers = crate::digest::files_in(&dirs, &["h", "cuh", "hpp"]);
        let mut parts: Vec<(&str, &[u8])> = vec![
            ("kernel.toml", &spec_text),
            ("source", self.source.as_bytes()),
            ("reference", reference),
        ];
        parts.extend(headers.iter().map(|(n, c)| (n.as_str(), c.as_slice())));
        crate::digest::of_parts(parts)
    }

    /// Parses spec text; `read` reads the sources the spec names (relative to its dir).
    pub fn parse(
        text: &str,
        spec_path: &Path,
        read: &dyn Fn(&Path) -> std::io::Result<String>,
    ) -> Result<Self, SpecError> {
        let ctx = Ctx {
            toml: toml_text::TomlText::new(text, spec_path),
            exprs: Default::default(),
        };
        let raw: RawSpec = ctx.toml.parse()?;
        validate(raw, &ctx, read)
    }

    /// The baseline configuration: every tunable at its baseline value.
    pub fn baseline(&self) -> Config {
        Config(
            self.tunables
                .iter()
                .map(|t| (t.name.clone(), t.baseline))
                .collect(),
        )
    }

    pub fn space(&self) -> SearchSpace<'_> {
        SearchSpace::new(self)
    }

    /// Problem sizes and tunables as one set of expression variables.
    pub fn vars(&self, problem: &Vars, config: &Config) -> Vars {
        let mut v = problem.clone();
        v.extend(config.0.iter().map(|(k, x)| (k.clone(), *x)));
        v
    }

    /// Applies `NAME=VALUE` overrides to a configuration, checking each against the spec.
    pub fn with_overrides(&self, base: &Config, sets: &[(String, i64)]) -> Result<Config, String> {
        let mut c = base.clone();
        for (name, value) in sets {
            let t = self
                .tunables
                .iter()
                .find(|t| &t.name == name)
                .ok_or_else(|| {
                    let names: Vec<&str> = self.tunables.iter().map(|t| t.name.as_str()).collect();
                    format!(
                        "`{name}` is not a tunable of {} (tunables: {})",
                        self.name,
                        names.join(", ")
                    )
                })?;
            if !t.values.contains(value) {
                return Err(format!(
                    "{name}={value} is not among its values {:?} in {}",
                    t.values,
                    self.spec_path.display()
                ));
            }
            c.0.insert(name.clone(), *value);
        }
        Ok(c)
    }

    /// The restrictions that `config` violates at `problem` (empty when it is allowed).
    pub fn violated(&self, problem: &Vars, config: &Config) -> Vec<String> {
        let vars = self.vars(problem, config);
        self.restrictions
            .iter()
            .filter(|r| !matches!(r.eval_bool(&vars), Ok(true)))
            .map(|r| r.src().to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests;
