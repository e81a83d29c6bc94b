//! `cairn rollout pause|resume|abort SERVICE [--set SET]`: an operator's
//! hand on a deployment set's rollout.
//!
//! Each reads the set's rollout record, applies the pure function of
//! `cairn_rollout::operator` and writes the result back by
//! compare-and-swap, retrying when an agent wrote first. Without `--set`
//! it acts on every set of the service that has a rollout record.

use anyhow::{anyhow, bail, Result};
use cairn_rollout::{operator, rollout_ref, OperatorError, RolloutRecord, Time};
use cairn_store::{RefName, Store, StoreError};
use serde::Serialize;
use time::OffsetDateTime;

use crate::cli::{Global, RolloutCommand, RolloutTarget};
use crate::output::emit;

/// How many times a write that lost a race with an agent is tried again.
const ATTEMPTS: usize = 20;

type Change = fn(&RolloutRecord, Time) -> Result<RolloutRecord, OperatorError>;

#[derive(Serialize)]
struct Changed {
    service: String,
    set: String,
    from: String,
    to: String,
}

/// Runs a `cairn rollout` subcommand.
pub async fn run(global: &Global, cmd: RolloutCommand) -> Result<i32> {
    let (change, target): (Change, RolloutTarget) = match cmd {
        RolloutCommand::Pause(t) => (operator::pause, t),
        RolloutCommand::Resume(t) => (operator::resume, t),
        RolloutCommand::Abort(t) => (operator::abort, t),
    };
    let store = super::open_store(global, super::Access::Existing).await?;
    let service = target.service;
    let sets = match target.set {
        Some(set) => vec![set],
        None => sets_with_rollouts(&store, &service).await?,
    };
    if sets.is_empty() {
        bail!("{service} has no rollout: nothing under fleet/{service}/<set>/rollout");
    }
    let mut changed = Vec::new();
    for set in sets {
        changed.push(apply(&store, &service, &set, change).await?);
    }
    emit(global.json, &changed, |c| {
        c.iter()
            .map(|c| format!("{}/{}: {} -> {}", c.service, c.set, c.from, c.to))
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(0)
}

/// The sets of `service` that have a rollout record.
async fn sets_with_rollouts(store: &Store, service: &str) -> Result<Vec<String>> {
    let prefix = format!("fleet/{service}/");
    let names = store.refs.list(&prefix).await?;
    Ok(names
        .iter()
        .filter_map(|n| n.as_str().strip_prefix(&prefix)?.strip_suffix("/rollout"))
        .filter(|set| !set.contains('/'))
        .map(str::to_string)
        .collect())
}

async fn apply(store: &Store, service: &str, set: &str, change: Change) -> Result<Changed> {
    let name = RefName::new(rollout_ref(service, set))?;
    for _ in 0..ATTEMPTS {
        let Some(read) = store.refs.get(&name).await? else {
            bail!("{name} does not exist: {service}/{set} has no rollout");
        };
        let record = RolloutRecord::parse(name.as_str(), &read.value)?;
        let new = change(&record, now()).map_err(|e| anyhow!("{service}/{set}: {e}"))?;
        let written = store
            .refs
            .compare_and_swap(&name, Some(&read.version), new.to_json())
            .await;
        match written {
            Ok(_) => {
                return Ok(Changed {
                    service: service.into(),
                    set: set.into(),
                    from: record.phase.to_string(),
                    to: new.phase.to_string(),
                })
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    bail!("{name} changed {ATTEMPTS} times while being written; try again")
}

fn now() -> Time {
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
    Time(i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX))
}
