//! `nightshift rewrite <kernel>`: what rewrites do to a kernel, without a GPU (the
//! work is `crate::rewrite`'s).

use std::path::PathBuf;

use clap::Args;

use super::exit;
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

/// `--rewrite` and `--nvrtc-option`, as `bench`, `sweep` and `rewrite` take them.
#[derive(Args, Debug, Clone, Default)]
pub struct RewriteFlags {
    /// The kernel as a rewrite makes it (`name` or `name:key=value,...`, e.g.
    /// `launch-bounds:min_blocks=2`, `unroll-pragma:factor=8`, `fast-math:part=ftz`);
    /// repeat to apply several in order. The reference stays the spec's own kernel.
    #[arg(long = "rewrite", value_name = "REWRITE")]
    pub rewrite: Vec<String>,
    /// An extra NVRTC option for the kernel (not its reference), after the rewrites,
    /// e.g. `--nvrtc-option=--maxrregcount=64`; repeatable.
    #[arg(
        long = "nvrtc-option",
        value_name = "OPTION",
        allow_hyphen_values = true
    )]
    pub nvrtc_option: Vec<String>,
}

impl RewriteFlags {
    pub fn is_empty(&self) -> bool {
        self.rewrite.is_empty() && self.nvrtc_option.is_empty()
    }

    /// `spec` as these flags rewrite it (see `rewrite::rewritten`). A rewrite that
    /// is not a built-in is a pattern's own: the library in `./patterns` says what.
    pub fn apply(
        &self,
        mut spec: crate::spec::KernelSpec,
    ) -> Result<crate::spec::KernelSpec, crate::rewrite::RewriteError> {
        let builtin = |r: &String| {
            let name = r.split(':').next().unwrap_or_default();
            crate::rewrite::NAMES.contains(&name)
        };
        let library = std::path::Path::new("patterns");
        if !self.rewrite.iter().all(builtin) && library.is_dir() {
            let lib = crate::patterns::Library::load(library)
                .map_err(|e| crate::rewrite::RewriteError::Param {
                    rewrite: "patterns".into(),
                    message: format!("a rewrite that is not a built-in is a pattern's own, and ./patterns does not load: {e}"),
                })?;
            spec.edits = lib.edits();
        }
        crate::rewrite::rewritten(spec, &self.rewrite, &self.nvrtc_option)
    }
}

#[derive(Args, Debug)]
pub struct RewriteArgs {
    /// The kernel's directory (holding kernel.toml).
    pub kernel: PathBuf,
    #[command(flatten)]
    pub rewrites: RewriteFlags,
    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}
