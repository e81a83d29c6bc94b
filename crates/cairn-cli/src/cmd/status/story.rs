//! The rollout part of `cairn status`: one set's rollout record read with
//! its members' records, told as target, phase, wave, who is updated,
//! updating, pending or failed, the slots and who holds them until when,
//! what the next wave waits on, and how long each wave took.
//!
//! Who is away and which slots are over follow the protocol's own rules
//! (`cairn_rollout::Timing::is_away` and `lease_over`, with the agents'
//! member timeout and clock skew bound): a member counts as updating while
//! it holds a slot that is not over and has not finished under it, or its
//! record says it swaps. A slot still listed after its holder finished,
//! or after its lease ended (a member cut off, back, and updated on its
//! own once the rollout was done), is shown as such, and its holder by
//! what its record says.

use cairn_rollout::{
    Health, MemberRecord, MemberState, Phase, RolloutRecord, Slot, SlotKind, Strategy, Time, Timing,
};
use serde::Serialize;

use crate::output::{free, name};

/// One set's rollout, as shown.
#[derive(Serialize)]
pub struct Story {
    pub set: String,
    pub target: String,
    pub version: Option<String>,
    pub sequence: u64,
    pub strategy: String,
    pub phase: Phase,
    pub wave: u32,
    pub updated: Vec<String>,
    pub updating: Vec<String>,
    pub pending: Vec<String>,
    pub failed: Vec<String>,
    pub away: Vec<String>,
    pub slots: Vec<SlotView>,
    pub steward: Option<LeaseView>,
    pub gates: Vec<String>,
    pub bake_until: Option<i64>,
    pub halted: Option<String>,
    pub waves: Vec<WaveView>,
    pub created: i64,
    pub updated_at: i64,
}

/// A held slot.
#[derive(Serialize)]
pub struct SlotView {
    pub member: String,
    pub kind: SlotKind,
    pub wave: Option<u32>,
    /// When the lease ends (Unix seconds) and how long until then.
    pub expires: i64,
    pub seconds_left: i64,
    /// The lease is over past the margin: the slot counts for nothing.
    pub expired: bool,
    /// What its holder's record says.
    pub holder: Holder,
}

/// A slot's holder, as its member record tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Holder {
    /// Updating or rolling back.
    Swapping,
    /// Done with what the slot was for (not released yet).
    Finished,
    /// Reporting, neither swapping nor finished (a grant not taken yet).
    Present,
    /// Silent past the member timeout.
    Away,
    /// No readable record.
    Unknown,
}

/// The steward's lease.
#[derive(Serialize)]
pub struct LeaseView {
    pub member: String,
    pub expires: i64,
}

/// One wave and how long it took (so far).
#[derive(Serialize)]
pub struct WaveView {
    pub wave: u32,
    pub phase: Phase,
    pub granted: u32,
    pub started: i64,
    pub finished: Option<i64>,
    pub seconds: i64,
}

impl Story {
    /// The story of `rec` for set `set`, with the members' records, at
    /// `clock` with the agents' `timing`.
    pub fn new(
        set: &str,
        rec: &RolloutRecord,
        members: &[MemberRecord],
        clock: Time,
        timing: &Timing,
    ) -> Self {
        let now = clock.secs();
        let failed: Vec<String> = rec.failures.iter().map(|f| f.member.clone()).collect();
        let holder_of = |slot: &Slot| {
            let record = members.iter().find(|m| m.agent == slot.member);
            holder(rec, slot, record, clock, timing)
        };
        let (mut updated, mut updating, mut pending, mut away) = (vec![], vec![], vec![], vec![]);
        for m in members {
            let id = m.agent.clone();
            if failed.contains(&id) {
                continue;
            }
            let gone = timing.is_away(m.heartbeat, clock);
            if gone {
                away.push(id.clone());
            }
            let on_target = m.release == Some(rec.target);
            let swapping = !gone && swapping(m);
            let holding = rec.slot_of(&id).is_some_and(|s| {
                !timing.lease_over(s.expires, clock) && holder_of(s) != Holder::Finished
            });
            if holding || swapping {
                updating.push(id);
            } else if on_target {
                updated.push(id);
            } else {
                pending.push(id);
            }
        }
        Self {
            set: set.to_string(),
            target: rec.target.to_string(),
            version: rec.version.clone(),
            sequence: rec.sequence,
            strategy: strategy(rec),
            phase: rec.phase,
            wave: rec.wave,
            updated,
            updating,
            pending,
            failed,
            away,
            slots: rec
                .slots
                .iter()
                .map(|s| SlotView {
                    member: s.member.clone(),
                    kind: s.kind,
                    wave: s.wave,
                    expires: s.expires,
                    seconds_left: s.expires - now,
                    expired: timing.lease_over(s.expires, clock),
                    holder: holder_of(s),
                })
                .collect(),
            steward: rec
                .steward
                .as_ref()
                .filter(|_| rec.phase.needs_steward())
                .map(|l| LeaseView {
                    member: l.member.clone(),
                    expires: l.expires,
                }),
            gates: rec.gates.clone(),
            bake_until: rec.bake_until,
            halted: rec.halted.as_ref().map(|h| h.reason.clone()),
            waves: rec
                .waves
                .iter()
                .map(|w| WaveView {
                    wave: w.wave,
                    phase: w.phase,
                    granted: w.granted,
                    started: w.started,
                    finished: w.finished,
                    // A wave a halt or an operator cut short ends with
                    // the record's last write.
                    seconds: w.finished.unwrap_or(if rec.phase.is_forward() {
                        now
                    } else {
                        rec.updated
                    }) - w.started,
                })
                .collect(),
            created: rec.created,
            updated_at: rec.updated,
        }
    }

    /// Whether the rollout stopped on a failure (an operator must look).
    pub fn failed_rollout(&self) -> bool {
        matches!(
            self.phase,
            Phase::Halted | Phase::RollingBack | Phase::RolledBack
        )
    }

    /// The story as text, one `label value` line each. Everything the
    /// record and the members' records say is escaped: ids and versions
    /// as names, the halt's reason and the gates' words as text.
    pub fn text(&self) -> String {
        let mut lines = Vec::new();
        let mut line = |label: &str, value: String| lines.push(format!("{label:<10} {value}"));
        line("rollout", format!("set {}", name(&self.set)));
        let version = self.version.as_deref().map_or_else(|| "-".into(), name);
        line(
            "target",
            format!(
                "{version} ({}), statement {}",
                short(&self.target),
                self.sequence
            ),
        );
        line("strategy", self.strategy.clone());
        line("phase", self.phase.to_string());
        if let Some(h) = &self.halted {
            line("halted", free(h));
        }
        line("wave", self.wave.to_string());
        let total =
            self.updated.len() + self.updating.len() + self.pending.len() + self.failed.len();
        line(
            "members",
            format!(
                "{total}: {} updated, {} updating, {} pending, {} failed",
                self.updated.len(),
                self.updating.len(),
                self.pending.len(),
                self.failed.len()
            ),
        );
        for (label, ids) in [
            ("updating", &self.updating),
            ("pending", &self.pending),
            ("failed", &self.failed),
            ("away", &self.away),
        ] {
            if !ids.is_empty() {
                line(label, names(ids));
            }
        }
        for s in &self.slots {
            let kind = serde_json::to_value(s.kind).ok();
            let kind = kind.as_ref().and_then(|k| k.as_str()).unwrap_or("update");
            let wave = s.wave.map(|w| format!(", wave {w}")).unwrap_or_default();
            let left = match (s.expired, s.seconds_left >= 0) {
                (true, _) => format!("slot expired {}s ago", -s.seconds_left),
                (false, true) => format!("{}s left", s.seconds_left),
                (false, false) => format!("ended {}s ago", -s.seconds_left),
            };
            let who = name(&s.member);
            let left = match (s.holder, s.expired) {
                (Holder::Finished, _) => format!("{left}; {who} finished, not released yet"),
                (Holder::Away, _) => format!("{left}; {who} away"),
                (Holder::Unknown, _) => format!("{left}; no record of {who}"),
                (Holder::Present, true) => format!("{left}; {who} is back"),
                (Holder::Swapping, true) => format!("{left}; {who} still swapping"),
                _ => left,
            };
            line(
                "slot",
                format!("{who} ({kind}{wave}) until {} ({left})", rfc3339(s.expires)),
            );
        }
        if let Some(s) = &self.steward {
            line(
                "steward",
                format!("{} until {}", name(&s.member), rfc3339(s.expires)),
            );
        }
        if let Some(b) = self.bake_until {
            line("baking", format!("until {}", rfc3339(b)));
        }
        if !self.gates.is_empty() {
            let gates: Vec<String> = self.gates.iter().map(|g| free(g)).collect();
            line("waits on", gates.join("; "));
        }
        for w in &self.waves {
            let state = match (w.finished, self.phase.is_forward()) {
                (Some(_), _) => "",
                (None, true) => ", running",
                (None, false) => ", stopped",
            };
            line(
                "wave",
                format!(
                    "{} ({}, {} granted): {}s{state}",
                    w.wave, w.phase, w.granted, w.seconds
                ),
            );
        }
        lines.join("\n")
    }
}

/// Member ids as shown, escaped.
fn names(ids: &[String]) -> String {
    let shown: Vec<String> = ids.iter().map(|id| name(id)).collect();
    shown.join(", ")
}

/// Whether a member's record says it swaps.
fn swapping(m: &MemberRecord) -> bool {
    matches!(m.state, MemberState::Updating | MemberState::RollingBack)
}

/// What the holder of `slot` is doing, by its record: finished means what
/// the steward releases a slot early for (on the target and healthy after
/// an update, off it after a rollback, or failed on it).
fn holder(
    rec: &RolloutRecord,
    slot: &Slot,
    record: Option<&MemberRecord>,
    clock: Time,
    timing: &Timing,
) -> Holder {
    let Some(m) = record else {
        return Holder::Unknown;
    };
    if timing.is_away(m.heartbeat, clock) {
        return Holder::Away;
    }
    if swapping(m) {
        return Holder::Swapping;
    }
    let on_target = m.release == Some(rec.target);
    let failed = m
        .failed
        .is_some_and(|f| f.release == rec.target && f.sequence == rec.sequence);
    let finished = match slot.kind {
        SlotKind::Update => failed || (on_target && m.health == Health::Healthy),
        SlotKind::Rollback => !on_target,
        SlotKind::Draining => false,
    };
    if finished {
        Holder::Finished
    } else {
        Holder::Present
    }
}

fn strategy(rec: &RolloutRecord) -> String {
    let plan = &rec.strategy;
    let amount = |a: &cairn_rollout::Amount| match a {
        cairn_rollout::Amount::Count(n) => n.to_string(),
        cairn_rollout::Amount::Percent(p) => format!("{p}%"),
    };
    let name = match &plan.strategy {
        Strategy::AtOnce => "at-once".to_string(),
        Strategy::Rolling => "rolling".to_string(),
        Strategy::Canary { count, bake } => format!(
            "canary {} for {}",
            amount(count),
            humantime::format_duration(*bake)
        ),
    };
    let on_failure = match plan.on_failure {
        cairn_rollout::OnFailure::Halt => "halt",
        cairn_rollout::OnFailure::Rollback => "rollback",
    };
    format!(
        "{name}, max_unavailable {}, on_failure {on_failure}, {} slot(s)",
        amount(&plan.max_unavailable),
        rec.capacity
    )
}

fn short(digest: &str) -> String {
    let hex = digest.trim_start_matches("sha256:");
    hex.chars().take(12).collect()
}

fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const NOW: i64 = 1_800_000_000;
    const TARGET: &str = "sha256:dc38aee2c6681f7a65547365a5318c4a36cfa64d5a9edd69e4f7a01e5d1c96b0";
    const OLD: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

    fn digest(hash: &str) -> serde_json::Value {
        serde_json::json!({"hash": hash, "size": 602})
    }

    fn timing() -> Timing {
        Timing {
            member_timeout: Duration::from_secs(4),
            max_skew: Duration::from_millis(500),
            ..Timing::default()
        }
    }

    /// A done rollout listing `slots` (member, expires).
    fn record(slots: &[(&str, i64)]) -> RolloutRecord {
        let slots: Vec<_> = slots
            .iter()
            .map(|(m, e)| serde_json::json!({"member": m, "expires": e}))
            .collect();
        let json = serde_json::json!({
            "target": digest(TARGET), "sequence": 2, "strategy": {}, "phase": "done",
            "capacity": 1, "lease": 26, "slots": slots,
            "created": NOW - 100, "updated": NOW - 50,
        });
        RolloutRecord::parse("rollout", json.to_string().as_bytes()).unwrap()
    }

    fn member(id: &str, release: &str, state: &str, heartbeat: i64) -> MemberRecord {
        let json = serde_json::json!({
            "agent": id, "release": digest(release), "state": state, "health": "healthy",
            "heartbeat": heartbeat,
        });
        MemberRecord::parse("member", json.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn away_follows_the_member_timeout_and_margin() {
        // 4 s + 2 × 0.5 s + 1 s: away after 6 s of silence, not at 6 s.
        let members = [
            member("m1", TARGET, "running", NOW - 6),
            member("m2", OLD, "running", NOW - 7),
        ];
        let s = Story::new(
            "eu",
            &record(&[]),
            &members,
            Time::from_secs(NOW),
            &timing(),
        );
        assert_eq!(s.away, ["m2"]);
        assert_eq!(s.updated, ["m1"]);
        assert_eq!(s.pending, ["m2"]);
        let defaults = Story::new(
            "eu",
            &record(&[]),
            &members,
            Time::from_secs(NOW),
            &Timing::default(),
        );
        assert!(defaults.away.is_empty(), "185 s with the default timing");
    }

    #[test]
    fn an_expired_slot_of_a_member_back_is_not_an_update() {
        // m1 came back and updated under a slot that is now over; m2's
        // slot ended too and m2 is silent; m3 is back, not yet updated,
        // its slot over; m4 holds a live slot and swaps.
        let rec = record(&[
            ("m1", NOW - 60),
            ("m2", NOW - 60),
            ("m3", NOW - 60),
            ("m4", NOW + 20),
        ]);
        let members = [
            member("m1", TARGET, "running", NOW - 1),
            member("m2", OLD, "updating", NOW - 90),
            member("m3", OLD, "running", NOW - 1),
            member("m4", OLD, "updating", NOW - 1),
        ];
        let s = Story::new("eu", &rec, &members, Time::from_secs(NOW), &timing());
        assert_eq!(s.updated, ["m1"]);
        assert_eq!(s.updating, ["m4"]);
        assert_eq!(s.pending, ["m2", "m3"]);
        assert_eq!(s.away, ["m2"]);
        let holders: Vec<_> = s.slots.iter().map(|v| (v.expired, v.holder)).collect();
        assert_eq!(
            holders,
            [
                (true, Holder::Finished),
                (true, Holder::Away),
                (true, Holder::Present),
                (false, Holder::Swapping),
            ]
        );
        let text = s.text();
        for line in [
            "(slot expired 60s ago; m1 finished, not released yet)",
            "(slot expired 60s ago; m2 away)",
            "(slot expired 60s ago; m3 is back)",
            "(20s left)",
        ] {
            assert!(text.contains(line), "{line}: {text}");
        }
        assert!(text.contains("\naway       m2\n"), "{text}");
    }

    #[test]
    fn a_lease_just_ended_is_not_over_until_the_margin_passed() {
        let rec = record(&[("m1", NOW - 2)]);
        let members = [member("m1", OLD, "updating", NOW)];
        let s = Story::new("eu", &rec, &members, Time::from_secs(NOW), &timing());
        assert_eq!(s.updating, ["m1"]);
        assert!(!s.slots[0].expired);
        assert!(s.text().contains("(ended 2s ago)"), "{}", s.text());
    }
}
