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
        expires: at(20),
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
    assert!(w.gates[0].starts_with("freeze until "), "{:?}", w.gates);
    // After the window it goes on.
    let later = cairn_rollout::decide(&steward_view_at(&p, 3600), Time::from_secs(at(3601)));
    assert_eq!(rollout_write(&later).unwrap().slots.len(), 1);
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
        },
    );
    let w = decide_now(&wrong);
    assert!(rollout_write(&w).unwrap().slots.is_empty());
    assert!(rollout_write(&w).unwrap().gates[0].starts_with("fleet db/eu healthy on sha256:"));
    let mut right = v;
    right.fleets.insert(
        "db/eu".into(),
        FleetFact {
            healthy: true,
            release: Some(want),
        },
    );
    assert_eq!(rollout_write(&decide_now(&right)).unwrap().slots.len(), 1);
}
