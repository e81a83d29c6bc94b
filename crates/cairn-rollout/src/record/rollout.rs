//! The rollout record (`fleet/<service>/<set>/rollout`): the one shared
//! state of a deployment set's rollout.
//!
//! It is small on purpose and written rarely: by the agent that first sees
//! a new target (creating it), by the *steward* (the one agent holding the
//! steward lease, which grants slots a wave at a time and moves the phase
//! on), by a member reporting its own failure or taking a turn it missed,
//! and by an operator (pause, resume, abort). Progress is counted here
//! (`done`, `away`, the `cursor` through the member order) so that no
//! agent ever has to read every member record to know where the rollout
//! stands. The dashboard reads `target`, `strategy`, `phase`, `slots` and
//! `failures`.
//!
//! A slot is written compactly (`{"member": "host-a", "expires": 1767225600,
//! "wave": 3}`), as a large set's record holds thousands and every agent
//! reads it; at most [`MAX_CAPACITY`] are held at once, whatever the plan
//! says, which keeps the record a few hundred kilobytes at most.

use cairn_digest::Digest;
use serde::{Deserialize, Serialize};

use super::RecordError;
use crate::plan::Plan;
use crate::time::Time;

/// At most this many failures are kept (the newest), so a record stays
/// small however many members fail.
pub const MAX_FAILURES: usize = 32;

/// The most slots a rollout holds at once (an at-once rollout of a larger
/// set goes in turns of this many).
pub const MAX_CAPACITY: u32 = 5000;

/// At most this many waves are kept in the history (the newest).
const MAX_WAVES: usize = 64;

/// A deployment set's rollout of one channel statement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutRecord {
    /// The release being rolled out.
    pub target: Digest,
    /// The sequence number of the channel statement that named it.
    pub sequence: u64,
    /// That channel statement: its signed envelope as the channel held it
    /// (JSON text). The record is anyone's to write, so an agent that has
    /// not accepted a statement this new follows the record only if this
    /// verifies against its own trusted keys and names `target` and
    /// `sequence` ([`crate::View::verified`]); otherwise the record is an
    /// unsigned claim, and it is replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    /// Its version label, for people.
    #[serde(default)]
    pub version: Option<String>,
    /// The plan, fixed when the rollout was created.
    pub strategy: Plan,
    /// Where the rollout stands.
    pub phase: Phase,
    /// The number of the newest wave (0: none yet).
    #[serde(default)]
    pub wave: u32,
    /// Members counted the last time the steward listed them.
    #[serde(default)]
    pub members: u32,
    /// Slots: how many members may be updating at once.
    pub capacity: u32,
    /// How long a granted slot lasts, in seconds.
    pub lease: u64,
    /// The last member (in turn order) a turn was given to; members after
    /// it have not had theirs.
    #[serde(default)]
    pub cursor: Option<Position>,
    /// Where a rollback has reached in the same order.
    #[serde(default)]
    pub rollback_cursor: Option<Position>,
    /// Slots held now, sorted by member (kept sorted when read, so a
    /// member finds its own by binary search).
    #[serde(default, deserialize_with = "sorted_slots")]
    pub slots: Vec<Slot>,
    /// Members updated in the canary phase.
    #[serde(default)]
    pub canaries: Vec<String>,
    /// Members counted as updated (or found already on the target).
    #[serde(default)]
    pub done: u32,
    /// Members whose turn came while they were away (they take it when
    /// they are back).
    #[serde(default)]
    pub away: u32,
    /// Members returned to their previous release by a rollback.
    #[serde(default)]
    pub rolled_back: u32,
    /// Members that failed on the target (the newest [`MAX_FAILURES`]).
    #[serde(default)]
    pub failures: Vec<Failure>,
    /// Why the rollout stopped, when it did.
    #[serde(default)]
    pub halted: Option<Halt>,
    /// What the next wave waits on, in words (empty: nothing).
    #[serde(default)]
    pub gates: Vec<String>,
    /// The agent doing the rollout's bookkeeping, and until when.
    #[serde(default)]
    pub steward: Option<Lease>,
    /// When the canaries' bake ends (Unix seconds).
    #[serde(default)]
    pub bake_until: Option<i64>,
    /// The phase an operator's resume returns a paused rollout to.
    #[serde(default)]
    pub resume_to: Option<Phase>,
    /// The newest waves, oldest first.
    #[serde(default)]
    pub waves: Vec<Wave>,
    /// When the rollout was created (Unix seconds).
    pub created: i64,
    /// When the record was last written (Unix seconds).
    pub updated: i64,
}

/// The phases of a rollout (see the state diagram in the crate docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The canary waves are updating.
    Canary,
    /// The canaries are updated; waiting for their bake to end.
    Baking,
    /// Waves of up to `capacity` members are updating.
    Rolling,
    /// Every member had its turn.
    Done,
    /// A member failed; no new update starts.
    Halted,
    /// A member failed; updated members return to their previous release.
    RollingBack,
    /// The rollback is over.
    RolledBack,
    /// An operator paused the rollout.
    Paused,
    /// An operator aborted the rollout.
    Aborted,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Canary => "canary",
            Phase::Baking => "baking",
            Phase::Rolling => "rolling",
            Phase::Done => "done",
            Phase::Halted => "halted",
            Phase::RollingBack => "rolling-back",
            Phase::RolledBack => "rolled-back",
            Phase::Paused => "paused",
            Phase::Aborted => "aborted",
        })
    }
}

impl Phase {
    /// Whether a member may start an update to the target in this phase.
    pub fn allows_updates(self) -> bool {
        matches!(self, Phase::Canary | Phase::Rolling | Phase::Done)
    }

    /// Whether the phase has work for a steward.
    pub fn needs_steward(self) -> bool {
        matches!(
            self,
            Phase::Canary | Phase::Baking | Phase::Rolling | Phase::RollingBack
        )
    }

    /// Whether updated members are returning to their previous release.
    pub fn is_rollback(self) -> bool {
        matches!(self, Phase::RollingBack | Phase::RolledBack)
    }

    /// Whether the rollout moves forward in this phase (a failure halts
    /// it).
    pub fn is_forward(self) -> bool {
        matches!(self, Phase::Canary | Phase::Baking | Phase::Rolling)
    }
}

/// A member's place in the turn order: pinned rank first, then a hash of
/// the release and the member id, then the id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position {
    /// Index in a pinned order, `u32::MAX` for members not pinned.
    pub rank: u32,
    /// A hash of the release and the member id (see [`crate::order`]).
    pub hash: u64,
    /// The member id.
    pub member: String,
}

/// One held update slot: a lease on being unavailable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    /// The member holding it.
    pub member: String,
    /// When the lease ends (Unix seconds, the granting agent's clock).
    pub expires: i64,
    /// What the member may do with it (`update` is not written).
    #[serde(default, skip_serializing_if = "SlotKind::is_update")]
    pub kind: SlotKind,
    /// The wave it was granted in (`None`, not written: a member taking a
    /// turn it missed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<u32>,
}

impl SlotKind {
    fn is_update(&self) -> bool {
        *self == SlotKind::Update
    }
}

/// What a slot is for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SlotKind {
    /// Update to the target.
    #[default]
    Update,
    /// Return to the previous release.
    Rollback,
    /// Held for an update to an older target when this rollout replaced
    /// it: counted until it expires, so the two rollouts together never
    /// exceed the capacity.
    Draining,
}

/// A lease held by one agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The agent.
    pub member: String,
    /// When it ends (Unix seconds, the holder's clock).
    pub expires: i64,
}

/// A member that failed on the target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The member.
    pub member: String,
    /// What went wrong, in one line.
    pub reason: String,
    /// When it was recorded (Unix seconds).
    pub at: i64,
}

/// Why a rollout stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Halt {
    /// The member that failed (none when an operator stopped it).
    #[serde(default)]
    pub member: Option<String>,
    /// Why, in one line.
    pub reason: String,
    /// When (Unix seconds).
    pub at: i64,
    /// The phase it stopped in (where a resume continues).
    pub phase: Phase,
}

/// One wave of grants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wave {
    /// Its number.
    pub wave: u32,
    /// The phase it belongs to (canary, rolling or rolling back).
    pub phase: Phase,
    /// Slots granted.
    pub granted: u32,
    /// When it started (Unix seconds).
    pub started: i64,
    /// When its last slot was released (Unix seconds).
    #[serde(default)]
    pub finished: Option<i64>,
}

impl RolloutRecord {
    /// Parses a rollout record read from ref `name`.
    pub fn parse(name: &str, bytes: &[u8]) -> Result<Self, RecordError> {
        serde_json::from_slice(bytes).map_err(|source| RecordError {
            name: name.to_string(),
            source,
        })
    }

    /// The record as the JSON stored in its ref.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a rollout record serializes")
    }

    /// The slot `member` holds, if any.
    pub fn slot_of(&self, member: &str) -> Option<&Slot> {
        self.slots
            .binary_search_by(|s| s.member.as_str().cmp(member))
            .ok()
            .map(|i| &self.slots[i])
    }

    /// Gives `slot` to its member, replacing any slot it held, keeping the
    /// slots sorted.
    pub fn put_slot(&mut self, slot: Slot) {
        match self
            .slots
            .binary_search_by(|s| s.member.as_str().cmp(&slot.member))
        {
            Ok(i) => self.slots[i] = slot,
            Err(i) => self.slots.insert(i, slot),
        }
    }

    /// Slots that still count at `now`: a slot is held until `margin`
    /// after its expiry, so that a holder whose clock is behind ours has
    /// surely finished.
    pub fn held(&self, now: Time, margin: std::time::Duration) -> usize {
        self.slots
            .iter()
            .filter(|s| !expired(s.expires, now, margin))
            .count()
    }

    /// Slots free at `now`.
    pub fn room(&self, now: Time, margin: std::time::Duration) -> u32 {
        let held = u32::try_from(self.held(now, margin)).unwrap_or(u32::MAX);
        self.capacity.saturating_sub(held)
    }

    /// Records a failure of `member`, keeping one entry per member and the
    /// newest [`MAX_FAILURES`].
    pub fn add_failure(&mut self, member: &str, reason: &str, at: i64) {
        self.failures.retain(|f| f.member != member);
        self.failures.push(Failure {
            member: member.into(),
            reason: reason.into(),
            at,
        });
        let excess = self.failures.len().saturating_sub(MAX_FAILURES);
        self.failures.drain(..excess);
    }

    /// Starts wave `self.wave + 1` in `phase` with `granted` slots.
    pub(crate) fn start_wave(&mut self, phase: Phase, granted: u32, now: i64) {
        self.wave += 1;
        self.waves.push(Wave {
            wave: self.wave,
            phase,
            granted,
            started: now,
            finished: None,
        });
        let excess = self.waves.len().saturating_sub(MAX_WAVES);
        self.waves.drain(..excess);
    }

    /// Whether the newest wave still has slots out.
    pub(crate) fn wave_open(&self) -> bool {
        let current = Some(self.wave);
        self.slots.iter().any(|s| s.wave == current)
    }

    /// Marks the newest wave finished at `now`, if it is not yet.
    pub(crate) fn finish_wave(&mut self, now: i64) {
        if let Some(w) = self.waves.last_mut().filter(|w| w.finished.is_none()) {
            w.finished = Some(now);
        }
    }

    /// The mean duration of finished waves, in seconds.
    pub fn mean_wave_secs(&self) -> Option<i64> {
        let done: Vec<i64> = self
            .waves
            .iter()
            .filter_map(|w| Some(w.finished? - w.started))
            .collect();
        (!done.is_empty()).then(|| done.iter().sum::<i64>() / done.len() as i64)
    }
}

/// Reads slots and sorts them by member (a record written by hand, or by
/// another version, may not be).
fn sorted_slots<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Slot>, D::Error> {
    let mut slots = Vec::<Slot>::deserialize(d)?;
    slots.sort_by(|a, b| a.member.cmp(&b.member));
    Ok(slots)
}

/// Whether a lease ending at `expires` (Unix seconds, another clock) has
/// surely ended at `now`, allowing `margin` for clock differences.
pub(crate) fn expired(expires: i64, now: Time, margin: std::time::Duration) -> bool {
    Time::from_secs(expires).plus(margin) < now
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Amount;

    fn sample() -> RolloutRecord {
        RolloutRecord {
            target: Digest::of(b"target"),
            sequence: 4,
            statement: None,
            version: Some("1.2".into()),
            strategy: Plan {
                max_unavailable: Amount::Percent(10),
                ..Plan::default()
            },
            phase: Phase::Rolling,
            wave: 2,
            members: 40,
            capacity: 4,
            lease: 90,
            cursor: None,
            rollback_cursor: None,
            slots: vec![
                Slot {
                    member: "host-a".into(),
                    expires: 1_767_225_600,
                    kind: SlotKind::Update,
                    wave: Some(2),
                },
                Slot {
                    member: "host-b".into(),
                    expires: 1_767_225_601,
                    kind: SlotKind::Draining,
                    wave: None,
                },
            ],
            canaries: Vec::new(),
            done: 5,
            away: 1,
            rolled_back: 0,
            failures: Vec::new(),
            halted: None,
            gates: vec!["freeze until 2026-01-05T00:00:00Z".into()],
            steward: None,
            bake_until: None,
            resume_to: None,
            waves: Vec::new(),
            created: 1_767_225_500,
            updated: 1_767_225_550,
        }
    }

    #[test]
    fn rollout_records_round_trip_with_the_fields_the_dashboard_reads() {
        let r = sample();
        let json = r.to_json();
        assert_eq!(RolloutRecord::parse("r", &json).unwrap(), r);
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["phase"], "rolling");
        assert_eq!(v["strategy"]["strategy"], "rolling");
        assert_eq!(v["strategy"]["max_unavailable"], "10%");
        assert_eq!(v["slots"].as_array().unwrap().len(), 2);
        assert!(v["failures"].is_array());
        assert_eq!(v["target"]["hash"], Digest::of(b"target").to_string());
        // Slots are written compactly: an update slot's kind is implied.
        assert_eq!(
            v["slots"][0],
            serde_json::json!({"member": "host-a", "expires": 1_767_225_600, "wave": 2})
        );
        assert_eq!(v["slots"][1]["kind"], "draining");
    }

    #[test]
    fn newer_fields_are_ignored_and_a_bad_record_names_its_ref() {
        let mut v: serde_json::Value = serde_json::from_slice(&sample().to_json()).unwrap();
        v["added_later"] = serde_json::json!({"x": 1});
        let bytes = serde_json::to_vec(&v).unwrap();
        assert_eq!(RolloutRecord::parse("r", &bytes).unwrap(), sample());
        let err = RolloutRecord::parse("fleet/a/b/rollout", b"[]").unwrap_err();
        assert!(err
            .to_string()
            .starts_with("fleet record fleet/a/b/rollout is not valid"));
    }

    #[test]
    fn failures_keep_one_entry_per_member_and_the_newest_few() {
        let mut r = sample();
        for i in 0..40 {
            r.add_failure(&format!("host-{i}"), "bad", i);
        }
        r.add_failure("host-39", "worse", 99);
        assert_eq!(r.failures.len(), MAX_FAILURES);
        assert_eq!(r.failures.last().unwrap().reason, "worse");
        assert_eq!(
            r.failures.iter().filter(|f| f.member == "host-39").count(),
            1
        );
    }

    #[test]
    fn slots_count_until_a_margin_past_their_end() {
        let r = sample();
        let margin = std::time::Duration::from_secs(5);
        let at = |s: i64| Time::from_secs(s);
        assert_eq!(r.held(at(1_767_225_600), margin), 2);
        assert_eq!(r.held(at(1_767_225_605), margin), 2);
        assert_eq!(r.held(at(1_767_225_606), margin), 1);
        assert_eq!(r.room(at(1_767_225_607), margin), 4);
    }
}
