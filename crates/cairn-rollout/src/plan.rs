//! The rollout plan: how a release goes out across a deployment set.
//!
//! A [`Plan`] is `[deploy]` of `cairn.toml` as a release carries it (the
//! release document's `deploy` field, written by cairn-recipe's
//! `Deploy::to_json`), or an override in an agent's configuration. Its
//! serde form is that same shape, so one type reads both:
//!
//! ```toml
//! strategy = "canary"               # "at-once" | "rolling" | "canary"
//! max_unavailable = "10%"           # a number of members or a percentage
//! canary = { count = 2, bake = "10m" }
//! on_failure = "rollback"           # "halt" (default) | "rollback"
//! order = ["host-a", "host-b"]      # optional: these first, in this order
//! gates = [
//!   { fleet = "db/eu-1", release = "sha256:…" },
//!   { freeze = { from = 2025-12-20T00:00:00Z, until = 2026-01-05T00:00:00Z } },
//!   { check = ["bin/ready"], timeout = "30s" },
//! ]
//! ```
//!
//! Unknown keys are refused, as in the release document itself: a setting
//! this version does not understand could change how many machines go
//! down at once.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::plan_wire::PlanWire;
use crate::time::Time;

/// How a release rolls out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PlanWire", into = "PlanWire")]
pub struct Plan {
    /// At once, rolling, or canary first.
    pub strategy: Strategy,
    /// How many members may be updating at once.
    pub max_unavailable: Amount,
    /// What a failed member does to the rollout.
    pub on_failure: OnFailure,
    /// What must hold before each wave starts.
    pub gates: Vec<Gate>,
    /// The order members take their turns in.
    pub order: Order,
}

/// The three strategies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Every member in one wave.
    AtOnce,
    /// Waves of `max_unavailable` members.
    Rolling,
    /// A first wave of `count` members, watched for `bake`, then rolling.
    Canary {
        /// The canary wave's size.
        count: Amount,
        /// How long the canaries must stay healthy before the rest go.
        bake: Duration,
    },
}

/// A number of members, or a share of the deployment set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Amount {
    /// That many members (at least 1).
    Count(u32),
    /// That percentage of the members (1 to 100).
    Percent(u32),
}

/// What happens when a member fails its health check on the new release.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// The rollout stops; members already updated keep the new release.
    #[default]
    Halt,
    /// The rollout stops and updated members return to their previous
    /// release, within `max_unavailable`.
    Rollback,
}

/// A condition a wave waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Another deployment set is healthy (on `release`, if given).
    Fleet {
        /// Its service.
        service: String,
        /// Its deployment set.
        set: String,
        /// The release it must run (`sha256:<hex>`, with or without size).
        release: Option<String>,
    },
    /// No wave starts from `from` until `until`.
    Freeze {
        /// Start of the window.
        from: Time,
        /// End of the window (excluded).
        until: Time,
    },
    /// A command the steward runs before each wave; it must exit 0.
    Check {
        /// The command line.
        command: Vec<String>,
        /// Time it is allowed.
        timeout: Duration,
    },
}

/// The order members take their turns in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Order {
    /// By a hash of the release and the member id: the same for every
    /// agent, different for every release, so a bad canary is not always
    /// the same machine.
    #[default]
    Hashed,
    /// These members first, in this order; the others after them, hashed.
    Pinned(Vec<String>),
}

/// A plan that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("rollout plan is not valid: {source}")]
pub struct PlanError {
    /// What serde found wrong, with the key.
    #[source]
    pub source: serde_json::Error,
}

impl Default for Plan {
    /// A release without `[deploy]`: rolling, one member at a time,
    /// halting on failure.
    fn default() -> Self {
        Self {
            strategy: Strategy::Rolling,
            max_unavailable: Amount::Count(1),
            on_failure: OnFailure::Halt,
            gates: Vec::new(),
            order: Order::Hashed,
        }
    }
}

impl Plan {
    /// Reads the `deploy` JSON a release carries.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, PlanError> {
        Self::deserialize(value).map_err(|source| PlanError { source })
    }

    /// The plan as the JSON a release carries.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a plan serializes")
    }

    /// How many members may update at once in a set of `members`: all of
    /// them at once, else `max_unavailable` (a percentage rounds down, as
    /// Kubernetes does, but is never below one); never more than
    /// [`crate::record::MAX_CAPACITY`].
    pub fn capacity(&self, members: u32) -> u32 {
        let n = match self.strategy {
            Strategy::AtOnce => members.max(1),
            _ => self.max_unavailable.of(members, false),
        };
        n.min(crate::record::MAX_CAPACITY)
    }

    /// The canary wave's size in a set of `members` (a percentage rounds
    /// up), or `None` without a canary.
    pub fn canary_count(&self, members: u32) -> Option<u32> {
        match self.strategy {
            Strategy::Canary { count, .. } => Some(count.of(members, true).min(members.max(1))),
            _ => None,
        }
    }

    /// The end of the freeze window `now` falls in, if any (the latest end
    /// when windows overlap).
    pub fn frozen_until(&self, now: Time) -> Option<Time> {
        self.frozen_during(now, now, Duration::ZERO)
    }

    /// Whether an update running from `start` to `end` on a clock at most
    /// `skew` off the true time might touch a freeze window: if so, the
    /// time (on that clock) after which it no longer would, the latest
    /// window's end plus `skew`. Grants look ahead by a slot's lease and
    /// a holder by its swap, so no update runs inside a window, even on
    /// clocks that differ.
    pub fn frozen_during(&self, start: Time, end: Time, skew: Duration) -> Option<Time> {
        self.gates
            .iter()
            .filter_map(|g| g.freezes(start, end, skew))
            .max()
    }
}

impl Amount {
    /// This amount of `members`, at least 1.
    pub fn of(self, members: u32, round_up: bool) -> u32 {
        let n = match self {
            Amount::Count(n) => n,
            Amount::Percent(p) => {
                let scaled = u64::from(members) * u64::from(p);
                let n = if round_up {
                    scaled.div_ceil(100)
                } else {
                    scaled / 100
                };
                u32::try_from(n).unwrap_or(u32::MAX)
            }
        };
        n.max(1)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amount::Count(n) => write!(f, "{n}"),
            Amount::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Strategy::AtOnce => f.write_str("at-once"),
            Strategy::Rolling => f.write_str("rolling"),
            Strategy::Canary { .. } => f.write_str("canary"),
        }
    }
}

impl Gate {
    /// For a freeze window that an update from `start` to `end` (on a
    /// clock at most `skew` off) might touch: the window's end plus
    /// `skew`. `None` for any other gate.
    pub fn freezes(&self, start: Time, end: Time, skew: Duration) -> Option<Time> {
        match self {
            Gate::Freeze { from, until } if from.minus(skew) <= end && start < until.plus(skew) => {
                Some(until.plus(skew))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Gate {
    /// The gate in words, as status shows what a rollout waits on.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gate::Fleet {
                service,
                set,
                release: None,
            } => write!(f, "fleet {service}/{set} healthy"),
            Gate::Fleet {
                service,
                set,
                release: Some(r),
            } => write!(f, "fleet {service}/{set} healthy on {r}"),
            Gate::Freeze { from, until } => write!(
                f,
                "freeze from {} until {}",
                crate::plan_wire::rfc3339(*from),
                crate::plan_wire::rfc3339(*until)
            ),
            Gate::Check { command, .. } => write!(f, "check `{}`", command.join(" ")),
        }
    }
}

#[cfg(test)]
mod tests;
