//! One simulated agent: the protocol's [`View`] plus what the machine
//! really does (the ground truth the invariants are checked against).
//!
//! What survives a crash is what the real agent keeps in its state
//! directory: the statement it accepted and its local facts (what runs,
//! what was fetched, what failed). Everything else (the records it read,
//! the write in flight, its timers) is lost.

use std::collections::VecDeque;
use std::sync::Arc;

use cairn_digest::Digest;
use cairn_rollout::{Action, MemberRecord, Phase, RolloutRecord, Timing, Version, View, Write};

/// A write as sent: the rollout record shared rather than copied (it may
/// hold thousands of slots).
#[derive(Clone, Debug)]
pub enum Sent {
    /// This agent's member record.
    Member(Option<Version>, Box<MemberRecord>),
    /// The rollout record.
    Rollout(Option<Version>, Arc<RolloutRecord>),
}

impl From<Write> for Sent {
    fn from(w: Write) -> Self {
        match w {
            Write::Member { expected, record } => Sent::Member(expected, record),
            Write::Rollout { expected, record } => Sent::Rollout(expected, Arc::new(*record)),
        }
    }
}

/// The kind of swap in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwapKind {
    /// To the rollout's target.
    Update,
    /// Back to the previous release.
    Rollback,
}

/// A swap in progress, as it really goes.
#[derive(Clone, Debug)]
pub struct Swap {
    /// Update or rollback.
    pub kind: SwapKind,
    /// The release swapped to.
    pub to: Digest,
    /// The statement sequence it was decided under.
    pub sequence: u64,
    /// Whether it ends healthy.
    pub ok: bool,
    /// When its lease ends, in true time.
    pub finish_by: i64,
}

/// One agent of the set.
#[derive(Debug)]
pub struct Agent {
    /// Its id.
    pub id: String,
    /// Whether its process runs.
    pub alive: bool,
    /// Incremented at every crash: events of an earlier life are dropped.
    pub epoch: u32,
    /// Its clock minus the true time, in ms.
    pub skew: i64,
    /// What the protocol sees.
    pub view: View,
    /// Whether `view.own` is the stored version (not after an error).
    pub own_known: bool,
    /// The request whose reply it waits for.
    pub waiting: Option<u64>,
    /// The write in flight.
    pub inflight: Option<Sent>,
    /// Writes still to make, then the action.
    pub writes: VecDeque<Write>,
    /// The action after the writes.
    pub action: Option<Action>,
    /// The token of its current timer; older timers are ignored.
    pub timer: u64,
    /// Whether it waits on a timer (a new statement wakes it).
    pub idle: bool,
    /// When its wait asked for the rollout record to be read again
    /// (its own clock, ms).
    pub refresh: i64,
    /// Decisions made this round that asked for reads (a loop guard).
    pub reads_this_round: u32,
    /// The phase of the record its last decision saw.
    pub decided_in: Phase,
    /// The swap in progress.
    pub swap: Option<Swap>,
    /// What it ran when the newest statement was promoted.
    pub before: Option<Digest>,
    /// Whether it joined the set (late joiners start later).
    pub joined: bool,
    /// Failed first attempts still to come (flaky members).
    pub flaky: u32,
}

impl Agent {
    /// An agent that has not started.
    pub fn new(id: String, timing: Timing) -> Self {
        Self {
            view: View::new(id.clone(), timing),
            id,
            alive: false,
            epoch: 0,
            skew: 0,
            own_known: false,
            waiting: None,
            inflight: None,
            writes: VecDeque::new(),
            action: None,
            timer: 0,
            idle: false,
            refresh: 0,
            reads_this_round: 0,
            decided_in: Phase::Done,
            swap: None,
            before: None,
            joined: false,
            flaky: 0,
        }
    }

    /// Loses everything a crash loses.
    pub fn forget(&mut self) {
        let (local, accepted, timing) = (
            self.view.local.clone(),
            self.view.accepted.clone(),
            self.view.timing.clone(),
        );
        self.view = View::new(self.id.clone(), timing);
        self.view.local = local;
        self.view.accepted = accepted;
        self.own_known = false;
        self.waiting = None;
        self.inflight = None;
        self.writes.clear();
        self.action = None;
        self.idle = false;
    }
}
