//! The fleet protocol of cairn's agents.
//!
//! The agents of a deployment set coordinate only through refs in the
//! store: each heartbeats its member record, and the rollout ref holds the
//! target, the plan, the phase and the update slots (docs/ARCHITECTURE.md,
//! the fleet section). This crate is pure: it defines those records and
//! the rules over them, and never reads a clock, a file or the network.
//! The agent (`cairn-agent`) does the I/O and feeds it what it read.
//!
//! # Driving it
//!
//! One function, [`decide`], takes a [`View`] (what the agent read and
//! knows) and the time, and returns a [`Decision`]: reads it still needs,
//! then compare-and-swap [`Write`]s, then one local [`Action`] (wait,
//! fetch, update, roll back, run a gate check). The agent's loop:
//!
//! ```text
//! loop:
//!   read own member record and the rollout record into the view (new round)
//!   repeat: decision = decide(view, now)
//!           if decision.reads: read them into the view; continue
//!   do the writes in order; on a conflict or an unknown outcome: start over
//!   put what was written into the view; do the action
//! ```
//!
//! Call it again when the action ends, when its wait ends, when a watched
//! ref changes, or when a local fact changes (a new statement accepted, a
//! fetch finished, health changed); never while an update or a rollback is
//! under way. A wait names two times: `refresh`, when to read the rollout
//! record again, and `until`, when to decide again (sooner, when the
//! member record's heartbeat is due). A decision before `refresh` may use
//! the record already read, as long as it only writes the member record
//! and waits; if it wants more, read first and decide again.
//!
//! The plan comes from the release (`Plan::from_json` of its `deploy`
//! field; [`Plan::default`] when it has none) or from the set's override
//! in the agent's configuration, which has the same shape. The swap
//! budget ([`Timing::swap_budget`]) is the agent's to compute from the
//! release's run specification: start, health deadline and bake, and the
//! old process's stop grace.
//!
//! # Roles
//!
//! Every agent is a **member**: it fetches the target early, updates when
//! it holds a slot, reports its own failure (halting the rollout at once),
//! and takes a turn it missed. One agent at a time is also the
//! **steward**, by a lease in the rollout record: it lists the members
//! once per wave, grants the next wave's slots in one write, reads the
//! records of slot holders (no one else's) to release finished ones, and
//! moves the phase on. Everything it knows is in the record, so when it
//! dies the next agent to look takes the lease and continues. The agent
//! that first sees a new statement creates the rollout by compare-and-swap
//! (exactly one wins) and is its first steward.
//!
//! # Phases
//!
//! ```text
//!            new statement (compare-and-swap; carries held slots over)
//!                  │
//!       canary ────┴──── rolling / at-once
//!         │                    │
//!         ▼                    ▼
//!      Canary ──canaries──► Baking ──bake over──► Rolling ──all had their turn──► Done
//!         │     updated       │                      │
//!         └───────────────────┴──── a member fails ──┘
//!                              │
//!          on_failure = "halt" │ on_failure = "rollback"
//!                 ▼            ▼
//!              Halted      RollingBack ──all back──► RolledBack
//!                 │
//!                 └── operator resume ──► the phase it halted in
//!
//!   any forward phase ──pause──► Paused ──resume──► that phase
//!   any phase but Done ──abort──► Aborted
//!   any phase ──newer statement──► a new rollout
//! ```
//!
//! # Trust
//!
//! The records are anyone's to write who may write the store; agents
//! trust signatures, never the store. A rollout record carries the signed
//! channel statement it rolls out (`RolloutRecord::statement`); an agent
//! that has not accepted a statement that new checks it against its own
//! keys (the agent does: this crate verifies nothing) and says so in
//! [`View::verified`]. A record claiming a newer sequence is waited for
//! only when that backs it; otherwise it is replaced, like an older one.
//!
//! # Safety
//!
//! Slots are leases: a holder swaps only while its lease covers the whole
//! swap on its own clock, and others count a slot as held until a margin
//! (twice the clock skew bound) past its end on theirs; a slot is
//! released early only when its holder's record says it finished. Every
//! write is a compare-and-swap of the whole record, so the slots in any
//! version never exceed the capacity, and no slot is granted in a halted,
//! paused or aborted version. The simulator (`cairn-sim`) checks these
//! properties with thousands of agents under crashes, lost and delayed
//! writes, store outages and clock skew.

mod decide;
mod decision;
pub mod operator;
pub mod order;
pub mod plan;
mod plan_wire;
pub mod record;
mod time;
mod view;

pub use decide::decide;
pub use decision::{Action, Decision, Read, Reason, Write};
pub use operator::OperatorError;
pub use plan::{Amount, Gate, OnFailure, Order, Plan, PlanError, Strategy};
pub use record::{
    member_ref, members_prefix, rollout_ref, Attempt, Failure, Halt, Health, Lease, MemberRecord,
    MemberState, Phase, Position, RecordError, RolloutRecord, Slot, SlotKind, Version, Versioned,
    Wave,
};
pub use time::Time;
pub use view::{Accepted, CheckResult, FleetFact, Local, RolloutRead, Timing, View};
