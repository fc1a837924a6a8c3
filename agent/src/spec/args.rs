//! The kernel's arguments (`[[arg]]`): buffers, with how their inputs are drawn and
//! the scores beside an index output, and scalars; and `[external]`, whose cuBLAS
//! call names them.

use std::collections::BTreeSet;
use std::ops::Range;

use toml::Spanned;

use super::ctx::{is_identifier, Ctx};
use super::raw::{RawArg, RawExternal};
use super::{plan, Arg, ArgKind, Cublas, DType, External, Init, Io, SpecError, TopK};

/// Every `[[arg]]` in order, then the checks across them: each index output's scores,
/// and at least one output.
pub(super) fn args(
    ctx: &Ctx,
    raw: &[Spanned<RawArg>],
    known: &BTreeSet<String>,
) -> Result<Vec<Arg>, SpecError> {
    let mut args = Vec::new();
    let mut arg_names = BTreeSet::new();
    for (i, a) in raw.iter().enumerate() {
        args.push(arg(ctx, i, a, &mut arg_names, known)?);
    }
    check_topk_scores(ctx, raw, &args)?;
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
    Ok(args)
}

/// The `i`th `[[arg]]`, its name not among `arg_names` (to which it is added).
fn arg(
    ctx: &Ctx,
    i: usize,
    a: &Spanned<RawArg>,
    arg_names: &mut BTreeSet<String>,
    known: &BTreeSet<String>,
) -> Result<Arg, SpecError> {
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
        buffer(ctx, &span, &key, a, dtype, known)?
    } else {
        scalar(ctx, &span, &key, a, dtype, known)?
    };
    Ok(Arg {
        name: a.name.clone(),
        kind,
    })
}

/// An argument of pointer type: `io`, `len`, `init` and perhaps `topk`.
fn buffer(
    ctx: &Ctx,
    span: &Range<usize>,
    key: &str,
    a: &RawArg,
    dtype: DType,
    known: &BTreeSet<String>,
) -> Result<ArgKind, SpecError> {
    if a.value.is_some() {
        return Err(ctx.err(
            Some(span),
            &format!("{key}.value"),
            "a buffer has `len`, not `value`",
        ));
    }
    let io = a.io.ok_or_else(|| {
        ctx.err(
            Some(span),
            &format!("{key}.io"),
            "a buffer needs `io` = \"in\", \"out\", \"inout\" or \"scratch\"",
        )
    })?;
    let len = a.len.as_ref().ok_or_else(|| {
        ctx.err(
            Some(span),
            &format!("{key}.len"),
            "a buffer needs `len` (an expression)",
        )
    })?;
    let len = ctx.expr(len, &format!("{key}.len"), known)?;
    let init =
        parse_init(a, dtype, io).map_err(|m| ctx.err(Some(span), &format!("{key}.init"), m))?;
    if matches!(io, Io::Out | Io::Scratch) && a.init.is_some() {
        return Err(ctx.err(
            Some(span),
            &format!("{key}.init"),
            "an output or scratch buffer is poisoned before each run, not initialised",
        ));
    }
    let topk = match &a.topk {
        None => None,
        Some(t) => {
            if io != Io::Out || dtype.is_float() {
                return Err(ctx.err(
                    Some(span),
                    &format!("{key}.topk"),
                    "`topk` belongs on an integer output (`io = \"out\"`) holding indices",
                ));
            }
            Some(Box::new(TopK {
                scores: t.scores.clone(),
                k: ctx.expr(&t.k, &format!("{key}.topk.k"), known)?,
                range: ctx.expr(&t.range, &format!("{key}.topk.range"), known)?,
            }))
        }
    };
    Ok(ArgKind::Buffer {
        dtype,
        io,
        len,
        init,
        large_scale: a.large_scale,
        topk,
    })
}

/// An argument of value type: only `value`.
fn scalar(
    ctx: &Ctx,
    span: &Range<usize>,
    key: &str,
    a: &RawArg,
    dtype: DType,
    known: &BTreeSet<String>,
) -> Result<ArgKind, SpecError> {
    for (present, field) in [
        (a.io.is_some(), "io"),
        (a.len.is_some(), "len"),
        (a.init.is_some(), "init"),
        (a.topk.is_some(), "topk"),
    ] {
        if present {
            return Err(ctx.err(
                Some(span),
                &format!("{key}.{field}"),
                "a scalar has only `value`",
            ));
        }
    }
    let value = a.value.as_ref().ok_or_else(|| {
        ctx.err(
            Some(span),
            &format!("{key}.value"),
            "a scalar needs `value` (an expression)",
        )
    })?;
    Ok(ArgKind::Scalar {
        dtype,
        value: ctx.expr(value, &format!("{key}.value"), known)?,
    })
}

/// Each index output's `topk.scores` names a float output of the same `len`.
fn check_topk_scores(ctx: &Ctx, raw: &[Spanned<RawArg>], args: &[Arg]) -> Result<(), SpecError> {
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
                Some(&raw[i].span()),
                &format!("arg[{i}] ({}).topk.scores", a.name),
                format!(
                    "`{}` must name a float output with the same `len` as `{}`",
                    t.scores, a.name
                ),
            ));
        }
    }
    Ok(())
}

pub(super) fn parse_external(
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
