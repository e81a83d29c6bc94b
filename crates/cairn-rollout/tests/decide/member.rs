//! A member's own part: creating and following rollouts, its turn, its
//! failures, its record.

use std::time::Duration;

use cairn_rollout::{
    Action, Amount, Attempt, Health, MemberState, OnFailure, Phase, Plan, Reason, RolloutRead,
    SlotKind, Strategy, Time, Version, Write,
};

use crate::fixtures::*;

fn ten_percent() -> Plan {
    Plan {
        max_unavailable: Amount::Percent(10),
        ..Plan::default()
    }
}

#[test]
fn the_first_agent_to_see_a_statement_creates_its_rollout_and_stewards_it() {
    let mut older = record(ten_percent(), Phase::Done, 40);
    older.target = old();
    older.sequence = SEQ - 1;
    older.slots = vec![slot("host-9", 30), slot("host-8", -30)];
    let d = decide_now(&reading(view("host-a", ten_percent()), older));
    let Some(Write::Rollout { expected, record }) = d.writes.first() else {
        panic!("no rollout written: {d:?}");
    };
    assert_eq!(expected, &Some(Version("7".into())), "by compare-and-swap");
    assert_eq!((record.target, record.sequence), (target(), SEQ));
    assert_eq!(record.phase, Phase::Rolling);
    assert_eq!(record.steward.as_ref().unwrap().member, "host-a");
    assert_eq!(record.capacity, 4, "10% of the 40 members known");
    // A slot still held for the older target counts until it expires; an
    // expired one is gone.
    assert_eq!(record.slots.len(), 1);
    assert_eq!(
        (record.slots[0].member.as_str(), record.slots[0].kind),
        ("host-9", SlotKind::Draining)
    );
    let absent = decide_now(&view("host-a", ten_percent()));
    let Some(Write::Rollout { expected, .. }) = absent.writes.first() else {
        panic!("no rollout written");
    };
    assert_eq!(expected, &None, "created only if still absent");
}

#[test]
fn agents_that_just_accepted_a_statement_spread_out_creating_its_rollout() {
    let waits_for = |me: &str| {
        let mut v = view(me, Plan::default());
        v.accepted.as_mut().unwrap().at = now();
        match decide_now(&v).action {
            Action::Wait { until, .. } => until.0 - now().0,
            other => panic!("{other:?}"),
        }
    };
    let delays: Vec<i64> = (0..20).map(|i| waits_for(&format!("host-{i}"))).collect();
    assert!(delays.iter().all(|d| (0..=2000).contains(d)), "{delays:?}");
    assert!(delays.iter().any(|d| *d > 0), "{delays:?}");
    let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
    assert!(distinct.len() > 10, "{delays:?}");
}

#[test]
fn a_rollout_of_a_statement_not_yet_accepted_is_waited_for_not_replaced() {
    let mut newer = record(Plan::default(), Phase::Rolling, 10);
    newer.sequence = SEQ + 1;
    let mut v = reading(view("host-a", Plan::default()), newer.clone());
    // The statement it carries verified against this agent's keys.
    v.verified = Some(cairn_rollout::Attempt {
        release: newer.target,
        sequence: newer.sequence,
    });
    let d = decide_now(&v);
    assert!(rollout_write(&d).is_none());
    assert!(matches!(
        d.action,
        Action::Wait {
            reason: Reason::NewerRollout(3),
            ..
        }
    ));
}

#[test]
fn an_unreadable_rollout_record_is_replaced_once_its_slots_are_surely_over() {
    let mut v = view("host-a", Plan::default());
    let unreadable = |since: Time| RolloutRead::Unreadable {
        version: Version("3".into()),
        error: "not JSON".into(),
        since,
    };
    // Just read, or read a slot lease ago: slots it may list could still
    // be swapping.
    let lease = Timing::default().slot_lease();
    for since in [now(), now().minus(lease)] {
        v.rollout = unreadable(since);
        let d = decide_now(&v);
        assert!(rollout_write(&d).is_none());
        assert!(matches!(
            d.action,
            Action::Wait {
                reason: Reason::Unreadable(_),
                ..
            }
        ));
    }
    // Unreadable for an hour: replaced by the accepted statement's rollout,
    // by compare-and-swap on the version read.
    v.rollout = unreadable(now().minus(Duration::from_secs(3600)));
    let d = decide_now(&v);
    let w = rollout_write(&d).expect("the record is replaced");
    assert_eq!((w.target, w.sequence), (target(), SEQ));
    assert!(w.slots.is_empty());
    assert!(matches!(
        &d.writes[0],
        Write::Rollout { expected: Some(Version(v)), .. } if v == "3"
    ));
}

#[test]
fn a_holder_updates_only_while_its_lease_covers_the_whole_swap() {
    let budget = Timing::default().swap_budget.as_secs() as i64;
    let mut rec = record(Plan::default(), Phase::Rolling, 10);
    rec.slots = vec![slot("host-a", budget + 1)];
    let d = decide_now(&reading(view("host-a", Plan::default()), rec.clone()));
    assert!(rollout_write(&d).is_none(), "no write needed");
    assert_eq!(
        d.action,
        Action::Update {
            release: target(),
            finish_by: Time::from_secs(at(budget + 1))
        }
    );
    assert_eq!(member_write(&d).unwrap().state, MemberState::Updating);

    // Seen too late: the lease is renewed first, in the same decision.
    rec.slots = vec![slot("host-a", budget - 1)];
    let d = decide_now(&reading(view("host-a", Plan::default()), rec));
    let renewed = rollout_write(&d).expect("the slot is renewed");
    assert_eq!(renewed.slots[0].expires, at(100));
    assert!(
        matches!(d.action, Action::Update { finish_by, .. } if finish_by == Time::from_secs(at(100)))
    );
}

#[test]
fn a_member_fetches_before_its_turn_and_waits_for_it() {
    let mut v = view("host-a", Plan::default());
    v.local.fetched = vec![old()];
    let rec = record(Plan::default(), Phase::Rolling, 10);
    let d = decide_now(&reading(v, rec.clone()));
    assert_eq!(d.action, Action::Fetch { release: target() });
    assert_eq!(member_write(&d).unwrap().state, MemberState::Fetching);
    let mut rec = rec;
    rec.steward = Some(cairn_rollout::Lease {
        member: "host-z".into(),
        expires: at(20),
    });
    let d = decide_now(&reading(view("host-a", Plan::default()), rec));
    assert!(matches!(
        d.action,
        Action::Wait {
            reason: Reason::Turn(_),
            ..
        }
    ));
    assert!(
        rollout_write(&d).is_none(),
        "a waiting member writes nothing"
    );
}

#[test]
fn members_far_from_their_turn_poll_less_often() {
    let hundred = Plan {
        max_unavailable: Amount::Count(100),
        ..Plan::default()
    };
    let mut rec = record(hundred, Phase::Rolling, 1000);
    rec.steward = Some(cairn_rollout::Lease {
        member: "host-z".into(),
        expires: at(20),
    });
    rec.waves = vec![cairn_rollout::Wave {
        wave: 1,
        phase: Phase::Rolling,
        granted: 1,
        started: at(-40),
        finished: Some(at(-10)),
    }];
    let wait = |me: &str| match decide_now(&reading(view(me, Plan::default()), rec.clone())).action
    {
        Action::Wait {
            refresh,
            reason: Reason::Turn(ahead),
            ..
        } => (ahead, refresh.since(now())),
        other => panic!("{other:?}"),
    };
    let mut seen: Vec<(u32, Duration)> = (0..40).map(|i| wait(&format!("host-{i}"))).collect();
    seen.sort();
    let (near, far) = (seen[0], seen[seen.len() - 1]);
    assert!(near.0 < far.0);
    assert!(far.1 > near.1, "{seen:?}");
    assert!(far.1 <= Timing::default().idle_poll);
    assert!(near.1 >= Timing::default().poll);
}

#[test]
fn a_member_whose_turn_passed_takes_a_free_slot_itself() {
    let mut rec = record(Plan::default(), Phase::Done, 10);
    rec.steward = None;
    let d = decide_now(&reading(view("host-late", Plan::default()), rec.clone()));
    let claimed = rollout_write(&d).expect("claims a slot");
    let s = claimed.slot_of("host-late").expect("its slot");
    assert_eq!((s.kind, s.wave), (SlotKind::Update, None));
    assert!(matches!(d.action, Action::Update { .. }));
    // No free slot: it waits.
    rec.slots = vec![slot("host-b", 50)];
    let d = decide_now(&reading(view("host-late", Plan::default()), rec));
    assert!(rollout_write(&d).is_none());
    assert!(matches!(
        d.action,
        Action::Wait {
            reason: Reason::NoRoom,
            ..
        }
    ));
}

#[test]
fn a_member_that_fails_on_the_target_halts_the_rollout() {
    let mut v = view("host-a", Plan::default());
    v.local.failed = Some(Attempt {
        release: target(),
        sequence: SEQ,
    });
    v.local.last_error = Some("health check failed".into());
    let mut rec = record(Plan::default(), Phase::Rolling, 10);
    rec.slots = vec![slot("host-a", 50), slot("host-b", 50)];
    let d = decide_now(&reading(v.clone(), rec.clone()));
    let halted = rollout_write(&d).expect("halts");
    assert_eq!(halted.phase, Phase::Halted);
    let h = halted.halted.as_ref().unwrap();
    assert_eq!(h.member.as_deref(), Some("host-a"));
    assert!(h.reason.contains("health check failed"), "{}", h.reason);
    assert_eq!(halted.failures[0].member, "host-a");
    assert!(halted.slot_of("host-a").is_none(), "its slot is given back");
    assert!(halted.slot_of("host-b").is_some(), "others finish theirs");
    assert!(matches!(
        d.action,
        Action::Wait {
            reason: Reason::FailedHere,
            ..
        }
    ));
    let failed = member_write(&d).unwrap().failed.unwrap();
    assert_eq!(failed.release, target());

    rec.strategy.on_failure = OnFailure::Rollback;
    let others = [member("host-b", old(), MemberState::Updating, 1)];
    let (_, d) = decide_with(reading(v, rec), &others);
    assert_eq!(rollout_write(&d).unwrap().phase, Phase::RollingBack);
}

#[test]
fn an_updated_member_that_turns_unhealthy_halts_the_rollout_too() {
    let mut v = view("host-a", Plan::default());
    v.local.running = Some(target());
    v.local.health = Health::Unhealthy;
    let d = decide_now(&reading(
        v.clone(),
        record(Plan::default(), Phase::Rolling, 10),
    ));
    assert_eq!(rollout_write(&d).unwrap().phase, Phase::Halted);
    // Once the rollout is over, its health is the agent's own business.
    let d = decide_now(&reading(v, record(Plan::default(), Phase::Done, 10)));
    assert!(rollout_write(&d).is_none());
}

#[test]
fn no_update_starts_once_the_rollout_halted() {
    for phase in [Phase::Halted, Phase::Aborted, Phase::Paused, Phase::Baking] {
        let mut rec = record(Plan::default(), phase, 10);
        rec.slots = vec![slot("host-a", 90)];
        rec.resume_to = Some(Phase::Rolling);
        let d = decide_now(&reading(view("host-a", Plan::default()), rec));
        assert!(waits(&d), "{phase}: {:?}", d.action);
        if matches!(phase, Phase::Halted | Phase::Aborted) {
            let back = rollout_write(&d).expect("gives its slot back");
            assert!(back.slot_of("host-a").is_none());
        }
    }
}

#[test]
fn a_rollback_returns_updated_members_under_slots() {
    let plan = Plan {
        on_failure: cairn_rollout::OnFailure::Rollback,
        ..Plan::default()
    };
    let mut v = view("host-a", plan.clone());
    v.local.running = Some(target());
    v.local.previous = Some(old());
    let mut rec = record(plan, Phase::RollingBack, 10);
    rec.slots = vec![cairn_rollout::Slot {
        kind: SlotKind::Rollback,
        ..slot("host-a", 90)
    }];
    let d = decide_now(&reading(v.clone(), rec.clone()));
    assert_eq!(
        d.action,
        Action::RollBack {
            to: old(),
            finish_by: Time::from_secs(at(90))
        }
    );
    assert_eq!(member_write(&d).unwrap().state, MemberState::RollingBack);
    // Rolled back already, or never updated: nothing to do.
    rec.phase = Phase::RolledBack;
    rec.slots.clear();
    let d = decide_now(&reading(view("host-b", Plan::default()), rec.clone()));
    assert!(waits(&d));
    // Back after the rollback ended, still on the target: it takes a slot.
    let d = decide_now(&reading(v, rec));
    assert!(matches!(d.action, Action::RollBack { .. }));
    assert_eq!(
        rollout_write(&d).unwrap().slot_of("host-a").unwrap().kind,
        SlotKind::Rollback
    );
}

#[test]
fn the_member_record_is_written_when_it_changes_and_on_heartbeat() {
    let rec = record(Plan::default(), Phase::Done, 10);
    let mut v = reading(view("host-a", Plan::default()), rec);
    v.local.running = Some(target());
    let d = decide_now(&v);
    let written = member_write(&d).expect("first write").clone();
    assert_eq!(
        (written.release, written.state, written.heartbeat),
        (Some(target()), MemberState::Running, now().secs())
    );
    v.own = Some(cairn_rollout::Versioned {
        version: Version("1".into()),
        value: written.clone(),
    });
    let quiet = cairn_rollout::decide(&v, now().plus(Duration::from_secs(5)));
    assert!(member_write(&quiet).is_none(), "nothing changed");
    let due = cairn_rollout::decide(&v, now().plus(Timing::default().heartbeat));
    assert!(member_write(&due).is_some(), "heartbeat");
    v.local.health = Health::Unhealthy;
    let changed = cairn_rollout::decide(&v, now().plus(Duration::from_secs(5)));
    assert_eq!(member_write(&changed).unwrap().health, Health::Unhealthy);
}

#[test]
fn an_agent_about_to_update_hands_the_steward_lease_on() {
    let mut rec = record(Plan::default(), Phase::Rolling, 10);
    rec.steward = Some(cairn_rollout::Lease {
        member: "host-a".into(),
        expires: at(20),
    });
    rec.slots = vec![slot("host-a", 90)];
    let d = decide_now(&reading(view("host-a", Plan::default()), rec));
    assert!(matches!(d.action, Action::Update { .. }));
    assert_eq!(rollout_write(&d).unwrap().steward, None);
}

#[test]
fn at_once_gives_everyone_a_slot_in_one_wave() {
    let plan = Plan {
        strategy: Strategy::AtOnce,
        ..Plan::default()
    };
    let members: Vec<_> = (0..30)
        .map(|i| member(&format!("host-{i}"), old(), MemberState::Running, 5))
        .collect();
    let rec = record(plan.clone(), Phase::Rolling, 0);
    // The first look takes the free steward lease, and only that.
    let (_, d) = decide_with(reading(view("host-0", plan.clone()), rec), &members);
    let w = rollout_write(&d).unwrap();
    assert_eq!(w.steward.as_ref().unwrap().member, "host-0");
    assert!(w.slots.is_empty());
    // The next grants everyone.
    let (_, d) = decide_with(reading(view("host-0", plan), w.clone()), &members);
    let w = rollout_write(&d).unwrap();
    assert_eq!(w.slots.len(), 30);
    assert_eq!(w.wave, 1);
}

use cairn_rollout::Timing;

#[test]
fn a_halted_rollout_moves_again_only_on_a_newer_statement() {
    let mut halted = record(Plan::default(), Phase::Halted, 10);
    halted.halted = Some(cairn_rollout::Halt {
        member: Some("host-b".into()),
        reason: "host-b: failed its health check on the target".into(),
        at: at(-30),
        phase: Phase::Rolling,
    });
    // The same statement: every agent waits, whoever it is, and nothing
    // it writes moves the phase.
    for me in ["host-a", "host-b", "host-c"] {
        let (_, d) = decide_with(
            reading(view(me, Plan::default()), halted.clone()),
            &[member("host-a", old(), MemberState::Running, 0)],
        );
        assert!(waits(&d), "{me}: {:?}", d.action);
        if let Some(w) = rollout_write(&d) {
            assert_eq!(w.phase, Phase::Halted, "{me}");
        }
    }
    // A newer statement replaces it with a new rollout, by
    // compare-and-swap on the version read.
    let mut v = reading(view("host-a", Plan::default()), halted);
    let acc = v.accepted.as_mut().unwrap();
    acc.sequence = SEQ + 1;
    acc.release = old();
    let d = decide_now(&v);
    let Some(Write::Rollout { expected, record }) = d.writes.first() else {
        panic!("{:?}", d.writes)
    };
    assert_eq!(expected.as_ref(), Some(&Version("7".into())));
    assert_eq!((record.sequence, record.phase), (SEQ + 1, Phase::Rolling));
    assert!(record.halted.is_none());
}
