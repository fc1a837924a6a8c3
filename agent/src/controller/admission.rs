//! What may start: the run's budget admits work only if it can finish and still
//! leave room for the final comparisons owed; each kernel's fair share; stopping on
//! a limit after those comparisons.

use super::*;

impl Controller {
    /// The kernel's share: the budget not yet spent by any kernel's own work, over
    /// the kernels not done (this one included).
    pub(super) fn give_share(&mut self, kernel: usize) {
        let spent: f64 = self.kernels.iter().map(|k| k.spent_s).sum();
        let waiting = self.kernels.iter().filter(|k| !k.done).count().max(1);
        let share = (self.total_s - spent).max(0.0) / waiting as f64;
        let k = &mut self.kernels[kernel];
        k.share_until_s = k.spent_s + share;
        k.since_resume = 0;
    }

    /// Whether `kernel` has spent its share while another kernel waits its turn.
    pub(super) fn over_share(&self, kernel: usize) -> bool {
        let k = &self.kernels[kernel];
        k.spent_s > k.share_until_s
            && k.since_resume > 0
            && self.kernels.iter().enumerate().any(|(i, o)| {
                i != kernel && !o.done && (!o.started || o.paused || o.awaiting.is_some())
            })
    }

    /// Asks for the final comparison of `kernel` when its best moved from its
    /// baseline and one more comparison fits the budget (else says why not). True when
    /// asked: the controller then waits for [`Event::Compared`].
    pub(super) fn final_comparison(
        &mut self,
        now_s: f64,
        kernel: usize,
        out: &mut Vec<Action>,
    ) -> bool {
        let k = &mut self.kernels[kernel];
        if k.compared {
            return false;
        }
        k.compared = true;
        let baseline = k.spec.baseline();
        let Some(best) = k
            .best
            .clone()
            .filter(|b| b.config != baseline || !b.rewrites.is_empty())
        else {
            return false;
        };
        let name = k.spec.name.clone();
        // The same rule as any candidate: never start what cannot finish.
        let projected = self.ledger.project(&name, None, 1);
        match self.ledger.admit(&self.budgets, projected, now_s) {
            Ok(()) => {
                self.asked = Some(Asked::Final(kernel));
                out.push(Action::FinalComparison {
                    kernel,
                    baseline,
                    best,
                });
                true
            }
            Err(reason) => {
                out.push(Action::FinalSkipped {
                    kernel,
                    reason: reason.describe(),
                });
                false
            }
        }
    }

    /// Stops on `reason`; a limit first has the final comparisons owed made, one at
    /// a time (the admission kept room for them).
    pub(super) fn stop_on(&mut self, now_s: f64, reason: StopReason, out: &mut Vec<Action>) {
        if reason.is_limit() {
            self.finishing = Some(reason.clone());
            self.finish(now_s, reason, out);
        } else {
            self.stopped = true;
            out.push(Action::Stop { reason });
        }
    }

    /// The next final comparison owed while stopping on `reason`, or the stop.
    pub(super) fn finish(&mut self, now_s: f64, reason: StopReason, out: &mut Vec<Action>) {
        while let Some(i) = (0..self.kernels.len()).find(|&i| {
            let k = &self.kernels[i];
            k.started && !k.done && !k.compared
        }) {
            if self.final_comparison(now_s, i, out) {
                return;
            }
        }
        self.stopped = true;
        out.push(Action::Stop { reason });
    }

    /// True (and a Stop pushed) when the budget cannot take one more candidate and
    /// still compare, at the end, each unfinished kernel's best with its baseline.
    pub(super) fn refused(
        &mut self,
        now_s: f64,
        kernel: &str,
        pattern: Option<&str>,
        out: &mut Vec<Action>,
    ) -> bool {
        self.refused_except(now_s, kernel, pattern, None, out)
    }

    /// [`Controller::refused`] for work that also spends `dollars` beside GPU time
    /// and holds the GPU `wait_s` more (a question to the proposer, then its
    /// candidate).
    pub(super) fn refused_spending(
        &mut self,
        now_s: f64,
        kernel: &str,
        pattern: Option<&str>,
        (dollars, wait_s): (f64, f64),
        out: &mut Vec<Action>,
    ) -> bool {
        let wait_s = if wait_s.is_finite() {
            wait_s.max(0.0)
        } else {
            f64::INFINITY
        };
        let projected = self.ledger.project(kernel, pattern, 1) + wait_s + self.finals_owed_s(None);
        match self.ledger.admit_spending(
            &self.budgets,
            projected,
            dollars + self.in_flight(),
            now_s,
        ) {
            Ok(()) => false,
            Err(reason) => {
                self.stop_on(now_s, reason, out);
                true
            }
        }
    }

    /// [`Controller::refused`], owing no final comparison for kernel `except`.
    pub(super) fn refused_except(
        &mut self,
        now_s: f64,
        kernel: &str,
        pattern: Option<&str>,
        except: Option<usize>,
        out: &mut Vec<Action>,
    ) -> bool {
        let projected = self.ledger.project(kernel, pattern, 1) + self.finals_owed_s(except);
        match self
            .ledger
            .admit_spending(&self.budgets, projected, self.in_flight(), now_s)
        {
            Ok(()) => false,
            Err(reason) => {
                self.stop_on(now_s, reason, out);
                true
            }
        }
    }

    /// The most the questions sent and not answered yet can cost: spent already,
    /// as far as a budget knows.
    pub(super) fn in_flight(&self) -> f64 {
        self.kernels.iter().filter_map(|k| k.awaiting).sum()
    }

    /// Projected cost of the final best-vs-baseline comparisons of the kernels started
    /// and not done, so that a run stopped by its budget still makes them. Kept for a
    /// kernel that has not gained yet too: its next candidate may be the gain.
    pub(super) fn finals_owed_s(&self, except: Option<usize>) -> f64 {
        self.kernels
            .iter()
            .enumerate()
            .filter(|(i, k)| k.started && !k.done && !k.compared && Some(*i) != except)
            .map(|(_, k)| k)
            .map(|k| self.ledger.project(&k.spec.name, None, 1))
            .sum()
    }
}
