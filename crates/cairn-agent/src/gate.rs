//! The one question a fleet rollout answers for an agent: may this member
//! update to the target now?
//!
//! The agent fetches and materializes an accepted release on its own (that
//! costs the service nothing), then asks its [`UpdateGate`] before it
//! swaps. [`Immediately`] lets every member update as soon as it is
//! ready (no coordination); [`crate::fleet::Fleet`] runs the fleet
//! protocol: it answers [`Decision::Wait`] until the member holds a slot,
//! hears how the update ended through [`UpdateGate::finished`], and asks
//! the agent for a rollback through [`UpdateGate::command`] when the
//! rollout rolls back.

use std::time::Duration;

use async_trait::async_trait;
use cairn_digest::Digest;
use cairn_rollout::MemberRecord;
use cairn_store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::status::Status;

/// What a gate may use once the agent runs.
pub struct GateContext {
    /// The store the agent follows.
    pub store: Store,
    /// The service.
    pub service: String,
    /// The deployment set.
    pub set: String,
    /// This agent's id.
    pub agent: String,
    /// The agent's status as it changes.
    pub status: watch::Receiver<Status>,
    /// The channel's policy and keys, for what the store claims to have
    /// been signed (a rollout record's statement).
    pub trust: crate::fleet::Trust,
}

/// What a gate asks the agent to do between updates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Read the channel and ask the gate again (a slot was granted).
    Recheck,
    /// Return to the kept generation of this release (the rollout rolls
    /// back), then report through [`UpdateGate::finished`].
    RollBack {
        /// The release to return to.
        to: Digest,
    },
}

/// What the agent asks.
#[derive(Debug)]
pub struct UpdateRequest<'a> {
    /// The service.
    pub service: &'a str,
    /// The deployment set.
    pub set: &'a str,
    /// This agent's id.
    pub agent: &'a str,
    /// The release to move to.
    pub target: Digest,
    /// The channel sequence it was accepted at.
    pub sequence: u64,
    /// This member's record as it stands.
    pub member: &'a MemberRecord,
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Update now.
    Proceed,
    /// Not now; ask again after `retry_after` (or on the next change).
    Wait {
        /// Why, for the member record and the log.
        reason: String,
        /// When to ask again at the latest.
        retry_after: Duration,
    },
}

/// How an update ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The new release serves.
    Swapped,
    /// It failed and the previous one serves again (or nothing did before).
    RolledBack(String),
    /// It was abandoned before anything was switched (a hook said no).
    Aborted(String),
}

/// Decides when a member may update.
#[async_trait]
pub trait UpdateGate: Send {
    /// The agent runs: start whatever the gate needs. A gate that returns
    /// a task writes the member record itself (the agent then does not),
    /// and the task ends once it wrote the record of a stopped member.
    fn start(&mut self, _context: GateContext) -> Option<JoinHandle<()>> {
        None
    }

    /// The agent accepted a channel statement (new or read again).
    fn accepted(&mut self, _accepted: &cairn_release::Accepted) {}

    /// Whether the member may update to `request.target` now.
    async fn decide(&mut self, request: &UpdateRequest<'_>) -> Decision;

    /// The update to `target` ended.
    async fn finished(&mut self, _target: &Digest, _outcome: &Outcome) {}

    /// Resolves when the gate wants something of the agent.
    async fn command(&mut self) -> Command {
        std::future::pending().await
    }
}

/// Every member updates as soon as it is ready (no fleet coordination).
#[derive(Clone, Copy, Debug, Default)]
pub struct Immediately;

#[async_trait]
impl UpdateGate for Immediately {
    async fn decide(&mut self, _request: &UpdateRequest<'_>) -> Decision {
        Decision::Proceed
    }
}
