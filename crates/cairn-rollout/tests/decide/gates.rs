//! Gates: what holds the next wave.

use std::sync::Arc;
use std::time::Duration;

use cairn_rollout::{
    Action, CheckResult, FleetFact, Gate, Lease, MemberState, Phase, Plan, Read, Time,
};

use crate::fixtures::*;

fn gated(gate: Gate) -> Plan {
    Plan {
        gates: vec![gate],
        ..Plan::default()
    }
}

fn steward_view(p: &Plan) -> cairn_rollout::View {
    steward_view_at(p, 0)
}

/// The steward's view with the members' last heartbeat `offset` seconds
/// from now.
fn steward_view_at(p: &Plan, offset: i64) -> cairn_rollout::View {
    let mut rec = record(p.clone(), Phase::Rolling, 3);
    rec.steward = Some(Lease {
        member: "host-9".into(),
        expires: at(offset + 20),
    });
    let mut v = reading(view("host-9", p.clone()), rec);
    v.members = Some(Arc::new(vec![
        "host-1".into(),
        "host-2".into(),
        "host-3".into(),
    ]));
    for id in ["host-1", "host-2", "host-3"] {
        v.peers.insert(
            id.into(),
            Some(member(id, old(), MemberState::Running, -offset)),
        );
    }
    v
}

#[test]
fn nothing_is_granted_inside_a_freeze_window_and_status_says_why() {
    let p = gated(Gate::Freeze {
        from: Time::from_secs(at(-10)),
        until: Time::from_secs(at(3600)),
    });
    let d = decide_now(&steward_view(&p));
    let w = rollout_write(&d).unwrap();
    assert!(w.slots.is_empty());
    assert_eq!(w.gates.len(), 1);
    assert!(w.gates[0].starts_with("freeze from "), "{:?}", w.gates);
    // Not while another clock may still be inside it (the skew bound)...
    let edge = cairn_rollout::decide(&steward_view_at(&p, 3601), Time::from_secs(at(3601)));
    assert!(rollout_write(&edge).unwrap().slots.is_empty());
    // ...after it, it goes on.
    let later = cairn_rollout::decide(&steward_view_at(&p, 3603), Time::from_secs(at(3603)));
    assert_eq!(rollout_write(&later).unwrap().slots.len(), 1);
}

#[test]
fn no_grant_is_made_that_could_still_swap_when_a_window_begins() {
    let t = cairn_rollout::Timing::default();
    // The fixtures' record grants leases of 100 s.
    let reach = 100 + t.margin().as_secs() as i64 + t.max_skew.as_secs() as i64;
    let window = |from| {
        gated(Gate::Freeze {
            from: Time::from_secs(at(from)),
            until: Time::from_secs(at(from + 3600)),
        })
    };
    let near = window(reach);
    let d = decide_now(&steward_view(&near));
    assert!(rollout_write(&d).unwrap().slots.is_empty());
    assert!(matches!(d.action, Action::Wait { .. }));
    let far = window(reach + 2);
    assert_eq!(
        rollout_write(&decide_now(&steward_view(&far)))
            .unwrap()
            .slots
            .len(),
        1
    );
}

#[test]
fn a_holder_whose_swap_would_reach_into_a_window_gives_its_slot_back() {
    let p = gated(Gate::Freeze {
        from: Time::from_secs(at(30)),
        until: Time::from_secs(at(3600)),
    });
    let mut rec = record(p.clone(), Phase::Rolling, 3);
    rec.put_slot(slot("host-1", 80));
    rec.steward = Some(Lease {
        member: "host-9".into(),
        expires: at(20),
    });
    let mut v = reading(view("host-1", p), rec);
    v.local.fetched = vec![target()];
    let d = decide_now(&v);
    assert!(matches!(d.action, Action::Wait { .. }), "{:?}", d.action);
    assert!(rollout_write(&d).unwrap().slot_of("host-1").is_none());
    // With the window further off, the same slot is used.
    let mut later = v.clone();
    let mut rec = match &v.rollout {
        cairn_rollout::RolloutRead::Read(r) => (*r.value).clone(),
        _ => unreachable!(),
    };
    rec.strategy.gates = vec![Gate::Freeze {
        from: Time::from_secs(at(90)),
        until: Time::from_secs(at(3600)),
    }];
    // (The member's own plan's windows hold it too: moved there as well.)
    if let Some(a) = later.accepted.as_mut() {
        a.plan.gates = rec.strategy.gates.clone();
    }
    later = reading(later, rec);
    assert!(matches!(decide_now(&later).action, Action::Update { .. }));
}

#[test]
fn a_check_runs_before_each_wave_and_a_failed_one_is_retried() {
    let p = gated(Gate::Check {
        command: vec!["bin/ready".into()],
        timeout: Duration::from_secs(30),
    });
    let v = steward_view(&p);
    let d = decide_now(&v);
    assert!(
        matches!(&d.action, Action::RunCheck { gate: 0, wave: 1, command, .. } if command == &["bin/ready"]),
        "{:?}",
        d.action
    );
    let lease = rollout_write(&d).unwrap().steward.clone().unwrap();
    assert!(lease.expires >= at(60), "the lease outlasts the check");

    let result = |passed, ago: u64| CheckResult {
        sequence: SEQ,
        wave: 1,
        gate: 0,
        passed,
        at: now().minus(Duration::from_secs(ago)),
    };
    let mut failed = v.clone();
    failed.local.checks = vec![result(false, 1)];
    let d = decide_now(&failed);
    assert!(matches!(d.action, Action::Wait { .. }));
    assert!(rollout_write(&d).unwrap().gates[0].contains("failed"));
    failed.local.checks = vec![result(false, 31)];
    assert!(matches!(
        decide_now(&failed).action,
        Action::RunCheck { .. }
    ));

    let mut passed = v;
    passed.local.checks = vec![result(true, 1)];
    let d = decide_now(&passed);
    assert_eq!(rollout_write(&d).unwrap().slots.len(), 1);
}

#[test]
fn a_fleet_gate_waits_for_the_other_set_on_the_named_release() {
    let want = target();
    let p = gated(Gate::Fleet {
        service: "db".into(),
        set: "eu".into(),
        release: Some(want.to_string()),
    });
    let v = steward_view(&p);
    let d = decide_now(&v);
    assert_eq!(
        d.reads,
        [Read::Fleet {
            service: "db".into(),
            set: "eu".into()
        }]
    );
    let mut wrong = v.clone();
    wrong.fleets.insert(
        "db/eu".into(),
        FleetFact {
            healthy: true,
            release: Some(old()),
            refused: None,
        },
    );
    let w = decide_now(&wrong);
    assert!(rollout_write(&w).unwrap().slots.is_empty());
    assert!(rollout_write(&w).unwrap().gates[0].starts_with("fleet db/eu healthy on sha256:"));
    // A record not believed keeps the gate closed, and says why.
    let mut unsigned = v.clone();
    unsigned.fleets.insert(
        "db/eu".into(),
        FleetFact::refused("fleet/db/eu/rollout: it carries no signed statement".into()),
    );
    let u = decide_now(&unsigned);
    let written = rollout_write(&u).unwrap();
    assert!(written.slots.is_empty());
    assert!(
        written.gates[0].contains("not believed: fleet/db/eu/rollout: it carries no signed"),
        "{:?}",
        written.gates
    );
    let mut right = v;
    right.fleets.insert(
        "db/eu".into(),
        FleetFact {
            healthy: true,
            release: Some(want),
            refused: None,
        },
    );
    assert_eq!(rollout_write(&decide_now(&right)).unwrap().slots.len(), 1);
}
