//! Turns between kernels: the next kernel to start or resume, pausing one past its
//! share, and a kernel that is done.

use super::*;

impl Controller {
    /// Starts the next kernel that has not started, else resumes a paused one, else
    /// stops: nothing is left.
    pub(super) fn advance(&mut self, now_s: f64, out: &mut Vec<Action>) {
        let n = self.kernels.len();
        if let Some(i) = (0..n).find(|&i| !self.kernels[i].started) {
            self.current = i;
            let name = self.kernels[i].spec.name.clone();
            if self.refused(now_s, &name, None, out) {
                return;
            }
            self.kernels[i].started = true;
            self.give_share(i);
            self.asked = Some(Asked::Baseline(i));
            out.push(Action::MeasureBaseline {
                kernel: i,
                config: self.kernels[i].spec.baseline(),
            });
            return;
        }
        let paused = (1..=n)
            .map(|d| (self.current + d) % n)
            .find(|&i| self.kernels[i].paused || self.kernels[i].awaiting.is_some());
        if let Some(i) = paused {
            self.current = i;
            self.kernels[i].paused = false;
            self.give_share(i);
            if self.kernels[i].awaiting.take().is_some() {
                // Its question was sent when it stepped aside: take the answer.
                self.asked = None;
                out.push(Action::Await { kernel: i });
                return;
            }
            self.next(now_s, i, out);
            return;
        }
        self.stopped = true;
        out.push(Action::Stop {
            reason: StopReason::NothingLeft,
        });
    }

    /// Pauses `kernel`, past its share while others wait (its line of attack kept),
    /// and moves on.
    pub(super) fn pause(&mut self, now_s: f64, kernel: usize, out: &mut Vec<Action>) {
        let k = &mut self.kernels[kernel];
        k.paused = true;
        let reason = format!(
            "spent {:.0} s, its share of the budget, while other kernels wait; it resumes with what they leave",
            k.spent_s
        );
        out.push(Action::KernelPaused { kernel, reason });
        self.advance(now_s, out);
    }

    pub(super) fn done(&mut self, now_s: f64, kernel: usize, out: &mut Vec<Action>) {
        self.kernels[kernel].done = true;
        out.push(Action::KernelDone {
            kernel,
            reason: "no applicable pattern has anything left to try".into(),
        });
        // The next kernel starts once the comparison is made (its cost known).
        if !self.final_comparison(now_s, kernel, out) {
            self.advance(now_s, out);
        }
    }
}
