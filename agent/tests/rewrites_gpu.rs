//! Every built-in rewrite on every bundled kernel, on a GPU: each one that applies
//! compiles (NVRTC takes its options) and passes validation against the original
//! kernel's reference at every size. Fast math may fail validation: then it is the
//! spec's tolerance that decided, which is what it is for; it is printed, not a
//! failure. Registers and spills before and after are printed. Prints `skipped: no
//! CUDA device` where there is none.

mod common;

use std::time::Duration;

use nightshift::evaluate::{Options, Session};
use nightshift::rewrite::{Applied, Rewrite};
use nightshift::spec::{KernelSpec, Rewritten};
use nightshift::vocab::Outcome;

const REWRITES: [&str; 8] = [
    "launch-bounds:min_blocks=2",
    "max-registers:count=32",
    "restrict-const",
    "unroll-pragma:factor=4",
    "fast-math:part=all",
    "fast-math:part=ftz",
    "cache-policy:policy=cg",
    "cache-policy:policy=ca",
];

#[test]
fn every_builtin_rewrite_compiles_and_validates_on_every_bundled_kernel() {
    if common::skip_without_gpu(
        "every_builtin_rewrite_compiles_and_validates_on_every_bundled_kernel",
    ) {
        return;
    }
    let mut o = Options::new(std::env::temp_dir().join("nightshift-gpu-tests"));
    o.worker_exe = Some(common::nightshift_bin());
    o.watchdog = Duration::from_secs(60);
    o.measure.energy_ms = 0.0;
    let mut s = Session::start(o, Box::new(|_| {})).expect("a GPU session starts");
    let mut failures = Vec::new();
    let mut applied = 0;
    for dir in common::bundled_kernels() {
        let spec = KernelSpec::load(&dir).unwrap();
        let base = spec.baseline();
        let plain = s
            .evaluate(&spec, &base, false)
            .expect("the infrastructure holds");
        let regs = |e: &nightshift::evaluate::Evaluation| {
            e.function.map_or("-".into(), |f| {
                format!("{} regs, {} B local", f.registers, f.local_bytes)
            })
        };
        println!(
            "{:<10} as written: {}, {}",
            spec.name,
            plain.outcome.describe(),
            regs(&plain)
        );
        for text in REWRITES {
            let r = Rewrite::parse(text, &spec).unwrap();
            let v = match r.apply(&spec.entry, &spec.source, &spec.compile_options) {
                Ok(Applied::Changed(v)) => v,
                Ok(Applied::NotApplicable(why)) => {
                    println!("{:<10} {r}: not applicable: {why}", spec.name);
                    continue;
                }
                Err(e) => {
                    failures.push(format!("{} {r}: {e}", spec.name));
                    continue;
                }
            };
            applied += 1;
            let mut rs = spec.clone();
            rs.rewritten = Some(Rewritten {
                source: v.source,
                options: v.options,
                rewrites: vec![r.to_string()],
            });
            let e = s
                .evaluate(&rs, &base, false)
                .expect("the infrastructure holds");
            let line = format!(
                "{:<10} {r}: {}, {}",
                spec.name,
                e.outcome.describe(),
                regs(&e)
            );
            println!("{line}");
            match (&e.outcome, &r) {
                (Outcome::Passed, _) => {}
                (Outcome::Incorrect { .. }, Rewrite::FastMath(_)) => {}
                _ => failures.push(line),
            }
        }
    }
    println!("{applied} rewrite(s) applied");
    assert!(applied >= 20, "only {applied} rewrites applied");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
