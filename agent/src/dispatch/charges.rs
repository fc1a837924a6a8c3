//! The ledger's side of carrying out: every GPU second charged through the journal
//! (by stage, from an evaluation's own timers; idle time the GPU was held), the
//! recorded charges released as a replay reaches them, and the ledger's snapshots.

use super::*;

impl<E: Evaluator> Dispatcher<E> {
    /// Journals a charge and hands it to the ledger, with every charge journaled
    /// before it (work measured ahead): the one way GPU time is charged. The ledger
    /// then holds exactly the charges up to the latest record, as a replay that
    /// reaches this record will hold them.
    pub(super) fn charge(&mut self, c: Charge) -> Result<()> {
        let seq = self.charge_held(c)?;
        self.consumed(seq)
    }

    /// Journals a charge of work measured ahead: the ledger gets it when the
    /// controller takes the work's result (or a later charge is made), in journal
    /// order, as a replay releases it.
    pub(super) fn charge_held(&mut self, c: Charge) -> Result<u64> {
        let seq = self.write(&JEvent::Charge(c.clone()))?;
        self.replay.hold(seq, c);
        Ok(seq)
    }

    /// The replay has reached journal record `seq`: the ledger gets the charges
    /// journaled up to it.
    pub(super) fn consumed(&mut self, seq: u64) -> Result<()> {
        for c in self.replay.consume(seq) {
            self.ctl
                .charged(&c)
                .map_err(|e| anyhow!("replaying the journal's charges: {e}"))?;
        }
        Ok(())
    }

    /// Ends the replay (once): the ledger gets every charge of the journal, and a
    /// snapshot of it is journaled, so the first decision of the resumed run is made
    /// on all the run spent.
    pub(super) fn go_live(&mut self) -> Result<()> {
        if !self.replaying {
            return Ok(());
        }
        self.release_all()?;
        self.replaying = false;
        self.recheck = true;
        self.snapshot()
    }

    /// The ledger gets every charge journaled (the replay is over, or the run).
    pub(super) fn release_all(&mut self) -> Result<()> {
        for c in self.replay.rest() {
            self.ctl
                .charged(&c)
                .map_err(|e| anyhow!("replaying the journal's charges: {e}"))?;
        }
        Ok(())
    }

    /// A record of the journal answered the controller's request: counted as
    /// evaluated when this process measured it ahead, as replayed when a resumed
    /// run found it; the ledger gets the charges journaled up to it.
    pub(super) fn took(&mut self, seq: u64) -> Result<()> {
        if self.ahead_seqs.remove(&seq) {
            self.evaluated += 1;
        } else {
            self.replayed += 1;
        }
        self.consumed(seq)
    }

    /// Journals the ledger as it stands, with the charges of work measured ahead
    /// that it has not been handed yet (not while replaying: the run wrote its own).
    pub(super) fn snapshot(&mut self) -> Result<()> {
        if self.replaying {
            return Ok(());
        }
        let now = self.now_s();
        let mut ledger = self.ctl.ledger().clone();
        for c in self.replay.unreleased() {
            ledger
                .charge(c)
                .map_err(|e| anyhow!("a journaled charge: {e}"))?;
        }
        let event = JEvent::Budget {
            spent: ledger.spent(),
            remaining: Some(ledger.remaining(&self.budgets, now)),
            breakdown: Some(ledger.breakdown()),
        };
        self.write(&event)?;
        Ok(())
    }

    /// Charges the time since the last charge that no stage accounted for, on every
    /// GPU the run holds: each was held all the same.
    pub(super) fn charge_idle(&mut self, kernel: Option<usize>) -> Result<()> {
        match self.idle(kernel) {
            Some(c) => self.charge(c),
            None => Ok(()),
        }
    }

    /// [`Dispatcher::charge_idle`] as work measured ahead starts: released with the
    /// rest of what is journaled before the next record the controller takes.
    pub(super) fn charge_idle_held(&mut self, kernel: Option<usize>) -> Result<()> {
        match self.idle(kernel) {
            Some(c) => self.charge_held(c).map(|_| ()),
            None => Ok(()),
        }
    }

    /// The idle charge due now: on each GPU not at work, the wall time since what
    /// was last charged on it (N GPUs held for a second are N GPU-seconds).
    fn idle(&mut self, kernel: Option<usize>) -> Option<Charge> {
        let now = self.clock.elapsed_s();
        let mut idle = 0.0;
        for slot in self.gpus.idle_slots() {
            let accounted = &mut self.gpus.accounted_s[slot];
            idle += (now - *accounted).max(0.0);
            *accounted = now;
        }
        if idle <= 0.0 {
            return None;
        }
        Some(Charge {
            kernel: kernel.map(|k| self.name(k)),
            pattern: None,
            config: None,
            stage: Stage::Idle,
            gpu_s: idle,
            wall_s: idle,
            dollars: 0.0,
        })
    }

    /// Charges one evaluation measured by this process on the GPU of `slot`, by
    /// stage (from its own stage times), before its record is journaled: a kill in
    /// between leaves time charged for work that is then measured again, which the
    /// GPU did spend. `held`: work measured ahead (see [`Dispatcher::charge_held`]).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn charge_stages(
        &mut self,
        slot: usize,
        kernel: usize,
        pattern: Option<&str>,
        config: String,
        e: &Evaluation,
        against: Option<&Evaluation>,
        held: bool,
    ) -> Result<()> {
        for (stage, s) in cost_of(e, against) {
            self.gpus.accounted_s[slot] += s;
            if !matches!(stage, Stage::Compile | Stage::Idle) {
                self.gpu_busy_s += s;
            }
            let c = Charge {
                kernel: Some(self.name(kernel)),
                pattern: pattern.map(str::to_string),
                config: Some(config.clone()),
                stage,
                gpu_s: s,
                wall_s: s,
                dollars: 0.0,
            };
            if held {
                self.charge_held(c)?;
            } else {
                self.charge(c)?;
            }
        }
        Ok(())
    }
}
