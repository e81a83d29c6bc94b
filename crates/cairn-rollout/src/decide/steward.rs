//! The steward: the one agent, holding a lease in the rollout record, that
//! does the rollout's bookkeeping for everyone.
//!
//! Each round it reads the records of the members holding slots (and
//! nobody else's), releases the slots of those that finished, and, when
//! the current wave is over and the gates are open, lists the members
//! once, reads the next candidates in turn order and grants them slots in
//! one write. That is what keeps every agent's cost constant: a wave of a
//! thousand members costs one list, a thousand reads and a few writes,
//! instead of a thousand agents racing for one ref. Any agent can be the
//! steward: when the lease lapses (its agent died, or went to update
//! itself and handed it on) the next agent to look takes it over by
//! compare-and-swap, and continues from what the record says.

use std::time::Duration;

use super::gates::{self, Gates};
use super::{halt, jitter, missing_records, Cx};
use crate::decision::{Action, Read};
use crate::order::{keys, Key};
use crate::record::{Attempt, Health, Lease, MemberState, Phase, Position, Slot, SlotKind};
use crate::time::Time;

/// The most slots one round grants (so a round reads at most this many
/// candidates' records).
const MAX_GRANTS: u32 = 1000;

/// What the steward's round needs or does.
pub(super) enum Out {
    /// Reads first.
    Reads(Vec<Read>),
    /// A steward's own action (a gate check).
    Act(Action),
    /// Nothing more than the changes made to the record, if any.
    Nothing,
}

/// One round of stewarding, if the rollout needs it and this agent holds
/// (or may take) the lease.
pub(super) fn step(cx: &mut Cx<'_>) -> Out {
    if !cx.rec().phase.needs_steward() {
        return Out::Nothing;
    }
    match claim(cx) {
        Claim::No => return Out::Nothing,
        // A lease taken over is written on its own first: of the agents
        // that saw it free at once, only the one whose write wins goes on
        // to read every holder's record, and the others see its lease.
        Claim::Taken => {
            cx.wake(cx.now);
            return Out::Nothing;
        }
        Claim::Held => {}
    }
    cx.wake(cx.now.plus(cx.timing().poll));
    reclaim(cx);
    let holders = cx
        .rec()
        .slots
        .iter()
        .filter(|s| s.kind != SlotKind::Draining)
        .map(|s| s.member.as_str());
    if let Some(read) = missing_records(cx.view, holders) {
        return Out::Reads(vec![read]);
    }
    settle(cx);
    if cx.rec().phase == Phase::Baking {
        bake(cx);
    }
    match cx.rec().phase {
        Phase::Canary | Phase::Rolling => forward(cx),
        Phase::RollingBack => backward(cx),
        _ => Out::Nothing,
    }
}

/// Gives the lease up (before a long action of this agent's own).
pub(super) fn hand_off(cx: &mut Cx<'_>) {
    if cx
        .rec()
        .steward
        .as_ref()
        .is_some_and(|l| l.member == cx.me())
    {
        cx.edit().steward = None;
    }
}

/// Whether this agent holds the steward lease (renewing it when due) or
/// takes it now.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// Another agent holds it.
    No,
    /// This agent held it already.
    Held,
    /// This agent takes it (free, or lapsed).
    Taken,
}

fn claim(cx: &mut Cx<'_>) -> Claim {
    let (me, now, t) = (cx.me(), cx.now, cx.timing());
    let lease = t.steward_lease;
    let fresh = Lease {
        member: me.to_string(),
        expires: now.plus(lease).secs(),
    };
    match cx.rec().steward.clone() {
        Some(l) if l.member == me && Time::from_secs(l.expires) > now => {
            if Time::from_secs(l.expires) < now.plus(lease * 2 / 3) {
                cx.edit().steward = Some(fresh);
            }
            Claim::Held
        }
        Some(l) => {
            let wait = t.margin() + jitter(me, l.expires as u64, t.poll);
            if Time::from_secs(l.expires).plus(wait) >= now {
                return Claim::No;
            }
            cx.edit().steward = Some(fresh);
            Claim::Taken
        }
        None => {
            cx.edit().steward = Some(fresh);
            Claim::Taken
        }
    }
}

/// Frees slots whose lease surely ended; an update slot freed this way
/// counts its member as away.
fn reclaim(cx: &mut Cx<'_>) {
    // The steward's own draining slot is over too: it decides only when
    // no swap of its own is under way.
    let me = cx.me();
    let lapsed: Vec<usize> = (0..cx.rec().slots.len())
        .filter(|&i| {
            let s = &cx.rec().slots[i];
            cx.expired(s.expires) || (s.kind == SlotKind::Draining && s.member == me)
        })
        .collect();
    if lapsed.is_empty() {
        return;
    }
    let now = cx.now.secs();
    let rec = cx.edit();
    for &i in lapsed.iter().rev() {
        if rec.slots.remove(i).kind == SlotKind::Update {
            rec.away += 1;
        }
    }
    if !rec.wave_open() {
        rec.finish_wave(now);
    }
}

/// Releases the slots of holders whose records say they finished; a
/// holder that failed halts the rollout.
fn settle(cx: &mut Cx<'_>) {
    let (target, sequence) = (cx.rec().target, cx.rec().sequence);
    let failed_attempt = Some(Attempt {
        release: target,
        sequence,
    });
    let mut finished = Vec::new();
    for (i, slot) in cx.rec().slots.iter().enumerate() {
        let Some(Some(r)) = cx.view.peers.get(&slot.member) else {
            continue;
        };
        let on_target = r.release == Some(target);
        let settled = match slot.kind {
            SlotKind::Update if r.failed == failed_attempt => Some(Settled::Failed(
                r.last_error
                    .clone()
                    .unwrap_or_else(|| "failed its health check".into()),
            )),
            SlotKind::Update
                if on_target && r.health == Health::Healthy && r.state == MemberState::Running =>
            {
                Some(Settled::Updated)
            }
            // Off the target and no longer moving: back. A record still
            // saying it updates (written before its agent claimed the
            // rollback slot, which it does before rewriting its record)
            // is not a rollback done.
            SlotKind::Rollback if !on_target && !r.state.is_swapping() => Some(Settled::RolledBack),
            SlotKind::Rollback if on_target && r.previous.is_none() => Some(Settled::Stuck),
            _ => None,
        };
        finished.extend(settled.map(|s| (i, s)));
    }
    if finished.is_empty() {
        return;
    }
    let now = cx.now;
    let rec = cx.edit();
    for (i, settled) in finished.into_iter().rev() {
        let slot = rec.slots.remove(i);
        match settled {
            Settled::Updated => {
                rec.done += 1;
                if rec.phase == Phase::Canary {
                    rec.canaries.push(slot.member);
                }
            }
            Settled::Failed(reason) => {
                rec.add_failure(&slot.member, &reason, now.secs());
                if rec.phase.is_forward() || rec.phase == Phase::Paused {
                    let why = format!("{}: {reason}", slot.member);
                    halt(rec, Some(&slot.member), &why, now);
                }
            }
            Settled::RolledBack => rec.rolled_back += 1,
            Settled::Stuck => {}
        }
    }
    if !rec.wave_open() {
        rec.finish_wave(now.secs());
    }
}

enum Settled {
    Updated,
    Failed(String),
    RolledBack,
    Stuck,
}

/// Ends the canaries' bake when its time has come.
fn bake(cx: &mut Cx<'_>) {
    let until = cx.rec().bake_until.map(Time::from_secs);
    match until {
        Some(u) if cx.now < u => cx.wake(u),
        _ => cx.edit().phase = Phase::Rolling,
    }
}

/// Grants free slots to the next members in turn order, continuously:
/// each round fills the slots that were freed, in one write. A wave is
/// `capacity` grants; fleet and check gates are passed before each wave,
/// and nothing is granted inside a freeze window. The canary phase grants
/// `count` members, then bakes once they all finished.
fn forward(cx: &mut Cx<'_>) -> Out {
    let rec = cx.rec();
    let updating = rec
        .slots
        .iter()
        .filter(|s| s.kind == SlotKind::Update)
        .count() as u32;
    // Grants go out in batches of an eighth of the capacity at least, so
    // a large set costs a listing and a write per batch, not per slot.
    let batch = (rec.capacity / 8).max(1);
    if updating > 0 && rec.room(cx.now, cx.timing().margin()) < batch {
        return Out::Nothing;
    }
    // Waiting on gates already: look at them before listing anyone, so a
    // long freeze does not cost a listing every round.
    if !rec.gates.is_empty() {
        if let Some(out) = gates_hold(cx, next_is_new_wave(cx.rec())) {
            return out;
        }
    }
    let Some(members) = cx.view.members.clone() else {
        return Out::Reads(vec![Read::Members]);
    };
    let order = listed(cx, &members);
    let rec = cx.rec();
    let after = after(&order, rec.cursor.as_ref());
    let mut room = rec.room(cx.now, cx.timing().margin());
    if let (Phase::Canary, Some(want)) = (rec.phase, rec.strategy.canary_count(rec.members)) {
        let have = rec.canaries.len() as u32;
        if have >= want || after.is_empty() {
            if updating == 0 {
                start_bake(cx);
            }
            return Out::Nothing;
        }
        room = room.min(want.saturating_sub(have + updating));
    } else if after.is_empty() {
        if updating == 0 {
            let rec = cx.edit();
            rec.phase = Phase::Done;
            rec.steward = None;
        }
        return Out::Nothing;
    }
    let room = room.min(MAX_GRANTS);
    let candidates: Vec<Position> = after[..(room as usize).min(after.len())]
        .iter()
        .map(|k| k.position())
        .collect();
    if candidates.is_empty() {
        return Out::Nothing;
    }
    if let Some(out) = gates_hold(cx, next_is_new_wave(cx.rec())) {
        return out;
    }
    grant(cx, &candidates, SlotKind::Update)
}

/// Whether the next grant starts a new wave: none yet in this phase, or
/// the current one has had `capacity` grants.
fn next_is_new_wave(rec: &crate::record::RolloutRecord) -> bool {
    rec.waves
        .last()
        .is_none_or(|w| w.phase != rec.phase || w.granted >= rec.capacity)
}

/// What the gates hold the next grants for, if anything; records it.
fn gates_hold(cx: &mut Cx<'_>, new_wave: bool) -> Option<Out> {
    match gates::check(cx, new_wave) {
        Gates::Open => {
            set_gates(cx, Vec::new());
            None
        }
        Gates::Reads(reads) => Some(Out::Reads(reads)),
        Gates::Run(action) => Some(Out::Act(action)),
        Gates::Waiting(list) => {
            set_gates(cx, list);
            Some(Out::Nothing)
        }
    }
}

/// Grants rollback slots to the members running the target, continuously,
/// in the same order.
fn backward(cx: &mut Cx<'_>) -> Out {
    let Some(members) = cx.view.members.clone() else {
        return Out::Reads(vec![Read::Members]);
    };
    let order = listed(cx, &members);
    let rec = cx.rec();
    let after = after(&order, rec.rollback_cursor.as_ref());
    if after.is_empty() {
        if !rec.slots.iter().any(|s| s.kind == SlotKind::Rollback) {
            let rec = cx.edit();
            rec.phase = Phase::RolledBack;
            rec.steward = None;
        }
        return Out::Nothing;
    }
    let room = rec.room(cx.now, cx.timing().margin()).min(MAX_GRANTS) as usize;
    let candidates: Vec<Position> = after[..room.min(after.len())]
        .iter()
        .map(|k| k.position())
        .collect();
    grant(cx, &candidates, SlotKind::Rollback)
}

/// The listed members in turn order, recording their count and the
/// capacity it gives.
fn listed<'m>(cx: &mut Cx<'_>, members: &'m [String]) -> Vec<Key<'m>> {
    let rec = cx.rec();
    let order = keys(&rec.strategy, &rec.target, members);
    let n = u32::try_from(members.len()).unwrap_or(u32::MAX);
    let capacity = rec.strategy.capacity(n);
    if rec.members != n || rec.capacity != capacity {
        let rec = cx.edit();
        rec.members = n;
        rec.capacity = capacity;
    }
    order
}

fn after<'o, 'm>(order: &'o [Key<'m>], cursor: Option<&Position>) -> &'o [Key<'m>] {
    let start = cursor.map_or(0, |c| order.partition_point(|k| !k.after(c)));
    &order[start..]
}

fn start_bake(cx: &mut Cx<'_>) {
    let bake = match cx.rec().strategy.strategy {
        crate::plan::Strategy::Canary { bake, .. } => bake,
        _ => Duration::ZERO,
    };
    let until = cx.now.plus(bake);
    let rec = cx.edit();
    rec.phase = Phase::Baking;
    rec.bake_until = Some(until.secs_ceil());
    cx.wake(until);
}

/// Gives slots of `kind` to the candidates that need one, after reading
/// their records; moves the cursor past all of them.
fn grant(cx: &mut Cx<'_>, candidates: &[Position], kind: SlotKind) -> Out {
    let Some(last) = candidates.last() else {
        return Out::Nothing;
    };
    let names = candidates.iter().map(|p| p.member.as_str());
    if let Some(read) = missing_records(cx.view, names) {
        return Out::Reads(vec![read]);
    }
    let (now, t, view) = (cx.now, cx.timing(), cx.view);
    let rec = cx.rec();
    let new_wave = next_is_new_wave(rec);
    let wave = rec.wave + u32::from(new_wave);
    let (target, sequence) = (rec.target, rec.sequence);
    let expires = now.plus(Duration::from_secs(rec.lease)).secs();
    let failed = Some(Attempt {
        release: target,
        sequence,
    });
    let mut slots = Vec::new();
    let (mut done, mut away, mut canaries) = (0, 0, Vec::new());
    for p in candidates {
        let record = view.peers.get(&p.member).cloned().flatten();
        let alive = record
            .as_ref()
            .is_some_and(|r| !t.is_away(r.heartbeat, now));
        let on_target = record.as_ref().is_some_and(|r| r.release == Some(target));
        let wanted = match kind {
            SlotKind::Update if on_target => {
                done += 1;
                canaries.push(p.member.clone());
                false
            }
            SlotKind::Update => record.as_ref().is_none_or(|r| r.failed != failed),
            _ => on_target && record.as_ref().is_some_and(|r| r.previous.is_some()),
        };
        match (wanted, alive) {
            (true, true) => slots.push(Slot {
                member: p.member.clone(),
                expires,
                kind,
                wave: Some(wave),
            }),
            (true, false) => away += 1,
            (false, _) => {}
        }
    }
    let granted = u32::try_from(slots.len()).unwrap_or(u32::MAX);
    let rec = cx.edit();
    match kind {
        SlotKind::Rollback => rec.rollback_cursor = Some(last.clone()),
        _ => rec.cursor = Some(last.clone()),
    }
    rec.done += done;
    rec.away += away;
    if rec.phase == Phase::Canary {
        rec.canaries.extend(canaries);
    }
    if granted == 0 {
        cx.wake(now);
        return Out::Nothing;
    }
    let phase = rec.phase;
    // A candidate may still hold a slot carried over from an older
    // rollout: the new one replaces it (one slot per member, and the new
    // lease ends later).
    let granted_to: std::collections::HashSet<&str> =
        slots.iter().map(|s| s.member.as_str()).collect();
    rec.slots
        .retain(|s| !granted_to.contains(s.member.as_str()));
    rec.slots.extend(slots);
    rec.slots.sort_by(|a, b| a.member.cmp(&b.member));
    match rec.waves.last_mut() {
        Some(w) if !new_wave => {
            w.granted += granted;
            w.finished = None;
        }
        _ => rec.start_wave(phase, granted, now.secs()),
    }
    Out::Nothing
}

fn set_gates(cx: &mut Cx<'_>, list: Vec<String>) {
    if cx.rec().gates != list {
        cx.edit().gates = list;
    }
}
