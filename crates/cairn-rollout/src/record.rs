//! The records agents write into the store, and their ref names.
//!
//! ```text
//! fleet/<service>/<set>/members/<agent>   a MemberRecord, heartbeated
//! fleet/<service>/<set>/rollout           a RolloutRecord
//! ```
//!
//! Records are JSON. Fields are added over time, so unknown fields are
//! ignored when read (an older agent must not refuse a newer member's
//! record), and every field added later has a default.

mod rollout;

pub(crate) use rollout::expired;

use cairn_digest::Digest;
use serde::{Deserialize, Serialize};

pub use rollout::{
    Failure, Halt, Lease, Phase, Position, RolloutRecord, Slot, SlotKind, Wave, MAX_CAPACITY,
    MAX_FAILURES,
};

/// The ref holding one agent's member record.
pub fn member_ref(service: &str, set: &str, agent: &str) -> String {
    format!("{}{agent}", members_prefix(service, set))
}

/// The prefix under which a deployment set's member records are listed.
pub fn members_prefix(service: &str, set: &str) -> String {
    format!("fleet/{service}/{set}/members/")
}

/// The ref holding a deployment set's rollout record.
pub fn rollout_ref(service: &str, set: &str) -> String {
    format!("fleet/{service}/{set}/rollout")
}

/// The opaque version a ref was read at (the store's counter or ETag),
/// handed back with a compare-and-swap.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Version(pub String);

/// A record together with the version of the ref it was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The ref's version.
    pub version: Version,
    /// The record.
    pub value: T,
}

/// One attempt to run a release: which, and from which channel statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// The release.
    pub release: Digest,
    /// The sequence number of the statement it was accepted from.
    pub sequence: u64,
}

/// What one agent reports about itself (`fleet/<service>/<set>/members/<id>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// The agent's id (the last segment of the ref name).
    pub agent: String,
    /// The release running now, if any.
    #[serde(default)]
    pub release: Option<Digest>,
    /// Its version label.
    #[serde(default)]
    pub version: Option<String>,
    /// The channel sequence of the statement that release was accepted from.
    #[serde(default)]
    pub sequence: Option<u64>,
    /// The local generation number it runs from.
    #[serde(default)]
    pub generation: Option<u64>,
    /// The release the agent is moving to, while it updates.
    #[serde(default)]
    pub target: Option<Digest>,
    /// What the agent is doing.
    pub state: MemberState,
    /// The running service's health.
    pub health: Health,
    /// When the agent last wrote this record, in Unix seconds.
    pub heartbeat: i64,
    /// The last failure, in one line, if any.
    #[serde(default)]
    pub last_error: Option<String>,
    /// The release a rollback returns to (the one run before `release`).
    #[serde(default)]
    pub previous: Option<Digest>,
    /// The release that last failed its health check here, and from which
    /// statement: it is not tried again until a newer statement names it.
    #[serde(default)]
    pub failed: Option<Attempt>,
}

/// What an agent is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemberState {
    /// Starting up, nothing adopted or started yet.
    Starting,
    /// Running its current release; nothing to do.
    Running,
    /// Waiting for its turn in a rollout.
    Waiting,
    /// Fetching and materializing a new release.
    Fetching,
    /// Swapping to a new release and checking its health.
    Updating,
    /// Returning to its previous release after a failure.
    RollingBack,
    /// Its service failed and could not be brought back.
    Failed,
    /// The service was stopped (the agent is shutting down).
    Stopped,
}

impl MemberState {
    /// Whether the agent is fetching or swapping (to a new release or
    /// back), so its `release` is about to change.
    pub fn is_swapping(self) -> bool {
        matches!(self, Self::Fetching | Self::Updating | Self::RollingBack)
    }
}

/// The running service's health as the agent last saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    /// Passing its health check.
    Healthy,
    /// Failing it.
    Unhealthy,
    /// Not checked yet (or no service running).
    #[default]
    Unknown,
}

/// Why a record could not be read.
#[derive(Debug, thiserror::Error)]
#[error("fleet record {name} is not valid: {source}")]
pub struct RecordError {
    /// The ref it was read from.
    pub name: String,
    /// The JSON error.
    #[source]
    pub source: serde_json::Error,
}

impl MemberRecord {
    /// Parses a member record read from ref `name`.
    pub fn parse(name: &str, bytes: &[u8]) -> Result<Self, RecordError> {
        serde_json::from_slice(bytes).map_err(|source| RecordError {
            name: name.to_string(),
            source,
        })
    }

    /// The record as the JSON stored in its ref.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a member record serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_records_round_trip_and_tolerate_new_fields() {
        let r = MemberRecord {
            agent: "host-a".into(),
            release: Some(Digest::of(b"release")),
            version: Some("1.0".into()),
            sequence: Some(3),
            generation: Some(2),
            target: None,
            state: MemberState::Running,
            health: Health::Healthy,
            heartbeat: 1_700_000_000,
            last_error: None,
            previous: Some(Digest::of(b"older")),
            failed: Some(Attempt {
                release: Digest::of(b"bad"),
                sequence: 2,
            }),
        };
        let json = r.to_json();
        assert_eq!(MemberRecord::parse("m", &json).unwrap(), r);
        let mut v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        v["added_later"] = serde_json::json!(1);
        let newer = serde_json::to_vec(&v).unwrap();
        assert_eq!(MemberRecord::parse("m", &newer).unwrap(), r);
        let err = MemberRecord::parse("fleet/x/y/members/z", b"{").unwrap_err();
        assert!(err
            .to_string()
            .starts_with("fleet record fleet/x/y/members/z"));
    }

    #[test]
    fn states_are_kebab_case() {
        let s = serde_json::to_string(&MemberState::RollingBack).unwrap();
        assert_eq!(s, "\"rolling-back\"");
    }
}
