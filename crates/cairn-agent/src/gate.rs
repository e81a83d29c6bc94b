//! The one question a fleet rollout answers for an agent: may this member
//! update to the target now?
//!
//! The agent fetches and materializes an accepted release on its own (that
//! costs the service nothing), then asks its [`UpdateGate`] before it
//! swaps. Today's gate is [`Immediately`]: every member updates as soon as
//! it is ready. The fleet protocol (rollout slots, waves, canaries, gates
//! on other fleets) plugs in here: it answers [`Decision::Wait`] until the
//! member holds a slot, and hears how the update ended through
//! [`UpdateGate::finished`] so it can release the slot or halt the rollout.

use std::time::Duration;

use async_trait::async_trait;
use cairn_digest::Digest;
use cairn_rollout::MemberRecord;

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
    /// Whether the member may update to `request.target` now.
    async fn decide(&mut self, request: &UpdateRequest<'_>) -> Decision;

    /// The update to `target` ended.
    async fn finished(&mut self, _target: &Digest, _outcome: &Outcome) {}
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
