//! A record may make a member more cautious than its own plan, never less.
//!
//! The rollout record is anyone's to write who may write the store, and
//! its plan (`strategy`) is whatever the agent that created it held: a
//! member whose agent.toml overrides `[deploy]` differently follows the
//! same record. So the record's plan is not checked against this
//! member's (two members with different overrides would replace each
//! other's records for ever); instead each member applies, on top of the
//! record, the limits of its own plan (the accepted statement's, or its
//! set's override):
//!
//! * **capacity**: it starts an update or a rollback only while the slots
//!   the record holds (its own included) are within the smaller of the
//!   record's capacity and its own plan's; a canary in the canary phase
//!   only while the canaries and the update slots are within its own
//!   canary count. A member granted a slot beyond that gives it back and
//!   takes its turn later, when there is room by both counts (a claim is
//!   a compare-and-swap, so two such members never both take the last
//!   place);
//! * **rollback**: it returns to its previous release only when its own
//!   plan says `on_failure = "rollback"`; a record rolling back is, to a
//!   member whose plan halts, a halt. The release it returns to is never
//!   named by the record: it is this member's own previous generation, a
//!   release it accepted (signed, promoted) and ran before;
//! * **freeze windows**: those of its own plan hold it as well as the
//!   record's.
//!
//! A halt, a pause or an abort only stops members (a swap under way
//! finishes; no slot is used): a store writer can always deny service,
//! as by deleting blobs, and these are that.

use super::Cx;
use crate::plan::{OnFailure, Plan};
use crate::record::SlotKind;

/// This member's own plan (the accepted statement's, or its set's
/// override); the record's when it has none (it cannot follow a record
/// then, so this never loosens anything).
pub(super) fn plan<'c>(cx: &'c Cx<'_>) -> &'c Plan {
    match &cx.view.accepted {
        Some(a) => &a.plan,
        None => &cx.rec().strategy,
    }
}

/// The most slots this member lets the record hold while it swaps: the
/// smaller of the record's capacity and its own plan's.
pub(super) fn capacity(cx: &Cx<'_>) -> u32 {
    let rec = cx.rec();
    rec.capacity.min(plan(cx).capacity(rec.members))
}

/// Slots free at `now` by both counts.
pub(super) fn room(cx: &Cx<'_>) -> u32 {
    let held = u32::try_from(cx.rec().held(cx.now, cx.timing().margin())).unwrap_or(u32::MAX);
    capacity(cx).saturating_sub(held)
}

/// Why this member may not swap under its slot of `kind` now (the record
/// holds more than its own plan allows), if it may not.
pub(super) fn exceeded(cx: &Cx<'_>, kind: SlotKind) -> Option<String> {
    let rec = cx.rec();
    let held = u32::try_from(rec.held(cx.now, cx.timing().margin())).unwrap_or(u32::MAX);
    let cap = capacity(cx);
    if held > cap {
        return Some(format!(
            "the rollout record holds {held} slots; this member's plan allows {cap} at once"
        ));
    }
    let canary = plan(cx).canary_count(rec.members);
    if let (SlotKind::Update, crate::record::Phase::Canary, Some(count)) = (kind, rec.phase, canary)
    {
        let updating = rec
            .slots
            .iter()
            .filter(|s| s.kind == SlotKind::Update && !cx.expired(s.expires))
            .count();
        let exposed = u32::try_from(rec.canaries.len() + updating).unwrap_or(u32::MAX);
        if exposed > count {
            return Some(format!(
                "the rollout record has {exposed} canaries; this member's plan allows {count}"
            ));
        }
    }
    None
}

/// Whether this member's own plan rolls back on a failure.
pub(super) fn rolls_back(cx: &Cx<'_>) -> bool {
    plan(cx).on_failure == OnFailure::Rollback
}
