//! The isolated GPU worker: a child process per GPU that owns the CUDA context
//! (`server`), the parent's side that spawns, watches and restarts it (`supervisor`),
//! and the JSON-lines messages between them (`protocol`).

pub mod checks;
pub mod protocol;
pub mod server;
pub mod supervisor;
