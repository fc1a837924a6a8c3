//! The search around a kernel's current best: which pattern goes next (tier, then
//! priority, then the bandit's score) and which neighbours it proposes.

use super::*;
use crate::spec::Config;

impl Controller {
    /// The bandit's score of a pattern: mean ln(speedup) per candidate over every
    /// kernel, plus the UCB1 bonus; untried patterns score infinity (try each once).
    pub(super) fn score(&self, pattern: &str) -> f64 {
        let c = self.credit.get(pattern).copied().unwrap_or_default();
        if c.tries == 0 {
            return f64::INFINITY;
        }
        let total: usize = self.credit.values().map(|c| c.tries).sum();
        c.reward / c.tries as f64
            + EXPLORATION * ((total.max(1) as f64).ln() / c.tries as f64).sqrt()
    }

    /// The first applicable moves, rewrite or (with a proposer) proposal pattern
    /// (tier order, then priority) that is neither dropped nor exhausted and has an
    /// untried neighbour (a proposal pattern: a question left); patterns found empty are
    /// marked exhausted on the way.
    pub(super) fn choose(&mut self, kernel: usize) -> Option<(String, Vec<Candidate>)> {
        let signals = self.signals(kernel);
        let order = self.library.tier_order();
        let rank = |t| order.iter().position(|x| *x == t).unwrap_or(order.len());
        let mut ranked: Vec<(usize, i64, f64, String)> = self
            .library
            .applicable(&signals)
            .into_iter()
            .filter(|p| match p.body {
                Body::Moves(_) | Body::Rewrite { .. } => true,
                Body::Proposal { .. } => self.proposer,
                _ => false,
            })
            .map(|p| {
                (
                    rank(p.tier),
                    -p.priority,
                    self.score(&p.name),
                    p.name.clone(),
                )
            })
            .collect();
        // Tier, then priority, then the bandit (stable: file order breaks ties).
        ranked.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)).then(b.2.total_cmp(&a.2)));
        let names: Vec<String> = ranked.into_iter().map(|r| r.3).collect();
        for name in names {
            let k = &self.kernels[kernel];
            if k.dropped.contains(&name) || k.exhausted.contains(&name) {
                continue;
            }
            if self.proposal_attempts(&name).is_some() {
                // Its candidates are the proposer's answers, asked for by `next`.
                if self.may_ask(kernel, &name) {
                    return Some((name, vec![]));
                }
                self.kernels[kernel].exhausted.insert(name);
                continue;
            }
            let queue = self.candidates(kernel, &name);
            if queue.is_empty() {
                self.kernels[kernel].exhausted.insert(name);
                continue;
            }
            return Some((name, queue));
        }
        None
    }

    /// Queues, first, the next step beyond `config` along the tunables in which it
    /// differs from the current best, each the same way again.
    pub(super) fn extend_line(&mut self, kernel: usize, candidate: &Candidate) {
        let k = &mut self.kernels[kernel];
        let (Some(best_candidate), Some(attack)) = (&k.best, k.attack.as_mut()) else {
            return;
        };
        // A rewrite's steps are the pattern's own; only a knob move has a line.
        if candidate.rewrites != best_candidate.rewrites {
            return;
        }
        let (best, config) = (&best_candidate.config, &candidate.config);
        let mut c = config.clone();
        let mut moved = 0;
        for (name, v) in &config.0 {
            if best.0.get(name) == Some(v) {
                continue;
            }
            let Some(t) = k.spec.tunables.iter().find(|t| &t.name == name) else {
                return;
            };
            let pos = |v: Option<&i64>| v.and_then(|v| t.values.iter().position(|x| x == v));
            let (Some(from), Some(to)) = (pos(best.0.get(name)), pos(Some(v))) else {
                return;
            };
            let next = to as i64 + (to as i64 - from as i64).signum();
            if next < 0 || next as usize >= t.values.len() {
                return;
            }
            c.0.insert(t.name.clone(), t.values[next as usize]);
            moved += 1;
        }
        let c = best_candidate.at(c);
        if moved > 0
            && !k.tried.contains(&c)
            && !attack.queue.contains(&c)
            && k.spec.violated(&k.spec.problem, &c.config).is_empty()
        {
            attack.queue.push_front(c);
        }
    }

    /// Untried, allowed neighbours of the current best along the pattern's moves: one
    /// tunable a step at a time, or (a `together` pattern) one tunable of every move
    /// at once, all stepping the same way where a move's direction is `any`.
    pub(super) fn candidates(&self, kernel: usize, pattern: &str) -> Vec<Candidate> {
        let k = &self.kernels[kernel];
        let Some(p) = self.pattern(pattern) else {
            return vec![];
        };
        let Some(best_candidate) = &k.best else {
            return vec![];
        };
        if let Body::Rewrite { .. } = &p.body {
            return self.rewrite_candidates(kernel, p);
        }
        let (best, Body::Moves(moves)) = (&best_candidate.config, &p.body) else {
            return vec![];
        };
        // Per move: (its tunables' names, the steps it may take under a shared sign).
        let step = |d: Direction, sign: i64| match d {
            Direction::Up => 1,
            Direction::Down => -1,
            Direction::Any => sign,
        };
        let stepped = |c: &Config, name: &str, by: i64| -> Option<Config> {
            let t = k.spec.tunables.iter().find(|t| t.name == name)?;
            let i =
                c.0.get(name)
                    .and_then(|v| t.values.iter().position(|x| x == v))? as i64;
            let j = i + by;
            if j < 0 || j as usize >= t.values.len() {
                return None;
            }
            let mut c = c.clone();
            c.0.insert(name.to_string(), t.values[j as usize]);
            Some(c)
        };
        let mut out: Vec<Candidate> = Vec::new();
        let keep = |c: Config, out: &mut Vec<Candidate>| {
            let violated = !k.spec.violated(&k.spec.problem, &c).is_empty();
            let c = best_candidate.at(c);
            if !k.tried.contains(&c) && !out.contains(&c) && !violated {
                out.push(c);
            }
        };
        let of_role = |m: &crate::patterns::Move| -> Vec<String> {
            k.spec
                .tunables
                .iter()
                .filter(|t| t.role == m.role)
                .map(|t| t.name.clone())
                .collect()
        };
        if p.together {
            for sign in [1, -1] {
                // Every choice of one tunable per move (distinct), stepped at once.
                let mut partial: Vec<(Config, Vec<String>)> = vec![(best.clone(), vec![])];
                for m in moves {
                    let mut next = Vec::new();
                    for (c, used) in &partial {
                        for name in of_role(m) {
                            if used.contains(&name) {
                                continue;
                            }
                            if let Some(c2) = stepped(c, &name, step(m.direction, sign)) {
                                let mut u = used.clone();
                                u.push(name);
                                next.push((c2, u));
                            }
                        }
                    }
                    partial = next;
                }
                for (c, _) in partial {
                    keep(c, &mut out);
                }
            }
            return out;
        }
        for m in moves {
            for name in of_role(m) {
                let signs: &[i64] = match m.direction {
                    Direction::Any => &[1, -1],
                    _ => &[1],
                };
                for sign in signs {
                    if let Some(c) = stepped(best, &name, step(m.direction, *sign)) {
                        keep(c, &mut out);
                    }
                }
            }
        }
        out
    }
}

impl Controller {
    /// A rewrite pattern's candidates: the current best with each of the pattern's
    /// steps added to its rewrites (in place of an earlier rewrite of the same kind,
    /// so stepping `min_blocks` replaces the attribute instead of stacking edits),
    /// untried. Whether each applies is found out when it comes up.
    fn rewrite_candidates(&self, kernel: usize, p: &Pattern) -> Vec<Candidate> {
        let k = &self.kernels[kernel];
        let Some(best) = &k.best else {
            return vec![];
        };
        let mut out: Vec<Candidate> = Vec::new();
        for text in p.rewrite_texts(&self.signals(kernel), &best.config) {
            let c = Candidate {
                config: best.config.clone(),
                rewrites: crate::rewrite::chained(&best.rewrites, &text),
            };
            if c.rewrites != best.rewrites && !k.tried.contains(&c) && !out.contains(&c) {
                out.push(c);
            }
        }
        out
    }
}
