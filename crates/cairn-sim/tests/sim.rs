//! The simulation, sized for CI: every kind of run under seeded faults at
//! 10 and 100 agents, rolling rollouts at 1,000 (50 fault schedules) and
//! 10,000 (2), each checked
//! for every invariant after every step. A failure prints the seed, the
//! command that replays it and its trace. `SEEDS=N` multiplies the seeds
//! (the full sweep is `bench/rollout.sh`).

use cairn_rollout::Amount;
use cairn_sim::{run, Kind, Outcome, Scenario, Summary};

/// Seeds per sweep, scaled by `SEEDS` (default 1).
fn seeds(n: u64) -> u64 {
    let scale: u64 = std::env::var("SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    n * scale
}

/// Runs `count` seeds from `first`, of `kind` (or every kind in turn),
/// on two threads, and fails with every broken seed's report.
fn sweep(
    first: u64,
    count: u64,
    agents: u32,
    kind: Option<Kind>,
    unavailable: Option<Amount>,
) -> Summary {
    let outcomes: Vec<Outcome> = std::thread::scope(|s| {
        let half = count / 2;
        let parts = [(first, half), (first + half, count - half)];
        let handles: Vec<_> = parts
            .into_iter()
            .map(|(from, n)| {
                s.spawn(move || {
                    (from..from + n)
                        .map(|seed| {
                            let k =
                                kind.unwrap_or(Kind::ALL[(seed % Kind::ALL.len() as u64) as usize]);
                            run(Scenario::draw(seed, agents, k, unavailable), false)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut summary = Summary::default();
    let mut failures = String::new();
    for o in &outcomes {
        summary.add(o);
        if !o.violations.is_empty() {
            failures.push_str(&o.failure());
        }
    }
    assert!(failures.is_empty(), "{failures}");
    assert_eq!(summary.runs as u64, count);
    summary
}

#[test]
fn every_kind_of_rollout_keeps_the_invariants_under_faults_with_10_agents() {
    sweep(0, seeds(900), 10, None, None);
}

#[test]
fn every_kind_of_rollout_keeps_the_invariants_under_faults_with_100_agents() {
    sweep(10_000, seeds(90), 100, None, None);
}

/// Members whose configurations override the plan differently share one
/// rollout record: each swaps within its own capacity (one at a time for
/// every third member, ten for the others), none replaces the others'
/// record, and the rollout completes.
#[test]
fn members_with_different_plans_share_one_rollout_and_complete_it() {
    let s = sweep(
        30_000,
        seeds(20),
        100,
        Some(Kind::Mixed),
        Some(Amount::Count(10)),
    );
    let most = s.to_json()["max_unavailable"].as_u64().unwrap();
    assert!(
        (2..=10).contains(&most),
        "the others go up to ten at a time, never more: {most}"
    );
}

#[test]
fn rolling_rollouts_of_1000_agents_complete_within_ten_percent_over_50_fault_schedules() {
    let s = sweep(
        20_000,
        seeds(50),
        1000,
        Some(Kind::Rolling),
        Some(Amount::Percent(10)),
    );
    let json = s.to_json();
    assert_eq!(json["allowed_unavailable"], 100);
    assert!(json["max_unavailable"].as_u64().unwrap() <= 100);
    assert_eq!(json["runs"], seeds(50));
}

#[test]
fn a_rolling_rollout_of_10000_agents_completes_within_ten_percent() {
    let s = sweep(
        30_000,
        seeds(2),
        10_000,
        Some(Kind::Rolling),
        Some(Amount::Percent(10)),
    );
    assert!(s.to_json()["max_unavailable"].as_u64().unwrap() <= 1000);
}

#[test]
fn requests_per_agent_do_not_grow_with_the_set() {
    let at = |agents, runs| {
        let s = sweep(
            40_000,
            runs,
            agents,
            Some(Kind::Rolling),
            Some(Amount::Percent(10)),
        );
        s.to_json()["requests_per_agent"]["median"]
            .as_f64()
            .unwrap()
    };
    let (small, large) = (at(100, 8), at(2000, 2));
    assert!(
        large < small * 1.5,
        "{small:.1} requests per agent with 100 agents, {large:.1} with 2,000"
    );
}

#[test]
fn a_seed_replays_exactly() {
    let sc = || Scenario::draw(77, 50, Kind::Newer, None);
    let (a, b) = (run(sc(), false), run(sc(), false));
    assert_eq!(
        (a.events, a.counts.clone(), a.duration, a.phase),
        (b.events, b.counts.clone(), b.duration, b.phase)
    );
    let other = run(Scenario::draw(78, 50, Kind::Newer, None), false);
    assert_ne!(a.events, other.events, "another seed is another run");
}

/// Runs `kind` with a broken agent and returns what the checks found.
fn sabotaged(sabotage: cairn_sim::Sabotage, kind: Kind) -> Outcome {
    let mut sc = Scenario::draw(5, 20, kind, Some(Amount::Count(2)));
    sc.faults = cairn_sim::Faults::none();
    sc.plan.on_failure = cairn_rollout::OnFailure::Halt;
    sc.sabotage = Some(sabotage);
    run(sc, false)
}

#[test]
fn the_checks_catch_an_agent_that_updates_without_a_slot() {
    let o = sabotaged(cairn_sim::Sabotage::IgnoreSlots, Kind::Rolling);
    let all = o.violations.join("; ");
    assert!(all.contains("starts a swap without a slot"), "{all}");
    let report = o.failure();
    assert!(
        report.contains(&format!("replay: {}", o.replay())),
        "{report}"
    );
    assert!(report.contains("--seed 5 --agents 20 --kind rolling --trace"));
    assert!(
        report.contains("VIOLATION"),
        "the trace ends at it:\n{report}"
    );
}

#[test]
fn the_checks_catch_a_swap_that_outlives_its_lease() {
    let o = sabotaged(cairn_sim::Sabotage::OverrunLeases, Kind::Rolling);
    let all = o.violations.join("; ");
    assert!(
        all.contains("slot was freed while it swaps") || all.contains("ended after its lease"),
        "{all}"
    );
}

#[test]
fn the_checks_catch_an_update_started_after_a_halt() {
    let o = sabotaged(cairn_sim::Sabotage::IgnoreHalts, Kind::BadRolling);
    let all = o.violations.join("; ");
    assert!(
        all.contains("starts an update decided in phase halted"),
        "{all}"
    );
}

/// A case the property test found: an at-once plan with rollback whose
/// members crash often and whose writes are sometimes applied late.
fn at_once_rollback_under_crashes() -> Scenario {
    use std::time::Duration;
    let mut sc = Scenario::draw(
        4204167393658212783,
        37,
        Kind::BadRolling,
        Some(Amount::Count(1)),
    );
    sc.plan.strategy = cairn_rollout::Strategy::AtOnce;
    sc.plan.on_failure = cairn_rollout::OnFailure::Rollback;
    sc.plan.gates = vec![];
    sc.plan.order = cairn_rollout::Order::Hashed;
    sc.faults = cairn_sim::Faults {
        crash_rate: 10.707010654895525,
        down_max: Duration::from_secs(7),
        lost_writes: 0.0,
        lost_replies: 0.024549995507278804,
        delayed_writes: 0.04457986255058689,
        delay_max: Duration::from_secs(3),
        outages: vec![],
        slow_health: 0.14263071901679017,
        max_skew: Duration::from_millis(1),
        late_joiners: 0.03496275995053134,
        until: Duration::from_secs(900),
    };
    sc
}

/// The steward once read a member's record still saying "updating to the
/// target" (the member had claimed its rollback slot and not yet rewritten
/// its record), took the rollback as done and freed the slot the member
/// was about to swap under.
#[test]
fn a_rollback_slot_is_not_freed_on_a_record_still_updating() {
    let o = run(at_once_rollback_under_crashes(), false);
    assert!(o.violations.is_empty(), "{}", o.failure());
    assert_eq!(o.phase, Some(cairn_rollout::Phase::RolledBack));
}
