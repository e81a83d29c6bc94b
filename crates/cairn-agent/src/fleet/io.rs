//! The fleet records through the store's `RefStore`: reading what a
//! decision needs into the view, and writing by compare-and-swap.

use std::sync::Arc;

use cairn_rollout::{
    members_prefix, FleetFact, MemberRecord, Read, RolloutRead, RolloutRecord, Version, Versioned,
    View, Write,
};
use cairn_store::{RefName, RefStore, StoreError};

/// The refs of one agent of one set.
#[derive(Clone, Debug)]
pub(super) struct Names {
    pub service: String,
    pub set: String,
    pub rollout: RefName,
    pub own: RefName,
}

impl Names {
    pub fn new(service: &str, set: &str, agent: &str) -> Result<Self, StoreError> {
        Ok(Self {
            service: service.to_string(),
            set: set.to_string(),
            rollout: RefName::new(cairn_rollout::rollout_ref(service, set))?,
            own: RefName::new(cairn_rollout::member_ref(service, set, agent))?,
        })
    }
}

/// How a write ended, when it did not succeed.
#[derive(Debug)]
pub(super) enum WriteError {
    /// Someone else wrote first: read again and decide again.
    Conflict,
    /// The store failed; the write may or may not have happened.
    Store(StoreError),
}

fn version(v: &cairn_store::Version) -> Version {
    Version(v.0.clone())
}

/// Reads the rollout record.
pub(super) async fn rollout(
    refs: &dyn RefStore,
    name: &RefName,
) -> Result<RolloutRead, StoreError> {
    Ok(match refs.get(name).await? {
        None => RolloutRead::Absent,
        Some(v) => match RolloutRecord::parse(name.as_str(), &v.value) {
            Ok(r) => RolloutRead::Read(Versioned {
                version: version(&v.version),
                value: Arc::new(r),
            }),
            Err(e) => RolloutRead::Unreadable {
                version: version(&v.version),
                error: e.to_string(),
                since: cairn_rollout::Time(crate::status::now_ms()),
            },
        },
    })
}

/// Reads a member record: `None` when absent; its version and `None`
/// when it is not a member record this version reads (the owner then
/// overwrites it).
pub(super) async fn member(
    refs: &dyn RefStore,
    name: &RefName,
) -> Result<Option<(Version, Option<MemberRecord>)>, StoreError> {
    let Some(v) = refs.get(name).await? else {
        return Ok(None);
    };
    let record = MemberRecord::parse(name.as_str(), &v.value).ok();
    Ok(Some((version(&v.version), record)))
}

/// Does the reads of one decision into the view.
pub(super) async fn read(
    refs: &dyn RefStore,
    trust: &super::Trust,
    names: &Names,
    view: &mut View,
    reads: &[Read],
) -> Result<(), StoreError> {
    for r in reads {
        match r {
            Read::Members => {
                let prefix = members_prefix(&names.service, &names.set);
                let ids = refs
                    .list(&prefix)
                    .await?
                    .iter()
                    .filter_map(|n| n.as_str().strip_prefix(&prefix).map(str::to_string))
                    .filter(|id| !id.contains('/'))
                    .collect();
                view.members = Some(Arc::new(ids));
            }
            Read::Records(ids) => {
                for id in ids {
                    let name = cairn_rollout::member_ref(&names.service, &names.set, id);
                    let rec = match RefName::new(name) {
                        Ok(n) => member(refs, &n).await.ok().flatten().and_then(|(_, r)| r),
                        Err(_) => None,
                    };
                    view.peers.insert(id.clone(), rec);
                }
            }
            Read::Fleet { service, set } => {
                // A gate the record's plan names may name no valid set: it
                // stays closed rather than fail every round of this member.
                let Ok(name) = RefName::new(cairn_rollout::rollout_ref(service, set)) else {
                    let why = format!("{service}/{set} is not a deployment set's name");
                    view.fleets
                        .insert(format!("{service}/{set}"), FleetFact::refused(why));
                    continue;
                };
                let fact = match rollout(refs, &name).await? {
                    // Anyone who may write the store may write it: its
                    // statement must verify as this agent's own would.
                    RolloutRead::Read(r) => {
                        let now = time::OffsetDateTime::now_utc();
                        match trust.check_gate(&r.value, service, now) {
                            Ok(_) => FleetFact::from_rollout(Some(&r.value)),
                            Err(e) => FleetFact::refused(format!("{name}: {e}")),
                        }
                    }
                    _ => FleetFact::from_rollout(None),
                };
                view.fleets.insert(format!("{service}/{set}"), fact);
            }
        }
    }
    Ok(())
}

/// Writes one record by compare-and-swap; on success puts it into the
/// view with its new version.
pub(super) async fn write(
    refs: &dyn RefStore,
    names: &Names,
    view: &mut View,
    w: Write,
) -> Result<(), WriteError> {
    let name = match &w {
        Write::Rollout { .. } => &names.rollout,
        Write::Member { .. } => &names.own,
    };
    let expected = w.expected().map(|v| cairn_store::Version(v.0.clone()));
    match refs
        .compare_and_swap(name, expected.as_ref(), w.to_json())
        .await
    {
        Ok(v) => {
            view.wrote(w, version(&v));
            Ok(())
        }
        Err(StoreError::Conflict { .. }) => Err(WriteError::Conflict),
        Err(e) => Err(WriteError::Store(e)),
    }
}
