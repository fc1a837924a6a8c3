//! The pattern library: `patterns/*.toml`, one pattern a file, loaded at start and
//! validated like kernel specs (errors name the file, the line and the key). Users add
//! patterns without touching Rust.
//!
//! Five kinds of pattern:
//! - `moves`: when its condition holds over the profile signals, step tunables of the
//!   named roles in the named direction (a neighbourhood search along roles);
//! - `rule`: how the loop chooses and drops lines of attack (`tier-order`: cheapest
//!   tier first; `roi-pivot`: drop a pattern that spent `factor` x its budget without a
//!   FAST verdict);
//! - `study`: a measurement rather than a change (`workload-batching`: throughput per
//!   unit of work at larger workload axes);
//! - `rewrite`: propose a built-in source or compiler-option rewrite of
//!   [`crate::rewrite`] once per step, each step's parameters (`key=value,...`) with
//!   `{expr}` values over the profile signals and the configuration's tunables
//!   ([`Pattern::rewrite_texts`]);
//! - `proposal`: ask the code-writing proposer configured in `nightshift.toml` for a
//!   new source, with the pattern's instruction (`[proposal] instruction`, up to
//!   `attempts` proposals around one best). Without a proposer it is skipped.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::spec::toml_text::TomlText;

use crate::profile::SIGNALS;
use crate::spec::expr::{Expr, Signals};
use crate::spec::{Role, SpecError};

mod rewrite;

/// What a change costs to try, cheapest first: launch parameters, compile-time
/// constants, variant switches, source rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Launch,
    Constant,
    Variant,
    Source,
}

impl Tier {
    pub const ALL: [Tier; 4] = [Tier::Launch, Tier::Constant, Tier::Variant, Tier::Source];

    pub fn name(self) -> &'static str {
        match self {
            Tier::Launch => "launch",
            Tier::Constant => "constant",
            Tier::Variant => "variant",
            Tier::Source => "source",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which way a move steps a tunable through its list of values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Up,
    Down,
    Any,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Move {
    pub role: Role,
    pub direction: Direction,
}

/// What the pattern expects to buy, written down before it runs so the report can
/// say where predictions were wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Expected speedup of the best candidate over the current best (>= 1).
    pub speedup: f64,
    /// The signal expected to move, in words (e.g. "waves rises above 1").
    pub note: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Body {
    Moves(Vec<Move>),
    /// The order tiers are tried in.
    TierOrder(Vec<Tier>),
    /// Drop a line of attack after `factor` x its budget without a FAST verdict.
    RoiPivot {
        factor: f64,
    },
    /// Measure throughput per unit of work with the workload axes multiplied by each
    /// of `scale`.
    WorkloadBatching {
        scale: Vec<i64>,
    },
    /// Propose the built-in rewrite `rewrite` once per step (parameters `key=value,...`,
    /// values may hold `{expr}` over profile signals and the configuration's tunables).
    Rewrite {
        rewrite: String,
        steps: Vec<String>,
        /// The pattern's own rewrite (named `rewrite`, the pattern's name), when it
        /// declares one instead of naming a built-in.
        edit: Option<crate::rewrite::edit::QueryEdit>,
    },
    /// Ask the configured code-writing proposer (`nightshift.toml`) for a new source,
    /// with `instruction`; up to `attempts` proposals around one best.
    Proposal {
        instruction: String,
        attempts: usize,
    },
}

#[derive(Debug, Clone)]
pub struct Pattern {
    pub name: String,
    pub path: PathBuf,
    pub tier: Tier,
    /// Over the profile signals; None: always applies.
    pub when: Option<Expr>,
    /// Its line of attack's time budget; None: budgets.toml's `limits.pattern_minutes`.
    pub budget_minutes: Option<f64>,
    pub rationale: String,
    pub predict: Option<Prediction>,
    /// Within a tier, higher first (parallelism-first outranks the rest of `launch`).
    pub priority: i64,
    /// A `moves` pattern whose moves step together: each candidate steps one tunable
    /// of every move at once (a larger tile with more warps to cover it).
    pub together: bool,
    pub body: Body,
}

impl Pattern {
    /// Whether the pattern's condition holds for these signals. A condition that
    /// reads a signal the profile lacks (say, NVML was missing) does not hold.
    pub fn applies(&self, signals: &Signals) -> bool {
        match &self.when {
            None => true,
            Some(e) => {
                e.variables().iter().all(|v| signals.contains_key(v))
                    && e.eval_bool_signals(signals).unwrap_or(false)
            }
        }
    }
}

/// The loaded library.
#[derive(Debug, Clone)]
pub struct Library {
    pub patterns: Vec<Pattern>,
}

/// The defaults when the library has no rule of that kind (stated in the docs).
pub const DEFAULT_TIER_ORDER: [Tier; 4] = Tier::ALL;
pub const DEFAULT_PIVOT_FACTOR: f64 = 2.0;

impl Library {
    /// Loads every `*.toml` in `dir`, in file-name order.
    pub fn load(dir: &Path) -> Result<Library, SpecError> {
        let read_err = |path: &Path, e: std::io::Error| SpecError {
            path: path.to_path_buf(),
            line: None,
            key: None,
            message: format!("cannot read the pattern library: {e}"),
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| read_err(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        let mut texts = Vec::new();
        for f in files {
            let t = crate::files::read_text(&f, crate::files::MAX_INPUT_BYTES)
                .map_err(|e| read_err(&f, e))?;
            texts.push((f, t));
        }
        Library::parse(&texts)
    }

    /// Parses pattern files given as (path, text).
    pub fn parse(files: &[(PathBuf, String)]) -> Result<Library, SpecError> {
        let mut patterns: Vec<Pattern> = Vec::new();
        for (path, text) in files {
            let p = parse_pattern(path, text)?;
            if let Some(other) = patterns.iter().find(|q| q.name == p.name) {
                return Err(SpecError {
                    path: path.clone(),
                    line: None,
                    key: Some("name".into()),
                    message: format!(
                        "pattern `{}` is already defined in {}",
                        p.name,
                        other.path.display()
                    ),
                });
            }
            let rule_kind = |b: &Body| match b {
                Body::TierOrder(_) => Some("tier-order"),
                Body::RoiPivot { .. } => Some("roi-pivot"),
                _ => None,
            };
            if let Some(k) = rule_kind(&p.body) {
                if let Some(other) = patterns.iter().find(|q| rule_kind(&q.body) == Some(k)) {
                    return Err(SpecError {
                        path: path.clone(),
                        line: None,
                        key: Some("rule".into()),
                        message: format!(
                            "a `{k}` rule is already defined by `{}` ({})",
                            other.name,
                            other.path.display()
                        ),
                    });
                }
            }
            patterns.push(p);
        }
        Ok(Library { patterns })
    }

    /// The order tiers are tried in (the `tier-order` rule, or cheapest first).
    pub fn tier_order(&self) -> Vec<Tier> {
        self.patterns
            .iter()
            .find_map(|p| match &p.body {
                Body::TierOrder(o) => Some(o.clone()),
                _ => None,
            })
            .unwrap_or_else(|| DEFAULT_TIER_ORDER.to_vec())
    }

    /// The rewrites its patterns declare themselves (a query and a template), which a
    /// spec is given so that rewrite texts can name them.
    pub fn edits(&self) -> Vec<crate::rewrite::edit::QueryEdit> {
        self.patterns
            .iter()
            .filter_map(|p| match &p.body {
                Body::Rewrite { edit, .. } => edit.clone(),
                _ => None,
            })
            .collect()
    }

    /// How many times its budget a line of attack may spend without a FAST verdict.
    pub fn pivot_factor(&self) -> f64 {
        self.patterns
            .iter()
            .find_map(|p| match p.body {
                Body::RoiPivot { factor } => Some(factor),
                _ => None,
            })
            .unwrap_or(DEFAULT_PIVOT_FACTOR)
    }

    /// The move and study patterns whose condition holds, in tier order (by priority,
    /// then file order, within a tier).
    pub fn applicable(&self, signals: &Signals) -> Vec<&Pattern> {
        let order = self.tier_order();
        let rank = |t: Tier| order.iter().position(|x| *x == t).unwrap_or(order.len());
        let mut v: Vec<&Pattern> = self
            .patterns
            .iter()
            .filter(|p| !matches!(p.body, Body::TierOrder(_) | Body::RoiPivot { .. }))
            .filter(|p| p.applies(signals))
            .collect();
        v.sort_by_key(|p| (rank(p.tier), -p.priority));
        v
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPattern {
    name: String,
    kind: Spanned<String>,
    tier: Option<Tier>,
    when: Option<Spanned<String>>,
    budget_minutes: Option<Spanned<f64>>,
    rationale: String,
    #[serde(default)]
    priority: i64,
    predict: Option<Spanned<RawPredict>>,
    #[serde(default, rename = "move")]
    moves: Vec<Spanned<Move>>,
    rule: Option<Spanned<String>>,
    order: Option<Vec<Tier>>,
    factor: Option<Spanned<f64>>,
    study: Option<Spanned<String>>,
    scale: Option<Spanned<Vec<i64>>>,
    together: Option<Spanned<bool>>,
    rewrite: Option<Spanned<String>>,
    steps: Option<Spanned<Vec<Spanned<String>>>>,
    edit: Option<Spanned<RawEdit>>,
    proposal: Option<Spanned<RawProposal>>,
}

/// A proposal pattern's question to the proposer.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProposal {
    instruction: String,
    attempts: Option<i64>,
}

/// A rewrite pattern's own rewrite: a tree-sitter query and a template.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEdit {
    query: String,
    capture: Option<String>,
    place: crate::rewrite::edit::Place,
    template: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPredict {
    speedup: f64,
    note: Option<String>,
}

fn parse_pattern(path: &Path, text: &str) -> Result<Pattern, SpecError> {
    let toml = TomlText::new(text, path);
    let raw: RawPattern = toml.parse()?;
    let when = match &raw.when {
        None => None,
        Some(w) => Some(parse_when(&toml, w)?),
    };
    let budget_minutes = match &raw.budget_minutes {
        None => None,
        Some(b) if b.get_ref().is_finite() && *b.get_ref() > 0.0 => Some(*b.get_ref()),
        Some(b) => {
            return Err(toml.err(
                Some(b.span()),
                "budget_minutes",
                "must be a positive number of minutes",
            ))
        }
    };
    let predict = match &raw.predict {
        None => None,
        Some(p) if p.get_ref().speedup.is_finite() && p.get_ref().speedup >= 1.0 => {
            Some(Prediction {
                speedup: p.get_ref().speedup,
                note: p.get_ref().note.clone(),
            })
        }
        Some(p) => {
            return Err(toml.err(
                Some(p.span()),
                "predict.speedup",
                "must be a finite speedup of at least 1",
            ))
        }
    };
    let body = parse_body(&toml, &raw)?;
    let tier = match (&body, raw.tier) {
        (Body::TierOrder(_) | Body::RoiPivot { .. }, _) => Tier::Launch,
        (_, Some(t)) => t,
        (_, None) => {
            return Err(toml.err(
                None,
                "tier",
                "a pattern that changes or measures something needs `tier` (launch, constant, variant, source)",
            ))
        }
    };
    Ok(Pattern {
        name: raw.name,
        path: path.to_path_buf(),
        tier,
        when,
        budget_minutes,
        rationale: raw.rationale.trim().to_string(),
        predict,
        priority: raw.priority,
        together: raw.together.map(|t| *t.get_ref()).unwrap_or(false),
        body,
    })
}

/// `when`: a condition over the profile signals, and nothing else.
fn parse_when(toml: &TomlText, w: &Spanned<String>) -> Result<Expr, SpecError> {
    let e = Expr::parse(w.get_ref())
        .map_err(|m| toml.err(Some(w.span()), "when", format!("not an expression: {m}")))?;
    let known: BTreeSet<&str> = SIGNALS.iter().map(|(n, _)| *n).collect();
    if let Some(v) = e
        .variables()
        .into_iter()
        .find(|v| !known.contains(v.as_str()))
    {
        return Err(toml.err(
            Some(w.span()),
            "when",
            format!(
                "`{v}` is not a profile signal; the signals are: {}",
                known.into_iter().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    // A dry run with every signal at 1 and at 0.5: an incomplete expression
    // (`a ==`) parses but fails here, as does one that is not a condition.
    for probe in [1.0, 0.5] {
        let all: Signals = SIGNALS
            .iter()
            .map(|(n, _)| (n.to_string(), probe))
            .collect();
        e.eval_bool_signals(&all)
            .map_err(|m| toml.err(Some(w.span()), "when", format!("not a condition: {m}")))?;
    }
    Ok(e)
}

/// An error when `key` is `present` in a pattern whose kind has no use for it.
fn unexpected(
    toml: &TomlText,
    raw: &RawPattern,
    present: bool,
    key: &str,
) -> Result<(), SpecError> {
    if present {
        Err(toml.err(
            Some(raw.kind.span()),
            key,
            format!(
                "`{key}` does not belong in a pattern of kind `{}`",
                raw.kind.get_ref()
            ),
        ))
    } else {
        Ok(())
    }
}

/// What the pattern does, by its `kind`.
fn parse_body(toml: &TomlText, raw: &RawPattern) -> Result<Body, SpecError> {
    if raw.kind.get_ref() != "rewrite" {
        unexpected(toml, raw, raw.rewrite.is_some(), "rewrite")?;
        unexpected(toml, raw, raw.steps.is_some(), "steps")?;
        unexpected(toml, raw, raw.edit.is_some(), "edit")?;
    }
    if raw.kind.get_ref() != "proposal" {
        unexpected(toml, raw, raw.proposal.is_some(), "proposal")?;
    }
    Ok(match raw.kind.get_ref().as_str() {
        "moves" => {
            unexpected(toml, raw, raw.rule.is_some(), "rule")?;
            unexpected(toml, raw, raw.study.is_some(), "study")?;
            if raw.moves.is_empty() {
                return Err(toml.err(
                    Some(raw.kind.span()),
                    "move",
                    "a `moves` pattern needs at least one [[move]] (role and direction)",
                ));
            }
            Body::Moves(raw.moves.iter().map(|m| m.get_ref().clone()).collect())
        }
        "rule" => {
            unexpected(toml, raw, !raw.moves.is_empty(), "move")?;
            unexpected(toml, raw, raw.together.is_some(), "together")?;
            parse_rule(toml, raw)?
        }
        "study" => {
            unexpected(toml, raw, !raw.moves.is_empty(), "move")?;
            unexpected(toml, raw, raw.together.is_some(), "together")?;
            parse_study(toml, raw)?
        }
        "rewrite" => rewrite::parse_rewrite(toml, raw)?,
        "proposal" => parse_proposal(toml, raw)?,
        other => {
            return Err(toml.err(
                Some(raw.kind.span()),
                "kind",
                format!(
                    "unknown kind `{other}`; a pattern is `moves`, `rule`, `study`, `rewrite` or `proposal`"
                ),
            ))
        }
    })
}

/// The most proposals a pattern may ask for around one best.
pub const MAX_ATTEMPTS: usize = 10;

/// A `proposal` pattern: `[proposal]` with its `instruction` and `attempts`; its tier
/// is `source` (it changes the code).
fn parse_proposal(toml: &TomlText, raw: &RawPattern) -> Result<Body, SpecError> {
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
    if raw.tier.is_some_and(|t| t != Tier::Source) {
        return Err(toml.err(
            Some(raw.kind.span()),
            "tier",
            "a `proposal` pattern changes the source: its tier is `source`",
        ));
    }
    let p = raw.proposal.as_ref().ok_or_else(|| {
        toml.err(
            Some(raw.kind.span()),
            "proposal",
            "a `proposal` pattern needs a [proposal] table with the `instruction` given to the proposer",
        )
    })?;
    let instruction = p.get_ref().instruction.trim().to_string();
    if instruction.is_empty() {
        return Err(toml.err(
            Some(p.span()),
            "proposal.instruction",
            "the instruction is empty: say what the proposer is to try",
        ));
    }
    let attempts = match p.get_ref().attempts {
        None => 2,
        Some(a) if (1..=MAX_ATTEMPTS as i64).contains(&a) => a as usize,
        Some(a) => {
            return Err(toml.err(
                Some(p.span()),
                "proposal.attempts",
                format!("{a}: proposals around one best, 1 to {MAX_ATTEMPTS}"),
            ))
        }
    };
    Ok(Body::Proposal {
        instruction,
        attempts,
    })
}

/// A `rule` pattern: `tier-order` with its `order`, or `roi-pivot` with its `factor`.
fn parse_rule(toml: &TomlText, raw: &RawPattern) -> Result<Body, SpecError> {
    let rule = raw.rule.as_ref().ok_or_else(|| {
        toml.err(
            Some(raw.kind.span()),
            "rule",
            "a `rule` pattern names its rule: \"tier-order\" or \"roi-pivot\"",
        )
    })?;
    Ok(match rule.get_ref().as_str() {
        "tier-order" => {
            let order = raw.order.clone().unwrap_or_default();
            let set: BTreeSet<Tier> = order.iter().copied().collect();
            if order.len() != Tier::ALL.len() || set.len() != Tier::ALL.len() {
                return Err(toml.err(
                    Some(rule.span()),
                    "order",
                    "`order` must list each tier once: launch, constant, variant, source",
                ));
            }
            Body::TierOrder(order)
        }
        "roi-pivot" => match &raw.factor {
            Some(f) if f.get_ref().is_finite() && *f.get_ref() >= 1.0 => Body::RoiPivot {
                factor: *f.get_ref(),
            },
            other => {
                return Err(toml.err(
                    other.as_ref().map(|f| f.span()).or(Some(rule.span())),
                    "factor",
                    "a roi-pivot rule needs `factor`, at least 1 (times the pattern's budget)",
                ))
            }
        },
        other => {
            return Err(toml.err(
                Some(rule.span()),
                "rule",
                format!("unknown rule `{other}`; the rules are tier-order and roi-pivot"),
            ))
        }
    })
}

/// A `study` pattern: `workload-batching` with its `scale`.
fn parse_study(toml: &TomlText, raw: &RawPattern) -> Result<Body, SpecError> {
    let study = raw.study.as_ref().ok_or_else(|| {
        toml.err(
            Some(raw.kind.span()),
            "study",
            "a `study` pattern names its study: \"workload-batching\"",
        )
    })?;
    if study.get_ref() != "workload-batching" {
        return Err(toml.err(
            Some(study.span()),
            "study",
            format!(
                "unknown study `{}`; the studies are: workload-batching",
                study.get_ref()
            ),
        ));
    }
    let scale = raw.scale.as_ref().ok_or_else(|| {
        toml.err(
            Some(study.span()),
            "scale",
            "workload-batching needs `scale`, e.g. [2, 4, 8]",
        )
    })?;
    if scale.get_ref().is_empty() || scale.get_ref().iter().any(|s| *s < 2) {
        return Err(toml.err(
            Some(scale.span()),
            "scale",
            "each scale multiplies the workload axes: integers of at least 2",
        ));
    }
    Ok(Body::WorkloadBatching {
        scale: scale.get_ref().clone(),
    })
}

#[cfg(test)]
mod tests;
