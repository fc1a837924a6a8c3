//! Keeping a spec inside its repository: the files a spec names (sources, reference,
//! include directories, and every header its sources `#include` by a quoted name)
//! must resolve, after symlinks, inside the repository that holds the spec (or the
//! spec's own directory when no repository does). A spec is input like any other,
//! and on a pull request it is someone else's: it must not make nightshift read
//! `/etc/shadow` into a compile log.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use super::SpecError;

/// The directory a spec in `spec_dir` is confined to: the root of the git repository
/// that holds it, else the directory itself.
pub fn root_of(spec_dir: &Path) -> PathBuf {
    let dir = spec_dir
        .canonicalize()
        .unwrap_or_else(|_| spec_dir.to_path_buf());
    dir.ancestors()
        .find(|a| a.join(".git").exists())
        .unwrap_or(&dir)
        .to_path_buf()
}

/// `path`, resolved; an error when it resolves outside `root`.
pub fn inside(path: &Path, root: &Path) -> io::Result<PathBuf> {
    let real = path.canonicalize()?;
    if real.starts_with(root) {
        Ok(real)
    } else {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} resolves to {}, outside {} (a spec may name only files inside its repository)",
                path.display(),
                real.display(),
                root.display()
            ),
        ))
    }
}

/// The `#include`s of a source: (1-based line, name, quoted).
fn includes(text: &str) -> Vec<(usize, String, bool)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        let Some(rest) = t.strip_prefix('#') else {
            continue;
        };
        let Some(rest) = rest.trim_start().strip_prefix("include") else {
            continue;
        };
        let rest = rest.trim_start();
        let (close, quoted) = match rest.chars().next() {
            Some('"') => ('"', true),
            Some('<') => ('>', false),
            _ => continue,
        };
        if let Some(end) = rest[1..].find(close) {
            out.push((i + 1, rest[1..1 + end].to_string(), quoted));
        }
    }
    out
}

/// Checks every header `file` (with `text`) includes, and theirs, down to `depth`
/// levels: no absolute path, no `..` in a system include, and every quoted one
/// found in `dirs` (the including file's directory first) inside `root`. A header
/// found nowhere is left to the compiler (a toolkit header on its include path).
pub fn check_includes(
    file: &Path,
    text: &str,
    dirs: &[PathBuf],
    root: &Path,
    seen: &mut BTreeSet<PathBuf>,
    depth: usize,
) -> Result<(), SpecError> {
    let err = |line: usize, message: String| SpecError {
        path: file.to_path_buf(),
        line: Some(line),
        key: Some("#include".into()),
        message,
    };
    for (line, name, quoted) in includes(text) {
        if Path::new(&name).is_absolute() {
            return Err(err(
                line,
                format!("`{name}` is an absolute path: include headers by a path relative to the kernel or its include_dirs"),
            ));
        }
        if !quoted
            && Path::new(&name)
                .components()
                .any(|c| c == std::path::Component::ParentDir)
        {
            return Err(err(
                line,
                format!("`<{name}>` climbs out of the include path"),
            ));
        }
        let here = file.parent().map(Path::to_path_buf);
        let candidates = here
            .iter()
            .filter(|_| quoted)
            .chain(dirs.iter())
            .map(|d| d.join(&name));
        let Some(found) = candidates.into_iter().find(|p| p.is_file()) else {
            continue;
        };
        let real = inside(&found, root).map_err(|e| err(line, e.to_string()))?;
        if depth == 0 || !seen.insert(real.clone()) {
            continue;
        }
        let t = crate::files::read_text(&real, crate::files::MAX_INPUT_BYTES)
            .map_err(|e| err(line, format!("cannot read `{name}`: {e}")))?;
        check_includes(&real, &t, dirs, root, seen, depth - 1)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn includes_are_found_with_their_lines() {
        let t = "#include \"a.cuh\"\n  # include <mma.h>\nint x;\n#include \"../b.h\" // c\n";
        assert_eq!(
            includes(t),
            vec![
                (1, "a.cuh".into(), true),
                (2, "mma.h".into(), false),
                (4, "../b.h".into(), true)
            ]
        );
    }

    #[test]
    fn a_header_outside_the_root_is_refused_naming_its_line() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("repo");
        let k = root.join("kernels/k");
        std::fs::create_dir_all(&k).unwrap();
        std::fs::write(d.path().join("secret.h"), "int secret;\n").unwrap();
        std::fs::write(root.join("kernels/ok.h"), "#include <cuda_fp16.h>\n").unwrap();
        let root = root.canonicalize().unwrap();
        let src = k.join("k.cu");
        let dirs = vec![k.clone(), root.join("kernels")];
        let mut seen = BTreeSet::new();
        let ok = "#include \"../ok.h\"\n#include <mma.h>\n";
        check_includes(&src, ok, &dirs, &root, &mut seen, 8).unwrap();
        let bad = "// x\n#include \"../../../secret.h\"\n";
        let e = check_includes(&src, bad, &dirs, &root, &mut BTreeSet::new(), 8).unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.message.contains("outside"), "{e}");
        let e = check_includes(
            &src,
            "#include \"/etc/passwd\"\n",
            &dirs,
            &root,
            &mut BTreeSet::new(),
            8,
        )
        .unwrap_err();
        assert!(e.message.contains("absolute"), "{e}");
        let e = check_includes(
            &src,
            "#include <../../x.h>\n",
            &dirs,
            &root,
            &mut BTreeSet::new(),
            8,
        )
        .unwrap_err();
        assert!(e.message.contains("climbs"), "{e}");
    }
}
