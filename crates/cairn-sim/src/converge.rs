//! How a run ends: the operator's moves, convergence (checked every
//! simulated second), and the outcome with its figures.

use std::sync::Arc;
use std::time::Duration;

use cairn_rollout::{operator, Phase, RolloutRecord, Time, Version};

use crate::agent::Agent;
use crate::report::Outcome;
use crate::scenario::{promotion, Kind};
use crate::store::{Value, ROLLOUT};
use crate::trace::Ev;
use crate::world::{Event, World};

impl World {
    /// The sim's operator: resumes halted rollouts of flaky members, or
    /// pauses, resumes and perhaps aborts one rollout.
    pub(crate) fn operator(&mut self) {
        let Some((version, record)) = self.store.peek_rollout() else {
            return;
        };
        let (version, record) = (Version(version.to_string()), record.clone());
        let now = Time(self.t);
        let step = self.operator_done;
        let change = match self.sc.kind {
            Kind::Flaky if record.phase == Phase::Halted => operator::resume(&record, now).ok(),
            Kind::Operator if step == 0 && record.phase.is_forward() => {
                operator::pause(&record, now).ok()
            }
            Kind::Operator if step == 1 && record.phase == Phase::Paused => {
                if self.rng.chance(0.3) {
                    operator::abort(&record, now).ok()
                } else {
                    operator::resume(&record, now).ok()
                }
            }
            _ => None,
        };
        if let Some(new) = change {
            self.note(
                None,
                Ev::Operator(format!("{} -> {}", record.phase, new.phase)),
            );
            let value = Value::Rollout(Arc::new(new.clone()));
            if self
                .store
                .compare_and_swap(ROLLOUT, Some(&version), value)
                .is_ok()
            {
                let agents = &self.agents;
                self.check
                    .rollout_written(Some(&record), &new, self.t, true, |m| agents[m].id.clone());
                self.operator_done += 1;
            }
        }
        let next = self.rng.range(10_000, 60_000);
        if self.operator_done < 2 || self.sc.kind == Kind::Flaky {
            self.at(self.t + next, Event::Operator);
        }
    }

    /// Checks every second whether the set has converged.
    pub(crate) fn probe(&mut self) {
        if self.converged.is_none() && self.is_converged() {
            self.converged = Some((self.t, self.store.counts.clone()));
        }
        self.at(self.t + 1000, Event::Probe);
    }

    /// Whether the rollout reached an end and every live member runs its
    /// outcome, with no swap in progress.
    pub(crate) fn is_converged(&self) -> bool {
        let Some((_, r)) = self.store.peek_rollout() else {
            return false;
        };
        let last = self.statements.last().expect("statements");
        if r.sequence != last.sequence {
            return false;
        }
        // The operator of a flaky run resumes every halt.
        let halt_ends = self.sc.kind != Kind::Flaky;
        let terminal = match r.phase {
            Phase::Done | Phase::RolledBack | Phase::Aborted => true,
            Phase::Halted => halt_ends,
            _ => false,
        };
        terminal
            && self
                .agents
                .iter()
                .filter(|a| a.alive)
                .all(|a| a.swap.is_none() && outcome_ok(a, r))
    }

    pub(crate) fn finished(&self) -> bool {
        let quiet = promotion()
            .plus(self.sc.faults.until + self.sc.faults.down_max)
            .0
            + 60_000;
        self.converged.is_some()
            && self.t > quiet
            && self.agents.iter().all(|a| a.alive || !a.joined)
            && self.is_converged()
    }

    pub(crate) fn outcome(mut self) -> Outcome {
        let converged = self.converged.take();
        let end = self.store.peek_rollout().map(|(_, r)| (*r).clone());
        if self.check.violations.is_empty() {
            if let Some(r) = &end {
                let complete = r.phase == Phase::Done;
                if self.sc.must_complete() && !complete {
                    self.check
                        .fail(format!("the rollout ended {}, not done", r.phase));
                }
            }
            if converged.is_none() {
                self.check.fail("the set never converged".into());
            }
        }
        let counts = converged
            .as_ref()
            .map_or_else(|| self.store.counts.clone(), |(_, c)| c.clone())
            .since(&self.at_promotion);
        let trace = if self.check.violations.is_empty() {
            String::new()
        } else {
            self.trace.render()
        };
        Outcome {
            seed: self.sc.seed,
            agents: self.sc.agents,
            kind: self.sc.kind,
            phase: end.map(|r| r.phase),
            duration: converged.map(|(t, _)| Duration::from_millis((t - promotion().0) as u64)),
            counts,
            max_unavailable: self.check.max_unavailable,
            allowed: self.check.allowed,
            crashed_hosts: self.check.crashed_hosts,
            racing_starts: self.check.racing_starts,
            events: self.events,
            violations: std::mem::take(&mut self.check.violations),
            trace,
        }
    }
}

/// Whether `a` runs what the rollout `r` ends with.
fn outcome_ok(a: &Agent, r: &RolloutRecord) -> bool {
    let local = &a.view.local;
    let on_target = local.running == Some(r.target);
    let failed_here = local
        .failed
        .is_some_and(|f| f.release == r.target && f.sequence == r.sequence);
    match r.phase {
        Phase::Done => on_target || failed_here,
        Phase::RolledBack => !on_target || local.previous.is_none(),
        _ => on_target || local.running == a.before,
    }
}
