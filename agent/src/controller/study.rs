//! The workload-batching study of a kernel: begun when its patterns have nothing
//! left, one point at a time, each admitted like a candidate, cut short (and why)
//! when its own budget or the run's cannot take another.

use super::*;

/// A study in progress on a kernel.
#[derive(Debug, Clone)]
pub(super) struct StudyRun {
    pub(super) pattern: String,
    pub(super) config: Candidate,
    /// The scales still to measure, in order.
    pub(super) todo: VecDeque<i64>,
    /// GPU seconds its points have cost so far.
    pub(super) spent_s: f64,
    /// Its pattern's budget: no point starts once it is spent.
    pub(super) budget_s: f64,
}

impl Controller {
    /// The first study pattern whose condition holds for the kernel's current best.
    pub(super) fn study_pattern(&self, kernel: usize) -> Option<&Pattern> {
        let signals = self.signals(kernel);
        self.library
            .applicable(&signals)
            .into_iter()
            .find(|p| matches!(p.body, Body::WorkloadBatching { .. }))
    }

    /// The study to carry out before the kernel is done, if one applies and has not
    /// been carried out.
    pub(super) fn study(&self, kernel: usize) -> Option<StudyRun> {
        let k = &self.kernels[kernel];
        if k.studied || k.spec.workload_axes.is_empty() {
            return None;
        }
        let best = k.best.clone()?;
        let p = self.study_pattern(kernel)?;
        let Body::WorkloadBatching { scale } = &p.body else {
            return None;
        };
        let budget_s = p
            .budget_minutes
            .map(|m| m * 60.0)
            .unwrap_or(self.budgets.limits.pattern.as_secs_f64());
        Some(StudyRun {
            pattern: p.name.clone(),
            config: best,
            // At the caller's size first, then each scale.
            todo: std::iter::once(1).chain(scale.iter().copied()).collect(),
            spent_s: 0.0,
            budget_s,
        })
    }

    /// The next point of the kernel's study, or its end (cut short when its budget is
    /// spent or the run's cannot take one more point), and then the kernel is done.
    pub(super) fn study_next(&mut self, now_s: f64, kernel: usize, out: &mut Vec<Action>) {
        let Some(s) = self.kernels[kernel].study.as_ref() else {
            return;
        };
        if s.todo.is_empty() {
            return self.study_end(now_s, kernel, None, out);
        }
        if s.spent_s > s.budget_s {
            let why = format!(
                "spent {:.0} s, more than the study's {:.0} s budget",
                s.spent_s, s.budget_s
            );
            return self.study_end(now_s, kernel, Some(why), out);
        }
        if let Err(why) = self.study_admit(now_s, kernel) {
            return self.study_end(now_s, kernel, Some(why), out);
        }
        let Some(s) = self.kernels[kernel].study.as_mut() else {
            return;
        };
        let scale = s.todo.pop_front().unwrap_or(1);
        self.asked = Some(Asked::StudyPoint(kernel));
        out.push(Action::StudyPoint {
            kernel,
            pattern: s.pattern.clone(),
            config: s.config.clone(),
            scale,
        });
    }

    /// Whether one more point of the kernel's study fits: projected like a candidate
    /// of the kernel, on top of what the study has spent (a study only gives back
    /// what it measured, so it is admitted conservatively).
    pub(super) fn study_admit(&self, now_s: f64, kernel: usize) -> Result<(), String> {
        let k = &self.kernels[kernel];
        let spent = k.study.as_ref().map_or(0.0, |s| s.spent_s);
        let projected = self.ledger.project(&k.spec.name, None, 1) + spent;
        self.ledger
            .admit(&self.budgets, projected, now_s)
            .map_err(|r| r.describe())
    }

    /// Ends the kernel's study (concluded by the dispatcher from its points), and the
    /// kernel with it.
    pub(super) fn study_end(
        &mut self,
        now_s: f64,
        kernel: usize,
        cut_short: Option<String>,
        out: &mut Vec<Action>,
    ) {
        let Some(s) = self.kernels[kernel].study.take() else {
            return;
        };
        out.push(Action::StudyEnd {
            kernel,
            pattern: s.pattern,
            config: s.config,
            cut_short,
        });
        self.done(now_s, kernel, out);
    }
}
