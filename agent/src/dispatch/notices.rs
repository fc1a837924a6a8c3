//! A kernel's first gain told to the webhooks of `[notify]`, in the background:
//! the notice is journaled (its key) before it is sent, so a resumed run never
//! sends it again, and what became of it is journaled when the POSTs are done. A
//! webhook that fails is a journaled result, never an error of the run.

use super::*;
use crate::journal::Notified;
use crate::notify::{commit_gain, Notice};

/// The longest the end of a run waits for notices still being sent.
const END_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

impl<E: Evaluator> Dispatcher<E> {
    /// After a commit: the kernel's first of the run is sent as a `first_gain`.
    pub(super) fn first_gain(&mut self, kernel: usize, config: &Candidate) -> Result<()> {
        let Some(notifier) = self.notifier.clone() else {
            return Ok(());
        };
        let name = self.name(kernel);
        let commits = self
            .state
            .kernel_states
            .iter()
            .find(|k| k.kernel == name)
            .map(|k| k.commits.clone())
            .unwrap_or_default();
        let key = format!("first_gain:{name}");
        if commits.len() != 1 || self.state.recorded.notified.contains(&key) {
            return Ok(());
        }
        let figures = self
            .replay
            .verdicts
            .get(&(name.clone(), config.to_string()))
            .map(|v| v.value)
            .or_else(|| {
                self.last
                    .as_ref()
                    .filter(|l| &l.config == config)
                    .and_then(|l| l.ab)
            });
        let Some(figures) = figures else {
            return Ok(());
        };
        let notice = Notice::FirstGain {
            run_id: self.run_id.clone(),
            kernel: name.clone(),
            gain: commit_gain(&name, &config.to_string(), &figures, &commits[0]),
        };
        self.write(&JEvent::Notified(Notified {
            key: key.clone(),
            deliveries: vec![],
        }))?;
        self.sending.push((key, notifier.send(&notice)));
        Ok(())
    }

    /// Journals what became of the notices sent in the background that are done
    /// (`all`: waits for every one, up to [`END_WAIT`]).
    pub(super) async fn sent(&mut self, all: bool) -> Result<()> {
        let mut keep = Vec::new();
        for (key, handle) in std::mem::take(&mut self.sending) {
            if !all && !handle.is_finished() {
                keep.push((key, handle));
                continue;
            }
            let deliveries = match tokio::time::timeout(END_WAIT, handle).await {
                Ok(Ok(d)) => d,
                // Cancelled or still going at the end: nothing is known of it.
                _ => vec![],
            };
            self.write(&JEvent::Notified(Notified { key, deliveries }))?;
        }
        self.sending = keep;
        Ok(())
    }
}
