//! A fetch bounded as a whole: a minimum transfer rate over a window.
//!
//! `fetch_silence` gives up a fetch during which no blob arrived for that
//! long, but a store that sends one small blob just before each silence
//! would stretch a fetch as long as it likes. So a fetch must also move,
//! over every `fetch_rate_window` (once one has passed), at least
//! `fetch_min_rate` × that window, each blob counting at least
//! [`crate::fetch::BLOB_CREDIT`]: a fetch of a release of `B` bytes in
//! `N` blobs then ends within about `max(B, N × credit) / rate` plus one
//! window, whatever the store does; the signed release fixes `B` and `N`.
//!
//! Pure: the caller feeds the time on the fetch's own clock (time spent
//! looking after the service is not the store's) and the credit so far.

use std::collections::VecDeque;
use std::time::Duration;

/// The rule, and what was seen of the fetch.
#[derive(Debug)]
pub struct RateGuard {
    min_rate: u64,
    window: Duration,
    /// (fetch clock, credit) samples, oldest first; the first is at or
    /// before a window ago once a window has passed.
    samples: VecDeque<(Duration, u64)>,
}

/// A fetch moving less than the minimum over a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooSlow {
    /// Credit moved over the window.
    pub moved: u64,
    /// The window.
    pub window: Duration,
    /// The minimum rate, bytes per second.
    pub min_rate: u64,
}

impl std::fmt::Display for TooSlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} arrived from the store in the last {}, under fetch_min_rate {}/s over fetch_rate_window",
            bytes(self.moved),
            humantime::format_duration(self.window),
            bytes(self.min_rate)
        )
    }
}

fn bytes(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1}MiB", n as f64 / f64::from(1 << 20))
    } else if n >= 1 << 10 {
        format!("{:.1}KiB", n as f64 / 1024.0)
    } else {
        format!("{n}B")
    }
}

impl RateGuard {
    /// A guard requiring `min_rate` bytes a second over every `window`.
    pub fn new(min_rate: u64, window: Duration) -> Self {
        let mut samples = VecDeque::new();
        samples.push_back((Duration::ZERO, 0));
        Self {
            min_rate,
            window,
            samples,
        }
    }

    /// Records that `credit` had arrived at `at` (the fetch's clock); the
    /// shortfall, if the last window moved too little.
    pub fn observe(&mut self, at: Duration, credit: u64) -> Result<(), TooSlow> {
        self.samples.push_back((at, credit));
        let Some(start) = at.checked_sub(self.window) else {
            return Ok(());
        };
        // Keep the newest sample at or before the window's start as base.
        while self.samples.len() > 1 && self.samples[1].0 <= start {
            self.samples.pop_front();
        }
        let (_, base) = self.samples[0];
        let moved = credit.saturating_sub(base);
        let want = u64::try_from(u128::from(self.min_rate) * self.window.as_millis() / 1000)
            .unwrap_or(u64::MAX);
        if moved < want {
            return Err(TooSlow {
                moved,
                window: self.window,
                min_rate: self.min_rate,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn nothing_is_judged_before_a_window_passed() {
        let mut g = RateGuard::new(1000, secs(10));
        for t in 0..10 {
            assert_eq!(g.observe(secs(t), 0), Ok(()));
        }
        let err = g.observe(secs(10), 0).unwrap_err();
        assert_eq!(err.moved, 0);
        assert!(err.to_string().contains("in the last 10s"), "{err}");
    }

    #[test]
    fn a_steady_fetch_at_the_rate_passes_and_a_trickle_after_it_fails() {
        let mut g = RateGuard::new(1000, secs(10));
        for t in 0..=30 {
            assert_eq!(g.observe(secs(t), t * 1000), Ok(()), "at {t}s");
        }
        // Then one small blob every 5 s: 4 KiB credit per 5 s < 1000 B/s.
        let mut credit = 30_000;
        let mut failed = None;
        for t in 31..=60 {
            if t % 5 == 0 {
                credit += 4096;
            }
            if let Err(e) = g.observe(secs(t), credit) {
                failed = Some((t, e));
                break;
            }
        }
        let (t, e) = failed.expect("the trickle is caught");
        assert!(t <= 41, "caught within a window of it starting: {t}s");
        assert!(e.moved < 10_000, "{e:?}");
    }

    #[test]
    fn a_burst_then_quiet_is_judged_on_the_last_window_only() {
        let mut g = RateGuard::new(1000, secs(10));
        assert_eq!(g.observe(secs(1), 1_000_000), Ok(()));
        assert_eq!(g.observe(secs(10), 1_000_000), Ok(()));
        // 10 s after the burst nothing more came: the window before it
        // moved nothing.
        assert!(g.observe(secs(12), 1_000_000).is_err());
    }
}
