//! Time as the protocol sees it: a value the caller passes in.
//!
//! The protocol never reads a clock. Each decision is given `now`, the
//! deciding agent's wall clock, in milliseconds since the Unix epoch;
//! records store whole Unix seconds (readable, and what the dashboard
//! shows). Clocks of different agents may differ by up to
//! [`crate::Timing::max_skew`]; every comparison with another agent's time
//! leaves that margin (see the lease rules in [`crate::decide`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A point in time: milliseconds since the Unix epoch, on the deciding
/// agent's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Time(pub i64);

impl Time {
    /// The time `secs` Unix seconds name.
    pub fn from_secs(secs: i64) -> Self {
        Self(secs.saturating_mul(1000))
    }

    /// Whole Unix seconds, rounded down.
    pub fn secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// Whole Unix seconds, rounded up (for expiry times written into a
    /// record, so a lease is never shorter than asked).
    pub fn secs_ceil(self) -> i64 {
        -((-self.0).div_euclid(1000))
    }

    /// This time plus `d`.
    pub fn plus(self, d: Duration) -> Self {
        Self(self.0.saturating_add(millis(d)))
    }

    /// This time minus `d`.
    pub fn minus(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(millis(d)))
    }

    /// How long after `earlier` this is (zero if it is not after).
    pub fn since(self, earlier: Time) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_down_and_up() {
        assert_eq!(Time(1_999).secs(), 1);
        assert_eq!(Time(1_001).secs_ceil(), 2);
        assert_eq!(Time(2_000).secs_ceil(), 2);
        assert_eq!(Time(-1).secs(), -1);
        assert_eq!(
            Time::from_secs(3).plus(Duration::from_millis(5)),
            Time(3_005)
        );
        assert_eq!(Time(10).since(Time(20)), Duration::ZERO);
    }
}
