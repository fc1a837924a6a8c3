//! nightshift: an agentic optimization daemon for CUDA kernels.
//!
//! The modules follow the pipeline of one candidate: `spec` (what the kernel is),
//! `gpu` (the only code touching CUDA, NVRTC and NVML), `worker` (the isolated
//! process that owns the GPU, and its supervisor), `validate` (is it correct),
//! `measure` (how fast, how sure), `evaluate` (one candidate end to end), `cli`.

pub mod cli;
pub mod evaluate;
pub mod gpu;
pub mod measure;
pub mod nonfinite;
pub mod spec;
pub mod validate;
pub mod worker;
