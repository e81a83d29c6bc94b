//! Property tests of one decision: whatever the record holds (phase,
//! slots and their leases, plan, freeze window), whoever decides and
//! whatever its members' records say, a decision never holds more slots
//! than the capacity allows, never grants or starts an update where the
//! phase or a freeze window forbids it, and starts an update only under
//! its own slot with a lease that covers the whole swap.

use std::time::Duration;

use cairn_rollout::{
    Action, Amount, Gate, Health, Lease, MemberState, Phase, Plan, RolloutRecord, SlotKind,
    Strategy as Rollout, Time, Timing,
};
use proptest::prelude::*;

use crate::fixtures::*;

const PHASES: [Phase; 9] = [
    Phase::Canary,
    Phase::Baking,
    Phase::Rolling,
    Phase::Done,
    Phase::Halted,
    Phase::RollingBack,
    Phase::RolledBack,
    Phase::Paused,
    Phase::Aborted,
];

fn amount() -> impl Strategy<Value = Amount> {
    prop_oneof![
        (1u32..6).prop_map(Amount::Count),
        (1u32..80).prop_map(Amount::Percent)
    ]
}

fn plan() -> impl Strategy<Value = Plan> {
    let strategy = prop_oneof![
        Just(Rollout::AtOnce),
        Just(Rollout::Rolling),
        amount().prop_map(|count| Rollout::Canary {
            count,
            bake: Duration::from_secs(60)
        }),
    ];
    // A freeze window somewhere around now (seconds from now, length).
    let freeze = prop::option::of((-200i64..400, 1i64..300));
    (strategy, amount(), freeze).prop_map(|(strategy, max_unavailable, freeze)| Plan {
        strategy,
        max_unavailable,
        gates: freeze
            .map(|(from, len)| Gate::Freeze {
                from: Time::from_secs(at(from)),
                until: Time::from_secs(at(from + len)),
            })
            .into_iter()
            .collect(),
        ..Plan::default()
    })
}

/// A record, the deciding member's index, its state, the members'
/// heartbeat ages.
fn situation() -> impl Strategy<Value = (RolloutRecord, usize, bool, Vec<i64>)> {
    (
        plan(),
        prop::sample::select(PHASES.to_vec()),
        2u32..24,
        // Slots: member index, lease end from now, kind.
        prop::collection::vec((0usize..24, -60i64..150, any::<bool>()), 0..10),
        any::<usize>(),
        any::<bool>(),
        prop::option::of(-20i64..40),
        prop::collection::vec(0i64..400, 24),
    )
        .prop_map(|(plan, phase, n, slots, me, on_target, steward, beats)| {
            let mut rec = record(plan, phase, n);
            for (i, expires, rollback) in slots {
                let mut s = slot(&id(i % n as usize), expires);
                if rollback {
                    s.kind = SlotKind::Rollback;
                }
                rec.put_slot(s);
            }
            rec.steward = steward.map(|e| Lease {
                member: id(0),
                expires: at(e),
            });
            (
                rec,
                me % n as usize,
                on_target,
                beats[..n as usize].to_vec(),
            )
        })
}

fn id(i: usize) -> String {
    format!("host-{i:02}")
}

/// Slots whose lease has not surely ended, as anyone counts them now.
fn held(rec: &RolloutRecord) -> usize {
    rec.held(now(), Timing::default().margin())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn a_decision_keeps_capacity_phase_freeze_and_lease_rules(
        (rec, me, on_target, beats) in situation()
    ) {
        let t = Timing::default();
        let n = beats.len();
        let members: Vec<_> = (0..n)
            .map(|i| {
                let release = if on_target && i == me { target() } else { old() };
                member(&id(i), release, MemberState::Running, beats[i])
            })
            .collect();
        let mut v = reading(view(&id(me), rec.strategy.clone()), rec.clone());
        if on_target {
            v.local.running = Some(target());
            v.local.previous = Some(old());
        }
        v.local.health = Health::Healthy;
        let (_, d) = decide_with(v, &members);
        let written = rollout_write(&d);
        let after = written.unwrap_or(&rec);
        let granted: Vec<_> = after
            .slots
            .iter()
            .filter(|s| s.kind == SlotKind::Update)
            .filter(|s| rec.slot_of(&s.member).is_none_or(|o| o.kind != SlotKind::Update))
            .collect();

        // Never more slots held than the capacity, unless already so.
        prop_assert!(
            held(after) <= held(&rec).max(after.capacity as usize),
            "{} held after, {} before, capacity {}", held(after), held(&rec), after.capacity
        );
        // No update slot is granted where the phase forbids updates.
        if !granted.is_empty() {
            prop_assert!(after.phase.allows_updates(), "granted in {}", after.phase);
            prop_assert!(rec.phase.allows_updates() || rec.phase == Phase::Baking,
                "granted after {}", rec.phase);
            // Nor when an update granted now might reach a freeze window.
            let reach = now().plus(Duration::from_secs(rec.lease) + t.margin());
            prop_assert_eq!(rec.strategy.frozen_during(now(), reach, t.max_skew), None);
        }
        if let Action::Update { release, finish_by } = d.action {
            prop_assert_eq!(release, target());
            prop_assert!(after.phase.allows_updates());
            let mine = after.slot_of(&id(me));
            prop_assert!(mine.is_some_and(|s| s.kind == SlotKind::Update));
            let lease_end = Time::from_secs(mine.unwrap().expires);
            prop_assert!(finish_by <= lease_end);
            prop_assert!(now().plus(t.swap_budget) <= finish_by, "the lease covers the swap");
            prop_assert_eq!(rec.strategy.frozen_during(now(), finish_by, t.max_skew), None);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// Whatever else a record holds, a statement sequence above the
    /// accepted one that no verified statement backs never makes a member
    /// wait: the record is replaced by the accepted statement's rollout.
    #[test]
    fn an_unbacked_newer_claim_never_holds_a_member(
        (mut rec, me, on_target, _) in situation(),
        ahead in 1u64..u64::MAX - SEQ,
        other_target in any::<bool>(),
        verified in prop::option::of((any::<bool>(), 0u64..4)),
    ) {
        rec.sequence = SEQ + ahead;
        if other_target {
            rec.target = cairn_digest::Digest::of(b"an unsigned release");
        }
        let mut v = reading(view(&id(me), rec.strategy.clone()), rec.clone());
        if on_target {
            v.local.running = Some(target());
        }
        // A statement the agent did verify, but not the one claimed.
        v.verified = verified
            .map(|(same_release, back)| cairn_rollout::Attempt {
                release: if same_release { rec.target } else { old() },
                sequence: if same_release { rec.sequence - 1 - back.min(ahead - 1) } else { rec.sequence },
            });
        let d = decide_now(&v);
        let written = rollout_write(&d);
        prop_assert!(written.is_some(), "{:?}", d.action);
        let written = written.unwrap();
        prop_assert_eq!((written.sequence, written.target), (SEQ, target()));
        // Replacing grants nothing: slots carried over only drain.
        prop_assert!(written.slots.iter().all(|s| s.kind == SlotKind::Draining));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// The record's plan is anyone's to write: whatever it says (its
    /// capacity, canary size, on_failure, windows dropped), a member that
    /// swaps does so within its own plan: the slots held (its own
    /// included) within its own capacity, no more canaries than its own
    /// count, a rollback only when its own plan rolls back (and then to
    /// its own previous release), never inside its own freeze window.
    #[test]
    fn a_member_swaps_only_within_its_own_plan_whatever_the_record_says(
        (rec, me, on_target, beats) in situation(),
        own in plan(),
        rolls_back in any::<bool>(),
    ) {
        let t = Timing::default();
        let own = Plan {
            on_failure: if rolls_back {
                cairn_rollout::OnFailure::Rollback
            } else {
                cairn_rollout::OnFailure::Halt
            },
            ..own
        };
        let n = beats.len();
        let members: Vec<_> = (0..n)
            .map(|i| {
                let release = if on_target && i == me { target() } else { old() };
                member(&id(i), release, MemberState::Running, beats[i])
            })
            .collect();
        let mut v = reading(view(&id(me), own.clone()), rec.clone());
        if on_target {
            v.local.running = Some(target());
            v.local.previous = Some(old());
        }
        let (_, d) = decide_with(v, &members);
        let after = rollout_write(&d).unwrap_or(&rec);
        let finish_by = match d.action {
            Action::Update { finish_by, .. } => finish_by,
            Action::RollBack { to, finish_by } => {
                prop_assert!(rolls_back, "a rollback the member's plan does not make");
                prop_assert_eq!(to, old());
                finish_by
            }
            _ => return Ok(()),
        };
        let cap = own.capacity(after.members).min(after.capacity) as usize;
        prop_assert!(held(after) <= cap, "{} held, own capacity {}", held(after), cap);
        if let (Action::Update { .. }, Phase::Canary, Some(count)) =
            (&d.action, after.phase, own.canary_count(after.members))
        {
            let updating = after.slots.iter().filter(|s| s.kind == SlotKind::Update).count();
            prop_assert!(after.canaries.len() + updating <= count as usize);
        }
        if matches!(d.action, Action::Update { .. }) {
            prop_assert_eq!(own.frozen_during(now(), finish_by, t.max_skew), None);
        }
    }
}
