//! `nightshift bench`: validate and time one configuration, or two interleaved (the
//! work is `crate::bench`'s).

use super::{clear_progress, exit, progress_printer, BenchArgs};
use crate::bench::{self, references};
use crate::evaluate::{Options, Session};
use crate::spec::{Config, KernelSpec};

pub fn run(args: &BenchArgs, opts: Options) -> i32 {
    let (spec, rewritten) = match load(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let (a, b) = match configs(&spec, args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let mut session = match super::start_session(opts) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if args.check_references {
        let code = check_references(&spec, &mut session, args.common.json);
        session.shutdown();
        return code;
    }
    // With a rewrite: the kernel as written (at `a`) against the kernel as rewritten
    // (at `b`, or `a`), interleaved; validated only, the rewritten one alone.
    let r = match &rewritten {
        None => bench::run(
            &mut session,
            &spec,
            &a,
            b.as_ref().map(|b| (&spec, b)),
            args.validate_only,
            args.external,
        ),
        Some(rs) if args.validate_only => bench::run(&mut session, rs, &a, None, true, false),
        Some(rs) => bench::run(
            &mut session,
            &spec,
            &a,
            Some((rs, b.as_ref().unwrap_or(&a))),
            false,
            args.external,
        ),
    };
    let r = match r {
        Ok(r) => r,
        Err(e) => {
            clear_progress();
            eprintln!("error: {e}");
            return exit::NO_GPU;
        }
    };
    clear_progress();
    if args.common.json {
        let restarts = session.restarts();
        println!("{}", r.json(&session.device, &session.ceilings, restarts));
    } else {
        let shown = rewritten.as_ref().unwrap_or(&spec);
        print!("{}", r.render(shown, &session.device, &session.ceilings));
    }
    session.shutdown();
    if r.passed() {
        exit::OK
    } else {
        exit::REJECTED
    }
}

/// The spec as written and, with `--rewrite` or `--nvrtc-option`, as rewritten (a
/// rewrite that does not apply is an error, before any GPU time).
fn load(args: &BenchArgs) -> Result<(KernelSpec, Option<KernelSpec>), String> {
    let spec = KernelSpec::load(&args.kernel).map_err(|e| e.to_string())?;
    if args.rewrites.is_empty() {
        return Ok((spec, None));
    }
    let rs = args
        .rewrites
        .apply(spec.clone())
        .map_err(|e| format!("--rewrite: {e}"))?;
    Ok((spec, Some(rs)))
}

/// The configuration `--set` asks for and the one `--vs` makes of it, or why not
/// (an unknown tunable, a value it does not take, a restriction either violates).
fn configs(spec: &KernelSpec, args: &BenchArgs) -> Result<(Config, Option<Config>), String> {
    let a = spec
        .with_overrides(&spec.baseline(), &args.set)
        .map_err(|e| format!("--set: {e}"))?;
    let b = if args.vs.is_empty() {
        None
    } else {
        let b = spec
            .with_overrides(&a, &args.vs)
            .map_err(|e| format!("--vs: {e}"))?;
        Some(b)
    };
    for c in std::iter::once(&a).chain(b.as_ref()) {
        let bad = spec.violated(&spec.problem, c);
        if !bad.is_empty() {
            return Err(format!(
                "{c} violates the restriction(s) {} of {}",
                bad.join(", "),
                spec.spec_path.display()
            ));
        }
    }
    Ok((a, b))
}

/// `bench --check-references`: the reference against PyTorch on the same inputs, one
/// line per validation size as PyTorch answers (or one JSON object at the end).
fn check_references(spec: &KernelSpec, session: &mut Session, json: bool) -> i32 {
    let Some(name) = spec.external.torch.clone() else {
        clear_progress();
        eprintln!(
            "error: {} names no PyTorch equivalent ([external] torch)",
            spec.spec_path.display()
        );
        return exit::USAGE;
    };
    let dirs = match references::dump(session, spec, &name) {
        Ok(d) => d,
        Err(e) => {
            clear_progress();
            eprintln!("error: {e}");
            return exit::NO_GPU;
        }
    };
    clear_progress();
    let mut checks = Vec::new();
    for d in &dirs {
        progress_printer()(&format!("PyTorch checks {}", d.display()));
        let c = references::check(spec, d, session.opts.gpu);
        clear_progress();
        if !json {
            println!("{}", c.line(&spec.name));
        }
        checks.push(c);
    }
    if json {
        println!("{}", references::json(&spec.name, &checks));
    }
    if references::all_passed(&checks) {
        exit::OK
    } else {
        exit::REJECTED
    }
}
