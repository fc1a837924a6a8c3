//! Run notifications (issue 17, item 6): what a [`Notice`] (the run ended, a
//! kernel's first gain, the run failed) says, to a person and as JSON. Sending it
//! to the webhooks of `nightshift.toml`'s `[notify]` comes next.

mod notice;

#[cfg(test)]
mod tests;

pub use notice::{Gain, Notice, SpendLine};
