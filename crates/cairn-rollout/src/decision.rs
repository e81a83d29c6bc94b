//! What a decision asks the agent to do: a [`Decision`].
//!
//! Carry it out in order: if `reads` is not empty, do only the reads, add
//! the results to the view and decide again. Otherwise perform `writes`
//! one after the other, each a compare-and-swap against its expected
//! version; if one conflicts, or its outcome is unknown (a timeout, a lost
//! reply), stop, re-read and decide again: never act on a write that may
//! not have happened. When every write succeeded, put what was written
//! into the view (with the versions the store returned) and perform
//! `action`.

use std::fmt;
use std::time::Duration;

use cairn_digest::Digest;

use crate::record::{MemberRecord, RolloutRecord, Version};
use crate::time::Time;

/// One step of the protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Reads needed before anything else (then decide again).
    pub reads: Vec<Read>,
    /// Writes to make by compare-and-swap, in order.
    pub writes: Vec<Write>,
    /// What to do once the writes succeeded.
    pub action: Action,
}

/// A read a decision needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read {
    /// List the set's member ids (the `members/` prefix) into
    /// [`crate::View::members`].
    Members,
    /// Read these members' records into [`crate::View::peers`].
    Records(Vec<String>),
    /// Read another set's state into [`crate::View::fleets`] (for
    /// example with [`crate::FleetFact::from_rollout`]).
    Fleet {
        /// Its service.
        service: String,
        /// Its deployment set.
        set: String,
    },
}

/// A compare-and-swap of one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// The set's rollout record.
    Rollout {
        /// The version read (`None`: the ref must not exist).
        expected: Option<Version>,
        /// The new record.
        record: Box<RolloutRecord>,
    },
    /// This agent's member record.
    Member {
        /// The version read (`None`: the ref must not exist).
        expected: Option<Version>,
        /// The new record.
        record: Box<MemberRecord>,
    },
}

/// What the agent does on its own machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing now: decide again at `until`, or sooner when a ref changes
    /// or a local fact does (health, a finished fetch).
    Wait {
        /// When to decide again (at the latest when the member record's
        /// heartbeat is due).
        until: Time,
        /// When to read the rollout record again; a decision before then
        /// (a heartbeat) may use the record already read.
        refresh: Time,
        /// Why, for status and logs.
        reason: Reason,
    },
    /// Fetch the release into the local store (before the turn comes, so
    /// the slot is held only for the swap).
    Fetch {
        /// The release.
        release: Digest,
    },
    /// Swap to the release, check its health, and on failure switch back
    /// and record the failure ([`crate::Local::failed`]). It must be over
    /// (healthy, or back on the previous release) by `finish_by`, when the
    /// slot's lease ends. Do not decide again until it is over.
    Update {
        /// The release.
        release: Digest,
        /// The lease's end.
        finish_by: Time,
    },
    /// Return to the release that ran before, by `finish_by`.
    RollBack {
        /// The release to return to.
        to: Digest,
        /// The lease's end.
        finish_by: Time,
    },
    /// Run a gate's check command and record its result
    /// ([`crate::Local::checks`]).
    RunCheck {
        /// The gate's index in the plan.
        gate: usize,
        /// The wave it is run before.
        wave: u32,
        /// The command line.
        command: Vec<String>,
        /// Time allowed.
        timeout: Duration,
    },
}

/// Why an agent waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// It has accepted no channel statement.
    NoStatement,
    /// The set rolls out a newer statement this agent has not accepted.
    NewerRollout(u64),
    /// The rollout record cannot be read.
    Unreadable(String),
    /// Reading or writing records; decide again at once.
    Working,
    /// Runs the target; nothing to do.
    OnTarget,
    /// Its turn has not come (about this many members are ahead).
    Turn(u32),
    /// Its turn came; every slot is taken.
    NoRoom,
    /// The canaries bake until then.
    Baking(Time),
    /// The next wave waits on these gates.
    Gates(Vec<String>),
    /// The rollout halted, for this reason.
    Halted(String),
    /// An operator paused the rollout.
    Paused,
    /// An operator aborted the rollout.
    Aborted,
    /// The target failed here; not retried until a newer statement.
    FailedHere,
    /// The rollout was rolled back; this member is on its previous release.
    RolledBack,
    /// A rollback is under way; this member's turn has not come.
    RollbackTurn,
    /// A rollback wants this member back but it has no previous release.
    NoPrevious,
    /// The rollout record allows more than this member's own plan does
    /// (more slots held, more canaries); it waits for room by its own.
    Cautious(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NoStatement => f.write_str("no channel statement accepted yet"),
            Reason::NewerRollout(s) => write!(
                f,
                "the set rolls out statement {s}, which this agent has not accepted yet"
            ),
            Reason::Unreadable(e) => write!(f, "the rollout record cannot be read: {e}"),
            Reason::Working => f.write_str("updating the fleet records"),
            Reason::OnTarget => f.write_str("running the rollout's target"),
            Reason::Turn(ahead) => write!(f, "waiting for its turn (about {ahead} members ahead)"),
            Reason::NoRoom => f.write_str("its turn came; waiting for a free slot"),
            Reason::Baking(t) => write!(
                f,
                "the canaries bake until {}",
                crate::plan_wire::rfc3339(*t)
            ),
            Reason::Gates(g) => write!(f, "waiting on {}", g.join(", ")),
            Reason::Halted(r) => write!(f, "the rollout halted: {r}"),
            Reason::Paused => f.write_str("the rollout is paused"),
            Reason::Aborted => f.write_str("the rollout was aborted"),
            Reason::FailedHere => f.write_str(
                "the target failed its health check here; it is not retried until a newer statement",
            ),
            Reason::RolledBack => f.write_str("the rollout was rolled back"),
            Reason::RollbackTurn => f.write_str("waiting for its turn to roll back"),
            Reason::NoPrevious => f.write_str("no previous release to roll back to"),
            Reason::Cautious(why) => write!(f, "{why}; waiting for room"),
        }
    }
}

impl Write {
    /// The record as the JSON to store.
    pub fn to_json(&self) -> Vec<u8> {
        match self {
            Write::Rollout { record, .. } => record.to_json(),
            Write::Member { record, .. } => record.to_json(),
        }
    }

    /// The version the write expects.
    pub fn expected(&self) -> Option<&Version> {
        match self {
            Write::Rollout { expected, .. } | Write::Member { expected, .. } => expected.as_ref(),
        }
    }
}

impl Action {
    /// Whether the action keeps the agent busy past its next poll (a
    /// steward hands its lease on rather than leave the rollout waiting).
    pub fn is_long(&self) -> bool {
        !matches!(self, Action::Wait { .. })
    }
}
