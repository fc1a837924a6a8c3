//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every bundled kernel directory (one holding a kernel.toml) under `kernels/`, sorted.
pub fn bundled_kernels() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(repo_root().join("kernels"))
        .expect("kernels/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("kernel.toml").exists())
        .collect();
    dirs.sort();
    dirs
}

/// The nightshift binary: `$NIGHTSHIFT_BIN`, cargo's build of it, or the packed copy in `.gpu/bin`.
pub fn nightshift_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NIGHTSHIFT_BIN") {
        return PathBuf::from(p);
    }
    let built = PathBuf::from(env!("CARGO_BIN_EXE_nightshift"));
    if built.exists() {
        return built;
    }
    repo_root().join(".gpu/bin/nightshift")
}

/// Why GPU tests cannot run here, or None when a CUDA device is present.
pub fn no_gpu_reason() -> Option<String> {
    if let Err(e) = nightshift::gpu::driver_present() {
        return Some(e);
    }
    match nightshift::gpu::device_count() {
        Ok(n) if n > 0 => None,
        Ok(_) => Some("the driver reports no device".into()),
        Err(e) => Some(e.to_string()),
    }
}

/// True (and prints why) when the GPU tests must be skipped. With
/// NIGHTSHIFT_REQUIRE_GPU=1 a missing GPU fails the test instead.
pub fn skip_without_gpu(test: &str) -> bool {
    match no_gpu_reason() {
        None => false,
        Some(reason) => {
            if std::env::var_os("NIGHTSHIFT_REQUIRE_GPU").is_some() {
                panic!("{test}: NIGHTSHIFT_REQUIRE_GPU is set but there is no GPU: {reason}");
            }
            println!("skipped: no CUDA device ({test}: {reason})");
            true
        }
    }
}

/// Runs git in `dir`; its trimmed stdout. Panics when git fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}");
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

/// Commits everything in `dir` to a fresh repository on branch `main`.
pub fn git_init(dir: &Path) {
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["config", "user.email", "u@example.com"]);
    git(dir, &["config", "user.name", "U"]);
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", "start"]);
}
