//! Questions to a code-writing proposer carried out: the request built from the
//! current best's source, the spec, its profile, the pattern's instruction and the
//! kernel's history of proposals; the answer checked before any GPU sees it, its
//! bill charged to the ledger, the question and answer journaled (no headers, no
//! key), and on resume answered from the journal instead of asked again.
//!
//! The history a proposer is told is kept here as the run goes (and rebuilt by the
//! replay, which goes through the same steps): each proposal's outcome, its compile
//! log, the first failing check, its verdict, and whether it was kept.

use super::*;
use crate::controller::Answer;
use crate::journal::ProposerAnswer;
use crate::propose::{self, PastProposal, PatternBrief, ProposalRequest, Usage};

/// A question to the proposer between its writing and its answer.
#[derive(Debug)]
pub(super) enum Question {
    /// The journal holds its answer (a resumed run).
    Answered(Box<crate::state::recorded::At<ProposerAnswer>>),
    /// Written and priced; `sent` once it is on its way.
    Written {
        req: Box<ProposalRequest>,
        pattern: String,
        attempt: usize,
        against: String,
        priced: (f64, f64),
        sent: Option<
            tokio::task::JoinHandle<
                Result<crate::propose::Proposal, crate::propose::ProposalError>,
            >,
        >,
    },
}

/// The most of a compile log kept in a kernel's history.
const HISTORY_LOG: usize = 16 << 10;

/// One proposal in a kernel's history: the candidate it became (None: the
/// proposer failed) and what the next request tells of it.
#[derive(Debug, Clone)]
pub(super) struct Past {
    candidate: Option<String>,
    told: PastProposal,
}

/// The candidate (as displayed) that the answer `digest` to a question written
/// from `against` (a candidate's display) becomes: the controller's rule,
/// [`crate::rewrite::proposed`]. Later candidates built on it carry its rewrite
/// too; only this one is the proposal itself.
pub(super) fn answer_candidate(against: &str, digest: &str) -> String {
    let mut parts = against.split(crate::spec::REWRITE_SEPARATOR);
    let config = parts.next().unwrap_or("");
    let chain: Vec<String> = parts.map(str::to_string).collect();
    let mut out = config.to_string();
    for r in crate::rewrite::proposed(&chain, digest) {
        out.push_str(crate::spec::REWRITE_SEPARATOR);
        out.push_str(&r);
    }
    out
}

impl<E: Evaluator> Dispatcher<E> {
    /// Writes the question (or finds its answer in the journal, on resume) and
    /// prices it: the controller's next actions (send it, or a stop when its bill
    /// bound or its wait does not fit the budget).
    pub(super) fn write_question(
        &mut self,
        kernel: usize,
        pattern: &str,
        against: &Candidate,
        attempt: usize,
    ) -> Result<Vec<Action>> {
        let name = self.name(kernel);
        let shown = against.to_string();
        let recorded = self.replay.answers.get_mut(&name).and_then(|q| {
            let i = q.iter().position(|a| {
                a.value.pattern == pattern && a.value.attempt == attempt && a.value.against == shown
            })?;
            q.remove(i)
        });
        let (bound, wait_s) = match recorded {
            // As priced when it was asked.
            Some(a) => {
                let priced = (a.value.bound, a.value.wait_s);
                self.questions[kernel] = Some(Question::Answered(Box::new(a)));
                priced
            }
            None => {
                let proposer = self.proposer.clone().ok_or_else(|| {
                    anyhow!("a proposal pattern asked with no proposer configured")
                })?;
                let req = self.request(kernel, pattern, against)?;
                let priced = (proposer.bill_bound(&req), proposer.wait_bound_s());
                self.questions[kernel] = Some(Question::Written {
                    req: Box::new(req),
                    pattern: pattern.to_string(),
                    attempt,
                    against: shown,
                    priced,
                    sent: None,
                });
                priced
            }
        };
        let now = self.now_s();
        Ok(self.ctl.handle(
            now,
            CEvent::Priced {
                kernel,
                pattern: pattern.to_string(),
                bound,
                wait_s,
            },
        ))
    }

    /// Sends the question written for `kernel` (in the background: the GPU goes on
    /// with other work); one the journal answered is not sent again.
    pub(super) fn send_question(&mut self, kernel: usize) {
        let Some(proposer) = self.proposer.clone() else {
            return;
        };
        if let Some(Question::Written { req, sent, .. }) = self.questions[kernel].as_mut() {
            if sent.is_none() {
                let req = (**req).clone();
                *sent = Some(tokio::spawn(async move { proposer.propose(&req).await }));
            }
        }
    }

    /// Takes the answer to the question sent for `kernel` (from the journal, or
    /// waiting for the proposer), and hands it to the controller.
    pub(super) async fn await_answer(&mut self, kernel: usize) -> Result<Vec<Action>> {
        let question = self.questions[kernel]
            .take()
            .ok_or_else(|| anyhow!("an answer awaited for a question never written"))?;
        let answer = match question {
            Question::Answered(a) => {
                self.replayed += 1;
                self.consumed(a.seq)?;
                a.value
            }
            Question::Written {
                req,
                pattern,
                attempt,
                against,
                priced,
                sent,
            } => {
                self.go_live()?;
                let sent = match sent {
                    Some(h) => h,
                    None => {
                        self.questions[kernel] = Some(Question::Written {
                            req,
                            pattern,
                            attempt,
                            against,
                            priced,
                            sent: None,
                        });
                        self.send_question(kernel);
                        return Box::pin(self.await_answer(kernel)).await;
                    }
                };
                self.status(kernel, &format!("{pattern}: waiting for the proposer"));
                self.charge_idle(Some(kernel))?;
                let answered = sent
                    .await
                    .map_err(|e| anyhow!("the proposer's task failed: {e}"))?;
                self.take_answer(kernel, *req, (&pattern, attempt, against), priced, answered)?
            }
        };
        let pattern = answer.pattern.clone();
        let attempt = answer.attempt;
        let name = self.name(kernel);
        if let (Some(d), Some(s), None) = (&answer.digest, &answer.source, &answer.check) {
            self.kernels[kernel]
                .spec
                .proposals
                .insert(d.clone(), s.clone());
        }
        let summary = answer
            .explanation
            .as_deref()
            .or(answer.error.as_deref())
            .and_then(|t| t.lines().find(|l| !l.trim().is_empty()))
            .map_or_else(
                || format!("a proposal for {pattern}"),
                |l| propose::truncate(l.trim(), 200),
            );
        self.history[kernel].push(Past {
            candidate: answer
                .digest
                .as_deref()
                .map(|d| answer_candidate(&answer.against, d)),
            told: PastProposal {
                summary: format!("{pattern} #{attempt}: {summary}"),
                outcome: "asked".into(),
                compile_log: None,
                first_failing_check: None,
                verdict: None,
            },
        });
        self.view.show(Seen::Asked {
            kernel: &name,
            pattern: &pattern,
            proposer: &answer.proposer,
            outcome: match (&answer.error, &answer.check) {
                (Some(_), _) => "no proposal".to_string(),
                (None, Some(_)) => format!(
                    "proposal:{} refused before the GPU",
                    answer.digest.as_deref().unwrap_or("?")
                ),
                (None, None) => format!(
                    "proposal:{} (${:.4}, {:.1} s)",
                    answer.digest.as_deref().unwrap_or("?"),
                    answer.usage.dollars,
                    answer.usage.latency_s
                ),
            },
        });
        let (dollars, wait_s) = (answer.usage.dollars, answer.usage.latency_s);
        let reply = match (answer.source, answer.error) {
            (Some(source), _) => Ok(Answer {
                source,
                checked: answer.check.map_or(Ok(()), Err),
            }),
            (None, e) => Err(e.unwrap_or_else(|| "no source and no error".into())),
        };
        let now = self.now_s();
        Ok(self.ctl.handle(
            now,
            CEvent::Proposed {
                kernel,
                pattern,
                answer: reply,
                dollars,
                wait_s,
            },
        ))
    }

    /// The request for a question about `kernel` under `pattern`, written from the
    /// best `against`.
    fn request(
        &self,
        kernel: usize,
        pattern: &str,
        against: &Candidate,
    ) -> Result<ProposalRequest> {
        let (version, _) = self.version(kernel, against)?;
        let spec = &self.kernels[kernel].spec;
        let source = version
            .rewritten
            .as_ref()
            .map_or_else(|| spec.source.clone(), |r| r.source.clone());
        let p = self.ctl.pattern_of(pattern);
        let brief = PatternBrief {
            name: pattern.to_string(),
            instruction: match p.map(|p| &p.body) {
                Some(crate::patterns::Body::Proposal { instruction, .. }) => instruction.clone(),
                _ => String::new(),
            },
            rationale: p.map(|p| p.rationale.clone()).unwrap_or_default(),
        };
        Ok(ProposalRequest {
            kernel: spec.name.clone(),
            entry: spec.entry.clone(),
            source,
            config: against.config.0.clone(),
            spec: propose::describe(spec),
            signals: self
                .ctl
                .profile(kernel)
                .map(|p| p.signals.clone())
                .unwrap_or_default(),
            pattern: brief,
            history: self.history[kernel]
                .iter()
                .map(|p| p.told.clone())
                .collect(),
        })
    }

    /// An answer that came back: checked, its bill charged, the question journaled.
    fn take_answer(
        &mut self,
        kernel: usize,
        req: ProposalRequest,
        (pattern, attempt, against): (&str, usize, String),
        (bound, wait_s): (f64, f64),
        answered: Result<crate::propose::Proposal, crate::propose::ProposalError>,
    ) -> Result<ProposerAnswer> {
        let label = self
            .proposer
            .as_ref()
            .map(|p| p.label())
            .unwrap_or_default();
        let (usage, source, explanation, error) = match answered {
            Ok(p) => (p.usage, Some(p.source), Some(p.explanation), None),
            Err(e) => (e.spent, None, None, Some(e.kind.to_string())),
        };
        let spec = &self.kernels[kernel].spec;
        let check = source.as_ref().and_then(|s| propose::check(spec, s).err());
        let digest = source.as_deref().map(crate::controller::proposal_digest);
        let usage = Usage {
            dollars: if usage.dollars.is_finite() && usage.dollars >= 0.0 {
                usage.dollars
            } else {
                0.0
            },
            ..usage
        };
        // The bill first: a resume that replays the answer releases its charge.
        self.charge(Charge {
            kernel: Some(spec.name.clone()),
            pattern: Some(pattern.to_string()),
            config: None,
            stage: Stage::Proposer,
            gpu_s: 0.0,
            wall_s: 0.0,
            dollars: usage.dollars,
        })?;
        let answer = ProposerAnswer {
            kernel: self.name(kernel),
            pattern: pattern.to_string(),
            attempt,
            against,
            proposer: label,
            request: serde_json::to_value(&req).unwrap_or(Value::Null),
            source,
            digest,
            explanation,
            error,
            check,
            usage,
            bound,
            wait_s,
        };
        self.write(&JEvent::ProposerAnswer(answer.clone()))?;
        Ok(answer)
    }

    /// A proposal that could not be a candidate: shown, told next time, journaled.
    pub(super) fn proposal_invalid(
        &mut self,
        kernel: usize,
        pattern: String,
        config: Option<Candidate>,
        reason: String,
    ) -> Result<()> {
        if let Some(p) = self.history[kernel].last_mut() {
            p.told.outcome = "proposal_invalid".into();
            p.told.first_failing_check = Some(reason.clone());
        }
        self.view.show(Seen::ProposalInvalid {
            kernel: &self.kernels[kernel].spec.name,
            pattern: &pattern,
            reason: &reason,
        });
        self.record(JEvent::ProposalInvalid {
            kernel: self.name(kernel),
            pattern,
            config: config.map(|c| c.to_string()),
            reason,
        })
    }

    /// What became of a proposal's candidate, for the next request: its outcome,
    /// compile log, first failing check and verdict (`kept` once committed).
    pub(super) fn learned(&mut self, kernel: usize, config: &Candidate, kept: bool) {
        let name = config.to_string();
        let Some(p) = self.history[kernel]
            .iter_mut()
            .rev()
            .find(|p| p.candidate.as_deref() == Some(name.as_str()))
        else {
            return;
        };
        if kept {
            p.told.outcome = "kept".into();
            return;
        }
        let Some(ev) = self.last.as_ref().filter(|l| &l.config == config) else {
            return;
        };
        let e = &ev.eval;
        p.told.outcome = e.outcome.name().to_string();
        if let Outcome::CompileFailed { log } = &e.outcome {
            p.told.compile_log = Some(propose::truncate(log, HISTORY_LOG));
        } else if e.outcome != Outcome::Passed {
            p.told.first_failing_check = Some(e.outcome.describe());
        }
        p.told.verdict = ev.ab.map(|a| {
            format!(
                "{} {:.3}x [{:.3}, {:.3}] against the best of its time",
                a.verdict.as_str(),
                a.speedup,
                a.ci_lo,
                a.ci_hi
            )
        });
        if e.outcome == Outcome::Passed {
            p.told.outcome = match ev.ab.map(|a| a.verdict) {
                Some(Verdict::Fast) => "faster",
                Some(Verdict::Slow) => "slower",
                Some(Verdict::Same) => "same",
                _ => "not_proven_faster",
            }
            .into();
        }
    }

    /// The `Nightshift-Proposer` trailer of a candidate written by a proposer: who,
    /// with which tokens, for how much.
    pub(super) fn proposer_trailer(&self, kernel: usize, config: &Candidate) -> Option<String> {
        let name = self.name(kernel);
        let shown = config.to_string();
        let a = self.state.recorded.answers.iter().rev().find(|a| {
            a.value.kernel == name
                && a.value
                    .digest
                    .as_deref()
                    .is_some_and(|d| answer_candidate(&a.value.against, d) == shown)
        })?;
        let u = &a.value.usage;
        Some(format!(
            "{}; {} input + {} output tokens{}; ${:.4}; {:.1} s",
            a.value.proposer,
            u.input_tokens,
            u.output_tokens,
            if u.estimated { " (estimated)" } else { "" },
            u.dollars,
            u.latency_s
        ))
    }
}
