//! A study's points carried out one at a time as the controller asks for them, and
//! its conclusion journaled.

use super::*;

impl<E: Evaluator> Dispatcher<E> {
    /// Announces the controller's study of `config` and starts collecting its points.
    pub(super) fn study_begin(
        &mut self,
        kernel: usize,
        pattern: &str,
        config: &Candidate,
        scales: &[i64],
    ) {
        let spec = &self.kernels[kernel].spec;
        self.view.show(Seen::StudyBegin {
            kernel: &spec.name,
            pattern,
            config: &config.to_string(),
            axes: &spec.workload_axes,
            scales,
        });
        self.study_points.insert(kernel, Vec::new());
    }

    /// Carries out one point of the controller's study of `config`: measured with the
    /// workload axes multiplied by `scale` (or the journal's record of it), journaled
    /// as it is measured. Returns what it cost by stage, or None when the journal
    /// concluded the study before this point.
    pub(super) async fn study_point(
        &mut self,
        kernel: usize,
        pattern: &str,
        config: &Candidate,
        scale: i64,
    ) -> Result<Option<Vec<(Stage, f64)>>> {
        let spec = self.kernels[kernel].spec.clone();
        let key = (spec.name.clone(), config.to_string(), scale);
        let e = if let Some(e) = self.replay.study_points.get(&key).cloned() {
            self.replayed += 1;
            self.consumed(e.seq)?;
            e.value
        } else if self.replay.studies.contains_key(&spec.name) {
            // Concluded with fewer points (cut short) before the resume.
            return Ok(None);
        } else {
            self.status(kernel, &format!("{pattern}: x{scale}"));
            self.charge_idle(Some(kernel))?;
            let version = self.version(kernel, config)?.0;
            let (s2, c2, pin) = (
                study::scaled(&version, scale),
                config.config.clone(),
                self.pins[kernel],
            );
            let (e, slot) = self
                .on_gpu(move |ev| {
                    ev.pin_method(pin);
                    ev.evaluate(&s2, &c2)
                })
                .await?;
            self.evaluated += 1;
            let label = format!("study x{scale}: {config}");
            self.charge_stages(slot, kernel, Some(pattern), label, &e, None, false)?;
            self.write(&JEvent::StudyPoint {
                kernel: spec.name.clone(),
                pattern: pattern.to_string(),
                config: config.to_string(),
                scale,
                problem: e.problem.clone(),
                outcome: e.outcome.name().into(),
                median_us: e.median_us(),
                evaluation: e.clone().into(),
                gpu: self.gpus.ordinal(slot),
            })?;
            e
        };
        self.view.show(Seen::StudyPoint {
            kernel: &spec.name,
            scale,
            problem: &e.problem,
            outcome: &e.outcome,
            median_us: e.median_us(),
            fill: e
                .occupancy
                .as_ref()
                .filter(|o| o.sms > 0)
                .map(|o| o.ctas as f64 / o.sms as f64),
        });
        let cost = cost_of(&e, None);
        self.study_points
            .entry(kernel)
            .or_default()
            .push((scale, e));
        Ok(Some(cost))
    }

    /// Concludes the controller's study from the points measured, and journals it
    /// (unless the journal already holds the conclusion).
    pub(super) fn study_end(
        &mut self,
        kernel: usize,
        pattern: &str,
        config: &Candidate,
        cut_short: Option<String>,
    ) -> Result<()> {
        let spec = self.kernels[kernel].spec.clone();
        let points = self.study_points.remove(&kernel).unwrap_or_default();
        let result = study::summarize(&spec, &points);
        let cut_short = if let Some(c) = self.replay.studies.get(&spec.name).cloned() {
            self.consumed(c.seq)?;
            match c.value {
                JEvent::Study { cut_short, .. } => cut_short,
                _ => cut_short,
            }
        } else {
            self.write(&JEvent::Study {
                kernel: spec.name.clone(),
                pattern: pattern.to_string(),
                config: config.to_string(),
                cut_short: cut_short.clone(),
                result: result.clone().into(),
            })?;
            cut_short
        };
        self.view.show(Seen::StudyEnd {
            kernel: &spec.name,
            conclusion: &result.conclusion,
            cut_short: cut_short.as_deref(),
        });
        Ok(())
    }
}
