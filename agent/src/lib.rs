//! nightshift: an agentic optimization daemon for CUDA kernels.
//!
//! The modules, in the order of the pipeline of one candidate (ARCHITECTURE.md at the
//! repository root says more): `spec` (what the kernel is: spec, expressions, search
//! space, plans), `rewrite` (source and compiler-option rewrites on the kernel's parse
//! tree), `patterns` (the pattern library), `propose` (proposers that write code: a
//! language model or a command, and the checks a proposal passes before the GPU),
//! `controller` (the loop's decisions, without I/O), `dispatch` (the async loop that
//! carries them out; replay on resume), `evaluate` (one candidate end to end, parent side), `worker` (the process that owns
//! the GPU: validation and measurement), `validate` (what "correct" means; the device
//! checks and their host mirror), `measure` (what "faster" means; the sequential A/B
//! rule), `calibrate` (that rule's error rates, measured on the GPU), `profile`
//! (signals read from a measurement), `study` (the workload-batching study), `tuned`
//! (what a winner commits), `vocab` (the words every stage speaks: outcomes,
//! measurements, A/B results), `budget` (budgets.toml and the ledger), `journal` (the
//! record a run resumes and reports from), `state` (the one fold of it), `vcs` (the
//! run's branch and worktree), `report` (reports from that fold), `notify` (run
//! notifications to webhooks), `runs` (run directories), `settings` (`nightshift.toml`: the proposer and notifications),
//! `bench` (one configuration validated and timed, or two compared),
//! `sweep` (sweeps over grids of problem sizes), `check` and `gate` (the regression
//! check and its gate), `gpu` (the only code touching CUDA, NVRTC, NVML and `unsafe`),
//! `files`, `digest`, `table` and `http` (reading input safely, content digests,
//! plain-text tables, what the HTTP clients share), `cli` (the commands: a thin file each over the modules above).

pub mod bench;
pub mod budget;
pub mod calibrate;
pub mod check;
pub mod cli;
pub mod controller;
pub mod digest;
pub mod dispatch;
pub mod evaluate;
pub mod fanout;
pub mod files;
pub mod gate;
#[allow(unsafe_code)] // the one module that touches CUDA, NVRTC and NVML
pub mod gpu;
pub mod http;
pub mod journal;
pub mod measure;
pub mod nonfinite;
pub mod notify;
pub mod patterns;
pub mod profile;
pub mod propose;
pub mod report;
pub mod rewrite;
pub mod runs;
pub mod settings;
pub mod space;
pub mod spec;
pub mod state;
pub mod study;
pub mod surrogate;
pub mod sweep;
pub mod table;
#[cfg(test)]
mod testutil;
pub mod tuned;
pub mod validate;
pub mod vcs;
pub mod vocab;
pub mod worker;
