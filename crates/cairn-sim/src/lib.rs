//! Deterministic simulation of cairn's rollout protocol.
//!
//! A run puts a deployment set of simulated agents (10 to 10,000) in front
//! of an in-memory compare-and-swap store, promotes a release, and lets
//! them roll it out by running `cairn_rollout::decide` exactly as the real
//! agent does, while it injects faults: agent crashes and restarts (an
//! interrupted swap, a lost lease), slow and failing health checks, writes
//! lost before the store, writes applied whose reply is lost, writes
//! applied late (even after their agent gave up on them), store outages,
//! members joining late, and clocks off the true time by up to a stated
//! bound. Time is virtual and every choice comes from the seed, so a run
//! is a function of `(seed, agents, kind)`: a failing seed replays
//! exactly, with its trace (`cairn-sim --seed N --agents N --kind K
//! --trace`).
//!
//! The invariants ([`check`]) are checked as the run goes, after every
//! step; convergence is checked at the end. Each run reports the store
//! operations per agent from the promotion until the set converged, and
//! how long that took in simulated time.

pub mod agent;
pub mod check;
mod converge;
mod io;
mod machine;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod store;
pub mod trace;
pub mod world;

pub use report::{Outcome, Summary};
pub use scenario::{Faults, Kind, Sabotage, Scenario};

/// Runs one scenario to its end.
pub fn run(scenario: Scenario, live_trace: bool) -> Outcome {
    world::World::new(scenario, live_trace).run()
}
