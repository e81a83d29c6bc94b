//! Rollout records a broken or hostile member wrote: times no honest
//! agent writes, or a statement sequence no signed statement backs, must
//! not stop (or steer) the set's rollouts.

use std::time::Duration;

use cairn_rollout::{
    Action, Amount, Attempt, Lease, MemberState, Phase, Plan, Position, Reason, Strategy, Timing,
};

use crate::fixtures::*;

/// Ten years: further ahead than any lease or bake.
const DECADE: i64 = 10 * 365 * 24 * 3600;

fn one_at_a_time() -> Plan {
    Plan {
        max_unavailable: Amount::Count(1),
        ..Plan::default()
    }
}

fn members(n: usize) -> Vec<cairn_rollout::MemberRecord> {
    (0..n)
        .map(|i| member(&format!("host-{i:02}"), old(), MemberState::Running, 5))
        .collect()
}

/// A steward already on the target (so it takes no turn of its own).
fn steward(me: &str, p: Plan) -> cairn_rollout::View {
    let mut v = view(me, p);
    v.local.running = Some(target());
    v
}

#[test]
fn a_slot_leased_for_a_decade_is_read_as_over() {
    let mut rec = record(one_at_a_time(), Phase::Rolling, 3);
    rec.steward = Some(Lease {
        member: "host-09".into(),
        expires: at(20),
    });
    rec.slots = vec![slot("ghost", DECADE)];
    let (_, d) = decide_with(
        reading(steward("host-09", one_at_a_time()), rec),
        &members(3),
    );
    let w = rollout_write(&d).expect("the steward writes");
    assert!(w.slot_of("ghost").is_none(), "{:?}", w.slots);
    assert_eq!(w.slots.len(), 1, "the freed slot is granted: {:?}", w.slots);
    assert!(w.slots[0].member.starts_with("host-"));
    assert_eq!(w.away, 1, "the ghost counted away");
}

#[test]
fn a_lease_within_the_horizon_still_holds() {
    // Four slot leases ahead is within what honest agents with other
    // timing may write: left alone, nothing granted over it.
    let ahead = Timing::default().slot_lease().as_secs() as i64 * 3;
    let mut rec = record(one_at_a_time(), Phase::Rolling, 3);
    rec.steward = Some(Lease {
        member: "host-09".into(),
        expires: at(20),
    });
    rec.slots = vec![slot("host-00", ahead)];
    let (_, d) = decide_with(
        reading(steward("host-09", one_at_a_time()), rec),
        &members(3),
    );
    assert!(
        rollout_write(&d).is_none_or(|w| w.slots.len() == 1 && w.slot_of("host-00").is_some()),
        "{d:?}"
    );
}

#[test]
fn a_new_rollout_does_not_carry_a_decade_long_slot_over() {
    let mut old_rec = record(one_at_a_time(), Phase::Rolling, 3);
    old_rec.sequence = SEQ - 1;
    old_rec.target = old();
    old_rec.slots = vec![slot("ghost", DECADE), slot("host-01", 60)];
    let d = decide_now(&reading(view("host-00", one_at_a_time()), old_rec));
    let w = rollout_write(&d).expect("the new rollout");
    let held: Vec<&str> = w.slots.iter().map(|s| s.member.as_str()).collect();
    assert_eq!(held, ["host-01"]);
}

#[test]
fn a_steward_lease_for_a_decade_is_taken_over() {
    let mut rec = record(one_at_a_time(), Phase::Rolling, 3);
    rec.steward = Some(Lease {
        member: "ghost".into(),
        expires: at(DECADE),
    });
    let (_, d) = decide_with(
        reading(steward("host-01", one_at_a_time()), rec),
        &members(3),
    );
    let w = rollout_write(&d).expect("takes over");
    assert_eq!(w.steward.as_ref().unwrap().member, "host-01");
    assert!(w.steward.as_ref().unwrap().expires < at(3600));
}

#[test]
fn a_century_long_lease_is_not_copied_into_grants() {
    let mut rec = record(one_at_a_time(), Phase::Rolling, 3);
    rec.lease = 100 * 365 * 24 * 3600;
    rec.steward = Some(Lease {
        member: "host-09".into(),
        expires: at(20),
    });
    let (_, d) = decide_with(
        reading(steward("host-09", one_at_a_time()), rec),
        &members(3),
    );
    let w = rollout_write(&d).expect("grants");
    assert_eq!(w.slots.len(), 1);
    assert!(w.slots[0].expires < at(3600), "{:?}", w.slots);
    assert!(w.lease < 3600, "{}", w.lease);
}

#[test]
fn a_bake_that_ends_in_a_decade_ends_now() {
    let canary = Plan {
        strategy: Strategy::Canary {
            count: Amount::Count(1),
            bake: Duration::from_secs(30),
        },
        max_unavailable: Amount::Count(1),
        ..Plan::default()
    };
    let mut rec = record(canary.clone(), Phase::Baking, 3);
    rec.steward = Some(Lease {
        member: "host-09".into(),
        expires: at(20),
    });
    rec.canaries = vec!["host-00".into()];
    rec.done = 1;
    rec.cursor = Some(Position {
        rank: u32::MAX,
        hash: 0,
        member: "host-00".into(),
    });
    rec.bake_until = Some(at(DECADE));
    let mut all = members(3);
    all[0].release = Some(target());
    let (_, d) = decide_with(reading(steward("host-09", canary), rec), &all);
    let w = rollout_write(&d).expect("the bake ends");
    assert_eq!(w.phase, Phase::Rolling, "{w:?}");
}

/// The write a decision makes of the rollout record; panics without one.
fn replaced(d: &cairn_rollout::Decision) -> cairn_rollout::RolloutRecord {
    rollout_write(d).expect("the record is replaced").clone()
}

#[test]
fn a_claimed_sequence_no_verified_statement_backs_is_replaced_at_once() {
    let mut claim = record(one_at_a_time(), Phase::Rolling, 3);
    claim.sequence = u64::MAX;
    claim.statement = None;
    let d = decide_now(&reading(view("host-a", one_at_a_time()), claim));
    let rec = replaced(&d);
    assert_eq!((rec.sequence, rec.target), (SEQ, target()));
    let carried = view("host-a", one_at_a_time()).accepted.unwrap().statement;
    assert_eq!(
        rec.statement, carried,
        "the new record carries the statement"
    );
    assert!(!matches!(
        d.action,
        Action::Wait {
            reason: Reason::NewerRollout(_),
            ..
        }
    ));
}

#[test]
fn a_verified_statement_backs_only_the_release_and_sequence_it_names() {
    let mut claim = record(one_at_a_time(), Phase::Rolling, 3);
    claim.sequence = SEQ + 1;
    let other = cairn_digest::Digest::of(b"unsigned release");
    for verified in [
        // Signed, but for another release than the record claims.
        Attempt {
            release: target(),
            sequence: SEQ + 1,
        },
        // Signed, but an older statement than the one claimed.
        Attempt {
            release: other,
            sequence: SEQ,
        },
    ] {
        let mut c = claim.clone();
        c.target = other;
        let mut v = reading(view("host-a", one_at_a_time()), c);
        v.verified = Some(verified);
        let rec = replaced(&decide_now(&v));
        assert_eq!((rec.sequence, rec.target), (SEQ, target()), "{verified:?}");
    }
}

#[test]
fn an_unbacked_claim_keeps_the_slots_it_lists_counted() {
    // Replacing a record must not let two members swap at once: slots it
    // lists still count (as draining) until they are surely over.
    let mut claim = record(one_at_a_time(), Phase::Rolling, 3);
    claim.sequence = SEQ + 7;
    claim.slots = vec![slot("host-b", 30)];
    let rec = replaced(&decide_now(&reading(
        view("host-a", one_at_a_time()),
        claim,
    )));
    let held: Vec<_> = rec.slots.iter().map(|s| (&s.member[..], s.kind)).collect();
    assert_eq!(held, [("host-b", cairn_rollout::SlotKind::Draining)]);
}
