//! What a proposal must pass before a GPU sees it: under [`MAX_SOURCE_BYTES`], it
//! parses (tree-sitter: no more error nodes than the kernel as written), it defines the spec's entry as an
//! `extern "C" __global__` kernel with the spec's parameters (same names, same
//! order, pointers where the spec has buffers), and it includes only standard CUDA
//! headers ([`ALLOWED_SYSTEM_HEADERS`]) or headers that resolve inside the kernel's
//! directory or its `include_dirs`. Anything else is the `proposal_invalid` reason:
//! an outcome fed back to the proposer, never an error of the run.

use std::path::{Component, Path, PathBuf};

use crate::rewrite::tree;
use crate::spec::{ArgKind, KernelSpec};

/// The largest proposed source accepted.
pub const MAX_SOURCE_BYTES: usize = 256 << 10;

/// Headers of the CUDA toolkit and the C++ library NVRTC provides, by the name
/// written in `#include`; names under `cuda/` and `cooperative_groups/` (libcu++,
/// cooperative groups) are allowed too.
pub const ALLOWED_SYSTEM_HEADERS: &[&str] = &[
    "cuda.h",
    "cuda_runtime.h",
    "cuda_fp16.h",
    "cuda_fp16.hpp",
    "cuda_bf16.h",
    "cuda_bf16.hpp",
    "cuda_fp8.h",
    "cuda_fp8.hpp",
    "cuda_fp4.h",
    "cuda_fp6.h",
    "mma.h",
    "cuda_pipeline.h",
    "cuda_pipeline_primitives.h",
    "cuda_awbarrier.h",
    "cuda_awbarrier_primitives.h",
    "cooperative_groups.h",
    "vector_types.h",
    "vector_functions.h",
    "device_functions.h",
    "math_constants.h",
    "sm_20_intrinsics.h",
    "sm_30_intrinsics.h",
    "sm_32_intrinsics.h",
    "sm_35_intrinsics.h",
    "sm_60_atomic_functions.h",
    "sm_61_intrinsics.h",
    "crt/math_functions.h",
    "stdint.h",
    "cstdint",
    "stddef.h",
    "cstddef",
    "limits.h",
    "climits",
    "float.h",
    "cfloat",
    "type_traits",
    "utility",
    "limits",
];

/// Prefixes of allowed library headers (`cuda/pipeline`, `cuda/std/array`...).
const ALLOWED_PREFIXES: [&str; 2] = ["cuda/", "cooperative_groups/"];

/// Ok when `source` may be compiled as the kernel of `spec`; else why not, in words
/// a proposer can act on.
pub fn check(spec: &KernelSpec, source: &str) -> Result<(), String> {
    if source.len() > MAX_SOURCE_BYTES {
        return Err(format!(
            "the source is {} bytes, over the {} KiB limit",
            source.len(),
            MAX_SOURCE_BYTES >> 10
        ));
    }
    if source.contains('\0') {
        return Err("the source holds a NUL byte".to_string());
    }
    includes(spec, source)?;
    let parsed = tree::parse(source).map_err(|e| e.to_string())?;
    // The grammar does not read every CUDA construct (`__align__(16)` in a
    // declaration): a proposal may have as many unreadable regions as the kernel as
    // written, as a rewrite may, and no more.
    let errors = parsed.errors();
    let allowed = tree::parse(&spec.source).map_or(0, |p| p.errors().len());
    if errors.len() > allowed {
        let first = &errors[0];
        let written = if allowed == 0 {
            String::new()
        } else {
            format!(" (the kernel as written has {allowed})")
        };
        return Err(format!(
            "the source does not parse: {} unreadable region(s){written}, the first at line {}: `{}`",
            errors.len(),
            line_of(source, first.start),
            snippet(source, first.clone())
        ));
    }
    let entry = parsed.entry(&spec.entry).ok_or_else(|| {
        format!(
            "the source defines no kernel `{}` (the spec's entry, which must be kept)",
            spec.entry
        )
    })?;
    if !entry.global {
        return Err(format!("`{}` is not declared `__global__`", spec.entry));
    }
    if !entry.extern_c {
        return Err(format!(
            "`{}` is not declared `extern \"C\"` (its name would be mangled)",
            spec.entry
        ));
    }
    // The kernel as written may name a parameter otherwise than the spec's argument
    // (binding is by position): either name is kept.
    let written: Vec<String> = tree::parse(&spec.source)
        .ok()
        .and_then(|p| p.entry(&spec.entry))
        .map(|e| e.params.into_iter().map(|p| p.name).collect())
        .unwrap_or_default();
    params(spec, &entry.params, &written)
}

/// The entry's parameters against the spec's arguments (and the names `written` in
/// the kernel as written).
fn params(spec: &KernelSpec, params: &[tree::Param], written: &[String]) -> Result<(), String> {
    let wanted: Vec<String> = spec
        .args
        .iter()
        .map(|a| match a.kind {
            ArgKind::Buffer { .. } => format!("{} (pointer)", a.name),
            ArgKind::Scalar { .. } => a.name.clone(),
        })
        .collect();
    let list = || wanted.join(", ");
    if params.len() != spec.args.len() {
        return Err(format!(
            "`{}` has {} parameter(s) the parser can read; the spec's are {}: {}",
            spec.entry,
            params.len(),
            spec.args.len(),
            list()
        ));
    }
    for (i, (p, a)) in params.iter().zip(&spec.args).enumerate() {
        if p.name != a.name && written.get(i) != Some(&p.name) {
            return Err(format!(
                "parameter {} of `{}` is `{}`; the spec's is `{}` (the spec's, in order: {})",
                i + 1,
                spec.entry,
                p.name,
                a.name,
                list()
            ));
        }
        let buffer = matches!(a.kind, ArgKind::Buffer { .. });
        if p.pointer != buffer {
            let (is, should) = if buffer {
                ("a value", "a pointer to its buffer")
            } else {
                ("a pointer", "a scalar passed by value")
            };
            return Err(format!(
                "parameter `{}` of `{}` is {is}; it must be {should}",
                p.name, spec.entry
            ));
        }
    }
    Ok(())
}

/// Every `#include` (and `#include_next`, `#import`) of the source, read from its
/// text with continued lines joined, so that none can hide from the check.
fn includes(spec: &KernelSpec, source: &str) -> Result<(), String> {
    let joined = source.replace("\\\r\n", "").replace("\\\n", "");
    for (i, line) in joined.lines().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix('#') else {
            continue;
        };
        let rest = rest.trim_start();
        let word: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !matches!(word.as_str(), "include" | "include_next" | "import") {
            continue;
        }
        let at = format!("line {}", i + 1);
        if word != "include" {
            return Err(format!("{at}: `#{word}` is not allowed (use `#include`)"));
        }
        let arg = rest[word.len()..].trim_start();
        let (close, quoted) = match arg.chars().next() {
            Some('"') => ('"', true),
            Some('<') => ('>', false),
            _ => {
                return Err(format!(
                    "{at}: an `#include` must name a header in \"\" or <>"
                ))
            }
        };
        let name = arg[1..]
            .find(close)
            .map(|end| &arg[1..1 + end])
            .ok_or_else(|| format!("{at}: the `#include`'s name is not closed"))?;
        header(spec, name, quoted).map_err(|e| format!("{at}: {e}"))?;
    }
    Ok(())
}

/// Whether one included header is allowed.
fn header(spec: &KernelSpec, name: &str, quoted: bool) -> Result<(), String> {
    let path = Path::new(name);
    if name.is_empty() {
        return Err("an `#include` of an empty name".to_string());
    }
    if path.is_absolute() || name.starts_with('/') || name.contains('\\') || name.contains(':') {
        return Err(format!(
            "`{name}` is an absolute path: include headers beside the kernel or in its \
             include_dirs by a relative name"
        ));
    }
    if path.components().any(|c| {
        matches!(
            c,
            Component::ParentDir | Component::RootDir | Component::Prefix(_)
        )
    }) {
        return Err(format!(
            "`{name}` climbs out with `..`: include headers beside the kernel or in its \
             include_dirs by a name below them"
        ));
    }
    let system = ALLOWED_SYSTEM_HEADERS.contains(&name)
        || ALLOWED_PREFIXES.iter().any(|p| name.starts_with(p));
    if system {
        return Ok(());
    }
    if !quoted {
        return Err(format!(
            "`<{name}>` is not among the standard CUDA headers allowed ({} ...)",
            ALLOWED_SYSTEM_HEADERS[..6].join(", ")
        ));
    }
    let mut dirs: Vec<&PathBuf> = vec![&spec.dir];
    dirs.extend(spec.include_dirs.iter());
    for dir in dirs {
        let candidate = dir.join(path);
        if !candidate.is_file() {
            continue;
        }
        let (Ok(real), Ok(root)) = (candidate.canonicalize(), dir.canonicalize()) else {
            continue;
        };
        if real.starts_with(&root) {
            return Ok(());
        }
        return Err(format!(
            "`{name}` resolves outside the directory it was found in (a symbolic link)"
        ));
    }
    Err(format!(
        "`\"{name}\"` is neither beside the kernel, nor in its include_dirs, nor a standard \
         CUDA header allowed"
    ))
}

fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The text of a range, on one line and short.
fn snippet(text: &str, r: std::ops::Range<usize>) -> String {
    let s = text.get(r).unwrap_or("");
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    super::truncate(&one, 60)
}
