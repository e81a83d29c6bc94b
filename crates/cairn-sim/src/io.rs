//! How a simulated agent runs the protocol: rounds of reads, a decision,
//! compare-and-swap writes through an unreliable network, and local
//! actions that take time. This is the loop the crate docs of
//! `cairn-rollout` describe, with the store and the machine simulated.

use cairn_rollout::{
    decide, Action, Attempt, CheckResult, FleetFact, Health, Read, RolloutRead, Time, Versioned,
    Write,
};

use crate::agent::{Sent, Swap, SwapKind};
use crate::scenario::{promotion, Kind, Sabotage};
use crate::store::{Value, ROLLOUT};
use crate::trace::Ev;
use crate::world::{describe, release, Event, Reads, Reply, World};

/// A write whose reply has not come this long after it was sent has
/// failed, as far as its agent knows (it may still be applied later).
const TIMEOUT_MS: i64 = 3000;

/// A decision that keeps asking for reads in one round is a bug.
const MAX_READ_STEPS: u32 = 8;

impl World {
    fn latency(&mut self) -> i64 {
        self.rng.range(2, 30)
    }

    /// Whether the store answers nothing at true time `t`.
    fn down(&self, t: i64) -> bool {
        let since = t - promotion().0;
        self.sc.faults.outages.iter().any(|(start, len)| {
            let s = start.as_millis() as i64;
            since >= s && since < s + len.as_millis() as i64
        })
    }

    fn local_now(&self, a: usize) -> Time {
        Time(self.t + self.agents[a].skew)
    }

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
        let u = (self.rng.next() >> 11) as f64 / (1u64 << 53) as f64;
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

    fn wake_at(&mut self, a: usize, t: i64) {
        let ag = &mut self.agents[a];
        ag.timer += 1;
        ag.idle = true;
        let (epoch, token) = (ag.epoch, ag.timer);
        self.at(t, Event::Wake { a, epoch, token });
    }

    /// A new round: read the rollout record (and the own record, if its
    /// version is not known), then decide.
    pub(crate) fn round(&mut self, a: usize) {
        let ag = &mut self.agents[a];
        ag.idle = false;
        ag.reads_this_round = 0;
        ag.view.new_round();
        let own = !ag.own_known;
        let req = self.request(a);
        let lat = self.latency();
        if self.down(self.t) {
            self.store.counts.failed += 1;
            return self.reply(a, req, lat, Reply::Failed);
        }
        let mut reads = Reads {
            rollout: Some(self.store.get(ROLLOUT)),
            ..Reads::default()
        };
        if own {
            let id = self.agents[a].id.clone();
            reads.own = Some(self.store.get(&id));
        }
        self.reply(a, req, lat, Reply::Read(Box::new(reads)));
    }

    /// A decision on the records already read (a heartbeat): kept only if
    /// it writes nothing but the member record and waits; anything more is
    /// decided again on a fresh read.
    pub(crate) fn heartbeat(&mut self, a: usize) {
        let now = self.local_now(a);
        let ag = &mut self.agents[a];
        ag.idle = false;
        ag.view.new_round();
        let d = decide(&ag.view, now);
        let quiet = d.reads.is_empty()
            && matches!(d.action, Action::Wait { .. })
            && d.writes.iter().all(|w| matches!(w, Write::Member { .. }));
        if !quiet {
            return self.round(a);
        }
        ag.writes = d.writes.into();
        ag.action = Some(d.action);
        self.next_write(a);
    }

    fn request(&mut self, a: usize) -> u64 {
        self.next_req += 1;
        self.agents[a].waiting = Some(self.next_req);
        self.next_req
    }

    fn reply(&mut self, a: usize, req: u64, after: i64, reply: Reply) {
        let epoch = self.agents[a].epoch;
        self.at(
            self.t + after,
            Event::Reply {
                a,
                epoch,
                req,
                reply,
            },
        );
    }

    fn read_more(&mut self, a: usize, wanted: Vec<Read>) {
        let req = self.request(a);
        let lat = self.latency();
        if self.down(self.t) {
            self.store.counts.failed += 1;
            return self.reply(a, req, lat, Reply::Failed);
        }
        let mut reads = Reads::default();
        for r in wanted {
            match r {
                Read::Members => reads.members = Some(self.store.list_members()),
                Read::Records(ids) => {
                    for id in ids {
                        let rec = match self.store.get(&id) {
                            Some((_, Value::Member(m))) => Some(m),
                            _ => None,
                        };
                        reads.peers.push((id, rec));
                    }
                }
                Read::Fleet { service, set } => {
                    self.store.counts.fleet_reads += 1;
                    let ready = self.t >= promotion().plus(self.sc.fleet_ready).0;
                    let fact = FleetFact {
                        healthy: ready,
                        release: Some(release(0)),
                    };
                    reads.fleets.push((format!("{service}/{set}"), fact));
                }
            }
        }
        self.reply(a, req, lat, Reply::Read(Box::new(reads)));
    }

    pub(crate) fn on_reply(&mut self, a: usize, epoch: u32, req: u64, reply: Reply) {
        let ag = &mut self.agents[a];
        if !ag.alive || ag.epoch != epoch || ag.waiting != Some(req) {
            return;
        }
        ag.waiting = None;
        match reply {
            Reply::Read(reads) => {
                fill(ag, *reads);
                self.step(a);
            }
            Reply::Written(version) => {
                match ag.inflight.take() {
                    Some(Sent::Member(_, record)) => {
                        ag.view.own = Some(Versioned {
                            version,
                            value: record,
                        });
                        ag.own_known = true;
                    }
                    Some(Sent::Rollout(_, record)) => {
                        ag.view.rollout = RolloutRead::Read(Versioned {
                            version,
                            value: record,
                        });
                    }
                    None => {}
                }
                self.next_write(a);
            }
            Reply::Conflict | Reply::Failed => {
                let failed = matches!(reply, Reply::Failed);
                if matches!(ag.inflight.take(), Some(Sent::Member(..))) || failed {
                    ag.own_known = false;
                }
                ag.writes.clear();
                ag.action = None;
                let backoff = if failed {
                    self.rng.range(500, 2500)
                } else {
                    self.rng.range(10, 300)
                };
                self.wake_at(a, self.t + backoff);
            }
        }
    }

    /// Decides, and carries the decision out.
    fn step(&mut self, a: usize) {
        let now = self.local_now(a);
        let ag = &mut self.agents[a];
        let d = decide(&ag.view, now);
        if self.trace.live {
            let text = describe(&d.reads, &d.writes, &d.action);
            self.note(Some(a), Ev::Decide(text));
        }
        let ag = &mut self.agents[a];
        if !d.reads.is_empty() {
            ag.reads_this_round += 1;
            if ag.reads_this_round > MAX_READ_STEPS {
                let id = ag.id.clone();
                self.check
                    .fail(format!("{id}'s decision keeps asking for reads"));
                return;
            }
            return self.read_more(a, d.reads);
        }
        ag.writes = d.writes.into();
        ag.action = Some(d.action);
        self.next_write(a);
    }

    /// Sends the next write, or does the action when none is left.
    fn next_write(&mut self, a: usize) {
        let Some(write) = self.agents[a].writes.pop_front() else {
            let action = self.agents[a].action.take();
            if let Some(action) = action {
                self.act(a, action);
            }
            return;
        };
        let write = Sent::from(write);
        self.agents[a].inflight = Some(write.clone());
        let req = self.request(a);
        let epoch = self.agents[a].epoch;
        let lat = self.latency();
        let f = self.sc.faults.clone();
        if self.down(self.t) {
            self.store.counts.failed += 1;
            return self.reply(a, req, lat, Reply::Failed);
        }
        let (apply_after, reply_after) = if self.rng.chance(f.lost_writes) {
            self.store.counts.failed += 1;
            return self.reply(a, req, TIMEOUT_MS, Reply::Failed);
        } else if self.rng.chance(f.lost_replies) {
            (lat / 2, None)
        } else if self.rng.chance(f.delayed_writes) {
            let d = self.rng.range(lat, f.delay_max.as_millis() as i64);
            (d, Some(d + lat / 2).filter(|r| *r < TIMEOUT_MS))
        } else {
            (lat / 2, Some(lat))
        };
        if reply_after.is_none() {
            self.reply(a, req, TIMEOUT_MS, Reply::Failed);
        }
        let reply_at = reply_after.map(|r| self.t + r);
        self.at(
            self.t + apply_after,
            Event::Apply {
                a,
                epoch,
                req,
                write,
                reply_at,
            },
        );
    }

    /// A write reaches the store (whatever became of its agent since).
    pub(crate) fn apply(
        &mut self,
        a: usize,
        epoch: u32,
        req: u64,
        write: Sent,
        reply_at: Option<i64>,
    ) {
        let result = match write {
            Sent::Member(expected, record) => {
                let id = record.agent.clone();
                let r = self
                    .store
                    .compare_and_swap(&id, expected.as_ref(), Value::Member(record));
                self.note(Some(a), Ev::Applied("member", r.is_ok()));
                r
            }
            Sent::Rollout(expected, new) => {
                let old = self.store.peek_rollout().map(|(_, r)| r.clone());
                let r = self.store.compare_and_swap(
                    ROLLOUT,
                    expected.as_ref(),
                    Value::Rollout(new.clone()),
                );
                if r.is_ok() {
                    let agents = &self.agents;
                    self.check
                        .rollout_written(old.as_deref(), &new, false, |m| agents[m].id.clone());
                    let slots: Vec<String> = if new.slots.len() > 12 {
                        vec![format!("{} slots", new.slots.len())]
                    } else {
                        new.slots
                            .iter()
                            .map(|s| {
                                let at = s.expires - promotion().secs();
                                format!("{}:{:?}@{at}", s.member, s.kind)
                            })
                            .collect()
                    };
                    let text = format!(
                        "{} seq {} wave {} cap {} slots [{}] done {} steward {:?} by {}",
                        new.phase,
                        new.sequence,
                        new.wave,
                        new.capacity,
                        slots.join(" "),
                        new.done,
                        new.steward.as_ref().map(|l| &l.member),
                        self.agents[a].id
                    );
                    self.note(Some(a), Ev::Rollout(text));
                } else {
                    self.note(Some(a), Ev::Applied("rollout", false));
                }
                r
            }
        };
        if let Some(at) = reply_at {
            let reply = match result {
                Ok(v) => Reply::Written(v),
                Err(_) => Reply::Conflict,
            };
            self.at(
                at,
                Event::Reply {
                    a,
                    epoch,
                    req,
                    reply,
                },
            );
        }
    }

    fn act(&mut self, a: usize, action: Action) {
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
        self.check
            .swap_start(a, &id, &to, stored.as_deref(), decided_in, update, self.t);
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
            && cairn_digest::Digest::of(self.agents[a].id.as_bytes()).hash()[0] % 3 == 0;
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

/// Puts what was read into the agent's view.
fn fill(ag: &mut crate::agent::Agent, reads: Reads) {
    if let Some(r) = reads.rollout {
        ag.view.rollout = match r {
            Some((version, Value::Rollout(value))) => {
                RolloutRead::Read(Versioned { version, value })
            }
            _ => RolloutRead::Absent,
        };
    }
    if let Some(own) = reads.own {
        ag.view.own = match own {
            Some((version, Value::Member(value))) => Some(Versioned { version, value }),
            _ => None,
        };
        ag.own_known = true;
    }
    if let Some(m) = reads.members {
        ag.view.members = Some(m);
    }
    for (id, rec) in reads.peers {
        ag.view.peers.insert(id, rec);
    }
    for (key, fact) in reads.fleets {
        ag.view.fleets.insert(key, fact);
    }
}
