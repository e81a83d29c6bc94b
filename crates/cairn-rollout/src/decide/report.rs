//! This agent's member record: what it says and when it is rewritten.
//!
//! The record is written when anything in it other than the heartbeat
//! changed, and otherwise once per heartbeat interval. What the steward
//! reads from it: `release`, `health` and `state` (updated when the
//! release is the target, healthy, and running), `failed` (halts), and
//! `heartbeat` (a member silent past the member timeout is skipped).

use crate::decision::{Action, Decision, Write};
use crate::record::{MemberRecord, MemberState, Phase, RolloutRecord};
use crate::time::Time;
use crate::view::View;

/// A decision with only this agent's member record to write, if due.
pub(super) fn alone(view: &View, now: Time, action: Action) -> Decision {
    let member = write(view, None, now, &action);
    let action = match action {
        Action::Wait { until, reason, .. } => Action::Wait {
            until: until.min(next_heartbeat(view, now, &member)).max(now),
            refresh: until,
            reason,
        },
        other => other,
    };
    Decision {
        reads: Vec::new(),
        writes: member.into_iter().collect(),
        action,
    }
}

/// The member record write this decision needs, if any.
pub(super) fn write(
    view: &View,
    rollout: Option<&RolloutRecord>,
    now: Time,
    action: &Action,
) -> Option<Write> {
    let record = desired(view, rollout, now, action);
    let due = match &view.own {
        None => true,
        Some(own) => {
            let mut old = own.value.clone();
            old.heartbeat = record.heartbeat;
            old != record || now >= Time::from_secs(own.value.heartbeat).plus(view.timing.heartbeat)
        }
    };
    due.then(|| Write::Member {
        expected: view.own.as_ref().map(|o| o.version.clone()),
        record: Box::new(record),
    })
}

/// When the next heartbeat is due, given the write about to be made.
pub(super) fn next_heartbeat(view: &View, now: Time, write: &Option<Write>) -> Time {
    let last = match (write, &view.own) {
        (Some(_), _) | (None, None) => now,
        (None, Some(own)) => Time::from_secs(own.value.heartbeat),
    };
    last.plus(view.timing.heartbeat)
}

/// The record this agent should have in the store now.
fn desired(
    view: &View,
    rollout: Option<&RolloutRecord>,
    now: Time,
    action: &Action,
) -> MemberRecord {
    let local = &view.local;
    let accepted = view.accepted.as_ref().map(|a| a.release);
    let state = match action {
        Action::Update { .. } => MemberState::Updating,
        Action::RollBack { .. } => MemberState::RollingBack,
        Action::Fetch { .. } => MemberState::Fetching,
        _ if local.running.is_none() => MemberState::Starting,
        _ if waiting(view, rollout) => MemberState::Waiting,
        _ => MemberState::Running,
    };
    let target = match action {
        Action::Update { release, .. } => Some(*release),
        Action::RollBack { to, .. } => Some(*to),
        _ => accepted.filter(|a| Some(*a) != local.running),
    };
    MemberRecord {
        agent: view.me.clone(),
        release: local.running,
        version: local.version.clone(),
        sequence: local.sequence,
        generation: local.generation,
        target,
        state,
        health: local.health,
        heartbeat: now.secs(),
        last_error: local.last_error.clone(),
        previous: local.previous,
        failed: local.failed,
    }
}

/// Whether this member is behind a rollout that may still move it.
fn waiting(view: &View, rollout: Option<&RolloutRecord>) -> bool {
    let Some(r) = rollout else {
        return false;
    };
    let failed_here = view
        .local
        .failed
        .is_some_and(|f| f.release == r.target && f.sequence == r.sequence);
    let moving = r.phase.is_forward() || matches!(r.phase, Phase::Done | Phase::Paused);
    view.local.running != Some(r.target) && !failed_here && moving
}
