//! The invariants, checked as the run goes (every check is incremental,
//! so checking after every step costs no more than the step).
//!
//! * **Capacity:** members unavailable because of the rollout never exceed
//!   what the plan allows. A member counts from the start of a swap to its
//!   end; one whose agent died mid-swap counts until its slot's lease ends
//!   (plus the clock skew bound). After that it is a crashed host, which no
//!   strategy can budget for: the lease's end is what frees the rollout
//!   from waiting on it forever.
//! * **Leases:** a member swapping always holds a slot in the stored
//!   record; no member holds two; a swap ends before its lease.
//! * **Halts:** no slot is granted in a halted, paused, aborted or baking
//!   version, no agent moves a stopped rollout forward (only an operator
//!   resume does), and no swap to the target starts from a decision on a
//!   version that allows no update.
//! * **Freezes:** no update slot is granted, and no update runs, inside a
//!   freeze window (true time).
//! * **Trust:** no member runs a release no statement named.
//! * **Convergence** (at the end): every member runs the rollout's
//!   outcome, and the rollout reached the end it should.

use std::collections::{HashMap, HashSet};

use cairn_digest::Digest;
use cairn_rollout::{Phase, RolloutRecord, SlotKind};

/// A swap about to start, as the checks see it.
pub struct Start<'a> {
    /// The member's index.
    pub member: usize,
    /// Its id.
    pub id: &'a str,
    /// The release it swaps to.
    pub release: &'a Digest,
    /// The rollout record in the store now.
    pub stored: Option<&'a RolloutRecord>,
    /// The phase of the record the decision was made on.
    pub decided_in: Phase,
    /// An update to the target (not a rollback).
    pub update: bool,
    /// The true time, in ms.
    pub now: i64,
    /// The true time its lease ends, in ms (it must be over by then).
    pub finish_by: i64,
}

/// The running tally of the invariants.
#[derive(Debug, Default)]
pub struct Checker {
    /// Members the plan allows to be unavailable at once.
    pub allowed: u32,
    /// Members unavailable now.
    pub unavailable: u32,
    /// The most seen at once.
    pub max_unavailable: u32,
    /// Members swapping now, alive.
    swapping: HashSet<usize>,
    /// Members whose agent died mid-swap, still counted, with the true
    /// time their lease surely ended.
    dead_mid_swap: HashMap<usize, i64>,
    /// Crashed mid-swap members whose slot was then freed (by its lease).
    pub crashed_hosts: u32,
    /// Releases some statement named (and the baseline).
    pub accepted: HashSet<Digest>,
    /// The plan's freeze windows, `[from, until)` in true ms.
    pub freezes: Vec<(i64, i64)>,
    /// Updates that started after a halt was already stored (a member
    /// that read its grant just before): allowed, counted.
    pub racing_starts: u32,
    /// What went wrong.
    pub violations: Vec<String>,
}

impl Checker {
    /// A member starts a swap.
    pub fn swap_start(&mut self, s: Start<'_>) {
        let Start {
            member,
            id,
            release,
            stored,
            decided_in,
            update,
            now,
            finish_by,
        } = s;
        self.tick(now);
        if !self.accepted.contains(release) {
            self.fail(format!(
                "{id} swaps to {release:?}, which no statement named"
            ));
        }
        if stored.and_then(|r| r.slot_of(id)).is_none() {
            self.fail(format!(
                "{id} starts a swap without a slot in the stored record"
            ));
        }
        if update && !decided_in.allows_updates() {
            self.fail(format!(
                "{id} starts an update decided in phase {decided_in}"
            ));
        }
        if update && self.frozen(now, finish_by) {
            self.fail(format!(
                "{id} updates from {now} to {finish_by} ms, into a freeze window"
            ));
        }
        if update && stored.is_some_and(|r| !r.phase.allows_updates() && r.target == *release) {
            self.racing_starts += 1;
        }
        self.swapping.insert(member);
        self.unavailable += 1;
        self.max_unavailable = self.max_unavailable.max(self.unavailable);
        if self.unavailable > self.allowed {
            let (n, allowed) = (self.unavailable, self.allowed);
            self.fail(format!(
                "{n} members unavailable, the plan allows {allowed}"
            ));
        }
    }

    /// A member's swap ended (`late`: after its lease).
    pub fn swap_end(&mut self, member: usize, id: &str, late: bool) {
        if self.swapping.remove(&member) {
            self.unavailable -= 1;
        }
        if late {
            self.fail(format!("{id}'s swap ended after its lease"));
        }
    }

    /// A member's agent died; if it was swapping, it stays counted until
    /// `lease_end` (true time, ms).
    pub fn crash(&mut self, member: usize, lease_end: i64) {
        if self.swapping.remove(&member) {
            self.dead_mid_swap.insert(member, lease_end);
        }
    }

    /// A member's agent started again (an interrupted swap is resolved).
    pub fn restart(&mut self, member: usize) {
        if self.dead_mid_swap.remove(&member).is_some() {
            self.unavailable -= 1;
        }
    }

    /// Stops counting crashed members whose lease has ended by `now`.
    pub fn tick(&mut self, now: i64) {
        let ended: Vec<usize> = self
            .dead_mid_swap
            .iter()
            .filter(|(_, end)| **end < now)
            .map(|(m, _)| *m)
            .collect();
        for m in ended {
            self.dead_mid_swap.remove(&m);
            self.unavailable -= 1;
            self.crashed_hosts += 1;
        }
    }

    /// Whether `[start, end]` (true ms) touches a freeze window.
    fn frozen(&self, start: i64, end: i64) -> bool {
        self.freezes
            .iter()
            .any(|(from, until)| *from <= end && start < *until)
    }

    /// A rollout record was stored over `old` at `now` (true ms);
    /// `by_operator` if an operator wrote it.
    pub fn rollout_written(
        &mut self,
        old: Option<&RolloutRecord>,
        new: &RolloutRecord,
        now: i64,
        by_operator: bool,
        id_of: impl Fn(usize) -> String,
    ) {
        let mut holders = HashMap::new();
        for s in &new.slots {
            if holders.insert(s.member.as_str(), s.kind).is_some() {
                self.fail(format!("{} holds two slots", s.member));
            }
        }
        let swapping: Vec<usize> = self.swapping.iter().copied().collect();
        for m in swapping {
            let id = id_of(m);
            if !holders.contains_key(id.as_str()) {
                self.fail(format!("{id}'s slot was freed while it swaps"));
            }
        }
        let Some(old) = old.filter(|o| o.sequence == new.sequence && o.target == new.target) else {
            return;
        };
        let granted = new.slots.iter().any(|s| {
            s.kind == SlotKind::Update && old.slot_of(&s.member).is_none_or(|o| o.kind != s.kind)
        });
        let stopped = matches!(
            old.phase,
            Phase::Halted | Phase::Aborted | Phase::Paused | Phase::RollingBack | Phase::RolledBack
        );
        if granted && self.frozen(now, now) {
            self.fail(format!(
                "an update slot was granted at {now} ms, in a freeze window"
            ));
        }
        if granted && (!new.phase.allows_updates() || (stopped && old.phase == new.phase)) {
            self.fail(format!(
                "an update slot was granted in phase {} (was {})",
                new.phase, old.phase
            ));
        }
        if stopped && new.phase.is_forward() && !by_operator {
            self.fail(format!(
                "an agent moved a {} rollout to {}",
                old.phase, new.phase
            ));
        }
    }

    /// Records a violation.
    pub fn fail(&mut self, what: String) {
        if self.violations.len() < 20 {
            self.violations.push(what);
        }
    }
}
