//! `cairn status SERVICE [--set S]`: the service's fleet members as the
//! agents last reported them, and each set's rollout (`story.rs`): as a
//! table and the rollout's story, or `--json`. Exits 3 when a rollout
//! stopped on a failure (halted, rolling back or rolled back), so a
//! script can tell.

mod story;

use anyhow::{bail, Result};
use cairn_rollout::{MemberRecord, RolloutRecord, Time, Timing};
use serde::Serialize;

use story::Story;

/// The exit status when a shown rollout stopped on a failure.
const EXIT_ROLLOUT_FAILED: i32 = 3;

/// What `--json` prints.
#[derive(Serialize)]
struct Report {
    members: Vec<Row>,
    rollouts: Vec<Story>,
}

use crate::cli::{Global, StatusArgs};
use crate::output::{emit, free, name};

/// A member whose heartbeat is older than this is marked stale (a
/// heartbeat at the agents' default interval was missed), until it is
/// away.
const STALE_SECONDS: i64 = 60;

#[derive(Serialize)]
struct Row {
    set: String,
    agent: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<MemberRecord>,
    /// Seconds since the last heartbeat.
    #[serde(skip_serializing_if = "Option::is_none")]
    age: Option<i64>,
    /// Silent past the member timeout (and the margin): away, as the
    /// rollout counts it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    away: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Runs `cairn status`.
pub async fn run(global: &Global, args: StatusArgs) -> Result<i32> {
    cairn_trust::document::validate_name("service", &args.service)?;
    let store = super::open_store(global, super::Access::Existing).await?;
    let prefix = match &args.set {
        Some(set) => format!("fleet/{}/{set}/members/", args.service),
        None => format!("fleet/{}/", args.service),
    };
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    let clock = Time(i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX));
    let now = clock.secs();
    let timing = timing(&args);
    let mut rows = Vec::new();
    let mut rollouts = Vec::new();
    let names = store.refs.list(&format!("fleet/{}/", args.service)).await?;
    for name in names {
        let parts: Vec<&str> = name.as_str().split('/').collect();
        if let [_, _, set, "rollout"] = parts[..] {
            if args.set.as_deref().is_none_or(|s| s == set) {
                if let Some(stored) = store.refs.get(&name).await? {
                    let rec = RolloutRecord::parse(name.as_str(), &stored.value)?;
                    rollouts.push((set.to_string(), rec));
                }
            }
            continue;
        }
        if !name.as_str().starts_with(&prefix) {
            continue;
        }
        let [_, _, set, "members", agent] = parts[..] else {
            continue;
        };
        let Some(stored) = store.refs.get(&name).await? else {
            continue;
        };
        let (record, error) = match MemberRecord::parse(name.as_str(), &stored.value) {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some(e.to_string())),
        };
        rows.push(Row {
            set: set.into(),
            agent: agent.into(),
            age: record.as_ref().map(|r| now - r.heartbeat),
            away: record
                .as_ref()
                .is_some_and(|r| timing.is_away(r.heartbeat, clock)),
            record,
            error,
        });
    }
    if rows.is_empty() && !global.json {
        bail!(
            "no agent has reported for {}{}",
            args.service,
            args.set.map(|s| format!(" in set {s}")).unwrap_or_default()
        );
    }
    let stories: Vec<Story> = rollouts
        .iter()
        .map(|(set, rec)| {
            let members: Vec<MemberRecord> = rows
                .iter()
                .filter(|r| &r.set == set)
                .filter_map(|r| r.record.clone())
                .collect();
            Story::new(set, rec, &members, clock, &timing)
        })
        .collect();
    let failed = stories.iter().any(Story::failed_rollout);
    let report = Report {
        members: rows,
        rollouts: stories,
    };
    emit(global.json, &report, |r| {
        let mut parts = vec![table(&r.members)];
        parts.extend(r.rollouts.iter().map(Story::text));
        parts.join("\n\n")
    });
    Ok(if failed { EXIT_ROLLOUT_FAILED } else { 0 })
}

/// The protocol's intervals as the agents use them, for telling who is
/// away and which slots are over: the defaults, or what the flags say.
fn timing(args: &StatusArgs) -> Timing {
    let d = Timing::default();
    Timing {
        member_timeout: args.member_timeout.unwrap_or(d.member_timeout),
        max_skew: args.max_skew.unwrap_or(d.max_skew),
        ..d
    }
}

fn table(rows: &[Row]) -> String {
    let mut lines = vec![[
        "SET",
        "AGENT",
        "VERSION",
        "RELEASE",
        "SEQ",
        "GEN",
        "STATE",
        "HEALTH",
        "HEARTBEAT",
        "ERROR",
    ]
    .map(String::from)
    .to_vec()];
    for row in rows {
        // Every value here is store text: ids are names, errors text.
        let (set, agent) = (name(&row.set), name(&row.agent));
        let Some(r) = &row.record else {
            lines.push(vec![
                set,
                agent,
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                free(row.error.as_deref().unwrap_or_default()),
            ]);
            continue;
        };
        let age = row.age.unwrap_or(0);
        let heartbeat = if row.away {
            format!("{age}s ago (away)")
        } else if age > STALE_SECONDS {
            format!("{age}s ago (stale)")
        } else {
            format!("{age}s ago")
        };
        let mut state = text(&r.state);
        if let Some(t) = r.target {
            state = format!("{state} -> {}", short(&t));
        }
        lines.push(vec![
            set,
            agent,
            r.version.as_deref().map_or_else(|| "-".into(), name),
            r.release.map_or_else(|| "-".into(), |d| short(&d)),
            r.sequence.map_or_else(|| "-".into(), |s| s.to_string()),
            r.generation.map_or_else(|| "-".into(), |g| g.to_string()),
            state,
            text(&r.health),
            heartbeat,
            free(r.last_error.as_deref().unwrap_or_default()),
        ]);
    }
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    lines
        .iter()
        .map(|l| {
            let cells: Vec<String> = l
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn short(d: &cairn_digest::Digest) -> String {
    d.hex()[..12].to_string()
}

/// An enum value in its JSON spelling (`rolling-back`, `healthy`).
fn text<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}
