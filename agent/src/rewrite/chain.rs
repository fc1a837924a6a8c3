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

/// A proposer's source in a chain: `proposal:<digest>`, the digest of a source the
/// spec holds in [`KernelSpec::proposals`]. It replaces the whole source (the NVRTC
/// options the chain set before it stay).
pub const PROPOSAL: &str = "proposal:";

/// The rewrites that change only NVRTC options, which a proposal (written from the
/// source the rest of the chain made) keeps.
const OPTION_ONLY: [&str; 3] = ["max-registers", "fast-math", "cache-policy"];

/// Whether the rewrite `text` changes only NVRTC options (not the source).
pub fn options_only(text: &str) -> bool {
    let name = text.split_once(':').map_or(text, |(n, _)| n);
    OPTION_ONLY.contains(&name)
}

/// The chain of a proposal `digest` written from the kernel `chain` makes: the
/// chain's option rewrites, then the proposal (its source already holds what the
/// source rewrites did).
pub fn proposed(chain: &[String], digest: &str) -> Vec<String> {
    let mut out: Vec<String> = chain.iter().filter(|r| options_only(r)).cloned().collect();
    out.push(format!("{PROPOSAL}{digest}"));
    out
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
        if let Some(id) = text.strip_prefix(PROPOSAL) {
            let proposed = spec.proposals.get(id).ok_or_else(|| RewriteError::Param {
                rewrite: text.clone(),
                message: "no proposal of this run has this digest".into(),
            })?;
            if *proposed == source {
                return Err(RewriteError::Param {
                    rewrite: text.clone(),
                    message: format!(
                        "not applicable to {}: the proposal is the source as it is",
                        spec.name
                    ),
                });
            }
            source = proposed.clone();
            names.push(text.clone());
            continue;
        }
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
