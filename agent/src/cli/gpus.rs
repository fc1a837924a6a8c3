//! `--gpus`: the GPUs a command runs on, one worker session each, all of one model.

use anyhow::{anyhow, Result};

use crate::evaluate::{Options, Session};

/// The GPUs of `--gpus`: a list of CUDA ordinals, or every device.
#[derive(Debug, Clone, PartialEq)]
pub enum GpuSet {
    All,
    List(Vec<usize>),
}

impl GpuSet {
    /// The ordinals (`all`: every device the driver counts, or why not).
    pub fn resolve(&self) -> anyhow::Result<Vec<usize>> {
        match self {
            GpuSet::List(l) => Ok(l.clone()),
            GpuSet::All => match crate::gpu::device_count() {
                Ok(n) if n > 0 => Ok((0..n as usize).collect()),
                Ok(_) => Err(anyhow::anyhow!("--gpus all: the driver counts no CUDA device")),
                Err(e) => Err(anyhow::anyhow!(
                    "--gpus all: cannot count the CUDA devices here ({e}); name them, e.g. --gpus 0,1"
                )),
            },
        }
    }
}

/// `--gpus`: `all`, or CUDA ordinals separated by commas (at most 64; one named
/// twice gets two workers, whose measurements contend: see `nightshift run`).
pub(super) fn parse_gpus(s: &str) -> Result<GpuSet, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("all") {
        return Ok(GpuSet::All);
    }
    let mut out: Vec<usize> = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let g: usize = part.parse().map_err(|_| {
            format!("`{part}` in `{s}` is not a CUDA ordinal (0, 1, ...) and `{s}` is not `all`")
        })?;
        if g > 1023 {
            return Err(format!("GPU {g} in `{s}`: no machine has that many"));
        }
        out.push(g);
    }
    if out.len() > 64 {
        return Err(format!("{} GPUs in `{s}`: at most 64", out.len()));
    }
    Ok(GpuSet::List(out))
}

/// One worker session per GPU, started side by side (each measures or reads its
/// device's ceilings), all of one device model; a GPU named twice is said to
/// contend.
pub fn start_sessions(
    opts: &Options,
    gpus: &[usize],
    progress: Box<dyn FnMut(&str) + Send>,
) -> Result<Vec<Session>> {
    let mut progress = Some(progress);
    let mut seen = std::collections::BTreeSet::new();
    for g in gpus {
        if !seen.insert(*g) {
            eprintln!(
                "warning: GPU {g} is named twice in --gpus: its workers share it and their \
                 measurements contend (noisier verdicts); use it to check the plumbing, not to tune"
            );
        }
    }
    let started: Vec<Result<Session>> = std::thread::scope(|s| {
        let handles: Vec<_> = gpus
            .iter()
            .map(|&g| {
                let mut o = opts.clone();
                o.gpu = g;
                // One progress line: the first worker's.
                let progress: Box<dyn FnMut(&str) + Send> = match progress.take() {
                    Some(p) => p,
                    None => Box::new(|_: &str| {}),
                };
                s.spawn(move || Session::start(o, progress).map_err(|e| anyhow!("GPU {g}: {e}")))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("starting a worker panicked")))
            })
            .collect()
    });
    let mut sessions = Vec::new();
    let mut failed = None;
    for r in started {
        match r {
            Ok(s) => sessions.push(s),
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    if let Some(e) = failed {
        for s in sessions {
            s.shutdown();
        }
        return Err(e);
    }
    let model = |s: &Session| (s.device.name.clone(), s.device.arch.clone());
    if let Some(odd) = sessions.iter().find(|s| model(s) != model(&sessions[0])) {
        let msg = anyhow!(
            "the GPUs of a run must be of one model, whose measurements compare: GPU {} is {}, GPU {} is {}",
            sessions[0].device.ordinal,
            sessions[0].device.name,
            odd.device.ordinal,
            odd.device.name
        );
        for s in sessions {
            s.shutdown();
        }
        return Err(msg);
    }
    Ok(sessions)
}

/// [`start_sessions`] for `sweep` and `check`: the worker started as
/// `./nightshift.toml` says (like [`super::start_session`]); an error is printed
/// and its exit code returned.
pub fn start_here(mut opts: Options, gpus: &[usize]) -> Result<Vec<Session>, i32> {
    match crate::settings::Settings::load_optional(std::path::Path::new(".")) {
        Ok(s) => opts.launcher = s.launcher,
        Err(e) => {
            super::clear_progress();
            eprintln!("error: {e}");
            return Err(super::exit::USAGE);
        }
    }
    start_sessions(&opts, gpus, super::progress_printer()).map_err(|e| {
        super::clear_progress();
        eprintln!("error: {e:#}");
        super::exit::NO_GPU
    })
}

/// The ordinals a command runs on: `--gpus`, else `--gpu`, else 0.
pub fn ordinals(gpus: Option<&GpuSet>, gpu: Option<usize>) -> Result<Vec<usize>> {
    match gpus {
        Some(g) => g.resolve(),
        None => Ok(vec![gpu.unwrap_or(0)]),
    }
}
