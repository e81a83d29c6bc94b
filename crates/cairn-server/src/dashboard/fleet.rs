//! Fleet records (`fleet/<service>/<set>/members/<agent>` and
//! `fleet/<service>/<set>/rollout`) read into the dashboard's views.
//!
//! Agents write these records (`cairn_rollout::MemberRecord` and
//! `RolloutRecord`), but the dashboard reads them as plain JSON, so that
//! a record from another version still shows: the known fields
//! (`release`, `sequence`, `state`, `health`, `heartbeat`; `target`,
//! `strategy`, `phase`, `slots`, `failures`) are taken as text or counts
//! (a digest written as `{"hash", "size"}` as its hash, a plan as a few
//! words), anything else is ignored, and a record that is not JSON becomes
//! a row with an error.

use std::collections::{BTreeMap, HashMap};

use cairn_digest::DigestRef;
use cairn_store::{RefName, Store};
use serde_json::Value;
use time::OffsetDateTime;

use super::summary::{rfc3339, segments, MemberView, RolloutView, SetView};
use crate::error::ApiError;

/// Every deployment set, with `(service, view)`.
pub async fn fleet(
    store: &Store,
    versions: &HashMap<String, String>,
) -> Result<Vec<(String, SetView)>, ApiError> {
    let mut sets: BTreeMap<(String, String), SetView> = BTreeMap::new();
    for name in store.refs.list("fleet/").await? {
        let parts = segments(&name, "fleet/");
        let (svc, set, rest) = match parts[..] {
            [svc, set, ref rest @ ..] if !rest.is_empty() => (svc, set, rest),
            _ => continue,
        };
        let view = sets
            .entry((svc.into(), set.into()))
            .or_insert_with(|| SetView {
                name: set.into(),
                ..SetView::default()
            });
        let value = read_json(store, &name).await?;
        match rest {
            ["rollout"] => view.rollout = Some(rollout_view(value.as_ref().ok(), versions)),
            ["members", agent] => view.members.push(member_view(agent, value, versions)),
            _ => {}
        }
    }
    Ok(sets
        .into_iter()
        .map(|((svc, _), mut set)| {
            if let Some(r) = &mut set.rollout {
                r.total = set.members.len();
                r.done = set
                    .members
                    .iter()
                    .filter(|m| on_target(&m.release, &r.target))
                    .count();
            }
            (svc, set)
        })
        .collect())
}

/// Whether a member's release is the rollout target (either may be a full
/// `sha256:…` digest, bare hex, or a short form).
fn on_target(release: &str, target: &str) -> bool {
    let bare = |s: &str| s.strip_prefix("sha256:").unwrap_or(s).to_string();
    let (a, b) = (bare(release), bare(target));
    !a.is_empty() && !b.is_empty() && (a.starts_with(&b) || b.starts_with(&a))
}

async fn read_json(store: &Store, name: &RefName) -> Result<Result<Value, String>, ApiError> {
    let Some(stored) = store.refs.get(name).await? else {
        return Ok(Err("deleted while reading".into()));
    };
    Ok(serde_json::from_slice(&stored.value).map_err(|e| format!("not JSON: {e}")))
}

/// A field as text: strings as they are, other values as compact JSON.
fn text(value: Option<&Value>, key: &str) -> String {
    match value.and_then(|v| v.get(key)) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// A release field: the agents write a digest as `{"hash": "sha256:…",
/// "size": N}`; a plain string is taken as it is.
fn release_text(value: Option<&Value>, key: &str) -> String {
    match value.and_then(|v| v.get(key)).and_then(|d| d.get("hash")) {
        Some(Value::String(hash)) => hash.clone(),
        _ => text(value, key),
    }
}

/// The rollout's plan in a few words (`rolling, 10% at a time`); a plain
/// string is taken as it is.
fn strategy_text(value: Option<&Value>) -> String {
    let plan = value.and_then(|v| v.get("strategy"));
    let Some(plan) = plan.filter(|p| p.get("strategy").is_some_and(Value::is_string)) else {
        return text(value, "strategy");
    };
    let field = |k: &str| text(Some(plan), k);
    match field("strategy").as_str() {
        "at-once" => "at-once".into(),
        "canary" => {
            let canary = plan.get("canary");
            format!(
                "canary of {} for {}, then {} at a time",
                text(canary, "count"),
                text(canary, "bake"),
                field("max_unavailable")
            )
        }
        s => format!("{s}, {} at a time", field("max_unavailable")),
    }
}

/// A time field: Unix seconds are shown in RFC 3339, anything else as text.
fn time_text(value: Option<&Value>, key: &str) -> String {
    let seconds = value.and_then(|v| v.get(key)).and_then(Value::as_i64);
    match seconds.and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok()) {
        Some(t) => rfc3339(t),
        None => text(value, key),
    }
}

/// A field counted: an array's or object's length, or a number.
fn count(value: Option<&Value>, key: &str) -> usize {
    match value.and_then(|v| v.get(key)) {
        Some(Value::Array(a)) => a.len(),
        Some(Value::Object(o)) => o.len(),
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0) as usize,
        _ => 0,
    }
}

fn member_view(
    agent: &str,
    value: Result<Value, String>,
    versions: &HashMap<String, String>,
) -> MemberView {
    let v = value.as_ref().ok();
    let mut release = release_label(&release_text(v, "release"), versions);
    let version = text(v, "version");
    if !version.is_empty() && !release.is_empty() && !release.ends_with(')') {
        release = format!("{release} ({version})");
    }
    MemberView {
        agent: agent.into(),
        release,
        sequence: text(v, "sequence"),
        state: text(v, "state"),
        health: text(v, "health"),
        heartbeat: time_text(v, "heartbeat"),
        last_error: text(v, "last_error"),
        error: value.err(),
    }
}

fn rollout_view(v: Option<&Value>, versions: &HashMap<String, String>) -> RolloutView {
    RolloutView {
        target: release_label(&release_text(v, "target"), versions),
        strategy: strategy_text(v),
        phase: text(v, "phase"),
        slots: count(v, "slots"),
        failures: count(v, "failures"),
        ..RolloutView::default()
    }
}

/// A release named in a fleet record, as the tables show releases: a full
/// `sha256:` digest becomes its short form and gains its version label, if
/// known; anything else stays as it is.
fn release_label(text: &str, versions: &HashMap<String, String>) -> String {
    let Some(digest) = text
        .parse::<DigestRef>()
        .ok()
        .map(|d| d.hex()[..12].to_string())
    else {
        return text.to_string();
    };
    match versions.get(&digest) {
        Some(version) => format!("{digest} ({version})"),
        None => digest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_digest::Digest;

    use crate::dashboard::summary::short;
    use serde_json::json;

    #[test]
    fn members_are_read_leniently() {
        let v = json!({"release": "sha256:ab", "sequence": 3, "state": "running", "extra": 1});
        let m = member_view("a1", Ok(v), &HashMap::new());
        assert_eq!(
            (m.release.as_str(), m.sequence.as_str()),
            ("sha256:ab", "3")
        );
        assert_eq!((m.state.as_str(), m.health.as_str()), ("running", ""));
        let bad = member_view("a2", Err("not JSON".into()), &HashMap::new());
        assert_eq!(bad.error.as_deref(), Some("not JSON"));
    }

    #[test]
    fn member_records_as_agents_write_them() {
        let d = Digest::of(b"release");
        let record = cairn_rollout::MemberRecord {
            agent: "host-a".into(),
            release: Some(d),
            version: Some("2.0".into()),
            sequence: Some(4),
            generation: Some(2),
            target: None,
            state: cairn_rollout::MemberState::RollingBack,
            health: cairn_rollout::Health::Unhealthy,
            heartbeat: 0,
            last_error: Some("release 3 failed".into()),
            previous: None,
            failed: None,
        };
        let v: Value = serde_json::from_slice(&record.to_json()).unwrap();
        let m = member_view("host-a", Ok(v), &HashMap::new());
        assert_eq!(m.release, format!("{} (2.0)", short(&d)));
        assert_eq!(
            (m.state.as_str(), m.health.as_str()),
            ("rolling-back", "unhealthy")
        );
        assert_eq!(
            (m.sequence.as_str(), m.last_error.as_str()),
            ("4", "release 3 failed")
        );
        let known = HashMap::from([(short(&d), "2.0-known".to_string())]);
        let m = member_view(
            "host-a",
            Ok(serde_json::from_slice(&record.to_json()).unwrap()),
            &known,
        );
        assert_eq!(m.release, format!("{} (2.0-known)", short(&d)));
        let r = rollout_view(Some(&json!({"target": d})), &HashMap::new());
        assert_eq!(r.target, short(&d));
    }

    #[test]
    fn rollouts_count_slots_and_failures() {
        let v = json!({"target": "t", "strategy": {"rolling": 1}, "slots": [1, 2], "failures": 1});
        let r = rollout_view(Some(&v), &HashMap::new());
        assert_eq!((r.slots, r.failures), (2, 1));
        assert_eq!(r.strategy, r#"{"rolling":1}"#);
    }

    #[test]
    fn fleet_releases_are_shortened_and_labelled() {
        let d = Digest::of(b"x");
        let versions = HashMap::from([(short(&d), "1.0".to_string())]);
        assert_eq!(
            release_label(&d.to_string(), &versions),
            format!("{} (1.0)", short(&d))
        );
        assert_eq!(release_label("odd", &versions), "odd");
        let v = json!({"heartbeat": 0, "other": "2026-01-01"});
        assert_eq!(time_text(Some(&v), "heartbeat"), "1970-01-01T00:00:00Z");
        assert_eq!(time_text(Some(&v), "other"), "2026-01-01");
    }

    #[test]
    fn the_agents_records_are_read_as_they_write_them() {
        let d = Digest::of(b"release");
        let digest = json!({"hash": d.to_string(), "size": 7});
        let m = member_view(
            "a1",
            Ok(json!({"release": digest, "state": "running"})),
            &HashMap::new(),
        );
        assert_eq!(m.release, short(&d));
        let rollout = json!({
            "target": digest, "phase": "rolling",
            "strategy": {"strategy": "rolling", "max_unavailable": "10%", "on_failure": "halt", "gates": []},
            "slots": [{"member": "a1", "expires": 1}], "failures": [],
        });
        let r = rollout_view(Some(&rollout), &HashMap::new());
        assert_eq!(r.target, short(&d));
        assert_eq!(r.strategy, "rolling, 10% at a time");
        assert_eq!(r.slots, 1);
        let canary = json!({"strategy": {"strategy": "canary", "max_unavailable": 2,
                            "canary": {"count": 1, "bake": "10m"}}});
        assert_eq!(
            rollout_view(Some(&canary), &HashMap::new()).strategy,
            "canary of 1 for 10m, then 2 at a time"
        );
    }

    #[test]
    fn targets_match_in_any_form() {
        assert!(on_target("sha256:abcdef", "abcdef"));
        assert!(on_target("abcdef0123", "sha256:abcdef"));
        assert!(!on_target("", "abc"));
        assert!(!on_target("abd", "abc"));
    }
}
