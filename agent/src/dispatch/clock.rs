//! The dispatcher's clock and the stop a signal asks for.

use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The dispatcher's clock: real time, or (for tests of the loop's decisions whose
/// figures are made up) a clock that stands still, so that no decision depends on
/// how fast the test machine is.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    Real(Instant),
    Frozen,
}

impl Clock {
    pub fn real() -> Clock {
        Clock::Real(Instant::now())
    }

    pub(super) fn elapsed_s(&self) -> f64 {
        match self {
            Clock::Real(t) => t.elapsed().as_secs_f64(),
            Clock::Frozen => 0.0,
        }
    }
}

/// A stop requested from outside (SIGINT, SIGTERM): honoured before the next
/// candidate starts, so the one in flight is finished and journaled.
#[derive(Debug, Clone, Default)]
pub struct StopFlag(Arc<Mutex<Option<String>>>);

impl StopFlag {
    pub fn request(&self, why: &str) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.get_or_insert_with(|| why.to_string());
    }
    pub(super) fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
