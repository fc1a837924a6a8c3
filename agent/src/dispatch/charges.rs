//! The ledger's side of carrying out: every GPU second charged through the journal
//! (by stage, from an evaluation's own timers; idle time the GPU was held), the
//! recorded charges released as a replay reaches them, and the ledger's snapshots.

use super::*;

impl<E: Evaluator> Dispatcher<E> {
    /// Journals a charge and hands it to the ledger: the one way GPU time is charged.
    pub(super) fn charge(&mut self, c: Charge) -> Result<()> {
        self.write(&JEvent::Charge(c.clone()))?;
        Ok(self.ctl.charged(&c)?)
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
        for c in self.replay.rest() {
            self.ctl
                .charged(&c)
                .map_err(|e| anyhow!("replaying the journal's charges: {e}"))?;
        }
        self.replaying = false;
        self.recheck = true;
        self.snapshot()
    }

    /// Journals the ledger as it stands (not while replaying: the run wrote its own).
    pub(super) fn snapshot(&mut self) -> Result<()> {
        if self.replaying {
            return Ok(());
        }
        let now = self.now_s();
        let ledger = self.ctl.ledger();
        let event = JEvent::Budget {
            spent: ledger.spent(),
            remaining: Some(ledger.remaining(&self.budgets, now)),
            breakdown: Some(ledger.breakdown()),
        };
        self.write(&event)?;
        Ok(())
    }

    /// Charges the wall time since the last charge that no stage accounted for: the
    /// GPU was held all the same.
    pub(super) fn charge_idle(&mut self, kernel: Option<usize>) -> Result<()> {
        let now = self.clock.elapsed_s();
        let idle = now - self.accounted_s;
        self.accounted_s = now;
        if idle <= 0.0 {
            return Ok(());
        }
        self.charge(Charge {
            kernel: kernel.map(|k| self.name(k)),
            pattern: None,
            config: None,
            stage: Stage::Idle,
            gpu_s: idle,
            wall_s: idle,
            dollars: 0.0,
        })
    }

    /// Charges one evaluation measured by this process, by stage (from its own stage
    /// times), before its record is journaled: a kill in between leaves time charged
    /// for work that is then measured again, which the GPU did spend.
    pub(super) fn charge_stages(
        &mut self,
        kernel: usize,
        pattern: Option<&str>,
        config: String,
        e: &Evaluation,
        against: Option<&Evaluation>,
    ) -> Result<()> {
        for (stage, s) in cost_of(e, against) {
            self.accounted_s += s;
            if !matches!(stage, Stage::Compile | Stage::Idle) {
                self.gpu_busy_s += s;
            }
            self.charge(Charge {
                kernel: Some(self.name(kernel)),
                pattern: pattern.map(str::to_string),
                config: Some(config.clone()),
                stage,
                gpu_s: s,
                wall_s: s,
                dollars: 0.0,
            })?;
        }
        Ok(())
    }
}
