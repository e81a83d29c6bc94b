//! What one run simulates: the set, the releases, the plan, and the faults,
//! all drawn from the seed (so a seed names a run completely).

use std::fmt;
use std::time::Duration;

use cairn_rollout::{Amount, Gate, OnFailure, Order, Plan, Strategy, Time};

use crate::rng::Rng;

/// The kinds of run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A good release, rolling; it must complete.
    Rolling,
    /// A good release behind a canary; it must complete.
    Canary,
    /// A good release to everyone at once; it must complete.
    AtOnce,
    /// A release that fails on every member, behind a canary: one canary
    /// fails, the rollout halts (or rolls back) and the others never try.
    BadCanary,
    /// A release that fails on some members, rolling: it halts or rolls
    /// back at the first failure.
    BadRolling,
    /// A good release; a few members fail their health check once; an
    /// operator resumes each halt, and the rest complete.
    Flaky,
    /// A newer statement arrives mid-rollout; everyone ends on it.
    Newer,
    /// Gates: a freeze window, a fleet gate, a check that fails at first.
    Gated,
    /// An operator pauses and resumes mid-rollout, and aborts some runs.
    Operator,
    /// A good release, rolling; every third member's configuration
    /// overrides the plan with one at a time (its own capacity is the
    /// smaller one, the record's the release's): it must complete.
    Mixed,
}

impl Kind {
    /// Every kind, for mixed sweeps.
    pub const ALL: [Kind; 10] = [
        Kind::Rolling,
        Kind::Canary,
        Kind::AtOnce,
        Kind::BadCanary,
        Kind::BadRolling,
        Kind::Flaky,
        Kind::Newer,
        Kind::Gated,
        Kind::Operator,
        Kind::Mixed,
    ];

    /// Parses a kind's name.
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.to_string() == name)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Rolling => "rolling",
            Kind::Canary => "canary",
            Kind::AtOnce => "at-once",
            Kind::BadCanary => "bad-canary",
            Kind::BadRolling => "bad-rolling",
            Kind::Flaky => "flaky",
            Kind::Newer => "newer",
            Kind::Gated => "gated",
            Kind::Operator => "operator",
            Kind::Mixed => "mixed",
        })
    }
}

/// The faults injected into a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Faults {
    /// Agent crashes per agent per hour.
    pub crash_rate: f64,
    /// How long a crashed agent stays down, at most.
    pub down_max: Duration,
    /// Share of writes lost before they reach the store.
    pub lost_writes: f64,
    /// Share of writes applied whose reply is lost.
    pub lost_replies: f64,
    /// Share of writes applied late (up to `delay_max`).
    pub delayed_writes: f64,
    /// The longest delay of a delayed write.
    pub delay_max: Duration,
    /// Windows in which the store answers nothing: (start after the
    /// promotion, length).
    pub outages: Vec<(Duration, Duration)>,
    /// Share of swaps that are slow (near the health deadline, in time).
    pub slow_health: f64,
    /// The most an agent's clock is off the true time.
    pub max_skew: Duration,
    /// Share of members that join only after the rollout started.
    pub late_joiners: f64,
    /// No fault starts after this long past the promotion.
    pub until: Duration,
}

impl Faults {
    /// No faults at all.
    pub fn none() -> Self {
        Self {
            crash_rate: 0.0,
            down_max: Duration::ZERO,
            lost_writes: 0.0,
            lost_replies: 0.0,
            delayed_writes: 0.0,
            delay_max: Duration::ZERO,
            outages: Vec::new(),
            slow_health: 0.0,
            max_skew: Duration::ZERO,
            late_joiners: 0.0,
            until: Duration::ZERO,
        }
    }

    /// A fault schedule drawn from `rng`.
    pub fn draw(rng: &mut Rng) -> Self {
        let outages = (0..rng.range(0, 3))
            .map(|_| {
                let start = Duration::from_secs(rng.range(5, 600) as u64);
                (start, Duration::from_secs(rng.range(2, 45) as u64))
            })
            .collect();
        Self {
            crash_rate: *rng.pick(&[0.0, 1.0, 4.0, 12.0]),
            down_max: Duration::from_secs(rng.range(5, 240) as u64),
            lost_writes: *rng.pick(&[0.0, 0.01, 0.05]),
            lost_replies: *rng.pick(&[0.0, 0.01, 0.05]),
            delayed_writes: *rng.pick(&[0.0, 0.02, 0.1]),
            delay_max: Duration::from_millis(rng.range(200, 4000) as u64),
            outages,
            slow_health: *rng.pick(&[0.0, 0.1, 0.3]),
            max_skew: Duration::from_millis(*rng.pick(&[0, 500, 2000])),
            late_joiners: *rng.pick(&[0.0, 0.02, 0.1]),
            until: Duration::from_secs(900),
        }
    }
}

/// A deliberately broken agent, to show the checks catch what they claim
/// to (never drawn from a seed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sabotage {
    /// Agents update as soon as they have fetched, holding no slot.
    IgnoreSlots,
    /// Swaps run on past the end of their lease.
    OverrunLeases,
    /// Agents that hold a slot update even after the rollout halted.
    IgnoreHalts,
}

/// Everything a run is made of.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The seed it was drawn from.
    pub seed: u64,
    /// Members in the set.
    pub agents: u32,
    /// What kind of run.
    pub kind: Kind,
    /// The plan the release carries.
    pub plan: Plan,
    /// The faults.
    pub faults: Faults,
    /// The health deadline of a swap (a swap still unhealthy then fails).
    pub deadline: Duration,
    /// When the other set of a fleet gate becomes healthy (after the
    /// promotion).
    pub fleet_ready: Duration,
    /// How many times the check gate fails before it passes.
    pub check_failures: u32,
    /// A broken agent, for testing the checks.
    pub sabotage: Option<Sabotage>,
}

/// The member id of member `i`.
pub fn member_id(i: u32) -> String {
    format!("m{i:05}")
}

impl Scenario {
    /// The run of `kind` with `agents` members drawn from `seed`;
    /// `max_unavailable` overrides the drawn one.
    pub fn draw(seed: u64, agents: u32, kind: Kind, max_unavailable: Option<Amount>) -> Self {
        let mut rng = Rng::new(seed).fork(1);
        let mut faults = Faults::draw(&mut rng);
        let unavailable = max_unavailable.unwrap_or(*rng.pick(&[
            Amount::Count(1),
            Amount::Count(2),
            Amount::Percent(10),
            Amount::Percent(25),
        ]));
        let canary = Strategy::Canary {
            count: *rng.pick(&[Amount::Count(1), Amount::Count(3), Amount::Percent(5)]),
            bake: Duration::from_secs(rng.range(10, 120) as u64),
        };
        let on_failure = *rng.pick(&[OnFailure::Halt, OnFailure::Rollback]);
        let mut plan = Plan {
            strategy: Strategy::Rolling,
            max_unavailable: unavailable,
            on_failure,
            gates: Vec::new(),
            order: Order::Hashed,
        };
        match kind {
            // The operator resumes each halt; a rollback would end it.
            Kind::Flaky => plan.on_failure = OnFailure::Halt,
            Kind::Canary | Kind::BadCanary => plan.strategy = canary,
            Kind::AtOnce => plan.strategy = Strategy::AtOnce,
            Kind::Gated => {
                let from = rng.range(20, 200);
                let window = rng.range(30, 300);
                let t0 = promotion();
                plan.gates = vec![
                    Gate::Freeze {
                        from: t0.plus(Duration::from_secs(from as u64)),
                        until: t0.plus(Duration::from_secs((from + window) as u64)),
                    },
                    Gate::Fleet {
                        service: "db".into(),
                        set: "eu".into(),
                        release: None,
                    },
                    Gate::Check {
                        command: vec!["bin/ready".into()],
                        timeout: Duration::from_secs(10),
                    },
                ];
            }
            _ => {}
        }
        if rng.chance(0.2) && agents > 3 {
            plan.order = Order::Pinned(vec![member_id(agents - 1), member_id(0)]);
        }
        if matches!(kind, Kind::AtOnce) {
            // Everyone updates together: crashes mid-swap are the point;
            // keep the rest of the schedule.
            faults.slow_health = faults.slow_health.min(0.1);
        }
        Self {
            seed,
            agents,
            kind,
            plan,
            faults,
            deadline: Duration::from_secs(20),
            fleet_ready: Duration::from_secs(rng.range(0, 400) as u64),
            check_failures: rng.range(0, 2) as u32,
            sabotage: None,
        }
    }

    /// Whether the rollout must end with every member on the target.
    pub fn must_complete(&self) -> bool {
        matches!(
            self.kind,
            Kind::Rolling
                | Kind::Canary
                | Kind::AtOnce
                | Kind::Newer
                | Kind::Gated
                | Kind::Flaky
                | Kind::Mixed
        )
    }

    /// The plan member `a` follows for a statement of `plan`: its
    /// configuration's override, in a mixed run, for every third member.
    pub fn own_plan(&self, a: usize, plan: &Plan) -> Plan {
        match self.kind {
            Kind::Mixed if a.is_multiple_of(3) => Plan {
                max_unavailable: Amount::Count(1),
                ..plan.clone()
            },
            _ => plan.clone(),
        }
    }
}

/// When the release is promoted (simulated time starts at 0).
pub fn promotion() -> Time {
    Time(1_800_000_000_000)
}
