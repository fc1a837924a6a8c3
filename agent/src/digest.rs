//! Short content digests (SHA-256, first 8 bytes in hex) of files by name and
//! content, wherever they sit: the same kernel in the user's checkout and in a run's
//! worktree has the same digest.

use std::path::Path;

use sha2::{Digest, Sha256};

/// A digest of `(name, content)` parts, in the order given.
pub fn of_parts<'a>(parts: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut h = Sha256::new();
    for (name, content) in parts {
        // Lengths first, so that no two different lists of parts hash alike.
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((content.len() as u64).to_le_bytes());
        h.update(content);
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The files directly in `dirs` whose extension is one of `exts`, sorted by
/// directory (in the order given) then name: `(dir index and name, content)`. A
/// directory or file that cannot be read is left out (the build that reads it fails
/// on its own).
pub fn files_in(dirs: &[&Path], exts: &[&str]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        let Ok(rd) = std::fs::read_dir(d) else {
            continue;
        };
        let mut files: Vec<_> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| exts.contains(&e))
            })
            .collect();
        files.sort();
        for f in files {
            if let Ok(bytes) = std::fs::read(&f) {
                let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
                out.push((format!("{i}/{}", name.unwrap_or_default()), bytes));
            }
        }
    }
    out
}

/// A digest of [`files_in`].
pub fn of_files(dirs: &[&Path], exts: &[&str]) -> String {
    let files = files_in(dirs, exts);
    of_parts(files.iter().map(|(n, c)| (n.as_str(), c.as_slice())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_files_elsewhere_have_the_same_digest_and_a_change_shows() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for d in [a.path(), b.path()] {
            std::fs::write(d.join("x.toml"), "name = 1").unwrap();
            std::fs::write(d.join("y.toml"), "name = 2").unwrap();
            std::fs::write(d.join("notes.md"), "ignored").unwrap();
        }
        let da = of_files(&[a.path()], &["toml"]);
        assert_eq!(da, of_files(&[b.path()], &["toml"]));
        assert_eq!(da.len(), 16);
        std::fs::write(b.path().join("notes.md"), "still ignored").unwrap();
        assert_eq!(da, of_files(&[b.path()], &["toml"]));
        std::fs::write(b.path().join("y.toml"), "name = 3").unwrap();
        assert_ne!(da, of_files(&[b.path()], &["toml"]));
        // Moving bytes from one part to the next is a change too.
        assert_ne!(
            of_parts([("a", &b"xy"[..]), ("b", &b""[..])]),
            of_parts([("a", &b"x"[..]), ("b", &b"y"[..])])
        );
    }
}
