//! Property tests: the protocol's invariants hold for any plan, any set
//! size and any fault schedule proptest can find, not only for the plans
//! the seeded kinds draw. Each case is a whole simulated rollout; the
//! simulator checks every invariant after every step (capacity, slots and
//! leases, halts, freeze windows, trust) and convergence at the end, so a
//! case passes only with no violation at all. A failing case shrinks to a
//! small set and prints its scenario.

use std::time::Duration;

use cairn_rollout::{Amount, Gate, OnFailure, Order, Strategy as Rollout};
use cairn_sim::scenario::{member_id, promotion};
use cairn_sim::{run, Faults, Kind, Scenario};
use proptest::prelude::*;

fn amount(max_count: u32) -> impl Strategy<Value = Amount> {
    prop_oneof![
        (1..=max_count).prop_map(Amount::Count),
        (1u32..=60).prop_map(Amount::Percent),
    ]
}

fn strategy() -> impl Strategy<Value = Rollout> {
    prop_oneof![
        Just(Rollout::AtOnce),
        Just(Rollout::Rolling),
        (amount(4), 5u64..120).prop_map(|(count, bake)| Rollout::Canary {
            count,
            bake: Duration::from_secs(bake),
        }),
    ]
}

fn faults() -> impl Strategy<Value = Faults> {
    (
        (0.0f64..12.0, 5u64..240),
        (0.0f64..0.05, 0.0f64..0.05, 0.0f64..0.1),
        (0usize..3, 0.0f64..0.3, 0u64..=2000, 0.0f64..0.1),
    )
        .prop_map(
            |((crash_rate, down), (lost, replies, delayed), (outages, slow, skew, late))| Faults {
                crash_rate,
                down_max: Duration::from_secs(down),
                lost_writes: lost,
                lost_replies: replies,
                delayed_writes: delayed,
                delay_max: Duration::from_millis(3000),
                outages: (0..outages)
                    .map(|i| {
                        (
                            Duration::from_secs(30 + 150 * i as u64),
                            Duration::from_secs(20),
                        )
                    })
                    .collect(),
                slow_health: slow,
                max_skew: Duration::from_millis(skew),
                late_joiners: late,
                until: Duration::from_secs(900),
            },
        )
}

/// A freeze window starting `from` seconds after the promotion, `len` long.
fn freeze() -> impl Strategy<Value = Option<(u64, u64)>> {
    prop::option::of((0u64..400, 10u64..300))
}

prop_compose! {
    fn scenario()(
        seed in any::<u64>(),
        agents in 3u32..40,
        kind in prop::sample::select(vec![
            Kind::Rolling, Kind::Canary, Kind::AtOnce, Kind::BadRolling,
            Kind::BadCanary, Kind::Newer,
        ]),
        strategy in strategy(),
        max_unavailable in amount(5),
        rollback in any::<bool>(),
        pinned in any::<bool>(),
        faults in faults(),
        freeze in freeze(),
    ) -> Scenario {
        let mut sc = Scenario::draw(seed, agents, kind, Some(max_unavailable));
        sc.plan.strategy = strategy;
        sc.plan.on_failure = if rollback { OnFailure::Rollback } else { OnFailure::Halt };
        sc.plan.order = if pinned {
            Order::Pinned(vec![member_id(agents - 1), member_id(1)])
        } else {
            Order::Hashed
        };
        sc.plan.gates = freeze
            .map(|(from, len)| {
                let from = promotion().plus(Duration::from_secs(from));
                vec![Gate::Freeze { from, until: from.plus(Duration::from_secs(len)) }]
            })
            .unwrap_or_default();
        sc.faults = faults;
        sc
    }
}

proptest! {
    // 256 cases, or `PROPTEST_CASES` for a longer hunt.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_invariant_holds_for_any_plan_and_fault_schedule(sc in scenario()) {
        let capacity = match sc.plan.strategy {
            Rollout::AtOnce => sc.agents,
            _ => sc.plan.capacity(sc.agents),
        };
        let must_complete = sc.must_complete();
        let o = run(sc, false);
        prop_assert!(o.violations.is_empty(), "{}", o.failure());
        // Never more members down or updating than the plan allows.
        prop_assert!(o.max_unavailable <= capacity, "{} > {capacity}", o.max_unavailable);
        // Every live member converged to the outcome, in simulated time.
        prop_assert!(o.duration.is_some(), "never converged");
        if must_complete {
            prop_assert_eq!(o.phase, Some(cairn_rollout::Phase::Done));
        }
    }
}
