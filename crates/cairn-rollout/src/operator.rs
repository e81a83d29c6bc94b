//! What an operator can do to a rollout: pause, resume, abort.
//!
//! Each is a function from the rollout record as read to the record to
//! write back by compare-and-swap (`cairn rollout pause|resume|abort`
//! does the I/O). Slots already held stay held: members in the middle of
//! a swap finish it, and nobody starts a new one until the rollout moves
//! forward again.

use crate::record::{Halt, Phase, RolloutRecord};
use crate::time::Time;

/// Why an operator's request does not apply to the rollout as it stands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperatorError {
    /// Only a rollout moving forward or rolling back can be paused.
    #[error("the rollout is {phase}: only a rollout in progress can be paused")]
    NotPausable {
        /// The phase it is in.
        phase: Phase,
    },
    /// Only a paused or halted rollout can be resumed.
    #[error("the rollout is {phase}: {hint}")]
    NotResumable {
        /// The phase it is in.
        phase: Phase,
        /// What to do instead.
        hint: &'static str,
    },
    /// A finished rollout cannot be aborted.
    #[error("the rollout is {phase}: there is nothing to abort")]
    NotAbortable {
        /// The phase it is in.
        phase: Phase,
    },
}

/// Pauses a rollout in progress: no new update starts until it resumes.
pub fn pause(record: &RolloutRecord, now: Time) -> Result<RolloutRecord, OperatorError> {
    let phase = record.phase;
    if !(phase.is_forward() || phase == Phase::RollingBack) {
        return Err(OperatorError::NotPausable { phase });
    }
    let mut r = record.clone();
    r.phase = Phase::Paused;
    r.resume_to = Some(phase);
    r.steward = None;
    r.gates.clear();
    r.updated = now.secs();
    Ok(r)
}

/// Resumes a paused rollout where it was, or a halted one in the phase it
/// halted in (a bake starts over). The members that failed are not tried
/// again: their agents hold the failure until a newer statement.
pub fn resume(record: &RolloutRecord, now: Time) -> Result<RolloutRecord, OperatorError> {
    let phase = record.phase;
    let mut r = record.clone();
    let to = match phase {
        Phase::Paused => record.resume_to.unwrap_or(Phase::Rolling),
        Phase::Halted => record.halted.as_ref().map_or(Phase::Rolling, |h| h.phase),
        _ => {
            let hint = match phase {
                Phase::Done => "there is nothing to resume",
                Phase::RollingBack | Phase::RolledBack => {
                    "a rolled back rollout does not resume; promote the release again to retry it"
                }
                Phase::Aborted => {
                    "an aborted rollout does not resume; promote the release again to retry it"
                }
                _ => "it is not paused or halted",
            };
            return Err(OperatorError::NotResumable { phase, hint });
        }
    };
    if to == Phase::Baking && phase == Phase::Halted {
        if let crate::plan::Strategy::Canary { bake, .. } = r.strategy.strategy {
            r.bake_until = Some(now.plus(bake).secs_ceil());
        }
    }
    r.phase = to;
    r.resume_to = None;
    if phase == Phase::Halted {
        r.halted = None;
    }
    r.steward = None;
    r.updated = now.secs();
    Ok(r)
}

/// Aborts a rollout: no new update starts, and it never resumes (a newer
/// statement starts a new one). Members keep what they run; to go back,
/// promote the older release.
pub fn abort(record: &RolloutRecord, now: Time) -> Result<RolloutRecord, OperatorError> {
    let phase = record.phase;
    if matches!(phase, Phase::Done | Phase::Aborted | Phase::RolledBack) {
        return Err(OperatorError::NotAbortable { phase });
    }
    let mut r = record.clone();
    let from = match phase {
        Phase::Paused => record.resume_to.unwrap_or(Phase::Rolling),
        Phase::Halted => record.halted.as_ref().map_or(phase, |h| h.phase),
        p => p,
    };
    r.halted = Some(Halt {
        member: None,
        reason: "aborted by an operator".into(),
        at: now.secs(),
        phase: from,
    });
    r.phase = Phase::Aborted;
    r.resume_to = None;
    r.steward = None;
    r.gates.clear();
    r.updated = now.secs();
    Ok(r)
}
