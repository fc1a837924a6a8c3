//! The run's GPUs: one evaluator (a worker process on one GPU, its own watchdog,
//! restarts and CUDA context) each. The controller's requests are carried out one
//! at a time, in its order; a GPU that the request leaves free measures ahead what
//! the controller will ask for next ([`Controller::lookahead`]), so that with N GPUs
//! N pieces of work are in flight. An A/B comparison is one request to one worker:
//! the candidate and the best it is compared with are always measured interleaved on
//! the same GPU.
//!
//! Work measured ahead is journaled (and charged) as soon as it lands, marked
//! `ahead` with the GPU that measured it, and answers the controller like a resumed
//! run's record: its charges reach the ledger when the controller takes its result,
//! as a replay releases them, so the decisions are the ones one GPU would make and
//! a resume replays them whatever the number of GPUs. What the GPUs spent is in the
//! journal all the same (a snapshot counts the charges not released yet).

use tokio::task::JoinSet;

use super::replay::At;
use super::work::candidate_result;
use super::*;
use crate::controller::{Ahead, Known};

/// What a piece of work measured ahead returned.
enum Out {
    One(Box<Evaluation>),
    Pair(Box<(Evaluation, Evaluation, Option<AbResult>)>),
}

/// A piece of work for one evaluator.
type Job<E> = Box<dyn FnOnce(&mut E) -> Result<Out, EvalError> + Send>;

/// A piece of work measured ahead that landed, with its evaluator back.
struct Landed<E> {
    slot: usize,
    ev: E,
    what: Ahead,
    out: Result<Out, EvalError>,
}

pub(super) struct Pool<E> {
    /// The evaluators not in use, with their slot.
    idle: Vec<(usize, E)>,
    /// Per slot: the CUDA ordinal of its GPU (None: not known, a test double).
    ordinals: Vec<Option<usize>>,
    /// Work measured ahead, in flight.
    running: JoinSet<Landed<E>>,
    /// What is in flight ahead (as `running` holds it).
    busy: Vec<Ahead>,
    /// Per slot: the run's seconds (since this process took it over) charged on
    /// its GPU so far, idle time and stages.
    pub accounted_s: Vec<f64>,
}

impl<E: Evaluator> Pool<E> {
    pub fn new(evaluators: Vec<E>) -> Pool<E> {
        let n = evaluators.len();
        let ordinals = evaluators.iter().map(|e| e.ordinal()).collect();
        Pool {
            idle: evaluators.into_iter().enumerate().rev().collect(),
            ordinals,
            running: JoinSet::new(),
            busy: Vec::new(),
            accounted_s: vec![0.0; n],
        }
    }

    /// The slots of the evaluators not in use.
    pub fn idle_slots(&self) -> Vec<usize> {
        self.idle.iter().map(|(s, _)| *s).collect()
    }

    /// The CUDA ordinal of the GPU of `slot`.
    pub fn ordinal(&self, slot: usize) -> Option<usize> {
        self.ordinals.get(slot).copied().flatten()
    }

    /// How many GPUs the run holds.
    pub fn size(&self) -> usize {
        self.ordinals.len()
    }

    /// An evaluator not in use (for what it can say without working).
    pub fn any(&self) -> Option<&E> {
        self.idle.last().map(|(_, e)| e)
    }

    /// Every evaluator, once nothing is in flight (to shut them down).
    pub fn take_all(&mut self) -> Vec<E> {
        self.idle.drain(..).map(|(_, e)| e).collect()
    }
}

/// One GPU's result of a request: what it returned and the slot of the GPU.
pub(super) type OnGpu<T> = (T, usize);

impl<E: Evaluator> Dispatcher<E> {
    /// Runs `f` on a free evaluator, off the async thread (waiting for work
    /// measured ahead to land when none is free); what lands meanwhile is journaled.
    pub(super) async fn on_gpu<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut E) -> Result<T, EvalError> + Send + 'static,
    ) -> Result<OnGpu<T>> {
        let (slot, mut ev) = loop {
            if let Some(x) = self.gpus.idle.pop() {
                break x;
            }
            self.land_one().await?;
        };
        let mut main = tokio::task::spawn_blocking(move || {
            let r = f(&mut ev);
            (ev, r)
        });
        let (ev, r) = loop {
            if self.gpus.running.is_empty() {
                break (&mut main)
                    .await
                    .map_err(|e| anyhow!("the GPU thread failed: {e}"))?;
            }
            let next = tokio::select! {
                r = &mut main => Ok(r),
                Some(j) = self.gpus.running.join_next() => Err(j),
            };
            match next {
                Ok(r) => break r.map_err(|e| anyhow!("the GPU thread failed: {e}"))?,
                Err(j) => self.landed(j)?,
            }
        };
        self.gpus.idle.push((slot, ev));
        Ok((r?, slot))
    }

    /// Waits for the work measured ahead that `action` asks for, if it is in flight,
    /// so that its record answers the request.
    pub(super) async fn wait_for(&mut self, action: &Action) -> Result<()> {
        let Some(want) = Ahead::of(action) else {
            return Ok(());
        };
        while self.gpus.busy.contains(&want) {
            self.land_one().await?;
        }
        Ok(())
    }

    /// Every piece of work in flight lands and is journaled (the run is ending).
    pub(super) async fn drain(&mut self) -> Result<()> {
        while !self.gpus.running.is_empty() {
            self.land_one().await?;
        }
        Ok(())
    }

    async fn land_one(&mut self) -> Result<()> {
        match self.gpus.running.join_next().await {
            Some(j) => self.landed(j),
            None => Err(anyhow!("no GPU worker is left")),
        }
    }

    /// Starts measuring ahead, on the GPUs `action` leaves free, what the controller
    /// says it will ask for next (nothing on one GPU, or once a stop is asked for).
    pub(super) fn look_ahead(&mut self, action: &Action) {
        if self.gpus.size() < 2 || self.replaying || self.stop.get().is_some() {
            return;
        }
        let main = Ahead::of(action);
        let answered =
            self.answered(action) || main.as_ref().is_some_and(|m| self.gpus.busy.contains(m));
        // The request itself takes a GPU unless it is answered already (or is the
        // proposer's answer, which takes none).
        let needs = !answered && !matches!(action, Action::Await { .. });
        // With three GPUs or more, one is kept free for the controller's next request
        // (else it would wait for work measured ahead to land).
        let reserve = usize::from(needs) + usize::from(self.gpus.size() >= 3);
        let free = self.gpus.idle.len().saturating_sub(reserve);
        if free == 0 {
            return;
        }
        let mut busy = self.gpus.busy.clone();
        busy.extend(main.filter(|_| needs));
        let now = self.now_s();
        let unreleased = self.replay.unreleased_s();
        let todo = {
            let known = |a: &Ahead| {
                if busy.contains(a) {
                    Known::InFlight
                } else {
                    self.result_of(a).map_or(Known::Not, Known::Measured)
                }
            };
            self.ctl
                .lookahead(now, action, free, (&busy, unreleased), &known)
        };
        for what in todo {
            if let Err(e) = self.start_ahead(what) {
                tracing::warn!("not measured ahead: {e:#}");
            }
        }
    }

    /// The result the journal holds for `a` as the controller would ask for it (a
    /// verdict only against the same best), as the controller would hear it.
    fn result_of(&self, a: &Ahead) -> Option<CandidateResult> {
        let spec = &self.kernels[a.kernel()].spec;
        match a {
            Ahead::Baseline { config, .. } => {
                let e = self
                    .replay
                    .evaluated
                    .get(&(spec.name.clone(), config.to_string()))?;
                Some(candidate_result(spec, &e.value, None))
            }
            Ahead::Evaluate {
                config, against, ..
            } => {
                let key = (spec.name.clone(), config.to_string());
                let e = &self.replay.evaluated.get(&key)?.value;
                if e.outcome != Outcome::Passed {
                    return Some(candidate_result(spec, e, None));
                }
                let v = self.replay.verdict(&key, &against.to_string())?.value;
                Some(candidate_result(spec, e, Some((v.verdict, v.speedup))))
            }
        }
    }

    fn start_ahead(&mut self, what: Ahead) -> Result<()> {
        let job: Job<E> = match &what {
            Ahead::Baseline { kernel, config } => {
                let (spec, config) = (self.kernels[*kernel].spec.clone(), config.clone());
                Box::new(move |ev: &mut E| {
                    ev.pin_method(MethodChoice::Auto);
                    ev.evaluate(&spec, &config).map(|e| Out::One(Box::new(e)))
                })
            }
            Ahead::Evaluate {
                kernel,
                config,
                against,
                ..
            } => {
                let (sa, a) = (self.version(*kernel, against)?.0, against.config.clone());
                let (sb, b) = (self.version(*kernel, config)?.0, config.config.clone());
                let pin = self.pins[*kernel];
                Box::new(move |ev: &mut E| {
                    ev.pin_method(pin);
                    ev.compare((&sa, &a), (&sb, &b))
                        .map(|pair| Out::Pair(Box::new(pair)))
                })
            }
        };
        if self.gpus.idle.is_empty() {
            return Err(anyhow!("no GPU is free"));
        }
        // The idle time of the GPUs up to now is charged as it starts.
        self.charge_idle_held(Some(what.kernel()))?;
        let Some((slot, mut ev)) = self.gpus.idle.pop() else {
            return Err(anyhow!("no GPU is free"));
        };
        self.gpus.busy.push(what.clone());
        self.gpus.running.spawn_blocking(move || {
            let out = job(&mut ev);
            Landed {
                slot,
                ev,
                what,
                out,
            }
        });
        Ok(())
    }

    /// Work measured ahead landed: its evaluator is free again, and what it measured
    /// is charged and journaled (a worker's failure is only logged: the request
    /// itself will meet it).
    fn landed(&mut self, j: Result<Landed<E>, tokio::task::JoinError>) -> Result<()> {
        let l = j.map_err(|e| anyhow!("the GPU thread failed: {e}"))?;
        self.gpus.busy.retain(|b| b != &l.what);
        self.gpus.idle.push((l.slot, l.ev));
        let (slot, gpu) = (l.slot, self.gpus.ordinal(l.slot));
        let out = match l.out {
            Ok(out) => out,
            Err(e) => {
                tracing::warn!("work measured ahead failed: {e}");
                return Ok(());
            }
        };
        self.measured_ahead += 1;
        match (l.what, out) {
            (Ahead::Baseline { kernel, config }, Out::One(e)) => {
                let e = *e;
                self.charge_stages(slot, kernel, None, config.to_string(), &e, None, true)?;
                let seq =
                    self.write_evaluated(kernel, &config.to_string(), None, &e, None, gpu, true)?;
                self.ahead_seqs.insert(seq);
                self.replay
                    .evaluated
                    .insert((self.name(kernel), config.to_string()), At::of(seq, e));
            }
            (
                Ahead::Evaluate {
                    kernel,
                    pattern,
                    config,
                    against,
                },
                Out::Pair(pair),
            ) => {
                let (ea, eb, ab) = *pair;
                let change = self.version(kernel, &config)?.1;
                let revalidated = ab.is_some().then_some(&ea);
                self.charge_stages(
                    slot,
                    kernel,
                    Some(&pattern),
                    config.to_string(),
                    &eb,
                    revalidated,
                    true,
                )?;
                let key = (self.name(kernel), config.to_string());
                let seq =
                    self.write_evaluated(kernel, &key.1, Some(&pattern), &eb, change, gpu, true)?;
                self.ahead_seqs.insert(seq);
                self.replay.evaluated.insert(key.clone(), At::of(seq, eb));
                self.replay.verdicts.remove(&key);
                self.replay.against.remove(&key);
                if let Some(a) = ab.as_ref().map(AbFigures::from) {
                    let seq = self.write_verdict(kernel, &config, &against, a, &ea)?;
                    self.replay.verdicts.insert(key.clone(), At::of(seq, a));
                    self.replay.against.insert(key, against.to_string());
                }
            }
            _ => {
                return Err(anyhow!(
                    "work measured ahead returned the wrong kind of result"
                ))
            }
        }
        Ok(())
    }
}
