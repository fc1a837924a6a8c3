//! Kernel specs: `kernels/<name>/kernel.toml` parsed strictly (unknown keys are errors
//! naming file, line and key), validated into typed values with parsed expressions.

pub mod confine;
mod ctx;
pub mod expr;
pub mod plan;
mod raw;
pub mod space;
pub mod toml_text;
pub mod types;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use ctx::{is_identifier, Ctx};
use raw::{RawArg, RawDeterministic, RawExternal, RawSpec};

pub use expr::{Expr, Vars};
pub use space::{Config, SearchSpace};
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

fn validate(
    raw: RawSpec,
    ctx: &Ctx,
    read: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<KernelSpec, SpecError> {
    // Problem sizes.
    let problem_span = raw.problem.span();
    let problem: Vars = raw.problem.into_inner();
    if problem.is_empty() {
        return Err(ctx.err(
            Some(&problem_span),
            "problem",
            "needs at least one problem size",
        ));
    }
    for (k, v) in &problem {
        if !is_identifier(k) {
            return Err(ctx.err(
                Some(&problem_span),
                &format!("problem.{k}"),
                "is not a valid identifier",
            ));
        }
        if *v <= 0 {
            return Err(ctx.err(
                Some(&problem_span),
                &format!("problem.{k}"),
                format!("must be positive, got {v}"),
            ));
        }
    }
    let mut workload_axes = Vec::new();
    for a in &raw.workload_axes {
        if !problem.contains_key(a.get_ref()) {
            return Err(ctx.err(
                Some(&a.span()),
                "workload_axes",
                format!("`{}` is not a problem size", a.get_ref()),
            ));
        }
        workload_axes.push(a.get_ref().clone());
    }

    // Tunables.
    let tune = raw.tune.unwrap_or_default();
    let mut tunables = Vec::new();
    for (name, t) in &tune.params {
        let span = t.span();
        let key = format!("tune.{name}");
        if !is_identifier(name) {
            return Err(ctx.err(
                Some(&span),
                &key,
                "a tunable's name must be a C identifier (it becomes -D NAME=VALUE)",
            ));
        }
        if problem.contains_key(name) {
            return Err(ctx.err(Some(&span), &key, "has the same name as a problem size"));
        }
        let t = t.get_ref();
        if t.values.is_empty() {
            return Err(ctx.err(
                Some(&span),
                &format!("{key}.values"),
                "needs at least one value",
            ));
        }
        let distinct: BTreeSet<_> = t.values.iter().collect();
        if distinct.len() != t.values.len() {
            return Err(ctx.err(Some(&span), &format!("{key}.values"), "lists a value twice"));
        }
        let baseline = t.baseline.unwrap_or(t.values[0]);
        if !t.values.contains(&baseline) {
            return Err(ctx.err(
                Some(&span),
                &format!("{key}.baseline"),
                format!("{baseline} is not among the values {:?}", t.values),
            ));
        }
        tunables.push(Tunable {
            name: name.clone(),
            values: t.values.clone(),
            role: t.role,
            baseline,
        });
    }
    let problem_names: BTreeSet<String> = problem.keys().cloned().collect();
    let mut known = problem_names.clone();
    known.extend(tunables.iter().map(|t| t.name.clone()));

    let restrictions = tune
        .restrictions
        .iter()
        .enumerate()
        .map(|(i, r)| ctx.expr(r, &format!("tune.restrictions[{i}]"), &known))
        .collect::<Result<Vec<_>, _>>()?;

    // Validation settings.
    let vraw = raw.validate.map(Spanned::into_inner).unwrap_or_default();
    let mut sizes = Vec::new();
    for (i, s) in vraw.sizes.iter().enumerate() {
        let mut full = problem.clone();
        for (k, v) in s.get_ref() {
            if !problem.contains_key(k) {
                return Err(ctx.err(
                    Some(&s.span()),
                    &format!("validate.sizes[{i}].{k}"),
                    "is not a problem size",
                ));
            }
            if *v <= 0 {
                return Err(ctx.err(
                    Some(&s.span()),
                    &format!("validate.sizes[{i}].{k}"),
                    format!("must be positive, got {v}"),
                ));
            }
            full.insert(k.clone(), *v);
        }
        sizes.push(full);
    }
    let trials = match &vraw.trials {
        Some(t) if *t.get_ref() < 3 => {
            return Err(ctx.err(
                Some(&t.span()),
                "validate.trials",
                "must be at least 3 (each with fresh random inputs)",
            ));
        }
        Some(t) => *t.get_ref(),
        None => 3,
    };
    // Each number checked where it is written, under the key the user wrote.
    let non_negative = |v: &Option<Spanned<f64>>, key: &str| -> Result<Option<f64>, SpecError> {
        match v {
            Some(x) if !(x.get_ref().is_finite() && *x.get_ref() >= 0.0) => Err(ctx.err(
                Some(&x.span()),
                key,
                format!("must be finite and non-negative, not {}", x.get_ref()),
            )),
            Some(x) => Ok(Some(*x.get_ref())),
            None => Ok(None),
        }
    };
    let rtol = non_negative(&vraw.rtol, "validate.rtol")?;
    let atol = non_negative(&vraw.atol, "validate.atol")?;
    let large_atol = non_negative(&vraw.large_atol, "validate.large_atol")?;
    let mut tolerances = BTreeMap::new();
    for d in DType::ALL.into_iter().filter(|d| d.is_float()) {
        let mut t = Tolerance::default_for(d);
        if let Some(r) = rtol {
            t.rtol = r;
        }
        if let Some(a) = atol {
            t.atol = a;
        }
        tolerances.insert(d, t);
    }
    for (name, t) in &vraw.tolerance {
        let d = DType::parse(name).ok_or_else(|| {
            ctx.err(
                Some(&t.span()),
                &format!("validate.tolerance.{name}"),
                "is not a dtype",
            )
        })?;
        let (r, a) = (t.get_ref().rtol, t.get_ref().atol);
        if !(r >= 0.0 && a >= 0.0 && r.is_finite() && a.is_finite()) {
            return Err(ctx.err(
                Some(&t.span()),
                &format!("validate.tolerance.{name}"),
                format!("rtol and atol must be finite and non-negative, not {r} and {a}"),
            ));
        }
        tolerances.insert(
            d,
            Tolerance {
                rtol: t.get_ref().rtol,
                atol: t.get_ref().atol,
            },
        );
    }
    let large_scale = match &vraw.large_scale {
        Some(x) if !(x.get_ref().is_finite() && *x.get_ref() >= 1.0) => {
            return Err(ctx.err(
                Some(&x.span()),
                "validate.large_scale",
                format!("must be a finite number of at least 1, not {}", x.get_ref()),
            ))
        }
        Some(x) => *x.get_ref(),
        None => 1000.0,
    };

    // Launch and arguments.
    let launch = ctx.launch(&raw.launch, "launch", &known)?;
    let mut args = Vec::new();
    let mut arg_names = BTreeSet::new();
    for (i, a) in raw.args.iter().enumerate() {
        let span = a.span();
        let a = a.get_ref();
        let key = format!("arg[{i}] ({})", a.name);
        if !is_identifier(&a.name) {
            return Err(ctx.err(
                Some(&span),
                &key,
                "an argument's name must be an identifier",
            ));
        }
        if !arg_names.insert(a.name.clone()) {
            return Err(ctx.err(
                Some(&span),
                &key,
                "an argument with this name is already declared",
            ));
        }
        let (base, is_ptr) = match a.ty.strip_suffix('*') {
            Some(b) => (b.trim(), true),
            None => (a.ty.trim(), false),
        };
        let dtype = DType::parse(base).ok_or_else(|| {
            let all: Vec<&str> = DType::ALL.iter().map(|d| d.name()).collect();
            ctx.err(
                Some(&span),
                &format!("{key}.type"),
                format!(
                    "`{}` is not a type; use one of {} (add `*` for a device buffer)",
                    a.ty,
                    all.join(", ")
                ),
            )
        })?;
        let kind = if is_ptr {
            if a.value.is_some() {
                return Err(ctx.err(
                    Some(&span),
                    &format!("{key}.value"),
                    "a buffer has `len`, not `value`",
                ));
            }
            let io = a.io.ok_or_else(|| {
                ctx.err(
                    Some(&span),
                    &format!("{key}.io"),
                    "a buffer needs `io` = \"in\", \"out\", \"inout\" or \"scratch\"",
                )
            })?;
            let len = a.len.as_ref().ok_or_else(|| {
                ctx.err(
                    Some(&span),
                    &format!("{key}.len"),
                    "a buffer needs `len` (an expression)",
                )
            })?;
            let len = ctx.expr(len, &format!("{key}.len"), &known)?;
            let init = parse_init(a, dtype, io)
                .map_err(|m| ctx.err(Some(&span), &format!("{key}.init"), m))?;
            if matches!(io, Io::Out | Io::Scratch) && a.init.is_some() {
                return Err(ctx.err(
                    Some(&span),
                    &format!("{key}.init"),
                    "an output or scratch buffer is poisoned before each run, not initialised",
                ));
            }
            let topk = match &a.topk {
                None => None,
                Some(t) => {
                    if io != Io::Out || dtype.is_float() {
                        return Err(ctx.err(
                            Some(&span),
                            &format!("{key}.topk"),
                            "`topk` belongs on an integer output (`io = \"out\"`) holding indices",
                        ));
                    }
                    Some(Box::new(TopK {
                        scores: t.scores.clone(),
                        k: ctx.expr(&t.k, &format!("{key}.topk.k"), &known)?,
                        range: ctx.expr(&t.range, &format!("{key}.topk.range"), &known)?,
                    }))
                }
            };
            ArgKind::Buffer {
                dtype,
                io,
                len,
                init,
                large_scale: a.large_scale,
                topk,
            }
        } else {
            for (present, field) in [
                (a.io.is_some(), "io"),
                (a.len.is_some(), "len"),
                (a.init.is_some(), "init"),
                (a.topk.is_some(), "topk"),
            ] {
                if present {
                    return Err(ctx.err(
                        Some(&span),
                        &format!("{key}.{field}"),
                        "a scalar has only `value`",
                    ));
                }
            }
            let value = a.value.as_ref().ok_or_else(|| {
                ctx.err(
                    Some(&span),
                    &format!("{key}.value"),
                    "a scalar needs `value` (an expression)",
                )
            })?;
            ArgKind::Scalar {
                dtype,
                value: ctx.expr(value, &format!("{key}.value"), &known)?,
            }
        };
        args.push(Arg {
            name: a.name.clone(),
            kind,
        });
    }
    for (i, a) in args.iter().enumerate() {
        let ArgKind::Buffer {
            topk: Some(t), len, ..
        } = &a.kind
        else {
            continue;
        };
        let scores_ok = args.iter().any(|b| {
            b.name == t.scores
                && matches!(&b.kind, ArgKind::Buffer { dtype, io: Io::Out, len: l, .. }
                    if dtype.is_float() && l.src() == len.src())
        });
        if !scores_ok {
            return Err(ctx.err(
                Some(&raw.args[i].span()),
                &format!("arg[{i}] ({}).topk.scores", a.name),
                format!(
                    "`{}` must name a float output with the same `len` as `{}`",
                    t.scores, a.name
                ),
            ));
        }
    }
    if !args.iter().any(|a| {
        matches!(
            a.kind,
            ArgKind::Buffer {
                io: Io::Out | Io::Inout,
                ..
            }
        )
    }) {
        return Err(ctx.err(None, "arg", "no argument is an output (`io = \"out\"` or `\"inout\"`): there is nothing to validate"));
    }

    // Reference.
    let rspan = raw.reference.span();
    let r = raw.reference.get_ref();
    let reference = match (r.baseline, &r.source, &r.entry) {
        (true, None, None) => {
            if r.launch.is_some() {
                return Err(ctx.err(
                    Some(&rspan),
                    "reference.launch",
                    "the baseline reference uses the kernel's own launch",
                ));
            }
            Reference::Baseline
        }
        (false, Some(src), Some(entry)) => {
            let (source_path, source) = ctx.read_source(src, "reference.source", read)?;
            let launch = match &r.launch {
                Some(l) => ctx.launch(l, "reference.launch", &known)?,
                None => launch.clone(),
            };
            Reference::Kernel {
                source_path,
                source,
                entry: entry.clone(),
                launch,
            }
        }
        _ => {
            return Err(ctx.err(
                Some(&rspan),
                "reference",
                "give either `source` and `entry` of a reference kernel, or `baseline = true`",
            ));
        }
    };

    let cspan = raw.cost.span();
    let c = raw.cost.get_ref();
    let cost = Cost {
        bytes: ctx.expr(&c.bytes, "cost.bytes", &known)?,
        flops: ctx.expr(&c.flops, "cost.flops", &known)?,
        compute: c.compute.unwrap_or(ComputeKind::Fp32),
    };

    // The name names directories, branches and journal keys: one plain component.
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if raw.name.is_empty() || raw.name == "." || raw.name == ".." || !raw.name.chars().all(plain) {
        let line = ctx
            .toml
            .text
            .lines()
            .position(|l| l.trim_start().starts_with("name"))
            .map(|i| i + 1);
        return Err(SpecError {
            path: ctx.toml.path.to_path_buf(),
            line,
            key: Some("name".into()),
            message: format!(
                "`{}` is not a kernel name: use letters, digits, `.`, `_` and `-` (not `.` or `..` alone)",
                raw.name
            ),
        });
    }
    if !is_identifier(&raw.entry) {
        return Err(ctx.err(None, "entry", "must be the kernel's `extern \"C\"` name"));
    }
    let (source_path, source) = ctx.read_source(&raw.source, "source", read)?;
    let spec_dir = ctx.toml.path.parent().unwrap_or(Path::new("."));
    let mut include_dirs = Vec::new();
    for d in &raw.include_dirs {
        let p = spec_dir.join(d);
        if !p.is_dir() {
            return Err(ctx.err(
                None,
                "include_dirs",
                format!("{} is not a directory", p.display()),
            ));
        }
        include_dirs.push(p);
    }
    let (deterministic, bitwise) = match &vraw.deterministic {
        None => (true, false),
        Some(d) => match d.get_ref() {
            RawDeterministic::Flag(f) => (*f, false),
            RawDeterministic::Word(w) if w == "bitwise" => (true, true),
            RawDeterministic::Word(w) => {
                return Err(ctx.err(
                    Some(&d.span()),
                    "validate.deterministic",
                    format!("must be true, false or \"bitwise\", not \"{w}\""),
                ))
            }
        },
    };
    let external = match &raw.external {
        None => External::default(),
        Some(x) => parse_external(ctx, x, &args, &known)?,
    };
    let spec = KernelSpec {
        name: raw.name,
        dir: ctx
            .toml
            .path
            .parent()
            .unwrap_or(Path::new("."))
            .to_path_buf(),
        spec_path: ctx.toml.path.to_path_buf(),
        source_path,
        source,
        entry: raw.entry,
        problem,
        workload_axes,
        tunables,
        restrictions,
        launch,
        args,
        reference,
        validation: Validation {
            sizes,
            trials,
            large_scale,
            large_atol,
            deterministic,
            bitwise,
            tolerances,
        },
        cost,
        compile_options: raw.compile_options,
        include_dirs,
        external,
    };

    // Every expression must evaluate for the baseline, each checked on its own so that
    // an error names its line and key; and the baseline must satisfy the restrictions
    // (then the space is not empty: no need to walk it).
    let base = spec.baseline();
    let vars = spec.vars(&spec.problem, &base);
    for (key, span, e) in ctx.exprs.borrow().iter() {
        let checked = if key.starts_with("tune.restrictions") {
            match e.eval_bool(&vars) {
                Ok(true) => Ok(()),
                Ok(false) => Err(format!(
                    "the baseline configuration {base} violates `{}`",
                    e.src()
                )),
                Err(m) => Err(format!("not a condition: {m}")),
            }
        } else if key.contains(".grid[") || key.contains(".block[") || key.ends_with(".len") {
            e.eval_int(&vars).map(|_| ())
        } else {
            e.eval_number(&vars).map(|_| ())
        };
        if let Err(m) = checked {
            return Err(ctx.err(Some(span), key, m));
        }
    }
    plan::plan(&spec, &base, &spec.problem).map_err(|m| ctx.err(Some(&cspan), "baseline", m))?;
    Ok(spec)
}

fn parse_external(
    ctx: &Ctx,
    x: &Spanned<RawExternal>,
    args: &[Arg],
    known: &BTreeSet<String>,
) -> Result<External, SpecError> {
    let span = x.span();
    let x = x.get_ref();
    let cublas = match &x.cublas {
        None => None,
        Some(c) => {
            let op = match c.op.as_str() {
                "sgemm" => plan::BlasOp::Sgemm,
                "gemm_f16_f32" => plan::BlasOp::GemmF16F32,
                other => {
                    return Err(ctx.err(
                        Some(&span),
                        "external.cublas.op",
                        format!("`{other}` is not a cuBLAS operation nightshift runs; use \"sgemm\" (f32) or \"gemm_f16_f32\" (f16 inputs, f32 output)"),
                    ))
                }
            };
            let (ab, cd) = match op {
                plan::BlasOp::Sgemm => (DType::F32, DType::F32),
                plan::BlasOp::GemmF16F32 => (DType::F16, DType::F32),
            };
            for (field, name, want, out) in [
                ("a", &c.a, ab, false),
                ("b", &c.b, ab, false),
                ("c", &c.c, cd, true),
            ] {
                let ok = args.iter().any(|arg| {
                    arg.name == *name
                        && matches!(&arg.kind, ArgKind::Buffer { dtype, io, .. }
                            if *dtype == want && (*io == Io::Out) == out)
                });
                if !ok {
                    return Err(ctx.err(
                        Some(&span),
                        &format!("external.cublas.{field}"),
                        format!(
                            "`{name}` must name {} {want} buffer",
                            if out { "an output" } else { "an input" }
                        ),
                    ));
                }
            }
            Some(Cublas {
                op,
                a: c.a.clone(),
                b: c.b.clone(),
                c: c.c.clone(),
                m: ctx.expr(&c.m, "external.cublas.m", known)?,
                n: ctx.expr(&c.n, "external.cublas.n", known)?,
                k: ctx.expr(&c.k, "external.cublas.k", known)?,
            })
        }
    };
    Ok(External {
        torch: x.torch.clone(),
        cublas,
    })
}

fn parse_init(a: &RawArg, dtype: DType, io: Io) -> Result<Init, String> {
    // Outputs and scratch are poisoned, never initialised: any default will do. An
    // integer input must say how it is drawn.
    let poisoned = matches!(io, Io::Out | Io::Scratch);
    let default = if dtype.is_float() || !poisoned {
        "normal"
    } else {
        "zeros"
    };
    let name = a.init.as_deref().unwrap_or(default);
    let bound = |v: Option<f64>, d: f64| v.unwrap_or(d);
    let init = match name {
        "normal" => Init::Normal,
        "uniform" => Init::Uniform { low: bound(a.low, -1.0), high: bound(a.high, 1.0) },
        "positive" => Init::Uniform { low: bound(a.low, 0.0), high: bound(a.high, 1.0) },
        "randint" => {
            let (Some(lo), Some(hi)) = (a.low, a.high) else {
                return Err("`randint` needs `low` and `high`".into());
            };
            Init::Randint { low: lo as i64, high: hi as i64 }
        }
        "zeros" => Init::Constant { value: 0.0 },
        "ones" => Init::Constant { value: 1.0 },
        other => return Err(format!("`{other}` is not a distribution; use normal, uniform, positive, randint, zeros or ones")),
    };
    if (a.low.is_some() || a.high.is_some()) && !matches!(name, "uniform" | "positive" | "randint")
    {
        return Err(format!("`low`/`high` do not apply to `{name}`"));
    }
    match init {
        Init::Uniform { low, high } if low >= high || low.is_nan() || high.is_nan() => Err(format!("low ({low}) must be below high ({high})")),
        Init::Randint { low, high } if low >= high => Err(format!("low ({low}) must be below high ({high})")),
        Init::Normal | Init::Uniform { .. } if !dtype.is_float() => {
            Err(format!("`{name}` draws fractions; an integer buffer ({dtype}) needs `randint`, `zeros` or `ones`"))
        }
        i => Ok(i),
    }
}

#[cfg(test)]
mod tests;
