//! The entry point: [`decide`].
//!
//! One call looks at a [`View`] and returns the next [`Decision`]. It is
//! split by role: `steward` (the agent holding the steward lease grants
//! slots a wave at a time, settles finished holders and moves the phase
//! on), `member` (this agent's own turn: fetch, update, roll back, take a
//! missed turn, or wait), `gates` (what a wave waits on) and `report`
//! (this agent's member record).
//!
//! **Lease rules.** A holder starts a swap only if the swap's budget fits
//! before its lease ends on its own clock; everyone else treats a lease as
//! held until [`Timing::margin`] after its end on theirs. With clocks at
//! most `max_skew` apart, a slot is never given to a second member while
//! the first may still be swapping.

mod gates;
mod member;
mod own_plan;
mod plausible;
mod report;
mod steward;

use std::sync::Arc;
use std::time::Duration;

use crate::decision::{Action, Decision, Read, Reason, Write};
use crate::order;
use crate::plan::{OnFailure, Strategy};
use crate::record::{Halt, Lease, Phase, RolloutRecord, SlotKind, Version, Versioned};
use crate::time::Time;
use crate::view::{Accepted, RolloutRead, Timing, View};

/// Decides what the agent of `view` does next, at `now` on its clock.
pub fn decide(view: &View, now: Time) -> Decision {
    let idle = now.plus(view.timing.idle_poll);
    let Some(acc) = &view.accepted else {
        return report::alone(view, now, Action::wait(idle, Reason::NoStatement));
    };
    let read = match &view.rollout {
        // A record nobody can follow would stop the set for good. Slots
        // it may list are unknown, so it is replaced only once any of
        // them has surely ended (fields are only ever added with
        // defaults, so a newer agent's record still reads).
        RolloutRead::Unreadable {
            version,
            error,
            since,
        } => {
            let replace_at = since.plus(plausible::horizon(&view.timing, acc));
            if now < replace_at {
                let reason = Reason::Unreadable(error.clone());
                return report::alone(view, now, Action::wait(replace_at.min(idle), reason));
            }
            return create(view, acc, Some(version), None, now);
        }
        RolloutRead::Absent => return create(view, acc, None, None, now),
        RolloutRead::Read(r) => r,
    };
    let repaired = plausible::repaired(&read.value, &view.timing, acc, now).map(|rec| Versioned {
        version: read.version.clone(),
        value: Arc::new(rec),
    });
    let r = repaired.as_ref().unwrap_or(read);
    if r.value.sequence > acc.sequence && backed(view, &r.value) {
        let reason = Reason::NewerRollout(r.value.sequence);
        report::alone(view, now, Action::wait(now.plus(view.timing.poll), reason))
    } else if r.value.sequence != acc.sequence || r.value.target != acc.release {
        // Older than the accepted statement, or a claim no statement this
        // agent verified backs: the record is anyone's to write, and an
        // unsigned claim must not hold (or steer) the set.
        create(view, acc, Some(&r.version), Some(&r.value), now)
    } else {
        follow(view, r, now)
    }
}

/// Whether the newer statement `rec` claims is one this agent verified
/// (the statement the record carries, checked against its trusted keys).
fn backed(view: &View, rec: &RolloutRecord) -> bool {
    view.verified
        .is_some_and(|v| v.sequence == rec.sequence && v.release == rec.target)
}

/// A decision in progress: the record as read, the changes made to it so
/// far, and when to decide again at the latest.
pub(crate) struct Cx<'a> {
    pub view: &'a View,
    pub now: Time,
    base: Option<&'a Versioned<Arc<RolloutRecord>>>,
    draft: Option<RolloutRecord>,
    pub until: Time,
}

impl<'a> Cx<'a> {
    fn new(view: &'a View, base: &'a Versioned<Arc<RolloutRecord>>) -> Self {
        Self {
            view,
            now: Time(0),
            base: Some(base),
            draft: None,
            until: Time(i64::MAX),
        }
    }

    /// The record with the changes made so far.
    pub fn rec(&self) -> &RolloutRecord {
        match (&self.draft, self.base) {
            (Some(d), _) => d,
            (None, Some(b)) => &b.value,
            (None, None) => unreachable!("a decision in progress has a record"),
        }
    }

    /// The record, to change (copied from the one read on first use).
    pub fn edit(&mut self) -> &mut RolloutRecord {
        if self.draft.is_none() {
            self.draft = Some(self.rec().clone());
        }
        self.draft.as_mut().expect("just set")
    }

    pub fn me(&self) -> &'a str {
        &self.view.me
    }

    pub fn timing(&self) -> &'a Timing {
        &self.view.timing
    }

    /// Decide again no later than `t`.
    pub fn wake(&mut self, t: Time) {
        self.until = self.until.min(t.max(self.now));
    }

    /// Whether the lease ending at `expires` (another agent's clock) has
    /// surely ended.
    pub fn expired(&self, expires: i64) -> bool {
        self.timing().lease_over(expires, self.now)
    }
}

impl Action {
    /// Waits until `until` for `reason` (reading the rollout record again
    /// then).
    pub fn wait(until: Time, reason: Reason) -> Self {
        Action::Wait {
            until,
            refresh: until,
            reason,
        }
    }
}

/// Replaces an absent or older rollout with one for the accepted
/// statement, carrying over slots still held so that the two together
/// never exceed the capacity. Agents that see the new statement at the
/// same moment spread out their attempts; one wins, the others follow.
fn create(
    view: &View,
    acc: &Accepted,
    expected: Option<&Version>,
    old: Option<&RolloutRecord>,
    now: Time,
) -> Decision {
    let t = &view.timing;
    let start = acc.at.plus(jitter(&view.me, acc.sequence, t.poll));
    if now < start {
        let reason = Reason::Working;
        return report::alone(view, now, Action::wait(start, reason));
    }
    let margin = t.margin();
    let carried = old.map_or_else(Vec::new, |o| {
        o.slots
            .iter()
            .filter(|s| !crate::record::expired(s.expires, now, margin))
            // Not this agent's own: it decides only when no swap of its
            // own is under way, so that slot is certainly over.
            .filter(|s| s.member != view.me)
            .map(|s| crate::record::Slot {
                kind: SlotKind::Draining,
                wave: None,
                ..s.clone()
            })
            .collect()
    });
    let members = old.map_or(0, |o| o.members);
    let phase = match acc.plan.strategy {
        Strategy::Canary { .. } => Phase::Canary,
        _ => Phase::Rolling,
    };
    let record = RolloutRecord {
        target: acc.release,
        sequence: acc.sequence,
        statement: acc.statement.clone(),
        version: acc.version.clone(),
        strategy: acc.plan.clone(),
        phase,
        wave: 0,
        members,
        capacity: acc.plan.capacity(members),
        lease: t.slot_lease().as_secs().max(1),
        cursor: None,
        rollback_cursor: None,
        slots: carried,
        canaries: Vec::new(),
        done: 0,
        away: 0,
        rolled_back: 0,
        failures: Vec::new(),
        halted: None,
        gates: Vec::new(),
        steward: Some(Lease {
            member: view.me.clone(),
            expires: now.plus(t.steward_lease).secs(),
        }),
        bake_until: None,
        resume_to: None,
        waves: Vec::new(),
        created: now.secs(),
        updated: now.secs(),
    };
    let write = Write::Rollout {
        expected: expected.cloned(),
        record: Box::new(record),
    };
    Decision {
        reads: Vec::new(),
        writes: vec![write],
        action: Action::wait(now, Reason::Working),
    }
}

fn follow(view: &View, base: &Versioned<Arc<RolloutRecord>>, now: Time) -> Decision {
    let mut cx = Cx::new(view, base);
    cx.now = now;
    report_failure(&mut cx);
    // An agent about to swap (or fetch) does no stewarding: it hands the
    // lease on instead of reading every holder just before it goes.
    let first = member::turn(&mut cx);
    if first.is_long() {
        steward::hand_off(&mut cx);
        return finish(cx, first);
    }
    match steward::step(&mut cx) {
        steward::Out::Reads(reads) => {
            return Decision {
                reads,
                writes: Vec::new(),
                action: Action::wait(now, Reason::Working),
            }
        }
        steward::Out::Act(action) => return finish(cx, action),
        steward::Out::Nothing => {}
    }
    // Again: the steward may have granted this agent a slot (unless it
    // just gave one back, which the steward does not grant again: the
    // reason it gave is the one to report).
    let gave_back = matches!(
        &first,
        Action::Wait {
            reason: Reason::Cautious(_) | Reason::Gates(_),
            ..
        }
    );
    let action = if gave_back {
        first
    } else {
        member::turn(&mut cx)
    };
    if action.is_long() {
        steward::hand_off(&mut cx);
    }
    finish(cx, action)
}

/// The decision: the rollout record if it changed, this agent's member
/// record if it is due, and the action.
fn finish(cx: Cx<'_>, action: Action) -> Decision {
    let now = cx.now;
    let mut writes = Vec::new();
    let rec: &RolloutRecord = cx.rec();
    let member = report::write(cx.view, Some(rec), now, &action);
    let action = match action {
        Action::Wait { until, reason, .. } => {
            let refresh = until.min(cx.until).max(now);
            let heartbeat = report::next_heartbeat(cx.view, now, &member);
            Action::Wait {
                until: refresh.min(heartbeat).max(now),
                refresh,
                reason,
            }
        }
        other => other,
    };
    if let Some(mut draft) = cx.draft {
        draft.updated = now.secs();
        writes.push(Write::Rollout {
            expected: cx.base.map(|b| b.version.clone()),
            record: Box::new(draft),
        });
    }
    writes.extend(member);
    Decision {
        reads: Vec::new(),
        writes,
        action,
    }
}

/// Records this agent's own failure on the target: in the failures, and
/// as a halt while the rollout moves forward. The member itself reports
/// it, at once, rather than wait for the steward to notice.
fn report_failure(cx: &mut Cx<'_>) {
    let (local, me, now) = (&cx.view.local, cx.me(), cx.now);
    let rec = cx.rec();
    let failed_here = local
        .failed
        .is_some_and(|f| f.release == rec.target && f.sequence == rec.sequence);
    let sick = local.running == Some(rec.target)
        && local.health == crate::record::Health::Unhealthy
        && (rec.phase.is_forward() || rec.phase == Phase::Paused);
    if !(failed_here || sick) || rec.failures.iter().any(|f| f.member == me) {
        return;
    }
    let reason = local.last_error.clone().unwrap_or_else(|| {
        if failed_here {
            "failed its health check on the target".into()
        } else {
            "unhealthy on the target".into()
        }
    });
    let rec = cx.edit();
    rec.add_failure(me, &reason, now.secs());
    rec.slots
        .retain(|s| s.member != me || s.kind == SlotKind::Draining);
    if rec.phase.is_forward() || rec.phase == Phase::Paused {
        halt(rec, Some(me), &format!("{me}: {reason}"), now);
    }
}

/// Stops a rollout: halted, or rolling back, as its plan says.
pub(crate) fn halt(rec: &mut RolloutRecord, member: Option<&str>, reason: &str, now: Time) {
    let from = match rec.phase {
        Phase::Paused => rec.resume_to.unwrap_or(Phase::Rolling),
        p => p,
    };
    rec.halted = Some(Halt {
        member: member.map(str::to_string),
        reason: reason.to_string(),
        at: now.secs(),
        phase: from,
    });
    rec.phase = match rec.strategy.on_failure {
        OnFailure::Halt => Phase::Halted,
        OnFailure::Rollback => Phase::RollingBack,
    };
    rec.resume_to = None;
    rec.gates.clear();
    rec.rollback_cursor = None;
}

/// A delay in `[0, span)` that differs between agents and occasions, so
/// agents that notice the same thing at once do not all act on it at once.
pub(crate) fn jitter(me: &str, salt: u64, span: Duration) -> Duration {
    let salt = cairn_digest::Digest::of(&salt.to_be_bytes());
    let h = order::mix(&salt, me);
    let span_ms = u64::try_from(span.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(h % span_ms)
}

/// Reads of records not yet in the view, if any.
pub(crate) fn missing_records<'n>(
    view: &View,
    names: impl IntoIterator<Item = &'n str>,
) -> Option<Read> {
    let missing: Vec<String> = names
        .into_iter()
        .filter(|n| !view.peers.contains_key(*n))
        .map(str::to_string)
        .collect();
    (!missing.is_empty()).then_some(Read::Records(missing))
}
