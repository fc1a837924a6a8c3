//! The controller's GPU work carried out: a baseline, a proposal and its candidates
//! (validated, compared with the current best, journaled, charged), a commit with its
//! evidence, a final comparison; each answered from the journal when a resumed run
//! already holds it.

use super::*;

impl<E: Evaluator> Dispatcher<E> {
    pub(super) async fn baseline(
        &mut self,
        kernel: usize,
        config: &Config,
    ) -> Result<CandidateResult> {
        let spec = self.kernels[kernel].spec.clone();
        let key = (spec.name.clone(), config.to_string());
        let e = if let Some(e) = self.replay.evaluated.get(&key).cloned() {
            self.took(e.seq)?;
            e.value
        } else {
            self.status(kernel, "baseline");
            self.charge_idle(Some(kernel))?;
            let (s2, c2) = (spec.clone(), config.clone());
            let (e, slot) = self
                .on_gpu(move |ev| {
                    ev.pin_method(MethodChoice::Auto);
                    ev.evaluate(&s2, &c2)
                })
                .await?;
            self.evaluated += 1;
            self.charge_stages(slot, kernel, None, config.to_string(), &e, None, false)?;
            let gpu = self.gpus.ordinal(slot);
            self.write_evaluated(kernel, &config.to_string(), None, &e, None, gpu, false)?;
            e
        };
        if let Some(m) = &e.measurement {
            self.pins[kernel] = MethodChoice::of(&m.method);
        }
        self.warn_cost_model(kernel, &e);
        self.view.show(Seen::Baseline {
            kernel: &spec.name,
            config: &config.to_string(),
            outcome: &e.outcome,
            median_us: e.median_us(),
        });
        tracing::debug!(kernel = %spec.name, config = %config, outcome = e.outcome.name(), median_us = ?e.median_us(), "baseline");
        Ok(candidate_result(&spec, &e, None))
    }

    pub(super) fn propose(
        &mut self,
        kernel: usize,
        pattern: &str,
        config: &Candidate,
        against: &Candidate,
        prediction: Option<&Prediction>,
    ) -> Result<()> {
        // The model search proposes one candidate at a time, each with its own
        // prediction: one record each.
        let line = if pattern == crate::controller::SEARCH {
            format!("{pattern} {config}")
        } else {
            pattern.to_string()
        };
        let key = (kernel, line, against.clone());
        if self.proposed.as_ref() == Some(&key) {
            return Ok(());
        }
        self.proposed = Some(key);
        let mut configs = vec![config.to_string()];
        configs.extend(self.ctl.queued(kernel).iter().map(|c| c.to_string()));
        let predicted = prediction.cloned();
        let prediction = prediction_text(prediction);
        self.view.show(Seen::Proposal {
            kernel: &self.kernels[kernel].spec.name,
            pattern,
            candidates: configs.len(),
            against: &against.to_string(),
            prediction: &prediction,
        });
        self.record(JEvent::Proposal {
            kernel: self.name(kernel),
            pattern: pattern.to_string(),
            prediction,
            predicted,
            configs,
        })
    }

    pub(super) async fn candidate(
        &mut self,
        kernel: usize,
        pattern: &str,
        config: &Candidate,
        against: &Candidate,
    ) -> Result<CandidateResult> {
        let spec = self.kernels[kernel].spec.clone();
        let key = (spec.name.clone(), config.to_string());
        let recorded = self.replay.evaluated.get(&key).cloned();
        let verdict = self.replay.verdict(&key, &against.to_string());
        // Measured ahead against a best that has moved since: measured again, and
        // recorded again.
        let stale = verdict.is_none() && self.replay.verdicts.contains_key(&key);
        // A candidate that passed has a Verdict record right after its Evaluated one;
        // a kill between the two leaves the evaluation without its verdict, and the
        // pair is measured again (the Evaluated record is not written twice).
        let half = !stale
            && recorded
                .as_ref()
                .is_some_and(|e| e.value.outcome == Outcome::Passed && verdict.is_none());
        let (version_a, _) = self.version(kernel, against)?;
        let (version_b, change) = self.version(kernel, config)?;
        let (e, ab) = if let (Some(e), false, false) = (recorded, half, stale) {
            let last = verdict.as_ref().map_or(e.seq, |v| v.seq.max(e.seq));
            self.took(e.seq)?;
            self.consumed(last)?;
            (e.value, verdict.map(|v| v.value))
        } else {
            self.status(kernel, &format!("{pattern}: {config}"));
            self.prefetch(kernel);
            self.charge_idle(Some(kernel))?;
            let (sa, a2) = (version_a, against.config.clone());
            let (sb, b2) = (version_b.clone(), config.config.clone());
            let pin = self.pins[kernel];
            let ((ea, eb, ab), slot) = self
                .on_gpu(move |ev| {
                    ev.pin_method(pin);
                    ev.compare((&sa, &a2), (&sb, &b2))
                })
                .await?;
            self.evaluated += 1;
            // The incumbent's validation is its own stage when the comparison stands
            // (its record, with the Verdict, says what it cost); otherwise idle time.
            let revalidated = ab.is_some().then_some(&ea);
            let label = config.to_string();
            self.charge_stages(slot, kernel, Some(pattern), label, &eb, revalidated, false)?;
            if !half {
                let gpu = self.gpus.ordinal(slot);
                let (c, change) = (config.to_string(), change.clone());
                self.write_evaluated(kernel, &c, Some(pattern), &eb, change, gpu, false)?;
            }
            let ab = ab.as_ref().map(AbFigures::from);
            if let Some(a) = ab {
                self.write_verdict(kernel, config, against, a, &ea)?;
            }
            (eb, ab)
        };
        self.warn_cost_model(kernel, &e);
        self.view.show(Seen::Candidate {
            kernel: &spec.name,
            config: &config.to_string(),
            outcome: &e.outcome,
            ab,
        });
        tracing::debug!(kernel = %spec.name, pattern, config = %config, outcome = e.outcome.name(),
            verdict = ?ab.map(|a| a.verdict), speedup = ?ab.map(|a| a.speedup), "candidate");
        let r = candidate_result(&spec, &e, ab.map(|a| (a.verdict, a.speedup)));
        self.last = Some(Evidence {
            kernel,
            config: config.clone(),
            rewritten: change.map(|c| (version_b, c)),
            eval: e,
            ab,
        });
        Ok(r)
    }

    /// Journals an `Evaluated` record; returns its seq.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn write_evaluated(
        &mut self,
        kernel: usize,
        config: &str,
        pattern: Option<&str>,
        e: &Evaluation,
        rewritten: Option<crate::rewrite::Change>,
        gpu: Option<usize>,
        ahead: bool,
    ) -> Result<u64> {
        self.write(&JEvent::Evaluated {
            kernel: self.name(kernel),
            config: config.to_string(),
            pattern: pattern.map(str::to_string),
            outcome: e.outcome.name().into(),
            median_us: e.median_us(),
            evaluation: e.clone().into(),
            rewritten,
            gpu,
            ahead,
        })
    }

    /// Journals the `Verdict` of `config` against `against` (re-measured as `ea`
    /// beside it); returns its seq.
    pub(super) fn write_verdict(
        &mut self,
        kernel: usize,
        config: &Candidate,
        against: &Candidate,
        a: AbFigures,
        ea: &Evaluation,
    ) -> Result<u64> {
        self.write(&JEvent::Verdict {
            kernel: self.name(kernel),
            config: config.to_string(),
            baseline: against.to_string(),
            verdict: a.verdict,
            speedup: a.speedup,
            ci_lo: a.ci_lo,
            ci_hi: a.ci_hi,
            pairs: a.pairs,
            min_gain: a.min_gain,
            against: ea.clone().into(),
        })
    }

    pub(super) fn commit(
        &mut self,
        kernel: usize,
        pattern: &str,
        config: &Candidate,
    ) -> Result<()> {
        let name = self.name(kernel);
        let key = (name.clone(), config.to_string());
        if let Some(sha) = self.replay.commits.get(&key).cloned() {
            return self.consumed(sha.seq);
        }
        // The best so far (every commit of the run is journaled before the next).
        let previous = self
            .state
            .kernel_states
            .iter()
            .find(|k| k.kernel == name)
            .and_then(|k| k.best.clone())
            .unwrap_or_default();
        // A crash between the git commit and its journal record: the commit is there.
        let sha = match tuned::find_commit(&self.ws, &self.run_id, &name, &config.to_string())? {
            Some(sha) => sha,
            None => {
                let evidence = self
                    .last
                    .as_ref()
                    .filter(|l| l.kernel == kernel && &l.config == config)
                    .ok_or_else(|| anyhow!("no evidence for the commit of {name} {config}"))?;
                let proposer = self.proposer_trailer(kernel, config);
                let entry = &self.kernels[kernel];
                let rewritten = match &evidence.rewritten {
                    None => None,
                    Some((version, change)) => {
                        let source = version.rewritten.as_ref().map_or("", |r| &r.source);
                        Some((source_in_repo(entry, &self.ws)?, source, change))
                    }
                };
                let (files, message) = tuned::commit_files(&tuned::Accepted {
                    run_id: &self.run_id,
                    device: &self.device,
                    kernel: &entry.spec.name,
                    rel_dir: &entry.rel_dir,
                    pattern,
                    previous: &previous,
                    config,
                    rewritten,
                    eval: &evidence.eval,
                    ab: evidence.ab,
                    proposer,
                });
                self.ws
                    .commit(&files, &message)
                    .with_context(|| format!("committing {name} {config}"))?
                    .to_string()
            }
        };
        self.view.show(Seen::Committed {
            kernel: &name,
            sha: &sha,
            branch: &self.ws.branch,
        });
        self.record(JEvent::Commit {
            kernel: name,
            config: config.to_string(),
            sha,
        })
    }

    /// Carries out the controller's final comparison of a kernel: its best measured
    /// interleaved with its baseline (or the journal's record of it). Returns what it
    /// cost, by stage, for the controller.
    pub(super) async fn final_comparison(
        &mut self,
        kernel: usize,
        base: &Config,
        best: &Candidate,
    ) -> Result<Vec<(Stage, f64)>> {
        let spec = self.kernels[kernel].spec.clone();
        let (base, best) = (base.clone(), best.clone());
        let (version_best, _) = self.version(kernel, &best)?;
        let (rec, cost) = if let Some(r) = self.replay.finals.get(&spec.name).cloned() {
            self.consumed(r.seq)?;
            // What it cost, as it was charged: the best's timers against the baseline's.
            let cost = match &r.value {
                JEvent::FinalComparison {
                    baseline_evaluation,
                    best_evaluation,
                    ..
                } => best_evaluation
                    .get()
                    .map(|b| cost_of(b, baseline_evaluation.get()))
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            (r.value, cost)
        } else {
            self.status(kernel, "final comparison with the baseline");
            self.charge_idle(Some(kernel))?;
            let (sa, a2) = (spec.clone(), base.clone());
            let (sb, b2) = (version_best, best.config.clone());
            let pin = self.pins[kernel];
            let ((ea, eb, ab), slot) = self
                .on_gpu(move |ev| {
                    ev.pin_method(pin);
                    ev.compare((&sa, &a2), (&sb, &b2))
                })
                .await?;
            let ab = ab.as_ref().map(AbFigures::from);
            let rec = JEvent::FinalComparison {
                gpu: self.gpus.ordinal(slot),
                kernel: spec.name.clone(),
                baseline: base.to_string(),
                best: best.to_string(),
                verdict: ab.map(|a| a.verdict),
                speedup: ab.map_or(f64::NAN, |a| a.speedup),
                ci_lo: ab.map_or(f64::NAN, |a| a.ci_lo),
                ci_hi: ab.map_or(f64::NAN, |a| a.ci_hi),
                pairs: ab.and_then(|a| a.pairs),
                baseline_evaluation: ea.clone().into(),
                best_evaluation: eb.clone().into(),
            };
            // Charged like a candidate: from its own recorded stage times.
            let label = format!("final: {best}");
            self.charge_stages(slot, kernel, None, label, &eb, Some(&ea), false)?;
            self.write(&rec)?;
            (rec, cost_of(&eb, Some(&ea)))
        };
        if let JEvent::FinalComparison {
            verdict,
            speedup,
            ci_lo,
            ci_hi,
            ..
        } = &rec
        {
            self.view.show(Seen::Final {
                kernel: &spec.name,
                best: &best.to_string(),
                verdict: *verdict,
                speedup: *speedup,
                ci_lo: *ci_lo,
                ci_hi: *ci_hi,
            });
        }
        Ok(cost)
    }
}

/// A kernel's source file relative to the worktree's root (where a rewrite of it is
/// committed).
fn source_in_repo(entry: &KernelEntry, ws: &Workspace) -> Result<PathBuf> {
    let spec = &entry.spec;
    let outside = || {
        anyhow!(
            "{} is outside the run's worktree {}, or a symbolic link: a rewrite of it cannot be committed",
            spec.source_path.display(),
            ws.root.display()
        )
    };
    if std::fs::symlink_metadata(&spec.source_path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(outside());
    }
    let rel = spec
        .source_path
        .strip_prefix(&spec.dir)
        .map(|p| entry.rel_dir.join(p))
        .or_else(|_| spec.source_path.strip_prefix(&ws.root).map(PathBuf::from))
        .map_err(|_| outside())?;
    // As git names it: `./` dropped; a `..` would leave the tree.
    let mut clean = PathBuf::new();
    for c in rel.components() {
        match c {
            std::path::Component::Normal(p) => clean.push(p),
            std::path::Component::CurDir => {}
            _ => return Err(outside()),
        }
    }
    Ok(clean)
}

/// The launch of `config` at the spec's problem (for the profile's shared memory and
/// threads per CTA).
pub(super) fn dims(spec: &KernelSpec, config: &Config) -> Option<plan::LaunchDims> {
    plan::plan(spec, config, &spec.problem)
        .ok()
        .map(|p| p.launch)
}

/// What the controller hears about one evaluation.
pub fn candidate_result(
    spec: &KernelSpec,
    e: &Evaluation,
    ab: Option<(Verdict, f64)>,
) -> CandidateResult {
    let passed = e.outcome == Outcome::Passed;
    CandidateResult {
        passed,
        outcome: if passed {
            "passed".into()
        } else {
            e.outcome.describe()
        },
        verdict: ab.map(|a| a.0),
        speedup: ab.map(|a| a.1),
        profile: passed.then(|| Profile::of(spec, e, dims(spec, &e.config).as_ref())),
        cost: cost_of(e, None),
    }
}

pub(super) fn prediction_text(p: Option<&Prediction>) -> String {
    match p {
        None => "no prediction".into(),
        Some(p) => {
            // A model's candidate may be expected slower and still tried for its
            // uncertainty: "or better" would claim a bound nobody made.
            let head = if p.speedup >= 1.0 {
                format!("{:.2}x or better", p.speedup)
            } else {
                format!("{:.2}x expected, tried for the chance of better", p.speedup)
            };
            match &p.note {
                Some(n) => format!("{head}; {n}"),
                None => head,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prediction_below_one_is_not_called_a_bound() {
        let p = |speedup: f64, note: Option<&str>| Prediction {
            speedup,
            note: note.map(String::from),
        };
        assert_eq!(prediction_text(None), "no prediction");
        assert_eq!(prediction_text(Some(&p(1.5, None))), "1.50x or better");
        assert_eq!(
            prediction_text(Some(&p(1.05, Some("registers rise")))),
            "1.05x or better; registers rise"
        );
        let search = prediction_text(Some(&p(0.87, Some("the model's median 12 µs"))));
        assert_eq!(
            search,
            "0.87x expected, tried for the chance of better; the model's median 12 µs"
        );
        assert!(!search.contains("or better;"));
    }
}
