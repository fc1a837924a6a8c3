//! `nightshift patterns`: the pattern library as `nightshift run` will load it.

use super::{exit, PatternsArgs};
use crate::patterns::{Body, Library, Move};
use crate::table;

fn moves(m: &[Move]) -> String {
    m.iter()
        .map(|m| format!("{:?} {:?}", m.role, m.direction).to_lowercase())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A rewrite pattern's steps, `(defaults)` for an empty one.
fn steps(rewrite: &str, steps: &[String]) -> String {
    let shown: Vec<&str> = steps
        .iter()
        .map(|s| {
            if s.is_empty() {
                "(defaults)"
            } else {
                s.as_str()
            }
        })
        .collect();
    format!("{rewrite}: {}", shown.join(" | "))
}

pub fn run(args: &PatternsArgs) -> i32 {
    let lib = match Library::load(&args.dir) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let rows: Vec<Vec<String>> = lib
        .patterns
        .iter()
        .map(|p| {
            let (kind, what) = match &p.body {
                Body::Moves(m) => ("moves", moves(m)),
                Body::TierOrder(o) => (
                    "rule",
                    format!(
                        "tier order: {}",
                        o.iter().map(|t| t.name()).collect::<Vec<_>>().join(" < ")
                    ),
                ),
                Body::RoiPivot { factor } => (
                    "rule",
                    format!("drop a pattern after {factor} x its budget without FAST"),
                ),
                Body::WorkloadBatching { scale } => (
                    "study",
                    format!("workload axes x {scale:?}: throughput per unit of work"),
                ),
                Body::Rewrite {
                    rewrite, steps: s, ..
                } => ("rewrite", steps(rewrite, s)),
                Body::Proposal { attempts, .. } => (
                    "proposal",
                    format!("ask the proposer (nightshift.toml), {attempts} proposal(s) per best"),
                ),
            };
            let is_rule = kind == "rule";
            vec![
                p.name.clone(),
                kind.to_string(),
                if is_rule {
                    "-".into()
                } else {
                    p.tier.to_string()
                },
                p.when
                    .as_ref()
                    .map(|w| w.src().to_string())
                    .unwrap_or_else(|| "-".into()),
                what,
                p.budget_minutes
                    .map(|b| format!("{b} min"))
                    .unwrap_or_else(|| {
                        if is_rule {
                            "-".into()
                        } else {
                            "budgets.toml".into()
                        }
                    }),
                p.predict
                    .as_ref()
                    .map(|x| format!("{:.2}x", x.speedup))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    if args.json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .zip(&lib.patterns)
            .map(|(r, p)| {
                // A rewrite pattern's rewrite and steps as written (null for others).
                let (rewrite, steps) = match &p.body {
                    Body::Rewrite { rewrite, steps, .. } => (Some(rewrite), Some(steps)),
                    _ => (None, None),
                };
                serde_json::json!({
                    "name": r[0], "kind": r[1], "tier": r[2], "when": r[3],
                    "does": r[4], "budget": r[5], "predicted_speedup": r[6],
                    "rewrite": rewrite, "steps": steps,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&v).expect("serializable")
        );
    } else {
        let header = [
            "pattern", "kind", "tier", "when", "does", "budget", "predicts",
        ];
        print!("{}", table::render(&header, &rows));
        println!(
            "\n{} patterns from {}; tiers are tried in the order {}, a pattern is dropped after {} x its budget without a FAST verdict.",
            lib.patterns.len(),
            args.dir.display(),
            lib.tier_order().iter().map(|t| t.name()).collect::<Vec<_>>().join(" < "),
            lib.pivot_factor()
        );
    }
    exit::OK
}
