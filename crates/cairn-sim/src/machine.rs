//! What a simulated machine does: its agent process starting and
//! crashing, and the local actions a decision asks for (fetch, swap, roll
//! back, run a gate check), which take time and may fail. This is the
//! ground truth the invariants are checked against; a sabotaged agent
//! (for the checks' own tests) departs from the decision here.

use cairn_rollout::{Action, Attempt, CheckResult, Health, RolloutRead};

use crate::agent::{Swap, SwapKind};
use crate::scenario::{promotion, Kind, Sabotage};
use crate::trace::Ev;
use crate::world::{release, Event, World};

impl World {
    /// The agent's process starts: for the first time, or after a crash
    /// (an interrupted swap is resolved by keeping the old release).
    pub(crate) fn start(&mut self, a: usize) {
        let max_skew = self.sc.faults.max_skew.as_millis() as i64;
        self.agents[a].skew = self.rng.range(-max_skew, max_skew);
        let ag = &mut self.agents[a];
        ag.alive = true;
        ag.joined = true;
        if ag.swap.take().is_some() {
            ag.view.local.health = Health::Healthy;
            self.check.restart(a);
        }
        self.note(Some(a), Ev::Restart);
        if let Some(s) = self.statements.len().checked_sub(1) {
            let delay = self.rng.range(0, 1000);
            self.at(self.t + delay, Event::Accept { a, statement: s });
        }
        self.schedule_crash(a);
        let delay = self.rng.range(0, 500);
        self.wake_at(a, self.t + delay);
    }

    fn schedule_crash(&mut self, a: usize) {
        let f = &self.sc.faults;
        if f.crash_rate <= 0.0 {
            return;
        }
        let mean_ms = 3_600_000.0 / f.crash_rate;
        let u = (self.rng.bits() >> 11) as f64 / (1u64 << 53) as f64;
        let at = self.t.max(promotion().0) + (-(1.0 - u).ln() * mean_ms) as i64;
        if at < promotion().plus(f.until).0 {
            self.at(at, Event::Crash(a));
        }
    }

    pub(crate) fn crash(&mut self, a: usize) {
        let ag = &mut self.agents[a];
        if !ag.alive {
            return;
        }
        ag.alive = false;
        ag.epoch += 1;
        ag.forget();
        if ag.swap.is_some() {
            let id = ag.id.clone();
            let expires = self
                .store
                .peek_rollout()
                .and_then(|(_, r)| r.slot_of(&id).map(|s| s.expires));
            let skew = self.sc.faults.max_skew.as_millis() as i64;
            let end = expires.map_or(self.t, |e| e * 1000 + skew);
            self.check.crash(a, end);
        }
        self.note(Some(a), Ev::Crash);
        let down = self
            .rng
            .range(1000, self.sc.faults.down_max.as_millis() as i64);
        self.at(self.t + down, Event::Start(a));
    }

    pub(crate) fn act(&mut self, a: usize, action: Action) {
        let action = self.sabotaged(a, action);
        let ag = &mut self.agents[a];
        let skew = ag.skew;
        // The record the action was decided on, as this agent wrote it or
        // read it.
        if let RolloutRead::Read(r) = &ag.view.rollout {
            ag.decided_in = r.value.phase;
        }
        match action {
            Action::Wait { until, refresh, .. } => {
                let at = (until.0 - skew).max(self.t + 1);
                self.wake_at(a, at);
                self.agents[a].refresh = refresh.0;
            }
            Action::Fetch { release } => {
                let epoch = self.agents[a].epoch;
                let took = self.rng.range(300, 3000);
                self.at(self.t + took, Event::Fetched { a, epoch, release });
            }
            Action::Update { release, finish_by } => {
                self.begin_swap(a, SwapKind::Update, release, finish_by.0 - skew)
            }
            Action::RollBack { to, finish_by } => {
                self.begin_swap(a, SwapKind::Rollback, to, finish_by.0 - skew)
            }
            Action::RunCheck { gate, wave, .. } => {
                let epoch = self.agents[a].epoch;
                let passed = self.check_failures_left == 0;
                self.check_failures_left = self.check_failures_left.saturating_sub(1);
                let sequence = self.rollout_sequence(a);
                let took = self.rng.range(100, 1500);
                let ev = Event::Checked {
                    a,
                    epoch,
                    gate,
                    wave,
                    sequence,
                    passed,
                };
                self.at(self.t + took, ev);
            }
        }
    }

    /// What a sabotaged agent does instead of `action`.
    fn sabotaged(&self, a: usize, action: Action) -> Action {
        let ag = &self.agents[a];
        let local = &ag.view.local;
        let RolloutRead::Read(r) = &ag.view.rollout else {
            return action;
        };
        let target = r.value.target;
        let behind = local.running != Some(target) && local.fetched.contains(&target);
        let far = cairn_rollout::Time(i64::MAX / 2);
        match (self.sc.sabotage, &action) {
            (Some(Sabotage::IgnoreSlots), Action::Wait { .. }) if behind => Action::Update {
                release: target,
                finish_by: far,
            },
            (Some(Sabotage::IgnoreHalts), Action::Wait { .. })
                if behind && r.value.phase == cairn_rollout::Phase::Halted =>
            {
                Action::Update {
                    release: target,
                    finish_by: far,
                }
            }
            _ => action,
        }
    }

    fn rollout_sequence(&self, a: usize) -> u64 {
        match &self.agents[a].view.rollout {
            RolloutRead::Read(r) => r.value.sequence,
            _ => 0,
        }
    }

    fn begin_swap(&mut self, a: usize, kind: SwapKind, to: cairn_digest::Digest, finish_by: i64) {
        let stored = self.store.peek_rollout().map(|(_, r)| r.clone());
        let (id, decided_in) = (self.agents[a].id.clone(), self.agents[a].decided_in);
        let update = kind == SwapKind::Update;
        self.check.swap_start(crate::check::Start {
            member: a,
            id: &id,
            release: &to,
            stored: stored.as_deref(),
            decided_in,
            update,
            now: self.t,
            finish_by,
        });
        let ok = !update || self.healthy(a, &to);
        let deadline = self.sc.deadline.as_millis() as i64;
        let took = match (kind, ok) {
            (SwapKind::Rollback, _) => self.rng.range(1000, 4000),
            (SwapKind::Update, false) => deadline + self.rng.range(1000, 4000),
            (SwapKind::Update, true) if self.rng.chance(self.sc.faults.slow_health) => {
                self.rng.range(deadline / 2, deadline * 95 / 100)
            }
            (SwapKind::Update, true) => self.rng.range(2000, 8000),
        };
        let took = match self.sc.sabotage {
            Some(Sabotage::OverrunLeases) => took.max(finish_by - self.t + 5000),
            _ => took,
        };
        let sequence = self.rollout_sequence(a);
        let ag = &mut self.agents[a];
        ag.swap = Some(Swap {
            kind,
            to,
            sequence,
            ok,
            finish_by,
        });
        let kind_name = if update { "update" } else { "rollback" };
        self.note(Some(a), Ev::SwapStart(kind_name, format!("{to:?}")));
        let epoch = self.agents[a].epoch;
        self.at(self.t + took, Event::Swapped { a, epoch });
    }

    /// Whether swapping `a` to `to` ends healthy.
    fn healthy(&mut self, a: usize, to: &cairn_digest::Digest) -> bool {
        let bad_everywhere = self.sc.kind == Kind::BadCanary && *to == release(1);
        let bad_here = self.sc.kind == Kind::BadRolling
            && *to == release(1)
            && cairn_digest::Digest::of(self.agents[a].id.as_bytes()).hash()[0].is_multiple_of(3);
        let ag = &mut self.agents[a];
        if ag.flaky > 0 {
            ag.flaky -= 1;
            return false;
        }
        !(bad_everywhere || bad_here)
    }

    pub(crate) fn swapped(&mut self, a: usize, epoch: u32) {
        let ag = &mut self.agents[a];
        if ag.epoch != epoch || !ag.alive {
            return;
        }
        let Some(sw) = ag.swap.take() else {
            return;
        };
        let late = self.t > sw.finish_by;
        let local = &mut ag.view.local;
        let outcome = match (sw.kind, sw.ok) {
            (SwapKind::Update, true) => {
                local.previous = local.running;
                local.running = Some(sw.to);
                local.sequence = Some(sw.sequence);
                local.health = Health::Healthy;
                "healthy"
            }
            (SwapKind::Update, false) => {
                local.failed = Some(Attempt {
                    release: sw.to,
                    sequence: sw.sequence,
                });
                local.last_error = Some("health check failed before its deadline".into());
                "failed, back on the previous release"
            }
            (SwapKind::Rollback, _) => {
                local.running = Some(sw.to);
                local.previous = None;
                "rolled back"
            }
        };
        let id = ag.id.clone();
        self.check.swap_end(a, &id, late);
        self.note(Some(a), Ev::SwapEnd(outcome.into()));
        self.round(a);
    }

    pub(crate) fn fetched(&mut self, a: usize, epoch: u32, release: cairn_digest::Digest) {
        let down = self.down(self.t);
        let ag = &mut self.agents[a];
        if ag.epoch != epoch || !ag.alive {
            return;
        }
        if !down && !ag.view.local.fetched.contains(&release) {
            ag.view.local.fetched.push(release);
        }
        let retry = if down { self.rng.range(1000, 3000) } else { 0 };
        self.wake_at(a, self.t + retry);
    }

    pub(crate) fn checked(
        &mut self,
        a: usize,
        epoch: u32,
        gate: usize,
        wave: u32,
        sequence: u64,
        passed: bool,
    ) {
        let now = self.local_now(a);
        let ag = &mut self.agents[a];
        if ag.epoch != epoch || !ag.alive {
            return;
        }
        ag.view.local.checks.push(CheckResult {
            sequence,
            wave,
            gate,
            passed,
            at: now,
        });
        self.round(a);
    }
}
