//! What the agent is doing, as a small state machine with its transitions
//! written down ([`Phase::may_become`]), so that what drives the agent (its
//! own loop today, a fleet rollout later) can only move it along edges
//! that exist.
//!
//! ```text
//!  Starting ──► Idle ◄──────────────┐ ◄──────────────┐
//!     │          │                  │                │
//!     │          ▼                  │                │
//!     │       Fetching ──► Waiting ─┤                │
//!     │          │  ▲         │     │                │
//!     │          │  └─────────┘     │                │
//!     │          ▼                  │                │
//!     │       Updating ─────────────┘──► RollingBack ┘
//!     │          │                            │
//!     ▼          ▼                            ▼
//!   Failed ◄───────────────────────────────────      (nothing serves)
//!  (any) ──► Stopping
//! ```
//!
//! One more edge: Idle or Waiting ──► RollingBack, when the set's rollout
//! rolls back and this member returns to its previous release.

use cairn_digest::Digest;
use cairn_rollout::MemberState;

/// The agent's phase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Adopting or starting what should run.
    Starting,
    /// Running its current release (or nothing yet); nothing to do.
    Idle,
    /// Copying and materializing the target.
    Fetching(Digest),
    /// The target is ready; the gate said wait.
    Waiting(Digest),
    /// Swapping to the target and checking its health.
    Updating(Digest),
    /// Going back after the target failed.
    RollingBack(Digest),
    /// Nothing serves and the agent could not start anything; it retries.
    Failed,
    /// Shutting down.
    Stopping,
}

impl Phase {
    /// Whether the agent may go from `self` to `next`.
    pub fn may_become(&self, next: &Phase) -> bool {
        use Phase::*;
        matches!(
            (self, next),
            (_, Stopping)
                | (Starting, Idle | Failed)
                | (Idle | Failed | Waiting(_), Fetching(_))
                | (Fetching(_), Waiting(_) | Updating(_) | Idle | Failed)
                | (Waiting(_), Idle)
                | (Updating(_), Idle | RollingBack(_) | Failed)
                | (RollingBack(_), Idle | Failed)
                | (Idle | Waiting(_), RollingBack(_))
                | (Idle, Failed)
                | (Failed, Idle)
        )
    }

    /// The state a member record reports.
    pub fn member_state(&self) -> MemberState {
        match self {
            Phase::Starting => MemberState::Starting,
            Phase::Idle => MemberState::Running,
            Phase::Fetching(_) => MemberState::Fetching,
            Phase::Waiting(_) => MemberState::Waiting,
            Phase::Updating(_) => MemberState::Updating,
            Phase::RollingBack(_) => MemberState::RollingBack,
            Phase::Failed => MemberState::Failed,
            Phase::Stopping => MemberState::Stopped,
        }
    }

    /// The release being moved to, if any.
    pub fn target(&self) -> Option<Digest> {
        match self {
            Phase::Fetching(d) | Phase::Waiting(d) | Phase::Updating(d) | Phase::RollingBack(d) => {
                Some(*d)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_follow_the_diagram() {
        let t = Digest::of(b"t");
        use Phase::*;
        let path = [
            Starting,
            Idle,
            Fetching(t),
            Waiting(t),
            Fetching(t),
            Updating(t),
            RollingBack(t),
            Idle,
            Stopping,
        ];
        for w in path.windows(2) {
            assert!(w[0].may_become(&w[1]), "{:?} -> {:?}", w[0], w[1]);
        }
        assert!(!Idle.may_become(&Updating(t)), "no swap without a fetch");
        assert!(!Starting.may_become(&Updating(t)));
        assert!(
            !Waiting(t).may_become(&Updating(t)),
            "the gate is asked after fetching"
        );
        assert_eq!(RollingBack(t).member_state(), MemberState::RollingBack);
        assert_eq!(Updating(t).target(), Some(t));
    }
}
