//! Views and records to decide on.

use std::sync::Arc;

use cairn_digest::Digest;
use cairn_rollout::{
    decide, Accepted, Action, Decision, Health, Local, MemberRecord, MemberState, Phase, Plan,
    Read, RolloutRead, RolloutRecord, Slot, SlotKind, Time, Timing, Version, Versioned, View,
    Write,
};

/// The release being rolled out.
pub fn target() -> Digest {
    Digest::of(b"release 2")
}

/// The release members ran before.
pub fn old() -> Digest {
    Digest::of(b"release 1")
}

/// The rollout's statement sequence.
pub const SEQ: u64 = 2;

/// The time decisions are made at.
pub fn now() -> Time {
    Time::from_secs(1_800_000_000)
}

/// Seconds from [`now`], as records store them.
pub fn at(offset: i64) -> i64 {
    now().secs() + offset
}

/// Agent `me`, running the old release, having accepted the target long
/// ago and fetched it.
pub fn view(me: &str, plan: Plan) -> View {
    let mut v = View::new(me, Timing::default());
    v.accepted = Some(Accepted {
        release: target(),
        sequence: SEQ,
        version: Some("2".into()),
        plan,
        at: Time::from_secs(at(-600)),
        statement: Some("{\"signed\": \"statement 2\"}".into()),
    });
    v.local = Local {
        running: Some(old()),
        previous: None,
        health: Health::Healthy,
        fetched: vec![old(), target()],
        ..Local::default()
    };
    v
}

/// A rollout of the target in `phase`, nobody stewarding, no slot held.
pub fn record(plan: Plan, phase: Phase, members: u32) -> RolloutRecord {
    RolloutRecord {
        target: target(),
        sequence: SEQ,
        statement: Some("{\"signed\": \"statement 2\"}".into()),
        version: Some("2".into()),
        capacity: plan.capacity(members),
        strategy: plan,
        phase,
        wave: 0,
        members,
        lease: 100,
        cursor: None,
        rollback_cursor: None,
        slots: Vec::new(),
        canaries: Vec::new(),
        done: 0,
        away: 0,
        rolled_back: 0,
        failures: Vec::new(),
        halted: None,
        gates: Vec::new(),
        steward: None,
        bake_until: None,
        resume_to: None,
        waves: Vec::new(),
        created: at(-60),
        updated: at(-60),
    }
}

/// `view` having read `record` at version "7".
pub fn reading(mut view: View, record: RolloutRecord) -> View {
    view.rollout = RolloutRead::Read(Versioned {
        version: Version("7".into()),
        value: Arc::new(record),
    });
    view
}

/// An update slot for `member` ending `secs` from now.
pub fn slot(member: &str, secs: i64) -> Slot {
    Slot {
        member: member.into(),
        expires: at(secs),
        kind: SlotKind::Update,
        wave: Some(1),
    }
}

/// A member record as the steward reads it.
pub fn member(id: &str, release: Digest, state: MemberState, heartbeat_ago: i64) -> MemberRecord {
    MemberRecord {
        agent: id.into(),
        release: Some(release),
        version: None,
        sequence: None,
        generation: None,
        target: None,
        state,
        health: Health::Healthy,
        heartbeat: at(-heartbeat_ago),
        last_error: None,
        previous: Some(old()),
        failed: None,
    }
}

/// Decides at [`now`].
pub fn decide_now(view: &View) -> Decision {
    decide(view, now())
}

/// The rollout record a decision writes, if any.
pub fn rollout_write(d: &Decision) -> Option<&RolloutRecord> {
    d.writes.iter().find_map(|w| match w {
        Write::Rollout { record, .. } => Some(&**record),
        _ => None,
    })
}

/// The member record a decision writes, if any.
pub fn member_write(d: &Decision) -> Option<&MemberRecord> {
    d.writes.iter().find_map(|w| match w {
        Write::Member { record, .. } => Some(&**record),
        _ => None,
    })
}

/// Answers a decision's reads from `members` (all of them listed) and
/// decides again, until it asks for nothing more.
pub fn decide_with(mut view: View, members: &[MemberRecord]) -> (View, Decision) {
    for _ in 0..8 {
        let d = decide_now(&view);
        if d.reads.is_empty() {
            return (view, d);
        }
        for r in d.reads {
            match r {
                Read::Members => {
                    let ids = members.iter().map(|m| m.agent.clone()).collect();
                    view.members = Some(Arc::new(ids));
                }
                Read::Records(ids) => {
                    for id in ids {
                        let rec = members.iter().find(|m| m.agent == id).cloned();
                        view.peers.insert(id, rec);
                    }
                }
                Read::Fleet { .. } => panic!("no fleet in this test"),
            }
        }
    }
    panic!("the decision keeps asking for reads")
}

/// Whether the action is a wait.
pub fn waits(d: &Decision) -> bool {
    matches!(d.action, Action::Wait { .. })
}
