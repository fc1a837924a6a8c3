//! A configuration made ready for the GPU on the parent's side: its sizes planned,
//! the compile requests of candidate and reference, compiled in parallel (cached).

use std::path::{Path, PathBuf};

use super::SkippedSize;
use crate::gpu::nvrtc::{self, CompileRequest, Compiled};
use crate::spec::plan::{self, problem_label};
use crate::spec::{Config, KernelSpec, Reference};
use crate::vocab::*;

/// Plans the job's sizes: the default problem first, then the validation sizes the
/// configuration's restrictions allow (the others are recorded as skipped).
pub fn plan_sizes(
    spec: &KernelSpec,
    config: &Config,
) -> Result<(Vec<plan::SizePlan>, Vec<SkippedSize>), Box<Outcome>> {
    let bad = spec.violated(&spec.problem, config);
    if !bad.is_empty() {
        return Err(Box::new(Outcome::Unlaunchable {
            reason: format!(
                "{config} violates {} at the default problem",
                bad.join(", ")
            ),
        }));
    }
    let mut sizes = vec![plan::plan(spec, config, &spec.problem)
        .map_err(|reason| Box::new(Outcome::Unlaunchable { reason }))?];
    let mut skipped = Vec::new();
    for p in &spec.validation.sizes {
        let bad = spec.violated(p, config);
        if !bad.is_empty() {
            skipped.push(SkippedSize {
                size: problem_label(p),
                reason: format!("restriction {} excludes it", bad.join(", ")),
            });
            continue;
        }
        sizes.push(plan::plan(spec, config, p).map_err(|m| {
            Box::new(Outcome::Unlaunchable {
                reason: format!("at {}: {m}", problem_label(p)),
            })
        })?);
    }
    Ok((sizes, skipped))
}

/// The CUDA toolkit's headers (for `mma.h` and friends), when installed:
/// `$CUDA_HOME/include`, `$CUDA_PATH/include`, or `/usr/local/cuda/include`.
pub fn cuda_include_dir() -> Option<PathBuf> {
    let candidates = ["CUDA_HOME", "CUDA_PATH"]
        .iter()
        .filter_map(|v| std::env::var_os(v).map(|p| PathBuf::from(p).join("include")))
        .chain(std::iter::once(PathBuf::from("/usr/local/cuda/include")));
    candidates
        .into_iter()
        .find(|p| p.join("cuda_runtime.h").exists())
}

/// A short digest of every header (`.h`, `.cuh`, `.hpp`) in `dirs`, names and contents.
pub fn headers_digest(dirs: &[&Path]) -> String {
    crate::digest::of_files(dirs, &["h", "cuh", "hpp"])
}

/// The compile requests for the candidate and its reference.
pub fn compile_requests(
    spec: &KernelSpec,
    config: &Config,
    arch: &str,
) -> (CompileRequest, CompileRequest, String) {
    let mut common = vec![format!("-I{}", spec.dir.display())];
    for d in &spec.include_dirs {
        common.push(format!("-I{}", d.display()));
    }
    // Headers are not part of the source text: their digest goes into the options,
    // so editing a header invalidates the compile cache.
    let dirs: Vec<&Path> = std::iter::once(spec.dir.as_path())
        .chain(spec.include_dirs.iter().map(PathBuf::as_path))
        .collect();
    common.push(format!(
        "-DNIGHTSHIFT_HEADERS_DIGEST={}",
        headers_digest(&dirs)
    ));
    if let Some(inc) = cuda_include_dir() {
        common.push(format!("-I{}", inc.display()));
    }
    let file = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "kernel.cu".into())
    };
    // The spec's own options for the reference; a rewritten candidate's own.
    let with = |defs: Vec<String>| {
        let mut o = spec.compile_options.clone();
        o.extend(common.iter().cloned());
        o.extend(defs);
        o
    };
    let cand = match &spec.rewritten {
        None => CompileRequest {
            name: file(&spec.source_path),
            source: spec.source.clone(),
            options: with(config.defines()),
            arch: arch.into(),
        },
        Some(r) => CompileRequest {
            name: file(&spec.source_path),
            source: r.source.clone(),
            options: r
                .options
                .iter()
                .chain(&common)
                .cloned()
                .chain(config.defines())
                .collect(),
            arch: arch.into(),
        },
    };
    let (reference, entry) = match &spec.reference {
        Reference::Kernel {
            source_path,
            source,
            entry,
            ..
        } => (
            CompileRequest {
                name: file(source_path),
                source: source.clone(),
                options: with(spec.baseline().defines()),
                arch: arch.into(),
            },
            entry.clone(),
        ),
        Reference::Baseline => (
            CompileRequest {
                name: file(&spec.source_path),
                source: spec.source.clone(),
                options: with(spec.baseline().defines()),
                arch: arch.into(),
            },
            spec.entry.clone(),
        ),
    };
    (cand, reference, entry)
}

/// Compiles all requests at once, one CPU thread each.
pub fn compile_all(reqs: &[CompileRequest], cache: &Path) -> Vec<Result<Compiled, String>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = reqs
            .iter()
            .map(|r| s.spawn(move || nvrtc::compile(r, cache)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("the compiler thread panicked".into()))
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Rewritten;

    #[test]
    fn a_rewritten_candidate_is_compiled_as_rewritten_and_its_reference_as_the_spec_says() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernels/layernorm");
        let mut spec = KernelSpec::load(&dir).unwrap();
        spec.compile_options = vec!["--std=c++17".into()];
        let base = spec.baseline();
        let (plain, plain_ref, _) = compile_requests(&spec, &base, "sm_90");
        assert_eq!(plain.source, spec.source);
        assert_eq!(plain.options[0], "--std=c++17");
        spec.rewritten = Some(Rewritten {
            source: format!("// rewritten\n{}", spec.source),
            options: vec!["--use_fast_math".into()],
            rewrites: vec!["fast-math:part=all".into()],
        });
        let (cand, reference, _) = compile_requests(&spec, &base, "sm_90");
        assert!(cand.source.starts_with("// rewritten\n"));
        assert_eq!(cand.options[0], "--use_fast_math");
        assert!(!cand.options.contains(&"--std=c++17".to_string()));
        // Same includes and defines as the plain candidate, after its own options.
        assert_eq!(cand.options[1..], plain.options[1..]);
        // The reference never sees the rewrite.
        assert_eq!(reference, plain_ref);
        assert!(!reference.options.contains(&"--use_fast_math".to_string()));
    }
}
