//! This agent's own turn: fetch early, update while holding a slot, take a
//! turn it missed, roll back when the rollout does, or wait, and for how
//! long.
//!
//! A member updates only under a slot whose lease covers the whole swap
//! on its own clock. Slots come from the steward's grants, one wave at a
//! time; a member that missed its turn (away when it came, or joined
//! after the steward passed its place, or came back after the rollout was
//! done) takes a free slot itself by compare-and-swap. Members far from
//! their turn poll less often, so a waiting agent's reads do not grow
//! with the length of the rollout.

use std::time::Duration;

use super::{own_plan, Cx};
use crate::decision::{Action, Reason};
use crate::order::position;
use crate::plan::Order;
use crate::record::{Phase, Position, Slot, SlotKind};
use crate::time::Time;

/// This agent's action in the rollout as it stands.
pub(super) fn turn(cx: &mut Cx<'_>) -> Action {
    let (now, t, local) = (cx.now, cx.timing(), &cx.view.local);
    let idle = now.plus(t.idle_poll);
    let rec = cx.rec();
    let target = rec.target;
    if rec.phase.is_rollback() {
        return rollback_turn(cx);
    }
    if local.running == Some(target) {
        return Action::wait(idle, Reason::OnTarget);
    }
    let failed_here = local
        .failed
        .is_some_and(|f| f.release == target && f.sequence == rec.sequence);
    if failed_here {
        release_own(cx);
        return Action::wait(idle, Reason::FailedHere);
    }
    match rec.phase {
        Phase::Halted => {
            let why = rec
                .halted
                .as_ref()
                .map_or(String::new(), |h| h.reason.clone());
            release_own(cx);
            return Action::wait(idle, Reason::Halted(why));
        }
        Phase::Aborted => {
            release_own(cx);
            return Action::wait(idle, Reason::Aborted);
        }
        _ => {}
    }
    if !local.fetched.contains(&target) {
        return Action::Fetch { release: target };
    }
    let mine = own_slot(cx, SlotKind::Update);
    match (mine, rec.phase.allows_updates()) {
        (Some(slot), true) => return start(cx, slot),
        (_, false) => return phase_wait(cx),
        (None, true) => {}
    }
    let me = position(&rec.strategy, &target, cx.me());
    let passed = rec.phase == Phase::Done
        || (rec.phase == Phase::Rolling && rec.cursor.as_ref().is_some_and(|c| &me <= c));
    if !passed {
        return turn_wait(cx, &me);
    }
    let reach = now.plus(Duration::from_secs(rec.lease) + t.margin());
    if let Some(wait) = frozen(cx, reach) {
        return wait;
    }
    if own_plan::room(cx) == 0 {
        return Action::wait(now.plus(t.poll), Reason::NoRoom);
    }
    claim(cx, SlotKind::Update)
}

/// A member's part in a rollback: return to the previous release under a
/// slot, if it runs the target.
fn rollback_turn(cx: &mut Cx<'_>) -> Action {
    let (now, t, local) = (cx.now, cx.timing(), &cx.view.local);
    let idle = now.plus(t.idle_poll);
    let rec = cx.rec();
    if local.running != Some(rec.target) {
        return Action::wait(idle, Reason::RolledBack);
    }
    if !own_plan::rolls_back(cx) {
        // A store writer can turn a halt into a rollback; to a member
        // whose own plan halts, it stays a halt.
        let why = format!(
            "the record rolls back ({}); this member's plan halts on failure",
            rec.halted
                .as_ref()
                .map_or("no reason given", |h| h.reason.as_str())
        );
        give_back(cx);
        return Action::wait(idle, Reason::Halted(why));
    }
    if local.previous.is_none() {
        return Action::wait(idle, Reason::NoPrevious);
    }
    if let Some(slot) = own_slot(cx, SlotKind::Rollback) {
        return start(cx, slot);
    }
    let me = position(&rec.strategy, &rec.target, cx.me());
    let passed =
        rec.phase == Phase::RolledBack || rec.rollback_cursor.as_ref().is_some_and(|c| &me <= c);
    if !passed {
        return Action::wait(now.plus(t.poll * 4), Reason::RollbackTurn);
    }
    if own_plan::room(cx) == 0 {
        return Action::wait(now.plus(t.poll), Reason::NoRoom);
    }
    claim(cx, SlotKind::Rollback)
}

/// This agent's slot of `kind`, while its lease has not ended on this
/// agent's own clock.
fn own_slot(cx: &Cx<'_>, kind: SlotKind) -> Option<Slot> {
    cx.rec()
        .slot_of(cx.me())
        .filter(|s| s.kind == kind && Time::from_secs(s.expires) > cx.now)
        .cloned()
}

/// Swaps under `slot`: at once if the budget fits in its lease, else after
/// renewing it (the grant was seen late).
fn start(cx: &mut Cx<'_>, slot: Slot) -> Action {
    let (now, t) = (cx.now, cx.timing());
    if let Some(why) = own_plan::exceeded(cx, slot.kind) {
        // Given back: its turn is taken later, by a claim, when there is
        // room by this member's count too.
        give_back(cx);
        return Action::wait(now.plus(t.poll), Reason::Cautious(why));
    }
    let mut finish_by = Time::from_secs(slot.expires);
    if now.plus(t.swap_budget) > finish_by {
        let expires = now.plus(Duration::from_secs(cx.rec().lease)).secs();
        let me = cx.me();
        if let Some(s) = cx.edit().slots.iter_mut().find(|s| s.member == me) {
            s.expires = expires;
        }
        finish_by = Time::from_secs(expires);
    }
    if slot.kind == SlotKind::Update {
        if let Some(wait) = frozen(cx, finish_by) {
            release_own(cx);
            return wait;
        }
    }
    action(cx, slot.kind, finish_by)
}

/// A wait, if an update from now until `end` might touch a freeze window
/// (on any clock within the skew bound).
/// The record's windows and this member's own plan's alike: a store
/// writer may drop a window from the record, not from the member's plan.
fn frozen(cx: &Cx<'_>, end: Time) -> Option<Action> {
    let (now, t) = (cx.now, cx.timing());
    let (theirs, mine) = (&cx.rec().strategy, own_plan::plan(cx));
    let until = [theirs, mine]
        .iter()
        .filter_map(|p| p.frozen_during(now, end, t.max_skew))
        .max()?;
    let mut gates: Vec<String> = theirs
        .gates
        .iter()
        .chain(&mine.gates)
        .filter(|g| g.freezes(now, end, t.max_skew).is_some())
        .map(ToString::to_string)
        .collect();
    gates.dedup();
    Some(Action::wait(until, Reason::Gates(gates)))
}

/// Takes a free slot of `kind` (the caller checked there is one).
fn claim(cx: &mut Cx<'_>, kind: SlotKind) -> Action {
    let now = cx.now;
    let expires = now.plus(Duration::from_secs(cx.rec().lease)).secs();
    let slot = Slot {
        member: cx.me().to_string(),
        expires,
        kind,
        wave: None,
    };
    cx.edit().put_slot(slot);
    action(cx, kind, Time::from_secs(expires))
}

fn action(cx: &Cx<'_>, kind: SlotKind, finish_by: Time) -> Action {
    match (kind, cx.view.local.previous) {
        (SlotKind::Rollback, Some(to)) => Action::RollBack { to, finish_by },
        _ => Action::Update {
            release: cx.rec().target,
            finish_by,
        },
    }
}

/// Gives back an update slot this agent will not use.
fn release_own(cx: &mut Cx<'_>) {
    let me = cx.me();
    let held = cx
        .rec()
        .slot_of(me)
        .is_some_and(|s| s.kind == SlotKind::Update);
    if held {
        cx.edit()
            .slots
            .retain(|s| s.member != me || s.kind != SlotKind::Update);
    }
}

/// Gives back this member's own update or rollback slot (not a draining
/// one: that is over already, see the steward).
fn give_back(cx: &mut Cx<'_>) {
    let me = cx.me();
    let held = cx
        .rec()
        .slot_of(me)
        .is_some_and(|s| s.kind != SlotKind::Draining);
    if held {
        cx.edit()
            .slots
            .retain(|s| s.member != me || s.kind == SlotKind::Draining);
    }
}

/// Waiting in a phase that starts no update (baking, paused).
fn phase_wait(cx: &Cx<'_>) -> Action {
    let (now, t) = (cx.now, cx.timing());
    let rec = cx.rec();
    match rec.phase {
        Phase::Baking => {
            let until = rec.bake_until.map_or(now, Time::from_secs);
            let me = position(&rec.strategy, &rec.target, cx.me());
            let wake = until.max(turn_wait_until(cx, &me));
            Action::wait(wake, Reason::Baking(until))
        }
        _ => Action::wait(now.plus(t.idle_poll), Reason::Paused),
    }
}

/// Waiting for a turn that has not come: roughly half the time its turn
/// is expected in, between one poll and the idle poll.
fn turn_wait(cx: &Cx<'_>, me: &Position) -> Action {
    let ahead = ahead(cx, me);
    Action::wait(turn_wait_until(cx, me), Reason::Turn(ahead))
}

fn turn_wait_until(cx: &Cx<'_>, me: &Position) -> Time {
    let (now, t, rec) = (cx.now, cx.timing(), cx.rec());
    let waves = u64::from(ahead(cx, me) / rec.capacity.max(1));
    let per_wave = rec
        .mean_wave_secs()
        .map_or(rec.lease / 2, |s| u64::try_from(s).unwrap_or(0));
    let mut wait = Duration::from_secs(waves * per_wave) / 2;
    if let (Phase::Canary, crate::plan::Strategy::Canary { bake, .. }) =
        (rec.phase, rec.strategy.strategy)
    {
        wait = wait.max(bake / 2);
    }
    now.plus(wait.clamp(t.poll, t.idle_poll))
}

/// About how many members come before `me` and have not had their turn.
fn ahead(cx: &Cx<'_>, me: &Position) -> u32 {
    let rec = cx.rec();
    let pinned = match &rec.strategy.order {
        Order::Pinned(ids) => u32::try_from(ids.len()).unwrap_or(u32::MAX),
        Order::Hashed => 0,
    };
    let cursor = rec.cursor.as_ref();
    let done_pinned = cursor.map_or(0, |c| c.rank.saturating_add(1).min(pinned));
    if me.rank != u32::MAX {
        return me.rank.saturating_sub(done_pinned);
    }
    let from = cursor.filter(|c| c.rank == u32::MAX).map_or(0, |c| c.hash);
    let share = me.hash.saturating_sub(from) as f64 / u64::MAX as f64;
    let unpinned = rec.members.saturating_sub(pinned);
    pinned.saturating_sub(done_pinned) + (share * f64::from(unpinned)) as u32
}
