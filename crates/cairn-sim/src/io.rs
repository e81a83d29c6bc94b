//! How a simulated agent runs the protocol: rounds of reads, a decision,
//! compare-and-swap writes through an unreliable network, and local
//! actions that take time. This is the loop the crate docs of
//! `cairn-rollout` describe, with the store and the machine simulated.

use cairn_rollout::{decide, Action, FleetFact, Read, RolloutRead, Time, Versioned, Write};

use crate::agent::Sent;
use crate::scenario::promotion;
use crate::store::{Value, ROLLOUT};
use crate::trace::{describe, Ev};
use crate::world::{release, Event, Reads, Reply, World};

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
    pub(crate) fn down(&self, t: i64) -> bool {
        let since = t - promotion().0;
        self.sc.faults.outages.iter().any(|(start, len)| {
            let s = start.as_millis() as i64;
            since >= s && since < s + len.as_millis() as i64
        })
    }

    pub(crate) fn local_now(&self, a: usize) -> Time {
        Time(self.t + self.agents[a].skew)
    }

    pub(crate) fn wake_at(&mut self, a: usize, t: i64) {
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
                            Some((_, Value::Member(m))) => Some(*m),
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
                        refused: None,
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
                            value: *record,
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
                        .rollout_written(old.as_deref(), &new, self.t, false, |m| {
                            agents[m].id.clone()
                        });
                    let slots: Vec<String> = if new.slots.len() > 12 {
                        // Many slots: the count, and what changed.
                        let before = old.as_deref().map_or(&[][..], |o| &o.slots[..]);
                        let gone = before.iter().filter(|s| !new.slots.contains(s));
                        let came = new.slots.iter().filter(|s| !before.contains(s));
                        std::iter::once(format!("{} slots", new.slots.len()))
                            .chain(gone.map(|s| format!("-{}:{:?}", s.member, s.kind)))
                            .chain(came.map(|s| format!("+{}:{:?}", s.member, s.kind)))
                            .collect()
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
}

/// Puts what was read into the agent's view.
fn fill(ag: &mut crate::agent::Agent, reads: Reads) {
    if let Some(r) = reads.rollout {
        ag.view.rollout = match r {
            Some((version, Value::Rollout(value))) => {
                ag.view.verified = value
                    .statement
                    .as_deref()
                    .and_then(crate::world::verify)
                    .filter(|v| v.sequence == value.sequence && v.release == value.target);
                RolloutRead::Read(Versioned { version, value })
            }
            _ => RolloutRead::Absent,
        };
    }
    if let Some(own) = reads.own {
        ag.view.own = match own {
            Some((version, Value::Member(value))) => Some(Versioned {
                version,
                value: *value,
            }),
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
