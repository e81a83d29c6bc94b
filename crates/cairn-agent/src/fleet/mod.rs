//! The fleet protocol, driven: the [`Fleet`] gate.
//!
//! `cairn_rollout` decides; this module does the I/O it asks for. A
//! driver task (`driver.rs`) runs the loop the crate docs of
//! `cairn_rollout` describe: read the set's rollout record (and this
//! agent's member record when its version is not known), decide, do the
//! reads a decision asks for, write by compare-and-swap through the
//! store's `RefStore` (starting over on a conflict), then act. It is the
//! only writer of this agent's member record, so heartbeats, the
//! rollout's creation, the steward's work and slot claims all go through
//! one loop.
//!
//! The agent keeps doing what it did: it follows the channel, fetches and
//! materializes the accepted release, then asks this gate before it
//! swaps. The gate answers from what the driver decided: `Proceed` only
//! while the driver holds an update slot whose lease still covers the
//! whole swap budget, `Wait` (with the protocol's reason) otherwise. The
//! driver wakes the agent when a slot is granted ([`Command::Recheck`]),
//! asks it to return to its previous release when the rollout rolls back
//! ([`Command::RollBack`]), and does not decide while a swap is under way;
//! the agent's [`Outcome`] (through its state, whose failed releases the
//! driver reads) tells the protocol whether the member failed, which
//! halts the rollout.
//!
//! The plan is the set's `[deploy]` in agent.toml when given, else the
//! release's `deploy`, else [`Plan::default`]. The swap budget is computed
//! from the release's run specification ([`swap_budget`]).

mod check;
mod claims;
mod driver;
mod io;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use cairn_digest::Digest;
use cairn_recipe::RunSpec;
use cairn_rollout::{Accepted, Plan, Time};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub use claims::{Trust, Unbacked};

use crate::config::FleetTiming;
use crate::gate::{Command, Decision, GateContext, Outcome, UpdateGate, UpdateRequest};
use crate::status::now_ms;

/// Time allowed for a new process to start, on top of its health check's
/// deadline and bake and the old process's stop grace.
const START: Duration = Duration::from_secs(5);

/// The longest an update or a rollback of a release with run
/// specification `run` may take: start, health deadline and bake, and the
/// old process's stop grace. A slot's lease covers it.
pub fn swap_budget(run: &RunSpec) -> Duration {
    let health = run
        .health
        .as_ref()
        .map_or(Duration::ZERO, |h| h.deadline + h.bake);
    START + health + run.stop.grace
}

/// What the driver granted the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Grant {
    /// Update to the release; the swap must be over by `finish_by`.
    Update { release: Digest, finish_by: Time },
    /// Return to the release by `finish_by`.
    RollBack { to: Digest, finish_by: Time },
}

/// What the gate (called by the agent's loop) and the driver share.
#[derive(Debug, Default)]
struct Shared {
    /// The newest statement accepted, as the protocol sees it.
    accepted: Option<Accepted>,
    /// The swap budget of the accepted release.
    budget: Duration,
    /// Releases fetched and materialized (the agent asked to swap to them).
    fetched: Vec<Digest>,
    /// A grant the agent has not taken yet.
    grant: Option<Grant>,
    /// The agent is carrying a grant out.
    busy: bool,
    /// Why the member waits, as the driver last decided.
    reason: Option<String>,
    /// The accepted release's failed attempt here, as the gate heard it
    /// (before the agent's status says so).
    failed: Option<cairn_rollout::Attempt>,
}

/// The fleet protocol as an [`UpdateGate`].
pub struct Fleet {
    timing: FleetTiming,
    plan: Option<Plan>,
    shared: Arc<Mutex<Shared>>,
    /// Wakes the driver (a fetch finished, a swap ended, a new statement).
    to_driver: Arc<Notify>,
    /// Wakes the agent (a grant).
    to_agent: Arc<Notify>,
}

impl Fleet {
    /// A gate with these intervals and, if the set overrides the
    /// releases' plans, that plan.
    pub fn new(timing: FleetTiming, plan: Option<Plan>) -> Self {
        Self {
            timing,
            plan,
            shared: Arc::default(),
            to_driver: Arc::new(Notify::new()),
            to_agent: Arc::new(Notify::new()),
        }
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        lock(&self.shared)
    }

    fn plan_of(&self, a: &cairn_release::Accepted) -> Plan {
        if let Some(p) = &self.plan {
            return p.clone();
        }
        match a.release.deploy.as_ref().map(Plan::from_json) {
            None => Plan::default(),
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                tracing::error!(
                    "release {}: its deploy section: {e}; rolling out one member at a time",
                    a.release_digest
                );
                Plan::default()
            }
        }
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

#[async_trait]
impl UpdateGate for Fleet {
    fn start(&mut self, cx: GateContext) -> Option<JoinHandle<()>> {
        let driver = driver::Driver::new(
            cx,
            &self.timing,
            self.shared.clone(),
            self.to_driver.clone(),
            self.to_agent.clone(),
        );
        Some(tokio::spawn(driver.run()))
    }

    fn accepted(&mut self, a: &cairn_release::Accepted) {
        let plan = self.plan_of(a);
        let budget = swap_budget(&a.run);
        let (release, sequence) = (a.release_digest, a.statement.statement.sequence);
        let mut sh = self.shared();
        sh.budget = budget;
        let same = sh
            .accepted
            .as_ref()
            .is_some_and(|o| o.release == release && o.sequence == sequence && o.plan == plan);
        if same {
            return;
        }
        let at = match &sh.accepted {
            Some(o) if o.release == release && o.sequence == sequence => o.at,
            _ => Time(now_ms()),
        };
        sh.accepted = Some(Accepted {
            release,
            sequence,
            version: Some(a.release.version.clone()),
            plan,
            at,
            statement: String::from_utf8(a.statement_envelope.to_json()).ok(),
        });
        drop(sh);
        self.to_driver.notify_one();
    }

    async fn decide(&mut self, request: &UpdateRequest<'_>) -> Decision {
        let now = Time(now_ms());
        let mut sh = self.shared();
        if !sh.fetched.contains(&request.target) {
            sh.fetched.push(request.target);
            self.to_driver.notify_one();
        }
        if let Some(Grant::Update { release, finish_by }) = sh.grant.clone() {
            if release == request.target && now.plus(sh.budget) <= finish_by {
                sh.grant = None;
                sh.busy = true;
                return Decision::Proceed;
            }
            // For another release, or seen too late to fit: the driver
            // decides again (renewing the lease, or not).
            sh.grant = None;
            self.to_driver.notify_one();
        }
        Decision::Wait {
            reason: sh
                .reason
                .clone()
                .unwrap_or_else(|| "waiting for the rollout".into()),
            retry_after: self.timing.idle_poll,
        }
    }

    async fn finished(&mut self, target: &Digest, outcome: &Outcome) {
        let mut sh = self.shared();
        sh.busy = false;
        if !matches!(outcome, Outcome::Swapped) {
            let sequence = sh
                .accepted
                .as_ref()
                .filter(|a| a.release == *target)
                .map(|a| a.sequence);
            if let Some(sequence) = sequence {
                sh.failed = Some(cairn_rollout::Attempt {
                    release: *target,
                    sequence,
                });
            }
        }
        drop(sh);
        self.to_driver.notify_one();
    }

    async fn command(&mut self) -> Command {
        loop {
            self.to_agent.notified().await;
            let mut sh = self.shared();
            match sh.grant.clone() {
                Some(Grant::RollBack { to, .. }) if !sh.busy => {
                    sh.grant = None;
                    sh.busy = true;
                    return Command::RollBack { to };
                }
                Some(Grant::Update { .. }) => return Command::Recheck,
                _ => {}
            }
        }
    }
}
