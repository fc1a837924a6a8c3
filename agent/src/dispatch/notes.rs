//! Decisions that only need saying and journaling: a rewrite that does not apply, a
//! pattern given up on, the tunables no applicable pattern moves.

use super::*;

impl<E: Evaluator> Dispatcher<E> {
    pub(super) fn not_applicable(
        &mut self,
        kernel: usize,
        pattern: String,
        config: &Candidate,
        reason: String,
    ) -> Result<()> {
        self.view.show(Seen::NotApplicable {
            kernel: &self.kernels[kernel].spec.name,
            config: &config.to_string(),
            reason: &reason,
        });
        self.record(JEvent::NotApplicable {
            kernel: self.name(kernel),
            pattern,
            config: config.to_string(),
            reason,
        })
    }

    pub(super) fn pivot(&mut self, kernel: usize, pattern: String, reason: String) -> Result<()> {
        self.view.show(Seen::Pivot {
            kernel: &self.kernels[kernel].spec.name,
            pattern: &pattern,
            reason: &reason,
        });
        self.record(JEvent::Pivot {
            kernel: self.name(kernel),
            pattern,
            reason,
        })
    }

    pub(super) fn unmoved(&mut self, kernel: usize, tunables: Vec<String>) -> Result<()> {
        for t in &tunables {
            self.view.show(Seen::Unmoved {
                kernel: &self.kernels[kernel].spec.name,
                tunable: t,
            });
        }
        self.record(JEvent::Unmoved {
            kernel: self.name(kernel),
            tunables,
        })
    }
}
