//! The fleet protocol of cairn's agents.
//!
//! The agents of a deployment set coordinate only through refs in the
//! store: each heartbeats its member record, and the rollout ref holds the
//! target, the strategy and the update slots (docs/ARCHITECTURE.md, the
//! fleet section). This crate is pure: it defines those records and the
//! rules over them, and never reads a clock, a file or the network. The
//! agent (`cairn-agent`) does the I/O and feeds it what it read.

pub mod record;

pub use record::{member_ref, rollout_ref, Health, MemberRecord, MemberState, RecordError};
