//! A rollout record written by someone who may write the store but holds
//! no signing key, at the very sequence the member accepted: it may make
//! the member more cautious than its own plan (halt it, hold it), never
//! less (more members updating at once, more canaries, a rollback the
//! member's plan does not make, an update inside the member's own freeze
//! window).

use std::time::Duration;

use cairn_rollout::{
    Action, Amount, Gate, Halt, Lease, OnFailure, Phase, Plan, Reason, RolloutRecord, Strategy,
    Time,
};

use crate::fixtures::*;

fn one_at_a_time() -> Plan {
    Plan {
        max_unavailable: Amount::Count(1),
        ..Plan::default()
    }
}

fn widened(members: u32) -> Plan {
    Plan {
        max_unavailable: Amount::Count(members),
        ..Plan::default()
    }
}

/// `rec` with another agent stewarding (so the decision is this
/// member's own alone).
fn reading_(v: cairn_rollout::View, rec: RolloutRecord) -> cairn_rollout::View {
    reading(v, stewarded(rec))
}

fn stewarded(mut rec: RolloutRecord) -> RolloutRecord {
    rec.steward = Some(Lease {
        member: "host-z".into(),
        expires: at(20),
    });
    rec
}

fn reason(a: &Action) -> Option<&Reason> {
    match a {
        Action::Wait { reason, .. } => Some(reason),
        _ => None,
    }
}

#[test]
fn a_record_widening_the_capacity_does_not_make_a_member_swap_beside_others() {
    // The record says ten at once and holds a slot for another member
    // besides this one's; this member's plan says one at a time.
    let mut rec = record(widened(10), Phase::Rolling, 10);
    rec.slots = vec![slot("host-a", 100), slot("host-b", 100)];
    let d = decide_now(&reading_(view("host-b", one_at_a_time()), rec));
    assert!(
        matches!(reason(&d.action), Some(Reason::Cautious(why)) if why.contains("allows 1")),
        "{:?}",
        d.action
    );
    let w = rollout_write(&d).expect("the slot is given back");
    assert!(w.slot_of("host-b").is_none(), "{:?}", w.slots);
    assert!(w.slot_of("host-a").is_some(), "{:?}", w.slots);
}

#[test]
fn a_member_alone_under_a_widened_record_still_swaps() {
    // Only the capacity's use counts, not its figure: one slot held is
    // within a plan of one at a time.
    let mut rec = record(widened(10), Phase::Rolling, 10);
    rec.slots = vec![slot("host-b", 100)];
    let d = decide_now(&reading_(view("host-b", one_at_a_time()), rec));
    assert!(
        matches!(d.action, Action::Update { release, .. } if release == target()),
        "{:?}",
        d.action
    );
}

#[test]
fn a_missed_turn_is_claimed_only_with_room_by_the_members_own_plan() {
    let mut rec = record(widened(10), Phase::Done, 10);
    rec.slots = vec![slot("host-a", 100)];
    let d = decide_now(&reading_(view("host-b", one_at_a_time()), rec.clone()));
    assert!(
        matches!(reason(&d.action), Some(Reason::NoRoom)),
        "{:?}",
        d.action
    );
    assert!(rollout_write(&d).is_none_or(|w| w.slot_of("host-b").is_none()));
    // By a plan of two, there is room.
    let d = decide_now(&reading_(view("host-b", widened(2)), rec));
    assert!(matches!(d.action, Action::Update { .. }), "{:?}", d.action);
}

#[test]
fn a_record_widening_the_canary_does_not_make_a_member_a_canary_beyond_its_plan() {
    let canary = |count| Plan {
        strategy: Strategy::Canary {
            count: Amount::Count(count),
            bake: Duration::from_secs(60),
        },
        max_unavailable: Amount::Count(5),
        ..Plan::default()
    };
    let mut rec = record(canary(5), Phase::Canary, 10);
    rec.canaries = vec!["host-a".into()];
    rec.slots = vec![slot("host-b", 100)];
    let d = decide_now(&reading_(view("host-b", canary(1)), rec.clone()));
    assert!(
        matches!(reason(&d.action), Some(Reason::Cautious(why)) if why.contains("canaries")),
        "{:?}",
        d.action
    );
    // By its own plan of two canaries it is the second.
    let d = decide_now(&reading_(view("host-b", canary(2)), rec));
    assert!(matches!(d.action, Action::Update { .. }), "{:?}", d.action);
}

fn rolling_back(on_failure: OnFailure) -> RolloutRecord {
    let plan = Plan {
        on_failure,
        ..one_at_a_time()
    };
    let mut rec = record(plan, Phase::RolledBack, 3);
    rec.halted = Some(Halt {
        member: Some("host-a".into()),
        reason: "host-a: failed".into(),
        at: at(-30),
        phase: Phase::Rolling,
    });
    rec
}

fn on_target(me: &str, plan: Plan) -> cairn_rollout::View {
    let mut v = view(me, plan);
    v.local.running = Some(target());
    v.local.previous = Some(old());
    v
}

#[test]
fn a_record_turning_a_halt_into_a_rollback_does_not_move_a_member_whose_plan_halts() {
    let rec = rolling_back(OnFailure::Rollback);
    let d = decide_now(&reading_(on_target("host-b", one_at_a_time()), rec.clone()));
    assert!(
        matches!(reason(&d.action), Some(Reason::Halted(why)) if why.contains("plan halts")),
        "{:?}",
        d.action
    );
    assert!(rollout_write(&d).is_none_or(|w| w.slots.is_empty()));
    // A member whose own plan rolls back returns to its own previous
    // release (never one the record names: it names none).
    let plan = Plan {
        on_failure: OnFailure::Rollback,
        ..one_at_a_time()
    };
    let d = decide_now(&reading_(on_target("host-b", plan), rec));
    assert!(
        matches!(d.action, Action::RollBack { to, .. } if to == old()),
        "{:?}",
        d.action
    );
}

#[test]
fn a_rollback_slot_granted_to_a_member_whose_plan_halts_is_given_back() {
    let mut rec = rolling_back(OnFailure::Rollback);
    rec.phase = Phase::RollingBack;
    let mut s = slot("host-b", 100);
    s.kind = cairn_rollout::SlotKind::Rollback;
    rec.slots = vec![s];
    let d = decide_now(&reading_(on_target("host-b", one_at_a_time()), rec));
    assert!(
        matches!(reason(&d.action), Some(Reason::Halted(_))),
        "{:?}",
        d.action
    );
    let w = rollout_write(&d).expect("the slot is given back");
    assert!(w.slots.is_empty(), "{:?}", w.slots);
}

#[test]
fn a_freeze_window_the_record_dropped_still_holds_the_member() {
    let frozen = Plan {
        gates: vec![Gate::Freeze {
            from: Time::from_secs(at(-10)),
            until: Time::from_secs(at(3600)),
        }],
        ..one_at_a_time()
    };
    let mut rec = record(one_at_a_time(), Phase::Rolling, 3);
    rec.slots = vec![slot("host-b", 100)];
    let d = decide_now(&reading_(view("host-b", frozen), rec));
    assert!(
        matches!(reason(&d.action), Some(Reason::Gates(g)) if g[0].starts_with("freeze")),
        "{:?}",
        d.action
    );
}

#[test]
fn a_check_command_the_record_names_is_never_run_only_the_members_own() {
    // The record's plan carries a command; the steward's own plan none.
    let planted = Gate::Check {
        command: vec!["/bin/sh".into(), "-c".into(), "echo planted".into()],
        timeout: Duration::from_secs(5),
    };
    let mut rec = record(
        Plan {
            gates: vec![planted.clone()],
            ..one_at_a_time()
        },
        Phase::Rolling,
        3,
    );
    rec.steward = Some(Lease {
        member: "host-09".into(),
        expires: at(20),
    });
    let members: Vec<_> = (0..3)
        .map(|i| {
            member(
                &format!("host-{i:02}"),
                old(),
                cairn_rollout::MemberState::Running,
                5,
            )
        })
        .collect();
    let mut steward = view("host-09", one_at_a_time());
    steward.local.running = Some(target());
    let (_, d) = decide_with(reading(steward.clone(), rec.clone()), &members);
    assert!(
        !matches!(d.action, Action::RunCheck { .. }),
        "{:?}",
        d.action
    );
    let w = rollout_write(&d).expect("the steward grants");
    assert_eq!(w.slots.len(), 1, "{:?}", w.slots);

    // Its own plan's check is run, whatever the record lists.
    let own = Gate::Check {
        command: vec!["bin/ready".into()],
        timeout: Duration::from_secs(5),
    };
    if let Some(a) = steward.accepted.as_mut() {
        a.plan.gates = vec![own];
    }
    let (_, d) = decide_with(reading(steward, rec), &members);
    assert!(
        matches!(&d.action, Action::RunCheck { command, .. } if command == &["bin/ready"]),
        "{:?}",
        d.action
    );
}
