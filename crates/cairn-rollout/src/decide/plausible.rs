//! A rollout record as far as an honest agent could have written it.
//!
//! Any member of a set may write the rollout record, so a broken or
//! hostile one can write times no honest agent would: a slot or a steward
//! lease ending in ten years, a bake that never ends, a `lease` of a
//! century that honest stewards would then copy into every grant. Read as
//! they stand, such times stop the set's rollouts: slots that never free
//! fill the capacity (and a new rollout carries live slots over, so even
//! the next statement would not get past them), a steward that never
//! lapses never grants.
//!
//! Every time an honest agent writes lies at most a *horizon* ahead of its
//! clock: a slot's lease, the steward lease (lengthened by the longest
//! check gate while one runs), a canary bake. The horizon here is four
//! times the longest of those by this agent's own timing and accepted
//! plan, plus the clock margin, so agents of one set whose `[fleet]`
//! settings differ by less than that never misread each other. A time
//! beyond it is read as already over, and a `lease` beyond half of it is
//! read as half of it; the next write by anyone stores the repaired
//! record. A hostile member can still do what any member can (halt,
//! pause, grant a slot within the capacity); it can no longer stop the
//! set for longer than a horizon.

use std::time::Duration;

use crate::plan::{Gate, Strategy};
use crate::record::RolloutRecord;
use crate::time::Time;
use crate::view::{Accepted, Timing};

/// How far ahead of `now` an honest agent with `timing` following `acc`
/// writes a time into the rollout record, at most.
pub(crate) fn horizon(timing: &Timing, acc: &Accepted) -> Duration {
    let checks = acc
        .plan
        .gates
        .iter()
        .filter_map(|g| match g {
            Gate::Check { timeout, .. } => Some(*timeout),
            _ => None,
        })
        .max()
        .unwrap_or_default();
    let bake = match acc.plan.strategy {
        Strategy::Canary { bake, .. } => bake,
        _ => Duration::ZERO,
    };
    let longest = timing
        .slot_lease()
        .max(timing.steward_lease + checks)
        .max(bake);
    longest * 4 + timing.margin()
}

/// The record with every time beyond the horizon read as over; `None`
/// when it has none.
pub(crate) fn repaired(
    rec: &RolloutRecord,
    timing: &Timing,
    acc: &Accepted,
    now: Time,
) -> Option<RolloutRecord> {
    let horizon = horizon(timing, acc);
    let beyond = |secs: i64| Time::from_secs(secs) > now.plus(horizon);
    let max_lease = (horizon / 2).as_secs().max(1);
    let bad_slots = rec.slots.iter().any(|s| beyond(s.expires));
    let bad_steward = rec.steward.as_ref().is_some_and(|l| beyond(l.expires));
    let bad_bake = rec.bake_until.is_some_and(beyond);
    if !(bad_slots || bad_steward || bad_bake || rec.lease > max_lease) {
        return None;
    }
    let mut fixed = rec.clone();
    // Over as everyone counts it: past its end by the margin (and, for the
    // steward lease, by the takeover's longest jitter too).
    let over = now
        .minus(timing.margin() + timing.poll + Duration::from_secs(1))
        .secs();
    for s in fixed.slots.iter_mut().filter(|s| beyond(s.expires)) {
        s.expires = over;
    }
    if let Some(l) = fixed.steward.as_mut().filter(|l| beyond(l.expires)) {
        l.expires = over;
    }
    if fixed.bake_until.is_some_and(beyond) {
        fixed.bake_until = Some(now.secs());
    }
    fixed.lease = fixed.lease.min(max_lease);
    Some(fixed)
}
