//! Reading the files nightshift is given: regular files only (a FIFO would block, a
//! device never ends, a directory is not text), and no larger than a stated limit, so
//! that no input can hang a command or exhaust its memory.

use std::io::{self, Read};
use std::path::Path;

/// The largest spec, source, header, budgets, pattern, baseline or `tuned.toml` file
/// nightshift reads.
pub const MAX_INPUT_BYTES: u64 = 64 << 20;

/// The largest journal nightshift reads (raw samples make them large, not this large).
pub const MAX_JOURNAL_BYTES: u64 = 4 << 30;

/// The bytes of `path`, which must be a regular file (or a symlink to one) of at most
/// `max` bytes.
pub fn read_bytes(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    // Metadata first: opening a FIFO would block until a writer came.
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file (a FIFO, socket or device)"
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is {what}", path.display()),
        ));
    }
    if meta.len() > max {
        return Err(too_large(path, max));
    }
    let mut out = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)?
        .take(max + 1)
        .read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(too_large(path, max));
    }
    Ok(out)
}

/// The text of `path` (UTF-8), as [`read_bytes`] reads it.
pub fn read_text(path: &Path, max: u64) -> io::Result<String> {
    String::from_utf8(read_bytes(path, max)?).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is not UTF-8 text (byte {} is not)",
                path.display(),
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

fn too_large(path: &Path, max: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is larger than the {} MiB nightshift reads",
            path.display(),
            max >> 20
        ),
    )
}

/// The records of a JSON-lines file written as its work goes (a sweep's points, a
/// space's configurations), each line parsed as `T`. A last line cut short by a crash
/// is left out (its work is done again); any other line that does not parse is an
/// error naming the file and the line.
pub fn read_records<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Vec<T>> {
    use anyhow::Context as _;
    let text = read_text(path, MAX_JOURNAL_BYTES)
        .with_context(|| format!("reading {}", path.display()))?;
    let n = text.lines().count();
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        match serde_json::from_str::<T>(l) {
            Ok(r) => out.push(r),
            Err(_) if i + 1 == n => {}
            Err(e) => anyhow::bail!("{} line {}: {e}", path.display(), i + 1),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_limit_are_read() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a.toml");
        std::fs::write(&f, "x = 1\n").unwrap();
        assert_eq!(read_text(&f, 100).unwrap(), "x = 1\n");
        let e = read_text(&f, 3).unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
        let e = read_text(d.path(), 100).unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
        std::fs::write(&f, [0xFFu8, 0xFE]).unwrap();
        let e = read_text(&f, 100).unwrap_err();
        assert!(e.to_string().contains("not UTF-8"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("fifo");
        let ok = std::process::Command::new("mkfifo")
            .arg(&f)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            println!("skipped: mkfifo is not available");
            return;
        }
        let e = read_text(&f, 100).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }
}
