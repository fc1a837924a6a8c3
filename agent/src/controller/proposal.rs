//! Proposal patterns: their line of attack is filled by a code-writing proposer.
//! When its queue holds nothing untried and questions are left around the current
//! best (`attempts`), the controller asks ([`Action::Propose`]) on an admission
//! that counts the proposer's mean bill so far; the answer ([`Event::Proposed`])
//! is a candidate (the best's configuration, its option rewrites, then
//! `proposal:<digest>`) or a `proposal_invalid` outcome with its reason. What a
//! call cost counts toward the pattern's ROI in GPU seconds at the device's price.

use super::*;
use crate::rewrite::proposed;

/// The digest naming a proposed source in a candidate (`proposal:<digest>`).
pub fn proposal_digest(source: &str) -> String {
    let full = crate::digest::of_parts([("proposal", source.as_bytes())]);
    full.chars().take(12).collect()
}

impl Controller {
    /// The questions a proposal pattern may ask around one best (None: not a
    /// proposal pattern).
    pub(super) fn proposal_attempts(&self, pattern: &str) -> Option<usize> {
        match self.pattern(pattern)?.body {
            Body::Proposal { attempts, .. } => Some(attempts),
            _ => None,
        }
    }

    /// Whether a proposal pattern may be chosen for `kernel`: a proposer is
    /// configured and questions are left around the current best.
    pub(super) fn may_ask(&self, kernel: usize, pattern: &str) -> bool {
        let Some(attempts) = self.proposal_attempts(pattern) else {
            return false;
        };
        let asked = self.kernels[kernel].asks.get(pattern).copied().unwrap_or(0);
        self.proposer && asked < attempts
    }

    /// The question due on the line of attack of `kernel`: its pattern and the
    /// question's number (1 first), when it is a proposal pattern whose queue holds
    /// nothing untried and questions are left.
    pub(super) fn ask_due(&self, kernel: usize) -> Option<(String, usize)> {
        let k = &self.kernels[kernel];
        let a = k.attack.as_ref()?;
        if a.queue.iter().any(|c| !k.tried.contains(c)) || !self.may_ask(kernel, &a.pattern) {
            return None;
        }
        let asked = k.asks.get(&a.pattern).copied().unwrap_or(0);
        Some((a.pattern.clone(), asked + 1))
    }

    /// Asks the proposer, if the kernel is within its share and the budget admits
    /// the question and its candidate.
    pub(super) fn ask(
        &mut self,
        now_s: f64,
        kernel: usize,
        pattern: String,
        attempt: usize,
        out: &mut Vec<Action>,
    ) {
        if self.over_share(kernel) {
            self.pause(now_s, kernel, out);
            return;
        }
        let name = self.kernels[kernel].spec.name.clone();
        let dollars = self.ledger.proposer_mean();
        if self.refused_spending(now_s, &name, Some(&pattern), (dollars, 0.0), out) {
            return;
        }
        let k = &mut self.kernels[kernel];
        *k.asks.entry(pattern.clone()).or_default() += 1;
        let against = k.best.clone().unwrap_or_default();
        self.asked = Some(Asked::Propose(kernel, pattern.clone()));
        out.push(Action::Propose {
            kernel,
            pattern,
            against,
            attempt,
        });
    }

    /// The question is written and priced: sent if the budget can pay the larger of
    /// its bound and the mean bill and hold its wait. While it is out, another
    /// kernel that can run does (the answer is taken when this kernel's turn comes
    /// back); with none, the answer is awaited at once.
    pub(super) fn priced(
        &mut self,
        now_s: f64,
        kernel: usize,
        pattern: &str,
        (bound, wait_s): (f64, f64),
        out: &mut Vec<Action>,
    ) {
        let name = self.kernels[kernel].spec.name.clone();
        let dollars = if bound.is_finite() {
            bound.max(0.0)
        } else {
            f64::INFINITY
        }
        .max(self.ledger.proposer_mean());
        if self.refused_spending(now_s, &name, Some(pattern), (dollars, wait_s), out) {
            return;
        }
        out.push(Action::Send { kernel });
        let other = self
            .kernels
            .iter()
            .enumerate()
            .any(|(i, k)| i != kernel && !k.done && (!k.started || k.paused));
        if other {
            self.kernels[kernel].awaiting = Some(dollars);
            self.advance(now_s, out);
        } else {
            out.push(Action::Await { kernel });
        }
    }

    /// The proposer answered: queue its candidate, or record why there is none.
    pub(super) fn proposed(
        &mut self,
        now_s: f64,
        kernel: usize,
        pattern: &str,
        answer: Result<Answer, String>,
        (dollars, wait_s): (f64, f64),
        out: &mut Vec<Action>,
    ) {
        // The bill at the GPU's price, and the GPU held idle while it was written
        // (on a free GPU the wait alone keeps a pattern that buys nothing from being
        // asked forever).
        let wait_s = if wait_s.is_finite() {
            wait_s.max(0.0)
        } else {
            0.0
        };
        let as_s = self.ledger.dollars_as_gpu_s(dollars) + wait_s;
        self.current = kernel;
        let k = &mut self.kernels[kernel];
        k.awaiting = None;
        k.spent_s += as_s;
        if let Some(a) = k.attack.as_mut().filter(|a| a.pattern == pattern) {
            a.spent_s += as_s;
        }
        let invalid = match answer {
            Err(why) => Some((None, format!("the proposer failed: {why}"))),
            Ok(Answer { source, checked }) => {
                let best = k.best.clone().unwrap_or_default();
                let digest = proposal_digest(&source);
                let c = Candidate {
                    config: best.config.clone(),
                    rewrites: proposed(&best.rewrites, &digest),
                };
                // The source the proposer was shown: the best's, its rewrites applied.
                let shown = crate::rewrite::version(&k.spec, &best.rewrites)
                    .ok()
                    .and_then(|(v, _)| v.rewritten.map(|r| r.source))
                    .unwrap_or_else(|| k.spec.source.clone());
                let same = shown == source;
                let fresh = k.spec.proposals.insert(digest.clone(), source).is_none();
                let why = if k.tried.contains(&c) {
                    Err("the same source as an earlier proposal".to_string())
                } else if same {
                    Err("the proposal is the source it was given, unchanged".to_string())
                } else {
                    checked.and_then(|()| self.applies(kernel, &c))
                };
                if why.is_err() && fresh {
                    // Only a candidate's source is kept (an answer may be MiBs).
                    self.kernels[kernel].spec.proposals.remove(&digest);
                }
                match why {
                    Ok(()) => {
                        if let Some(a) = self.kernels[kernel]
                            .attack
                            .as_mut()
                            .filter(|a| a.pattern == pattern)
                        {
                            a.queue.push_front(c);
                        }
                        None
                    }
                    Err(why) => Some((Some(c), why)),
                }
            }
        };
        if let Some((config, reason)) = invalid {
            // A question that bought nothing is a try of the pattern all the same.
            self.credit.entry(pattern.to_string()).or_default().tries += 1;
            if let Some(c) = &config {
                self.kernels[kernel].tried.insert(c.clone());
            }
            out.push(Action::ProposalInvalid {
                kernel,
                pattern: pattern.to_string(),
                config,
                reason,
            });
        }
        self.roi_check(kernel, out);
        self.next(now_s, kernel, out);
    }
}
