//! Source and compiler-option rewrites nightshift makes by itself: pure functions
//! from a kernel's source and NVRTC options to new ones, on the kernel's parse tree
//! (tree-sitter, CUDA grammar). An edit replaces byte ranges of the tree; the edited
//! source must parse again with no more error nodes than it had and still define the
//! entry kernel. A rewrite that finds nothing to change is [`Applied::NotApplicable`]
//! with the reason (recorded, not an error).
//!
//! Built-ins: `launch-bounds`, `max-registers`, `restrict-const`, `unroll-pragma`,
//! `fast-math`, `cache-policy` (see [`Rewrite`]).

mod chain;
pub mod edit;
pub mod tree;

pub use chain::{chained, options_only, proposed, rewritten, slot, version, Change, PROPOSAL};

use std::collections::BTreeMap;
use std::fmt;

use crate::spec::{ArgKind, Io, KernelSpec};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    #[error("the CUDA grammar could not be used: {0}")]
    Grammar(String),
    #[error("the kernel's source defines no `{0}` the parser can read")]
    NoEntry(String),
    #[error("rewrite {rewrite}: the edited source no longer parses ({errors} unreadable region(s), {before} before); the rewrite is not applied")]
    Broke {
        rewrite: String,
        errors: usize,
        before: usize,
    },
    #[error("unknown rewrite `{0}` (known: {known})", known = NAMES.join(", "))]
    Unknown(String),
    #[error("rewrite {rewrite}: {message}")]
    Param { rewrite: String, message: String },
}

/// The built-in rewrites by name.
pub const NAMES: [&str; 6] = [
    "launch-bounds",
    "max-registers",
    "restrict-const",
    "unroll-pragma",
    "fast-math",
    "cache-policy",
];

/// The parameters each built-in takes (`name:key=value,...`), as [`Rewrite::parse`]
/// reads them; none for a name that is not a built-in.
pub fn params(name: &str) -> &'static [&'static str] {
    match name {
        "launch-bounds" => &["max_threads", "min_blocks"],
        "max-registers" => &["count"],
        "restrict-const" => &["params"],
        "unroll-pragma" => &["factor"],
        "fast-math" => &["part"],
        "cache-policy" => &["policy"],
        _ => &[],
    }
}

/// The values an integer parameter may take.
fn int_range(name: &str, key: &str) -> Option<(i64, i64)> {
    match (name, key) {
        ("launch-bounds", "max_threads") => Some((1, 1024)),
        ("launch-bounds", "min_blocks") => Some((1, 32)),
        ("max-registers", "count") => Some((16, 255)),
        ("unroll-pragma", "factor") => Some((1, 64)),
        _ => None,
    }
}

/// Whether [`Rewrite::parse`] takes `value` for parameter `key` of the built-in
/// `name` (it checks every parameter with this); the message says why not.
pub fn check_param(name: &str, key: &str, value: &str) -> Result<(), String> {
    if !NAMES.contains(&name) {
        return Err(format!(
            "unknown rewrite `{name}` (known: {})",
            NAMES.join(", ")
        ));
    }
    if !params(name).contains(&key) {
        return Err(format!(
            "unknown parameter `{key}` ({name} takes: {})",
            params(name).join(", ")
        ));
    }
    if let Some((lo, hi)) = int_range(name, key) {
        return match value.parse::<i64>() {
            Ok(x) if (lo..=hi).contains(&x) => Ok(()),
            _ => Err(format!(
                "{key} = `{value}` is not an integer in {lo}..={hi}"
            )),
        };
    }
    match (name, key) {
        ("fast-math", "part") if !FastMath::ALL.iter().any(|p| p.name() == value) => Err(format!(
            "part `{value}`: one of all, ftz, prec-div, prec-sqrt, fmad"
        )),
        ("cache-policy", "policy") if !matches!(value, "cg" | "ca") => {
            Err(format!("policy `{value}`: cg or ca"))
        }
        // restrict-const's `params`: pointer parameter names joined by `+`.
        _ => Ok(()),
    }
}

/// The parts of `-use_fast_math`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FastMath {
    /// `--use_fast_math`: all of the below.
    All,
    /// `--ftz=true`: denormals flushed to zero.
    Ftz,
    /// `--prec-div=false`: approximate division.
    PrecDiv,
    /// `--prec-sqrt=false`: approximate square root.
    PrecSqrt,
    /// `--fmad=true`: multiply-adds contracted.
    Fmad,
}

impl FastMath {
    fn option(self) -> &'static str {
        match self {
            FastMath::All => "--use_fast_math",
            FastMath::Ftz => "--ftz=true",
            FastMath::PrecDiv => "--prec-div=false",
            FastMath::PrecSqrt => "--prec-sqrt=false",
            FastMath::Fmad => "--fmad=true",
        }
    }

    fn name(self) -> &'static str {
        match self {
            FastMath::All => "all",
            FastMath::Ftz => "ftz",
            FastMath::PrecDiv => "prec-div",
            FastMath::PrecSqrt => "prec-sqrt",
            FastMath::Fmad => "fmad",
        }
    }

    pub const ALL: [FastMath; 5] = [
        FastMath::All,
        FastMath::Ftz,
        FastMath::PrecDiv,
        FastMath::PrecSqrt,
        FastMath::Fmad,
    ];
}

/// One rewrite with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    /// `__launch_bounds__(threads, min_blocks)` on the entry kernel: `max_threads`
    /// when given, else an existing attribute's first argument (kept as written), else
    /// `default_threads` (the most threads any valid configuration launches).
    LaunchBounds {
        max_threads: Option<i64>,
        default_threads: i64,
        min_blocks: i64,
    },
    /// `--maxrregcount=count`.
    MaxRegisters {
        count: i64,
    },
    /// `const` and `__restrict__` on the named pointer parameters (read-only ones).
    RestrictConst {
        params: Vec<String>,
    },
    /// `#pragma unroll factor` on every inner loop of the entry kernel that has no
    /// unroll pragma.
    UnrollPragma {
        factor: i64,
    },
    FastMath(FastMath),
    /// `--ptxas-options=-dlcm=<policy>`: global loads cached in L1 and L2 (`ca`) or
    /// in L2 only (`cg`).
    CachePolicy {
        policy: String,
    },
    /// A pattern's own rewrite (a tree-sitter query and a template), with the
    /// step's values of its template's parameters.
    Query {
        edit: edit::QueryEdit,
        values: BTreeMap<String, String>,
    },
}

impl fmt::Display for Rewrite {
    /// `name:key=value,...`, as `--rewrite` takes it and commits record it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rewrite::LaunchBounds {
                max_threads,
                min_blocks,
                ..
            } => match max_threads {
                Some(t) => write!(f, "launch-bounds:max_threads={t},min_blocks={min_blocks}"),
                None => write!(f, "launch-bounds:min_blocks={min_blocks}"),
            },
            Rewrite::MaxRegisters { count } => write!(f, "max-registers:count={count}"),
            Rewrite::RestrictConst { params } => {
                write!(f, "restrict-const:params={}", params.join("+"))
            }
            Rewrite::UnrollPragma { factor } => write!(f, "unroll-pragma:factor={factor}"),
            Rewrite::FastMath(p) => write!(f, "fast-math:part={}", p.name()),
            Rewrite::CachePolicy { policy } => write!(f, "cache-policy:policy={policy}"),
            Rewrite::Query { edit, values } => {
                let kv: Vec<String> = values.iter().map(|(k, v)| format!("{k}={v}")).collect();
                match kv.is_empty() {
                    true => write!(f, "{}", edit.name),
                    false => write!(f, "{}:{}", edit.name, kv.join(",")),
                }
            }
        }
    }
}

/// What a rewrite made of a kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Changed(Variant),
    /// Nothing to change, and why.
    NotApplicable(String),
}

/// A kernel's source and NVRTC options after a rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    pub source: String,
    pub options: Vec<String>,
    /// A unified diff of the source (empty when only the options changed).
    pub diff: String,
}

impl Rewrite {
    pub fn name(&self) -> &str {
        match self {
            Rewrite::Query { edit, .. } => &edit.name,
            Rewrite::LaunchBounds { .. } => "launch-bounds",
            Rewrite::MaxRegisters { .. } => "max-registers",
            Rewrite::RestrictConst { .. } => "restrict-const",
            Rewrite::UnrollPragma { .. } => "unroll-pragma",
            Rewrite::FastMath(_) => "fast-math",
            Rewrite::CachePolicy { .. } => "cache-policy",
        }
    }

    /// The rewrite named `text` (`name` or `name:key=value,...`) for `spec`, its
    /// unnamed parameters taken from the spec: the most threads any configuration
    /// launches, the read-only pointer parameters.
    pub fn parse(text: &str, spec: &KernelSpec) -> Result<Rewrite, RewriteError> {
        let (name, rest) = text.split_once(':').unwrap_or((text, ""));
        let mut kv: BTreeMap<&str, &str> = BTreeMap::new();
        for p in rest.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = p.split_once('=').ok_or_else(|| RewriteError::Param {
                rewrite: name.to_string(),
                message: format!("`{p}` is not key=value"),
            })?;
            kv.insert(k.trim(), v.trim());
        }
        let bad = |message: String| RewriteError::Param {
            rewrite: name.to_string(),
            message,
        };
        if !NAMES.contains(&name) {
            // A pattern's own rewrite, which the spec was given with the library.
            let edit = spec
                .edits
                .iter()
                .find(|e| e.name == name)
                .ok_or_else(|| RewriteError::Unknown(name.to_string()))?;
            let params = edit.params();
            if let Some(k) = kv.keys().find(|k| !params.iter().any(|p| p == *k)) {
                return Err(bad(format!(
                    "unknown parameter `{k}` (its template reads: {})",
                    params.join(", ")
                )));
            }
            for v in kv.values() {
                edit::check_value(v).map_err(bad)?;
            }
            let values: BTreeMap<String, String> = kv
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            edit.render(&values).map_err(bad)?;
            return Ok(Rewrite::Query {
                edit: edit.clone(),
                values,
            });
        }
        for (k, v) in &kv {
            check_param(name, k, v).map_err(bad)?;
        }
        // Every value is checked: an integer parameter parses, and is in its range.
        let int = |kv: &mut BTreeMap<&str, &str>, k: &str| {
            kv.remove(k)
                .map(|v| {
                    v.parse::<i64>()
                        .map_err(|_| bad(format!("{k} = `{v}` is not an integer")))
                })
                .transpose()
        };
        let r = match name {
            "launch-bounds" => Rewrite::LaunchBounds {
                max_threads: int(&mut kv, "max_threads")?,
                default_threads: max_threads(spec).ok_or_else(|| {
                    bad("no configuration of the spec has a launch to bound".into())
                })?,
                min_blocks: int(&mut kv, "min_blocks")?.unwrap_or(1),
            },
            "max-registers" => Rewrite::MaxRegisters {
                count: int(&mut kv, "count")?
                    .ok_or_else(|| bad("needs count=N (16..=255)".into()))?,
            },
            "restrict-const" => Rewrite::RestrictConst {
                params: match kv.remove("params") {
                    Some(p) => p.split('+').map(str::to_string).collect(),
                    None => read_only(spec),
                },
            },
            "unroll-pragma" => Rewrite::UnrollPragma {
                factor: int(&mut kv, "factor")?.unwrap_or(4),
            },
            "fast-math" => {
                let part = kv.remove("part").unwrap_or("all");
                Rewrite::FastMath(
                    FastMath::ALL
                        .into_iter()
                        .find(|p| p.name() == part)
                        .ok_or_else(|| {
                            bad(format!(
                                "part `{part}`: one of all, ftz, prec-div, prec-sqrt, fmad"
                            ))
                        })?,
                )
            }
            "cache-policy" => {
                let policy = kv.remove("policy").unwrap_or("cg");
                if !matches!(policy, "cg" | "ca") {
                    return Err(bad(format!("policy `{policy}`: cg or ca")));
                }
                Rewrite::CachePolicy {
                    policy: policy.to_string(),
                }
            }
            _ => return Err(RewriteError::Unknown(name.to_string())),
        };
        if let Some(k) = kv.keys().next() {
            return Err(bad(format!("unknown parameter `{k}`")));
        }
        Ok(r)
    }

    /// The rewrite applied to `source` (entry kernel `entry`) and its `options`.
    pub fn apply(
        &self,
        entry: &str,
        source: &str,
        options: &[String],
    ) -> Result<Applied, RewriteError> {
        let same_source = |options: Vec<String>| {
            Applied::Changed(Variant {
                source: source.to_string(),
                options,
                diff: String::new(),
            })
        };
        match self {
            Rewrite::MaxRegisters { count } => {
                let parsed = tree::parse(source)?;
                let e = parsed
                    .entry(entry)
                    .ok_or_else(|| RewriteError::NoEntry(entry.to_string()))?;
                if let Some((range, _)) = &e.launch_bounds {
                    // Measured on an H200: a kernel with launch bounds kept its 165
                    // registers under --maxrregcount=32.
                    return Ok(Applied::NotApplicable(format!(
                        "the entry kernel's `{}` takes precedence over --maxrregcount; \
                         launch-bounds' min_blocks is what caps its registers",
                        &source[range.clone()]
                    )));
                }
                let opt = format!("--maxrregcount={count}");
                Ok(
                    match set_option(options, &["--maxrregcount", "-maxrregcount"], &opt) {
                        Some(o) => same_source(o),
                        None => Applied::NotApplicable(format!("{opt} is already set")),
                    },
                )
            }
            Rewrite::FastMath(part) => {
                if options
                    .iter()
                    .any(|o| o == part.option() || o == "-use_fast_math" || o == "--use_fast_math")
                {
                    return Ok(Applied::NotApplicable(format!(
                        "{} is already set",
                        part.option()
                    )));
                }
                let mut o = options.to_vec();
                o.push(part.option().to_string());
                Ok(same_source(o))
            }
            Rewrite::CachePolicy { policy } => {
                let opt = format!("--ptxas-options=-dlcm={policy}");
                Ok(
                    match set_option(options, &["--ptxas-options=-dlcm"], &opt) {
                        Some(o) => same_source(o),
                        None => Applied::NotApplicable(format!("{opt} is already set")),
                    },
                )
            }
            _ => self.edit_source(entry, source, options),
        }
    }

    fn edit_source(
        &self,
        entry: &str,
        source: &str,
        options: &[String],
    ) -> Result<Applied, RewriteError> {
        let parsed = tree::parse(source)?;
        let e = parsed
            .entry(entry)
            .ok_or_else(|| RewriteError::NoEntry(entry.to_string()))?;
        let edits = match self {
            Rewrite::Query { edit, values } => edit
                .render(values)
                .and_then(|text| edit.edits(&e, &parsed, &text)),
            _ => self.edits(&e, source),
        };
        let edits = match edits {
            Ok(edits) => edits,
            Err(why) => return Ok(Applied::NotApplicable(why)),
        };
        let edited = apply_edits(source, edits);
        let after = tree::parse(&edited)?;
        let (before, errors) = (parsed.errors().len(), after.errors().len());
        if errors > before || after.entry(entry).is_none() {
            return Err(RewriteError::Broke {
                rewrite: self.to_string(),
                errors,
                before,
            });
        }
        Ok(Applied::Changed(Variant {
            diff: unified_diff(source, &edited),
            source: edited,
            options: options.to_vec(),
        }))
    }

    /// The byte edits of a source rewrite, or why there is nothing to edit.
    fn edits(&self, e: &tree::Entry, source: &str) -> Result<Vec<Edit>, String> {
        match self {
            Rewrite::LaunchBounds {
                max_threads,
                default_threads,
                min_blocks,
            } => {
                let (range, text) = match &e.launch_bounds {
                    Some((range, args)) => {
                        let first = match (max_threads, args.first()) {
                            (Some(t), _) => t.to_string(),
                            (None, Some(a)) => a.clone(),
                            (None, None) => default_threads.to_string(),
                        };
                        let new = format!("__launch_bounds__({first}, {min_blocks})");
                        let old = &source[range.clone()];
                        let squash = |s: &str| s.split_whitespace().collect::<String>();
                        if squash(old) == squash(&new) {
                            return Err(format!("`{old}` is already there"));
                        }
                        (range.clone(), new)
                    }
                    None => (
                        e.declarator_start..e.declarator_start,
                        format!(
                            "__launch_bounds__({}, {min_blocks})\n",
                            max_threads.unwrap_or(*default_threads)
                        ),
                    ),
                };
                Ok(vec![Edit { range, text }])
            }
            Rewrite::RestrictConst { params } => {
                let mut edits = Vec::new();
                for p in e
                    .params
                    .iter()
                    .filter(|p| p.pointer && params.contains(&p.name))
                {
                    if !p.pointee_const {
                        edits.push(Edit {
                            range: p.range.start..p.range.start,
                            text: "const ".into(),
                        });
                    }
                    if let (false, Some(at)) = (p.restrict, p.after_star) {
                        edits.push(Edit {
                            range: at..at,
                            text: " __restrict__".into(),
                        });
                    }
                }
                if edits.is_empty() {
                    return Err(if params.is_empty() {
                        "the spec names no read-only pointer parameter (io = \"in\")".into()
                    } else {
                        format!(
                            "every read-only pointer parameter ({}) is already const and __restrict__",
                            params.join(", ")
                        )
                    });
                }
                Ok(edits)
            }
            Rewrite::UnrollPragma { factor } => {
                let edits: Vec<Edit> = e
                    .loops
                    .iter()
                    .filter(|l| l.inner && l.pragma.is_none())
                    .flat_map(|l| pragma_edits(source, l, *factor))
                    .collect();
                if edits.is_empty() {
                    let n = e.loops.len();
                    return Err(if n == 0 {
                        "the entry kernel has no loop".into()
                    } else {
                        format!("each of the entry kernel's {n} loop(s) has an unroll pragma or a loop inside it")
                    });
                }
                Ok(edits)
            }
            _ => Err("not a source rewrite".into()),
        }
    }
}

/// `options` with every option starting with one of `prefixes` replaced by `opt`;
/// None when `opt` is already there.
fn set_option(options: &[String], prefixes: &[&str], opt: &str) -> Option<Vec<String>> {
    if options.iter().any(|o| o == opt) {
        return None;
    }
    let mut o: Vec<String> = options
        .iter()
        .filter(|o| !prefixes.iter().any(|p| o.starts_with(p)))
        .cloned()
        .collect();
    o.push(opt.to_string());
    Some(o)
}

/// Text to put in place of a byte range.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Edit {
    range: std::ops::Range<usize>,
    text: String,
}

fn apply_edits(source: &str, mut edits: Vec<Edit>) -> String {
    edits.sort_by_key(|e| (e.range.start, e.range.end));
    let mut out = String::with_capacity(source.len() + 64);
    let mut at = 0;
    for e in edits {
        if e.range.start < at {
            continue; // overlapping: the first edit wins
        }
        out.push_str(&source[at..e.range.start]);
        out.push_str(&e.text);
        at = e.range.end;
    }
    out.push_str(&source[at..]);
    out
}

/// `#pragma unroll N` on a line of its own before `l`, with the loop's indentation.
/// A loop that is the unbraced body of another statement (`if (c) for (...)`) is
/// put in braces first, which changes nothing else: a pragma there would end the
/// statement for the parser.
fn pragma_edits(source: &str, l: &tree::Loop, factor: i64) -> Vec<Edit> {
    let at = l.range.start;
    let line_start = source[..at].rfind('\n').map_or(0, |i| i + 1);
    let lead = &source[line_start..at];
    let indent: String = lead.chars().take_while(|c| c.is_whitespace()).collect();
    if l.in_block && lead.trim().is_empty() {
        return vec![Edit {
            range: line_start..line_start,
            text: format!("{lead}#pragma unroll {factor}\n"),
        }];
    }
    vec![
        Edit {
            range: at..at,
            text: format!("{{\n#pragma unroll {factor}\n{indent}"),
        },
        Edit {
            range: l.range.end..l.range.end,
            text: "\n}".into(),
        },
    ]
}

/// The most threads per block any valid configuration of `spec` launches at its
/// problem.
pub fn max_threads(spec: &KernelSpec) -> Option<i64> {
    spec.space()
        .valid()
        .filter_map(|c| crate::spec::plan::plan(spec, &c, &spec.problem).ok())
        .map(|p| p.launch.block.iter().map(|&b| b as i64).product::<i64>())
        .max()
}

/// The spec's read-only pointer parameters (`io = "in"` buffers).
pub fn read_only(spec: &KernelSpec) -> Vec<String> {
    spec.args
        .iter()
        .filter(|a| matches!(a.kind, ArgKind::Buffer { io: Io::In, .. }))
        .map(|a| a.name.clone())
        .collect()
}

/// A unified diff of two texts, line by line (`---`/`+++` headers, three lines of
/// context).
pub fn unified_diff(a: &str, b: &str) -> String {
    similar::TextDiff::from_lines(a, b)
        .unified_diff()
        .context_radius(3)
        .header("before", "after")
        .to_string()
}

#[cfg(test)]
mod tests;
