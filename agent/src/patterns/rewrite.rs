//! `kind = "rewrite"` patterns: a built-in rewrite of [`crate::rewrite`] proposed once
//! per step. A step is the rewrite's parameters, `key=value` pairs separated by
//! commas; a value is literal (`cg`, `2`) or holds `{expr}` parts, each evaluated to
//! an integer over the profile signals and the configuration's tunables when the
//! pattern is used (`count={max(32, registers * 3 / 4)}`).
//!
//! At load the spec's tunables are unknown: an expression may read the profile
//! signals and names that look like tunables (ALL-CAPS identifiers).

use std::collections::BTreeSet;

use crate::profile::SIGNALS;
use crate::rewrite::{check_param, params, NAMES};
use crate::spec::expr::{Expr, Number, Signals};
use crate::spec::toml_text::TomlText;
use crate::spec::{Config, SpecError};

use super::{unexpected, Body, Pattern, RawPattern};

/// A `rewrite` pattern: `rewrite` (a built-in) and its `steps` (one step with the
/// rewrite's defaults when absent).
pub(super) fn parse_rewrite(toml: &TomlText, raw: &RawPattern) -> Result<Body, SpecError> {
    for (present, key) in [
        (!raw.moves.is_empty(), "move"),
        (raw.rule.is_some(), "rule"),
        (raw.order.is_some(), "order"),
        (raw.factor.is_some(), "factor"),
        (raw.study.is_some(), "study"),
        (raw.scale.is_some(), "scale"),
        (raw.together.is_some(), "together"),
    ] {
        unexpected(toml, raw, present, key)?;
    }
    if let Some(edit) = &raw.edit {
        return parse_edit(toml, raw, edit);
    }
    let rewrite = raw.rewrite.as_ref().ok_or_else(|| {
        toml.err(
            Some(raw.kind.span()),
            "rewrite",
            format!(
                "a `rewrite` pattern names its rewrite, one of: {}",
                NAMES.join(", ")
            ),
        )
    })?;
    let name = rewrite.get_ref().as_str();
    if !NAMES.contains(&name) {
        return Err(toml.err(
            Some(rewrite.span()),
            "rewrite",
            format!(
                "unknown rewrite `{name}`; the rewrites are: {}",
                NAMES.join(", ")
            ),
        ));
    }
    let steps = match &raw.steps {
        None => vec![String::new()],
        Some(s) if s.get_ref().is_empty() => {
            return Err(toml.err(
                Some(s.span()),
                "steps",
                "`steps` lists at least one step; leave it out for one step with the rewrite's defaults",
            ))
        }
        Some(s) => {
            for step in s.get_ref() {
                let keys: Vec<String> = params(name).iter().map(|k| k.to_string()).collect();
                check_step(name, &keys, step.get_ref(), &|k, v| check_param(name, k, v))
                    .map_err(|m| toml.err(Some(step.span()), "steps", m))?;
            }
            s.get_ref().iter().map(|s| s.get_ref().trim().to_string()).collect()
        }
    };
    Ok(Body::Rewrite {
        rewrite: name.to_string(),
        steps,
        edit: None,
    })
}

/// A rewrite pattern that declares its own rewrite (`[edit]`: a tree-sitter query,
/// the capture edited, where the template goes, the template), named after the
/// pattern; its steps give the template's `{key}` parameters.
fn parse_edit(
    toml: &TomlText,
    raw: &RawPattern,
    e: &toml::Spanned<super::RawEdit>,
) -> Result<Body, SpecError> {
    unexpected(toml, raw, raw.rewrite.is_some(), "rewrite")?;
    let name = raw.name.clone();
    if name == crate::rewrite::PROPOSAL.trim_end_matches(':') {
        return Err(toml.err(
            Some(e.span()),
            "name",
            "`proposal` names a proposer's source in a candidate: a pattern with its own [edit] needs another name",
        ));
    }
    if NAMES.contains(&name.as_str()) {
        return Err(toml.err(
            Some(e.span()),
            "name",
            format!(
                "`{name}` is a built-in rewrite: a pattern with its own [edit] needs another name"
            ),
        ));
    }
    let r = e.get_ref();
    let edit = crate::rewrite::edit::QueryEdit {
        name: name.clone(),
        query: r.query.clone(),
        capture: r.capture.clone(),
        place: r.place,
        template: r.template.clone(),
    };
    edit.check()
        .map_err(|m| toml.err(Some(e.span()), "edit.query", m))?;
    let keys = edit.params();
    let steps: Vec<String> = match &raw.steps {
        None => vec![String::new()],
        Some(s) => {
            for step in s.get_ref() {
                check_step(&name, &keys, step.get_ref(), &|_, v| {
                    crate::rewrite::edit::check_value(v)
                })
                .map_err(|m| toml.err(Some(step.span()), "steps", m))?;
            }
            s.get_ref()
                .iter()
                .map(|s| s.get_ref().trim().to_string())
                .collect()
        }
    };
    // Every step gives every parameter the template reads.
    for step in &steps {
        let given: Vec<&str> = pairs(step)
            .unwrap_or_default()
            .iter()
            .map(|p| p.0)
            .collect();
        if let Some(k) = keys.iter().find(|k| !given.contains(&k.as_str())) {
            return Err(toml.err(
                raw.steps.as_ref().map(|s| s.span()).or(Some(e.span())),
                "steps",
                format!("step `{step}` does not give `{k}`, which the template reads as {{{k}}}"),
            ));
        }
    }
    Ok(Body::Rewrite {
        rewrite: name,
        steps,
        edit: Some(edit),
    })
}

/// Why `step` is not a step of the rewrite `name`: a pair that is not `key=value`, a
/// key the rewrite does not take (or given twice), a literal value it does not take,
/// or an `{expr}` that does not parse, reads an unknown name or is not a number.
fn check_step(
    name: &str,
    keys: &[String],
    step: &str,
    literal: &dyn Fn(&str, &str) -> Result<(), String>,
) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for (key, value) in pairs(step).map_err(|m| format!("step `{step}`: {m}"))? {
        if !keys.iter().any(|k| k == key) {
            return Err(format!(
                "step `{step}`: `{key}` is not a parameter of {name} (it takes: {})",
                keys.join(", ")
            ));
        }
        if !seen.insert(key) {
            return Err(format!("step `{step}`: `{key}` is given twice"));
        }
        let exprs: Vec<&str> = parts(value)
            .into_iter()
            .filter_map(|p| match p {
                Part::Expr(e) => Some(e),
                Part::Text(_) => None,
            })
            .collect();
        if exprs.is_empty() {
            literal(key, value).map_err(|m| format!("step `{step}`: {m}"))?;
        }
        for src in exprs {
            check_expr(src).map_err(|m| format!("step `{step}`: `{{{src}}}` {m}"))?;
        }
    }
    Ok(())
}

/// Whether `src` parses, reads only profile signals and tunable-like names, and
/// evaluates to a number when they are all set (tried at two values, so that one
/// division by zero is not taken for a malformed expression).
fn check_expr(src: &str) -> Result<(), String> {
    let e = Expr::parse(src).map_err(|m| format!("is not an expression: {m}"))?;
    let signals: BTreeSet<&str> = SIGNALS.iter().map(|(n, _)| *n).collect();
    let vars = e.variables();
    if let Some(v) = vars
        .iter()
        .find(|v| !signals.contains(v.as_str()) && !looks_like_tunable(v))
    {
        return Err(format!(
            "reads `{v}`, neither a profile signal nor a tunable (tunables are ALL-CAPS); the signals are: {}",
            signals.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    let mut last = String::new();
    for probe in [64.0, 3.0] {
        let all: Signals = vars.iter().map(|v| (v.clone(), probe)).collect();
        match e.eval_number_signals(&all) {
            Ok(_) => return Ok(()),
            Err(m) => last = m,
        }
    }
    Err(format!("is not a number: {last}"))
}

/// An ALL-CAPS identifier (`BLOCK`, `TILE_M`, `V2`): what tunables are named.
fn looks_like_tunable(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// A step's `key=value` pairs (trimmed), split at the commas outside `{...}`; none
/// for an empty step. Braces do not nest.
fn pairs(step: &str) -> Result<Vec<(&str, &str)>, String> {
    let step = step.trim();
    if step.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let (mut open, mut start) = (false, 0);
    for (i, c) in step.char_indices() {
        match c {
            '{' if open => return Err("`{` inside `{...}`: braces do not nest".into()),
            '{' => open = true,
            '}' if !open => return Err("`}` without its `{`".into()),
            '}' => open = false,
            ',' if !open => {
                out.push(pair(&step[start..i])?);
                start = i + 1;
            }
            _ => {}
        }
    }
    if open {
        return Err("`{` without its `}`".into());
    }
    out.push(pair(&step[start..])?);
    Ok(out)
}

fn pair(p: &str) -> Result<(&str, &str), String> {
    match p.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => Ok((k.trim(), v.trim())),
        _ => Err(format!("`{}` is not key=value", p.trim())),
    }
}

/// A value's literal text and `{expr}` parts, in order.
#[derive(Debug, PartialEq)]
enum Part<'a> {
    Text(&'a str),
    Expr(&'a str),
}

fn parts(value: &str) -> Vec<Part<'_>> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(open) = rest.find('{') {
        let Some(len) = rest[open..].find('}') else {
            break;
        };
        if open > 0 {
            out.push(Part::Text(&rest[..open]));
        }
        out.push(Part::Expr(&rest[open + 1..open + len]));
        rest = &rest[open + len + 1..];
    }
    if !rest.is_empty() {
        out.push(Part::Text(rest));
    }
    out
}

impl Pattern {
    /// A rewrite pattern's candidates for a kernel whose profile gave `signals`, at
    /// configuration `config`: each step as a rewrite text (`name` or
    /// `name:key=value,...`), every `{expr}` evaluated to an integer over the signals
    /// and the config's tunables by name. A step is left out when an expression cannot
    /// be evaluated (a signal the profile lacks, a division by zero, a fraction) or
    /// gives a value the rewrite does not take (`count=8`). Empty for other kinds.
    /// Order kept, duplicates dropped.
    pub fn rewrite_texts(&self, signals: &Signals, config: &Config) -> Vec<String> {
        let Body::Rewrite {
            rewrite,
            steps,
            edit,
        } = &self.body
        else {
            return Vec::new();
        };
        let mut vars = signals.clone();
        for (k, v) in &config.0 {
            vars.insert(k.clone(), *v as f64);
        }
        let mut out: Vec<String> = Vec::new();
        for step in steps {
            if let Some(text) = resolve(rewrite, step, &vars, edit.is_none()) {
                if !out.contains(&text) {
                    out.push(text);
                }
            }
        }
        out
    }
}

/// `step` of the rewrite `name` as a rewrite text, its expressions evaluated over
/// `vars`; None when one cannot be, or a value is not one the rewrite takes.
fn resolve(name: &str, step: &str, vars: &Signals, builtin: bool) -> Option<String> {
    let pairs = pairs(step).ok()?;
    if pairs.is_empty() {
        return Some(name.to_string());
    }
    let mut kv = Vec::with_capacity(pairs.len());
    for (key, value) in pairs {
        let mut v = String::new();
        for part in parts(value) {
            match part {
                Part::Text(t) => v.push_str(t),
                Part::Expr(src) => v.push_str(&integer(src, vars)?.to_string()),
            }
        }
        if builtin {
            check_param(name, key, &v).ok()?;
        }
        kv.push(format!("{key}={v}"));
    }
    Some(format!("{name}:{}", kv.join(",")))
}

/// `src` evaluated over `vars` to an integer (a whole float counts; a fraction does
/// not: `floor` or integer division say which way to round).
fn integer(src: &str, vars: &Signals) -> Option<i64> {
    match Expr::parse(src).ok()?.eval_number_signals(vars).ok()? {
        Number::Int(i) => Some(i),
        Number::Float(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i64),
        Number::Float(_) => None,
    }
}
