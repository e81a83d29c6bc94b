//! The steward's part: the lease, waves of grants, settling holders,
//! phases.

use std::time::Duration;

use cairn_rollout::{
    order, Action, Amount, Attempt, Lease, MemberState, Phase, Plan, Position, SlotKind, Strategy,
    Timing,
};

use crate::fixtures::*;

fn members(n: usize) -> Vec<cairn_rollout::MemberRecord> {
    (0..n)
        .map(|i| member(&format!("host-{i:02}"), old(), MemberState::Running, 5))
        .collect()
}

fn plan(max_unavailable: u32) -> Plan {
    Plan {
        max_unavailable: Amount::Count(max_unavailable),
        ..Plan::default()
    }
}

/// A steward already on the target (so it takes no turn of its own).
fn steward(me: &str, p: Plan) -> cairn_rollout::View {
    let mut v = view(me, p);
    v.local.running = Some(target());
    v
}

/// `me` holding the steward lease of `rec`.
fn stewarded(mut rec: cairn_rollout::RolloutRecord, me: &str) -> cairn_rollout::RolloutRecord {
    rec.steward = Some(Lease {
        member: me.into(),
        expires: at(20),
    });
    rec
}

#[test]
fn the_steward_grants_the_next_members_in_turn_order_in_one_write() {
    let all = members(20);
    let rec = stewarded(record(plan(3), Phase::Rolling, 20), "host-00");
    let (v, d) = decide_with(reading(view("host-00", plan(3)), rec), &all);
    assert_eq!(v.members.as_ref().unwrap().len(), 20, "listed once");
    let w = rollout_write(&d).expect("grants");
    let ids: Vec<String> = all.iter().map(|m| m.agent.clone()).collect();
    let order = order::in_order(&plan(3), &target(), &ids);
    let granted: Vec<&str> = w.slots.iter().map(|s| s.member.as_str()).collect();
    let mut first: Vec<&str> = order[..3].iter().map(|p| p.member.as_str()).collect();
    first.sort();
    assert_eq!(
        granted, first,
        "the first three in turn order, kept sorted by id"
    );
    assert_eq!(w.cursor.as_ref(), Some(&order[2]));
    assert!(w
        .slots
        .iter()
        .all(|s| s.expires == at(100) && s.wave == Some(1)));
    assert_eq!((w.wave, w.waves.len()), (1, 1));
    // It read only the three candidates' records.
    assert_eq!(v.peers.len(), 3);
}

#[test]
fn candidates_away_or_already_updated_are_passed_over() {
    let mut all = members(6);
    all[0].heartbeat = at(-1000);
    all[1].release = Some(target());
    all[2].failed = Some(Attempt {
        release: target(),
        sequence: SEQ,
    });
    let pinned: Vec<String> = all.iter().map(|m| m.agent.clone()).collect();
    let p = Plan {
        order: cairn_rollout::Order::Pinned(pinned),
        ..plan(4)
    };
    let rec = stewarded(record(p.clone(), Phase::Rolling, 6), "host-05");
    let (_, d) = decide_with(reading(view("host-05", p), rec), &all);
    let w = rollout_write(&d).unwrap();
    let granted: Vec<&str> = w.slots.iter().map(|s| s.member.as_str()).collect();
    assert_eq!(granted, ["host-03"]);
    assert_eq!((w.away, w.done), (1, 1));
    assert_eq!(w.cursor.as_ref().unwrap().member, "host-03");
}

#[test]
fn finished_holders_are_released_and_failed_ones_halt_the_rollout() {
    let mut rec = stewarded(record(plan(3), Phase::Rolling, 3), "host-09");
    rec.slots = vec![
        slot("host-00", 80),
        slot("host-01", 80),
        slot("host-02", 80),
    ];
    rec.cursor = Some(Position {
        rank: u32::MAX,
        hash: u64::MAX,
        member: "zzz".into(),
    });
    let mut all = members(3);
    all[0].release = Some(target());
    all[1].state = MemberState::Updating;
    let (_, d) = decide_with(reading(steward("host-09", plan(3)), rec.clone()), &all);
    let w = rollout_write(&d).unwrap();
    assert_eq!(w.done, 1);
    let left: Vec<&str> = w.slots.iter().map(|s| s.member.as_str()).collect();
    assert_eq!(left, ["host-01", "host-02"]);
    assert_eq!(w.phase, Phase::Rolling);

    all[2].failed = Some(Attempt {
        release: target(),
        sequence: SEQ,
    });
    all[2].last_error = Some("health: 503".into());
    let (_, d) = decide_with(reading(steward("host-09", plan(3)), rec), &all);
    let w = rollout_write(&d).unwrap();
    assert_eq!(w.phase, Phase::Halted);
    assert_eq!(
        w.halted.as_ref().unwrap().member.as_deref(),
        Some("host-02")
    );
    assert_eq!(w.failures[0].reason, "health: 503");
}

#[test]
fn a_slot_frees_itself_only_a_margin_after_its_lease_ends() {
    let margin = Timing::default().margin().as_secs() as i64;
    let mut rec = stewarded(record(plan(1), Phase::Rolling, 3), "host-09");
    rec.cursor = Some(Position {
        rank: u32::MAX,
        hash: u64::MAX,
        member: "zzz".into(),
    });
    rec.slots = vec![slot("host-00", -margin + 1)];
    let all = members(3);
    let (_, d) = decide_with(reading(steward("host-09", plan(1)), rec.clone()), &all);
    assert!(
        rollout_write(&d).is_none_or(|w| w.slot_of("host-00").is_some()),
        "still held within the margin"
    );
    rec.slots = vec![slot("host-00", -margin - 1)];
    let (_, d) = decide_with(reading(steward("host-09", plan(1)), rec), &all);
    let w = rollout_write(&d).unwrap();
    assert!(w.slot_of("host-00").is_none());
    assert_eq!(w.away, 1);
}

#[test]
fn the_steward_lease_is_taken_over_only_after_it_lapsed() {
    let held = |expires_in: i64| {
        let mut rec = record(plan(1), Phase::Rolling, 3);
        rec.steward = Some(Lease {
            member: "host-00".into(),
            expires: at(expires_in),
        });
        rec
    };
    let all = members(3);
    let (_, d) = decide_with(reading(steward("host-01", plan(1)), held(5)), &all);
    assert!(rollout_write(&d).is_none(), "a live lease is left alone");
    let lapsed = -((Timing::default().margin() + Timing::default().poll).as_secs() as i64) - 1;
    let (v, d) = decide_with(reading(steward("host-01", plan(1)), held(lapsed)), &all);
    let w = rollout_write(&d).expect("takes over");
    assert_eq!(w.steward.as_ref().unwrap().member, "host-01");
    // The lease alone, before reading anyone: of many agents seeing it
    // lapse at once, only the one whose write wins reads every holder.
    assert!(v.members.is_none() && v.peers.is_empty(), "nothing read");
    assert!(w.slots.is_empty() && w.cursor.is_none(), "nothing granted");
    assert!(
        matches!(d.action, Action::Wait { until, .. } if until == now()),
        "decides again at once: {:?}",
        d.action
    );
    let (_, d) = decide_with(reading(steward("host-01", plan(1)), w.clone()), &all);
    assert_eq!(rollout_write(&d).expect("grants").slots.len(), 1);
}

#[test]
fn a_canary_wave_bakes_before_the_rest_roll() {
    let p = Plan {
        strategy: Strategy::Canary {
            count: Amount::Count(2),
            bake: Duration::from_secs(600),
        },
        ..plan(5)
    };
    let all = members(10);
    let rec = stewarded(record(p.clone(), Phase::Canary, 10), "host-09");
    let (_, d) = decide_with(reading(view("host-09", p.clone()), rec), &all);
    let w = rollout_write(&d).unwrap().clone();
    assert_eq!(w.slots.len(), 2, "only the canaries, though five could go");

    // Both canaries updated: released, then the bake starts.
    let mut done = all.clone();
    for s in &w.slots {
        let m = done.iter_mut().find(|m| m.agent == s.member).unwrap();
        m.release = Some(target());
    }
    let (_, d) = decide_with(reading(view("host-09", p.clone()), w), &done);
    let w = rollout_write(&d).unwrap().clone();
    assert_eq!(w.canaries.len(), 2);
    assert_eq!(w.phase, Phase::Baking);
    assert_eq!(w.bake_until, Some(at(600)));
    assert!(w.slots.is_empty());

    // Until the bake ends nothing moves; then the rest roll, five at a time.
    let mut baked = w.clone();
    baked.bake_until = Some(at(-1));
    let (_, d) = decide_with(reading(view("host-09", p.clone()), baked), &done);
    let w2 = rollout_write(&d).unwrap();
    assert_eq!(w2.phase, Phase::Rolling);
    assert_eq!(w2.slots.len(), 5);
    let (_, d) = decide_with(reading(view("host-09", p), w), &done);
    assert!(rollout_write(&d).is_none_or(|w| w.phase == Phase::Baking && w.slots.is_empty()));
}

#[test]
fn the_rollout_is_done_when_every_member_had_its_turn() {
    let all = members(4);
    let ids: Vec<String> = all.iter().map(|m| m.agent.clone()).collect();
    let order = order::in_order(&plan(2), &target(), &ids);
    let mut rec = stewarded(record(plan(2), Phase::Rolling, 4), "host-00");
    rec.cursor = Some(order[3].clone());
    let (_, d) = decide_with(reading(steward("host-00", plan(2)), rec.clone()), &all);
    let w = rollout_write(&d).unwrap();
    assert_eq!(w.phase, Phase::Done);
    assert_eq!(w.steward, None);
    // Not while a slot is still out.
    rec.slots = vec![slot("host-01", 50)];
    let mut busy = all.clone();
    busy[1].state = MemberState::Updating;
    let (_, d) = decide_with(reading(steward("host-00", plan(2)), rec), &busy);
    assert!(rollout_write(&d).is_none_or(|w| w.phase == Phase::Rolling));
}

#[test]
fn a_rollback_grants_slots_to_updated_members_only() {
    let p = plan(2);
    let mut all = members(5);
    for m in &mut all[..3] {
        m.release = Some(target());
    }
    let rec = stewarded(record(p.clone(), Phase::RollingBack, 5), "host-04");
    let mut v = view("host-04", p);
    v.local.running = Some(old());
    let (_, d) = decide_with(reading(v, rec), &all);
    let w = rollout_write(&d).unwrap();
    assert!(w.slots.iter().all(|s| s.kind == SlotKind::Rollback));
    assert!(w.slots.len() <= 2);
    assert!(w
        .slots
        .iter()
        .all(|s| all[..3].iter().any(|m| m.agent == s.member)));
    assert!(matches!(d.action, Action::Wait { .. }));
}

#[test]
fn a_rollback_slot_is_released_only_once_its_holder_is_back() {
    // host-00 claimed its rollback slot; its record may still say it
    // updates to the target (from before the claim) or that it rolls
    // back. Neither is a rollback done; a record back on the old release
    // and running is.
    let mut rec = stewarded(record(plan(2), Phase::RollingBack, 3), "host-09");
    let mut held = slot("host-00", 80);
    held.kind = SlotKind::Rollback;
    rec.slots = vec![held];
    let mut all = members(3);
    let mut v = steward("host-09", plan(2));
    v.local.running = Some(old());
    for state in [
        MemberState::Fetching,
        MemberState::Updating,
        MemberState::RollingBack,
    ] {
        all[0].state = state;
        all[0].target = Some(target());
        let (_, d) = decide_with(reading(v.clone(), rec.clone()), &all);
        let kept = rollout_write(&d).map_or(rec.slots.clone(), |w| w.slots.clone());
        assert_eq!(kept.len(), 1, "{state:?}: the slot is kept");
        assert_eq!(
            rollout_write(&d).map_or(0, |w| w.rolled_back),
            0,
            "{state:?}"
        );
    }
    all[0].state = MemberState::Running;
    all[0].target = None;
    let (_, d) = decide_with(reading(v, rec), &all);
    let w = rollout_write(&d).expect("the slot is released");
    assert!(w.slots.iter().all(|s| s.member != "host-00"));
    assert_eq!(w.rolled_back, 1);
}

#[test]
fn a_new_rollout_carries_the_others_slots_over_but_not_its_creators_own() {
    // The old rollout (older sequence) still lists slots of host-00 (the
    // agent now deciding, so certainly not swapping) and host-01.
    let mut old_rec = record(plan(1), Phase::Rolling, 3);
    old_rec.sequence = SEQ - 1;
    old_rec.target = old();
    old_rec.slots = vec![slot("host-00", 60), slot("host-01", 60)];
    let d = decide_now(&reading(view("host-00", plan(1)), old_rec));
    let w = rollout_write(&d).expect("the new rollout");
    assert_eq!(w.sequence, SEQ);
    let held: Vec<(&str, SlotKind)> = w
        .slots
        .iter()
        .map(|s| (s.member.as_str(), s.kind))
        .collect();
    assert_eq!(held, [("host-01", SlotKind::Draining)]);

    // A steward drops its own draining slot, and keeps another's.
    let mut rec = stewarded(record(plan(1), Phase::Rolling, 3), "host-00");
    for (id, kind) in [
        ("host-00", SlotKind::Draining),
        ("host-01", SlotKind::Draining),
    ] {
        rec.slots.push(cairn_rollout::Slot {
            kind,
            wave: None,
            ..slot(id, 60)
        });
    }
    let (_, d) = decide_with(reading(steward("host-00", plan(1)), rec), &members(3));
    let w = rollout_write(&d).expect("a write");
    assert!(w.slot_of("host-00").is_none(), "{:?}", w.slots);
    assert_eq!(
        w.slot_of("host-01").map(|s| s.kind),
        Some(SlotKind::Draining)
    );
}

#[test]
fn the_steward_passes_over_exactly_the_members_timing_calls_away() {
    // The member timeout (180 s) plus the margin (2 × 2 s + 1 s): a record
    // 185 s old is present, 186 s old away, for the steward and for
    // `Timing::is_away` (what `cairn status` shows) alike.
    let t = Timing::default();
    assert_eq!(t.away_after(), Duration::from_secs(185));
    let all = vec![
        member("host-00", old(), MemberState::Running, 185),
        member("host-01", old(), MemberState::Running, 186),
    ];
    assert!(!t.is_away(all[0].heartbeat, now()));
    assert!(t.is_away(all[1].heartbeat, now()));
    let pinned: Vec<String> = all.iter().map(|m| m.agent.clone()).collect();
    let p = Plan {
        order: cairn_rollout::Order::Pinned(pinned),
        ..plan(2)
    };
    let rec = stewarded(record(p.clone(), Phase::Rolling, 2), "host-09");
    let (_, d) = decide_with(reading(steward("host-09", p), rec), &all);
    let w = rollout_write(&d).unwrap();
    let granted: Vec<&str> = w.slots.iter().map(|s| s.member.as_str()).collect();
    assert_eq!(granted, ["host-00"]);
    assert_eq!(w.away, 1);
}
