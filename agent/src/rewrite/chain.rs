//! A candidate's chain of rewrites: how a new one joins it, the kernel it makes, and
//! what the journal keeps of it.

use crate::spec::{KernelSpec, Rewritten};

use super::{unified_diff, Applied, Rewrite, RewriteError};

/// What a rewrite text changes, for [`chained`]: its name, except that each part
/// of fast-math is its own (`-ftz=true` and `-prec-div=false` stack).
pub fn slot(text: &str) -> &str {
    match text.split_once(':') {
        Some(("fast-math", _)) => text,
        Some((name, _)) => name,
        None => text,
    }
}

/// `chain` with `text` added: in place of the rewrite of the same kind, if the chain
/// has one (a later `launch-bounds:min_blocks=3` replaces `min_blocks=2`, applied to
/// the source as written), else at the end.
pub fn chained(chain: &[String], text: &str) -> Vec<String> {
    let mut out = chain.to_vec();
    match out.iter().position(|r| slot(r) == slot(text)) {
        Some(i) => out[i] = text.to_string(),
        None => out.push(text.to_string()),
    }
    out
}

/// `spec` with its kernel as `rewrites` (each `name:key=value,...`, applied in
/// order) and then the extra NVRTC `options` make it; the spec as it is when both
/// are empty. A rewrite that does not apply is an error naming why: a user who asks
/// for one means it.
pub fn rewritten(
    mut spec: KernelSpec,
    rewrites: &[String],
    options: &[String],
) -> Result<KernelSpec, RewriteError> {
    if rewrites.is_empty() && options.is_empty() {
        return Ok(spec);
    }
    let mut source = spec.source.clone();
    let mut opts = spec.compile_options.clone();
    let mut names = Vec::new();
    for text in rewrites {
        let r = Rewrite::parse(text, &spec)?;
        match r.apply(&spec.entry, &source, &opts)? {
            Applied::Changed(v) => {
                source = v.source;
                opts = v.options;
                names.push(r.to_string());
            }
            Applied::NotApplicable(why) => {
                return Err(RewriteError::Param {
                    rewrite: r.to_string(),
                    message: format!("not applicable to {}: {why}", spec.name),
                })
            }
        }
    }
    for o in options {
        opts.push(o.clone());
        names.push(format!("nvrtc-option:{o}"));
    }
    spec.rewritten = Some(Rewritten {
        source,
        options: opts,
        rewrites: names,
    });
    Ok(spec)
}

/// What the journal keeps of a rewritten candidate: its rewrites, the NVRTC options
/// it was compiled with, and the diff of its source against the kernel as written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Change {
    pub rewrites: Vec<String>,
    pub options: Vec<String>,
    /// Unified diff against the spec's source (empty when only options changed).
    pub diff: String,
}

/// The kernel of a candidate with `rewrites`: the spec as rewritten and what changed
/// (None when there are no rewrites: the spec as written).
pub fn version(
    spec: &KernelSpec,
    rewrites: &[String],
) -> Result<(KernelSpec, Option<Change>), RewriteError> {
    let v = rewritten(spec.clone(), rewrites, &[])?;
    let change = v.rewritten.as_ref().map(|r| Change {
        rewrites: rewrites.to_vec(),
        options: r.options.clone(),
        diff: unified_diff(&spec.source, &r.source),
    });
    Ok((v, change))
}
