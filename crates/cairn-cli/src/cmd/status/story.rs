//! The rollout part of `cairn status`: one set's rollout record read with
//! its members' records, told as target, phase, wave, who is updated,
//! updating, pending or failed, the slots and who holds them until when,
//! what the next wave waits on, and how long each wave took.

use cairn_rollout::{MemberRecord, Phase, RolloutRecord, SlotKind, Strategy};
use serde::Serialize;

/// A member whose heartbeat is older than this is away (as a steward
/// with the default intervals sees it).
const AWAY_SECONDS: i64 = 180;

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
    /// The story of `rec` for set `set`, with the members' records.
    pub fn new(set: &str, rec: &RolloutRecord, members: &[MemberRecord], now: i64) -> Self {
        let failed: Vec<String> = rec.failures.iter().map(|f| f.member.clone()).collect();
        let holding = |id: &str| rec.slots.iter().any(|s| s.member == id);
        let (mut updated, mut updating, mut pending, mut away) = (vec![], vec![], vec![], vec![]);
        for m in members {
            let id = m.agent.clone();
            if failed.contains(&id) {
                continue;
            }
            if now - m.heartbeat > AWAY_SECONDS {
                away.push(id.clone());
            }
            let on_target = m.release == Some(rec.target);
            let swapping = matches!(
                m.state,
                cairn_rollout::MemberState::Updating | cairn_rollout::MemberState::RollingBack
            );
            if holding(&id) || swapping {
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

    /// The story as text, one `label value` line each.
    pub fn text(&self) -> String {
        let mut lines = Vec::new();
        let mut line = |label: &str, value: String| lines.push(format!("{label:<10} {value}"));
        line("rollout", format!("set {}", self.set));
        let version = self.version.as_deref().unwrap_or("-");
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
            line("halted", h.clone());
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
                line(label, ids.join(", "));
            }
        }
        for s in &self.slots {
            let kind = serde_json::to_value(s.kind).ok();
            let kind = kind.as_ref().and_then(|k| k.as_str()).unwrap_or("update");
            let wave = s.wave.map(|w| format!(", wave {w}")).unwrap_or_default();
            let left = if s.seconds_left >= 0 {
                format!("{}s left", s.seconds_left)
            } else {
                format!("expired {}s ago", -s.seconds_left)
            };
            line(
                "slot",
                format!(
                    "{} ({kind}{wave}) until {} ({left})",
                    s.member,
                    rfc3339(s.expires)
                ),
            );
        }
        if let Some(s) = &self.steward {
            line(
                "steward",
                format!("{} until {}", s.member, rfc3339(s.expires)),
            );
        }
        if let Some(b) = self.bake_until {
            line("baking", format!("until {}", rfc3339(b)));
        }
        if !self.gates.is_empty() {
            line("waits on", self.gates.join("; "));
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
