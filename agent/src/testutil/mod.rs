//! Helpers shared by the crate's unit tests: throwaway git repositories, patterns
//! that always apply, and ([`server`]) a scripted HTTP server on 127.0.0.1.

pub mod server;

use std::path::Path;

/// Runs `git args` in `dir`, failing the test if git fails; returns trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A pattern that always applies, with no budget or prediction of its own (for tests
/// of the loop's decisions and plumbing).
pub fn pattern(
    name: &str,
    tier: crate::patterns::Tier,
    body: crate::patterns::Body,
) -> crate::patterns::Pattern {
    crate::patterns::Pattern {
        name: name.into(),
        path: std::path::PathBuf::from(format!("patterns/{name}.toml")),
        tier,
        when: None,
        budget_minutes: None,
        rationale: "test".into(),
        predict: None,
        priority: 0,
        together: false,
        body,
    }
}

/// A rewrite pattern of the source tier proposing the built-in `rewrite` once per
/// step.
pub fn rewrite_pattern(name: &str, rewrite: &str, steps: &[&str]) -> crate::patterns::Pattern {
    let body = crate::patterns::Body::Rewrite {
        rewrite: rewrite.into(),
        steps: steps.iter().map(|s| s.to_string()).collect(),
        edit: None,
    };
    pattern(name, crate::patterns::Tier::Source, body)
}

/// A proposal pattern of the source tier asking `attempts` proposals around a best.
pub fn proposal_pattern(name: &str, attempts: usize) -> crate::patterns::Pattern {
    let body = crate::patterns::Body::Proposal {
        instruction: format!("{name}: make it faster"),
        attempts,
    };
    pattern(name, crate::patterns::Tier::Source, body)
}
