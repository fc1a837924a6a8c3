//! Validation: a raw spec checked section by section into a [`KernelSpec`], in a fixed
//! order (the first error found is the one reported), then evaluated for the baseline.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::args::{args, parse_external};
use super::ctx::{is_identifier, Ctx};
use super::raw::{RawCost, RawDeterministic, RawReference, RawSpec, RawTune, RawValidate};
use super::{
    plan, ComputeKind, Cost, DType, Expr, External, KernelSpec, Launch, Reference, SpecError,
    Tolerance, Tunable, Validation, Vars,
};

pub(super) fn validate(
    raw: RawSpec,
    ctx: &Ctx,
    read: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<KernelSpec, SpecError> {
    let (problem, workload_axes) = problem(ctx, raw.problem, &raw.workload_axes)?;

    // Tunables, then the names expressions may read.
    let tune = raw.tune.unwrap_or_default();
    let tunables = tunables(ctx, &tune, &problem)?;
    let mut known: BTreeSet<String> = problem.keys().cloned().collect();
    known.extend(tunables.iter().map(|t| t.name.clone()));
    let restrictions = restrictions(ctx, &tune, &known)?;

    let vraw = raw.validate.map(Spanned::into_inner).unwrap_or_default();
    let mut validation = validation(ctx, &vraw, &problem)?;

    let launch = ctx.launch(&raw.launch, "launch", &known)?;
    let args = args(ctx, &raw.args, &known)?;
    let reference = reference(ctx, &raw.reference, &launch, &known, read)?;
    let cspan = raw.cost.span();
    let cost = cost(ctx, raw.cost.get_ref(), &known)?;

    check_name(ctx, &raw.name)?;
    if !is_identifier(&raw.entry) {
        return Err(ctx.err(None, "entry", "must be the kernel's `extern \"C\"` name"));
    }
    let (source_path, source) = ctx.read_source(&raw.source, "source", read)?;
    let include_dirs = include_dirs(ctx, &raw.include_dirs)?;
    // Checked here, after the sources, where it always was: which error a spec with
    // several reports is part of the behaviour.
    (validation.deterministic, validation.bitwise) = deterministic(ctx, &vraw)?;
    let external = match &raw.external {
        None => External::default(),
        Some(x) => parse_external(ctx, x, &args, &known)?,
    };
    let spec = KernelSpec {
        name: raw.name,
        description: raw.description,
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
        validation,
        cost,
        compile_options: raw.compile_options,
        include_dirs,
        external,
        rewritten: None,
        edits: Vec::new(),
        proposals: Default::default(),
    };
    check_baseline(ctx, &spec, &cspan)?;
    Ok(spec)
}

/// `[problem]` (the default problem sizes) and the `workload_axes` among them.
fn problem(
    ctx: &Ctx,
    raw: Spanned<BTreeMap<String, i64>>,
    axes: &[Spanned<String>],
) -> Result<(Vars, Vec<String>), SpecError> {
    let problem_span = raw.span();
    let problem: Vars = raw.into_inner();
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
    for a in axes {
        if !problem.contains_key(a.get_ref()) {
            return Err(ctx.err(
                Some(&a.span()),
                "workload_axes",
                format!("`{}` is not a problem size", a.get_ref()),
            ));
        }
        workload_axes.push(a.get_ref().clone());
    }
    Ok((problem, workload_axes))
}

/// `[tune]`'s tunables, in the order written.
fn tunables(ctx: &Ctx, tune: &RawTune, problem: &Vars) -> Result<Vec<Tunable>, SpecError> {
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
            description: t.description.clone(),
        });
    }
    Ok(tunables)
}

/// `tune.restrictions`: expressions over problem sizes and tunables.
fn restrictions(
    ctx: &Ctx,
    tune: &RawTune,
    known: &BTreeSet<String>,
) -> Result<Vec<Expr>, SpecError> {
    tune.restrictions
        .iter()
        .enumerate()
        .map(|(i, r)| ctx.expr(r, &format!("tune.restrictions[{i}]"), known))
        .collect()
}

/// `[validate]`, all but `deterministic` (read later by [`deterministic`], which
/// fills in `deterministic` and `bitwise`).
fn validation(ctx: &Ctx, vraw: &RawValidate, problem: &Vars) -> Result<Validation, SpecError> {
    let sizes = sizes(ctx, vraw, problem)?;
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
    let (tolerances, large_atol) = tolerances(ctx, vraw)?;
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
    Ok(Validation {
        sizes,
        trials,
        large_scale,
        large_atol,
        deterministic: true,
        bitwise: false,
        tolerances,
    })
}

/// `validate.sizes`: each a full problem, the default's sizes where it names none.
fn sizes(ctx: &Ctx, vraw: &RawValidate, problem: &Vars) -> Result<Vec<Vars>, SpecError> {
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
    Ok(sizes)
}

/// The tolerance of every float dtype (`rtol`/`atol` over the defaults, then the
/// `[validate.tolerance.<dtype>]` tables), and `large_atol`.
fn tolerances(
    ctx: &Ctx,
    vraw: &RawValidate,
) -> Result<(BTreeMap<DType, Tolerance>, Option<f64>), SpecError> {
    let rtol = non_negative(ctx, &vraw.rtol, "validate.rtol")?;
    let atol = non_negative(ctx, &vraw.atol, "validate.atol")?;
    let large_atol = non_negative(ctx, &vraw.large_atol, "validate.large_atol")?;
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
    Ok((tolerances, large_atol))
}

/// A number checked where it is written, under the key the user wrote.
fn non_negative(ctx: &Ctx, v: &Option<Spanned<f64>>, key: &str) -> Result<Option<f64>, SpecError> {
    match v {
        Some(x) if !(x.get_ref().is_finite() && *x.get_ref() >= 0.0) => Err(ctx.err(
            Some(&x.span()),
            key,
            format!("must be finite and non-negative, not {}", x.get_ref()),
        )),
        Some(x) => Ok(Some(*x.get_ref())),
        None => Ok(None),
    }
}

/// `validate.deterministic = true | false | "bitwise"`, as (deterministic, bitwise).
fn deterministic(ctx: &Ctx, vraw: &RawValidate) -> Result<(bool, bool), SpecError> {
    Ok(match &vraw.deterministic {
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
    })
}

/// `[reference]`: a kernel of its own (with the kernel's launch unless it names one),
/// or the baseline configuration.
fn reference(
    ctx: &Ctx,
    raw: &Spanned<RawReference>,
    launch: &Launch,
    known: &BTreeSet<String>,
    read: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<Reference, SpecError> {
    let rspan = raw.span();
    let r = raw.get_ref();
    Ok(match (r.baseline, &r.source, &r.entry) {
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
                Some(l) => ctx.launch(l, "reference.launch", known)?,
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
    })
}

/// `[cost]`: the bytes and FLOPs of one run, and the ceiling they are compared with.
fn cost(ctx: &Ctx, c: &RawCost, known: &BTreeSet<String>) -> Result<Cost, SpecError> {
    Ok(Cost {
        bytes: ctx.expr(&c.bytes, "cost.bytes", known)?,
        flops: ctx.expr(&c.flops, "cost.flops", known)?,
        compute: c.compute.unwrap_or(ComputeKind::Fp32),
    })
}

/// The name names directories, branches and journal keys: one plain component.
fn check_name(ctx: &Ctx, name: &str) -> Result<(), SpecError> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name == "." || name == ".." || !name.chars().all(plain) {
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
                "`{name}` is not a kernel name: use letters, digits, `.`, `_` and `-` (not `.` or `..` alone)"
            ),
        });
    }
    Ok(())
}

/// `include_dirs`, relative to the spec's directory; each must be one.
fn include_dirs(ctx: &Ctx, dirs: &[String]) -> Result<Vec<PathBuf>, SpecError> {
    let spec_dir = ctx.toml.path.parent().unwrap_or(Path::new("."));
    let mut include_dirs = Vec::new();
    for d in dirs {
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
    Ok(include_dirs)
}

/// Every expression must evaluate for the baseline, each checked on its own so that
/// an error names its line and key; and the baseline must satisfy the restrictions
/// (then the space is not empty: no need to walk it) and have a plan.
fn check_baseline(ctx: &Ctx, spec: &KernelSpec, cspan: &Range<usize>) -> Result<(), SpecError> {
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
    plan::plan(spec, &base, &spec.problem).map_err(|m| ctx.err(Some(cspan), "baseline", m))?;
    Ok(())
}
