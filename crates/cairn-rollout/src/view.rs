//! What an agent knows when it decides: the [`View`].
//!
//! The agent fills a view from what it read from the store (its own member
//! record, the rollout record) and what it knows locally (the statement it
//! accepted, what runs, its health). A decision may ask for more reads
//! ([`crate::Read`]): other members' records, the member list, another
//! set's state; the agent adds those to the view and decides again. The
//! reads belong to one round: clear `members`, `peers` and `fleets` when
//! the rollout record is read again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cairn_digest::Digest;

use crate::decision::Write;
use crate::plan::Plan;
use crate::record::{Attempt, Health, MemberRecord, Phase, RolloutRecord, Version, Versioned};
use crate::time::Time;

/// Everything one decision is made from.
#[derive(Clone, Debug)]
pub struct View {
    /// This agent's id.
    pub me: String,
    /// Intervals and bounds.
    pub timing: Timing,
    /// The newest channel statement this agent accepted, if any.
    pub accepted: Option<Accepted>,
    /// What runs here.
    pub local: Local,
    /// This agent's member record as last read or written.
    pub own: Option<Versioned<MemberRecord>>,
    /// The rollout record as read this round.
    pub rollout: RolloutRead,
    /// The statement a rollout record read this round carries, when it is
    /// newer than [`View::accepted`] and the agent verified it against its
    /// own trusted keys (signatures, threshold, service, channel, expiry),
    /// as the release and sequence it names. A record claiming a newer
    /// sequence is waited for only when this backs it (the same release
    /// and sequence); any other claim is unsigned, and the record is
    /// replaced by the accepted statement's rollout.
    pub verified: Option<Attempt>,
    /// The member ids listed under the set's members prefix, when a
    /// decision asked for them ([`crate::Read::Members`]); shared, as a
    /// large set's list is long.
    pub members: Option<Arc<Vec<String>>>,
    /// Member records read on request ([`crate::Read::Records`]); `None`
    /// for a member whose record does not exist or cannot be read.
    pub peers: BTreeMap<String, Option<MemberRecord>>,
    /// Other sets' state, by `"service/set"`, read on request
    /// ([`crate::Read::Fleet`]).
    pub fleets: BTreeMap<String, FleetFact>,
}

/// The rollout ref as read.
#[derive(Clone, Debug)]
pub enum RolloutRead {
    /// The ref does not exist.
    Absent,
    /// The record and its version (shared: it may be large).
    Read(Versioned<Arc<RolloutRecord>>),
    /// The ref exists but is not a rollout record this version understands.
    Unreadable {
        /// Its version.
        version: crate::record::Version,
        /// Why it could not be read.
        error: String,
        /// When this agent first read this version of it (slots it may
        /// list are surely over a horizon later, and it is replaced).
        since: Time,
    },
}

/// The channel statement an agent accepted (after verifying it and the
/// release it names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The release it names.
    pub release: Digest,
    /// Its sequence number.
    pub sequence: u64,
    /// The release's version label.
    pub version: Option<String>,
    /// The release's plan (its `deploy`), or the set's override.
    pub plan: Plan,
    /// When this agent accepted it (spreads out who creates the rollout).
    pub at: Time,
    /// The statement's signed envelope (JSON text), carried by a rollout
    /// record this agent creates so that others can verify it.
    pub statement: Option<String>,
}

/// What an agent knows about its own machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Local {
    /// The release serving now.
    pub running: Option<Digest>,
    /// Its version label.
    pub version: Option<String>,
    /// The sequence of the statement it was accepted from.
    pub sequence: Option<u64>,
    /// The local generation it runs from.
    pub generation: Option<u64>,
    /// The release a rollback returns to.
    pub previous: Option<Digest>,
    /// The running service's health.
    pub health: Health,
    /// Releases fetched and ready to swap to.
    pub fetched: Vec<Digest>,
    /// The release that last failed its health check here.
    pub failed: Option<Attempt>,
    /// Results of gate checks this agent ran.
    pub checks: Vec<CheckResult>,
    /// The last error, in one line.
    pub last_error: Option<String>,
}

/// The result of a [`crate::Action::RunCheck`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckResult {
    /// The rollout's statement sequence.
    pub sequence: u64,
    /// The wave the check was run before.
    pub wave: u32,
    /// The gate's index in the plan.
    pub gate: usize,
    /// Whether the command exited 0 in time.
    pub passed: bool,
    /// When it finished.
    pub at: Time,
}

/// Another deployment set, as a `fleet` gate needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetFact {
    /// Every member healthy, with no rollout in progress.
    pub healthy: bool,
    /// The release all its members run, if they agree.
    pub release: Option<Digest>,
    /// Why what was read of the set is not believed (its rollout record
    /// carries no statement this agent's keys verify for its target):
    /// the gate stays closed, and says why.
    pub refused: Option<String>,
}

impl FleetFact {
    /// The fact a set's rollout record gives: healthy once its rollout is
    /// done, on that rollout's target. (One read, whatever the set's size.)
    pub fn from_rollout(record: Option<&RolloutRecord>) -> Self {
        match record {
            Some(r) => Self {
                healthy: r.phase == Phase::Done && r.halted.is_none(),
                release: Some(r.target),
                refused: None,
            },
            None => Self {
                healthy: false,
                release: None,
                refused: None,
            },
        }
    }

    /// A set whose rollout record is not believed, for `why`.
    pub fn refused(why: String) -> Self {
        Self {
            healthy: false,
            release: None,
            refused: Some(why),
        }
    }

    /// Whether the fact meets a gate asking for `release` (digest text,
    /// with or without size; `None`: any release).
    pub fn satisfies(&self, release: Option<&str>) -> bool {
        let on = |want: &str| {
            let hex = want.strip_prefix("sha256:").unwrap_or(want);
            let hex = hex.split('/').next().unwrap_or(hex);
            self.release.is_some_and(|r| r.hex() == hex)
        };
        self.refused.is_none() && self.healthy && release.is_none_or(on)
    }
}

/// The intervals and bounds a decision works with. The defaults suit a
/// set polling a store every two seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How often an agent decides while it has something to do (holding
    /// a slot, stewarding, its turn near).
    pub poll: Duration,
    /// The longest it waits between decisions otherwise.
    pub idle_poll: Duration,
    /// How often the member record is rewritten when nothing changed.
    pub heartbeat: Duration,
    /// A member whose heartbeat is older is away: its turn is skipped.
    pub member_timeout: Duration,
    /// How long the steward lease lasts (renewed as it works).
    pub steward_lease: Duration,
    /// The most two agents' clocks may differ by.
    pub max_skew: Duration,
    /// The longest an update or a rollback may take here: start, health
    /// deadline and bake, stop grace. A slot's lease covers it.
    pub swap_budget: Duration,
    /// How long after a failed gate check it is run again.
    pub check_retry: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            poll: Duration::from_secs(2),
            idle_poll: Duration::from_secs(60),
            heartbeat: Duration::from_secs(60),
            member_timeout: Duration::from_secs(180),
            steward_lease: Duration::from_secs(30),
            max_skew: Duration::from_secs(2),
            swap_budget: Duration::from_secs(60),
            check_retry: Duration::from_secs(30),
        }
    }
}

impl Timing {
    /// The margin others leave past a lease's expiry before treating it as
    /// over: twice the skew (their clock may be ahead, the holder's
    /// behind), plus a second for expiries written in whole seconds.
    pub fn margin(&self) -> Duration {
        self.max_skew * 2 + Duration::from_secs(1)
    }

    /// How long a granted slot lasts: the swap itself, time to see the
    /// grant (a few polls: the grant may land late, the holder may be
    /// fetching), and the margin on both sides. A holder that still sees
    /// its grant too late renews it before it starts.
    pub fn slot_lease(&self) -> Duration {
        self.swap_budget + self.poll * 5 + self.margin() * 2
    }

    /// How long a member's record may go unwritten before the member is
    /// away: the member timeout plus the margin, the rule the steward
    /// applies when a member's turn comes (an away member is passed over).
    pub fn away_after(&self) -> Duration {
        self.member_timeout + self.margin()
    }

    /// Whether a member whose record says `heartbeat` (Unix seconds, on
    /// its clock) is away at `now` (on this one).
    pub fn is_away(&self, heartbeat: i64, now: Time) -> bool {
        now.since(Time::from_secs(heartbeat)) > self.away_after()
    }

    /// Whether a lease ending at `expires` (Unix seconds, on the holder's
    /// clock) has surely ended at `now`: past its end by the margin, as
    /// everyone but the holder counts it.
    pub fn lease_over(&self, expires: i64, now: Time) -> bool {
        crate::record::expired(expires, now, self.margin())
    }
}

impl View {
    /// A view for agent `me` that has read nothing yet.
    pub fn new(me: impl Into<String>, timing: Timing) -> Self {
        Self {
            me: me.into(),
            timing,
            accepted: None,
            local: Local::default(),
            own: None,
            rollout: RolloutRead::Absent,
            verified: None,
            members: None,
            peers: BTreeMap::new(),
            fleets: BTreeMap::new(),
        }
    }

    /// Forgets the reads of the last round (call when re-reading the
    /// rollout record).
    pub fn new_round(&mut self) {
        self.members = None;
        self.peers.clear();
        self.fleets.clear();
    }

    /// Puts a write that succeeded into the view, at the version the
    /// store returned for it.
    pub fn wrote(&mut self, write: Write, version: Version) {
        match write {
            Write::Member { record, .. } => {
                self.own = Some(Versioned {
                    version,
                    value: *record,
                })
            }
            Write::Rollout { record, .. } => {
                self.rollout = RolloutRead::Read(Versioned {
                    version,
                    value: Arc::new(*record),
                })
            }
        }
    }
}
