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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Plan, Strategy};
    use crate::record::Lease;
    use cairn_digest::Digest;

    fn rollout(phase: Phase) -> RolloutRecord {
        let json = serde_json::json!({
            "target": Digest::of(b"t"), "sequence": 3, "strategy": Plan::default(),
            "phase": phase, "capacity": 1, "lease": 60, "created": 0, "updated": 0,
        });
        let mut r: RolloutRecord = serde_json::from_value(json).unwrap();
        r.steward = Some(Lease {
            member: "a".into(),
            expires: 10,
        });
        r
    }

    const NOW: Time = Time(5_000_000);

    #[test]
    fn a_paused_rollout_resumes_where_it_was() {
        let paused = pause(&rollout(Phase::Canary), NOW).unwrap();
        assert_eq!(
            (paused.phase, paused.resume_to),
            (Phase::Paused, Some(Phase::Canary))
        );
        assert_eq!(paused.steward, None);
        let resumed = resume(&paused, NOW).unwrap();
        assert_eq!((resumed.phase, resumed.resume_to), (Phase::Canary, None));
        assert_eq!(
            pause(&paused, NOW).unwrap_err(),
            OperatorError::NotPausable {
                phase: Phase::Paused
            }
        );
    }

    #[test]
    fn a_halted_rollout_resumes_in_the_phase_it_halted_in_and_a_bake_starts_over() {
        let mut halted = rollout(Phase::Halted);
        halted.strategy.strategy = Strategy::Canary {
            count: crate::plan::Amount::Count(1),
            bake: std::time::Duration::from_secs(60),
        };
        halted.halted = Some(Halt {
            member: Some("b".into()),
            reason: "b: unhealthy".into(),
            at: 1,
            phase: Phase::Baking,
        });
        halted.add_failure("b", "unhealthy", 1);
        let r = resume(&halted, NOW).unwrap();
        assert_eq!(r.phase, Phase::Baking);
        assert_eq!(r.bake_until, Some(NOW.secs() + 60));
        assert_eq!(r.halted, None);
        assert_eq!(r.failures.len(), 1, "the failure stays on record");
    }

    #[test]
    fn finished_or_rolled_back_rollouts_refuse_with_what_to_do() {
        for phase in [
            Phase::Done,
            Phase::RolledBack,
            Phase::Aborted,
            Phase::Rolling,
        ] {
            let err = resume(&rollout(phase), NOW).unwrap_err();
            assert!(matches!(err, OperatorError::NotResumable { .. }), "{phase}");
            assert!(err
                .to_string()
                .starts_with(&format!("the rollout is {phase}: ")));
        }
        let err = resume(&rollout(Phase::RolledBack), NOW).unwrap_err();
        assert!(
            err.to_string().contains("promote the release again"),
            "{err}"
        );
        for phase in [Phase::Done, Phase::Aborted, Phase::RolledBack] {
            assert!(abort(&rollout(phase), NOW).is_err(), "{phase}");
        }
    }

    #[test]
    fn an_abort_stops_everything_and_says_so() {
        let r = abort(&rollout(Phase::Rolling), NOW).unwrap();
        assert_eq!(r.phase, Phase::Aborted);
        let h = r.halted.unwrap();
        assert_eq!((h.member, h.phase), (None, Phase::Rolling));
        assert_eq!(h.reason, "aborted by an operator");
        assert_eq!(r.steward, None);
    }
}
