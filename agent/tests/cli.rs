//! The binary's behaviour on bad input and on a machine without a GPU.

mod common;

use std::process::Command;

fn nightshift(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(common::nightshift_bin())
        .args(args)
        .output()
        .expect("nightshift runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn doctor_without_a_gpu_says_what_is_missing_and_fails() {
    if common::no_gpu_reason().is_none() {
        println!("skipped: a CUDA device is present (this test checks the no-GPU path)");
        return;
    }
    let (code, out, _) = nightshift(&["doctor"]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("no CUDA driver")
            || out.contains("no usable CUDA device")
            || out.contains("no device"),
        "{out}"
    );
}

#[test]
fn bench_without_a_gpu_fails_clearly() {
    if common::no_gpu_reason().is_none() {
        println!("skipped: a CUDA device is present (this test checks the no-GPU path)");
        return;
    }
    let dir = common::repo_root().join("kernels/softmax");
    let (code, _, err) = nightshift(&["bench", dir.to_str().unwrap()]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("cannot open CUDA device"), "{err}");
}

#[test]
fn bench_names_a_malformed_spec_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("kernel.toml"),
        "name = \"x\"\nsorce = \"x.cu\"\n",
    )
    .unwrap();
    let (code, _, err) = nightshift(&["bench", dir.path().to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("kernel.toml:2"), "{err}");
    assert!(err.contains("sorce"), "{err}");
}

#[test]
fn bench_rejects_an_unknown_tunable_and_a_restricted_value() {
    let dir = common::repo_root().join("kernels/softmax");
    let (code, _, err) = nightshift(&["bench", dir.to_str().unwrap(), "--set", "BLOK=64"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a tunable"), "{err}");
    let (code, _, err) = nightshift(&["bench", dir.to_str().unwrap(), "--set", "BLOCK=100"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not among its values"), "{err}");
    let (code, _, err) = nightshift(&["bench", dir.to_str().unwrap(), "--set", "BLOCK"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("NAME=VALUE"), "{err}");
}

#[test]
fn bench_on_a_missing_directory_is_a_clear_error() {
    let (code, _, err) = nightshift(&["bench", "/nonexistent/kernel"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot read the spec"), "{err}");
}

#[test]
fn patterns_lists_the_library_and_rejects_a_malformed_pattern() {
    let dir = common::repo_root().join("patterns");
    let (code, out, err) = nightshift(&["patterns", "--dir", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    for p in ["parallelism-first", "roi-pivot", "workload-batching"] {
        assert!(out.contains(p), "{out}");
    }
    let (code, out, _) = nightshift(&["patterns", "--dir", dir.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v.as_array().map(|a| a.len()), Some(9));

    let bad = tempfile::tempdir().unwrap();
    std::fs::write(
        bad.path().join("mine.toml"),
        "name = \"mine\"\nkind = \"moves\"\ntier = \"launch\"\nwhen = \"wavez < 1\"\nrationale = \"x\"\n[[move]]\nrole = \"block\"\ndirection = \"up\"\n",
    )
    .unwrap();
    let (code, _, err) = nightshift(&["patterns", "--dir", bad.path().to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("mine.toml:4") && err.contains("wavez"),
        "{err}"
    );
}
