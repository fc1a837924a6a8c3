//! `nightshift rewrite <kernel>`: what rewrites do to a kernel, without a GPU (the
//! work is `crate::rewrite`'s).

use super::{exit, RewriteArgs};
use crate::rewrite::{self, Applied, Rewrite, NAMES};
use crate::spec::KernelSpec;
use crate::table;

pub fn run(a: &RewriteArgs) -> i32 {
    let spec = match KernelSpec::load(&a.kernel) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    if a.rewrites.is_empty() {
        return survey(&spec, a.json);
    }
    let r = match a.rewrites.apply(spec.clone()) {
        Ok(r) => r.rewritten.expect("rewrites were asked for"),
        Err(e) => {
            eprintln!("error: --rewrite: {e}");
            return exit::USAGE;
        }
    };
    let diff = rewrite::unified_diff(&spec.source, &r.source);
    if a.json {
        let j = serde_json::json!({
            "kernel": spec.name,
            "rewrites": r.rewrites,
            "options": r.options,
            "diff": diff,
        });
        println!("{j:#}");
    } else {
        println!("{}: {}", spec.name, r.rewrites.join(", "));
        println!("NVRTC options: {}", shown(&r.options));
        if diff.is_empty() {
            println!("source unchanged");
        } else {
            print!("{diff}");
        }
    }
    exit::OK
}

fn shown(options: &[String]) -> String {
    if options.is_empty() {
        "(none)".into()
    } else {
        options.join(" ")
    }
}

/// Every built-in with its default parameters on the kernel: applied (what changed)
/// or not, and why.
fn survey(spec: &KernelSpec, json: bool) -> i32 {
    let mut rows = Vec::new();
    for name in NAMES {
        // max-registers has no default: the survey asks for 64.
        let text = if name == "max-registers" {
            "max-registers:count=64"
        } else {
            name
        };
        let (r, what) = match Rewrite::parse(text, spec) {
            Err(e) => (text.to_string(), format!("error: {e}")),
            Ok(r) => {
                let what = match r.apply(&spec.entry, &spec.source, &spec.compile_options) {
                    Ok(Applied::Changed(v)) if v.diff.is_empty() => {
                        format!("applies: NVRTC options {}", shown(&v.options))
                    }
                    Ok(Applied::Changed(v)) => format!(
                        "applies: {} line(s) of source change",
                        v.diff
                            .lines()
                            .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
                            .count()
                    ),
                    Ok(Applied::NotApplicable(why)) => format!("not applicable: {why}"),
                    Err(e) => format!("error: {e}"),
                };
                (r.to_string(), what)
            }
        };
        rows.push(vec![r, what]);
    }
    if json {
        let j: Vec<_> = rows
            .iter()
            .map(|r| serde_json::json!({ "rewrite": r[0], "result": r[1] }))
            .collect();
        println!(
            "{:#}",
            serde_json::json!({ "kernel": spec.name, "rewrites": j })
        );
    } else {
        println!("{} ({}):", spec.name, spec.source_path.display());
        print!("{}", table::render(&["rewrite", "on this kernel"], &rows));
    }
    exit::OK
}
