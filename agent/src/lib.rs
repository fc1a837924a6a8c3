//! nightshift: an agentic optimization daemon for CUDA kernels.
//!
//! The modules follow the pipeline of one candidate: `spec` (what the kernel is),
//! `gpu` (the only code touching CUDA, NVRTC and NVML), `worker` (the isolated
//! process that owns the GPU, and its supervisor), `validate` (is it correct),
//! `measure` (how fast, how sure), `evaluate` (one candidate end to end), `cli`.
//! The agent loop's parts: `profile` (signals read from a measurement), `patterns`
//! (the pattern library in `patterns/`), `budget` (budgets.toml and the ledger),
//! `journal` (the append-only record a run resumes from), `controller` (the loop's
//! decisions, without I/O), `vcs` (the run's git branch and worktree).

pub mod budget;
pub mod cli;
pub mod controller;
pub mod digest;
pub mod dispatch;
pub mod evaluate;
pub mod files;
pub mod gate;
#[allow(unsafe_code)] // the one module that touches CUDA, NVRTC and NVML
pub mod gpu;
pub mod journal;
pub mod measure;
pub mod nonfinite;
pub mod patterns;
pub mod profile;
pub mod report;
pub mod runs;
pub mod spec;
pub mod sweep;
#[cfg(test)]
mod testutil;
pub mod validate;
pub mod vcs;
pub mod worker;
