//! Fetching beside supervision.
//!
//! A fetch may take long (a large release, a slow link) or never end (a
//! store that accepts a connection and never answers, or trickles). The
//! service must not go unsupervised meanwhile: while the fetch runs, this
//! loop keeps restarting a service that exits and probing
//! its health. A fetch during which no blob arrived for `fetch_silence` is
//! given up with an error naming the release and the silence, and the
//! caller retries it with backoff (what it fetched so far stays: a retry
//! resumes). So is a fetch that moved less than `fetch_min_rate` over the
//! last `fetch_rate_window` (`fetch_rate.rs`): a store sending one blob
//! per silence cannot stretch a fetch as long as it likes. The fetch is a future polled by this loop, not a task of its
//! own: dropped (given up, or the agent shutting down), it is cancelled.

use std::time::Duration;

use cairn_digest::Digest;
use tokio::time::Instant;

use super::{at, exited, Agent};
use crate::fetch::{self, Arrivals, Fetched};
use crate::fetch_rate::RateGuard;

/// How often a running fetch's progress is looked at, at the most.
const LOOK: Duration = Duration::from_secs(1);

/// What woke the loop while a fetch runs.
enum Wake {
    Done(Result<Fetched, fetch::FetchError>),
    Exited(Option<String>),
    Restart,
    Probe,
    Look,
}

impl Agent {
    /// Fetches `release` and its `artifact` into the local store while
    /// supervising the service; gives up after `fetch_silence` without a
    /// blob arriving.
    pub(super) async fn fetch_supervised(
        &mut self,
        release: Digest,
        artifact: Digest,
    ) -> Result<Fetched, String> {
        let arrivals = Arrivals::default();
        // Borrowing clones, not the agent, so the loop below may act.
        let (remote, local) = (self.remote.clone(), self.local.clone());
        let fetching = fetch::fetch(&remote, &local, release, artifact, &arrivals);
        tokio::pin!(fetching);
        let silence = self.cfg.fetch_silence;
        let (mut count, mut quiet_since) = (arrivals.count(), Instant::now());
        let mut rate = RateGuard::new(self.cfg.fetch_min_rate, self.cfg.fetch_rate_window);
        // The fetch's own clock: time spent looking after the service is
        // not the store's.
        let (started, mut supervising) = (Instant::now(), Duration::ZERO);
        loop {
            let (restart_due, probe_due) = (self.restart.due, self.probe_due());
            let wake = tokio::select! {
                done = &mut fetching => Wake::Done(done),
                status = exited(&self.serving) => Wake::Exited(status),
                _ = at(restart_due) => Wake::Restart,
                _ = at(probe_due) => Wake::Probe,
                _ = tokio::time::sleep(LOOK.min(silence)) => Wake::Look,
            };
            // The fetch is not polled while the service is looked after;
            // that time is not the store's silence.
            let busy = Instant::now();
            match wake {
                Wake::Done(result) => return result.map_err(|e| e.to_string()),
                Wake::Exited(status) => self.service_exited(status).await,
                Wake::Restart => self.restart_service().await,
                Wake::Probe => self.probe_serving().await,
                Wake::Look => {}
            }
            quiet_since += busy.elapsed();
            supervising += busy.elapsed();
            let clock = started.elapsed().saturating_sub(supervising);
            if let Err(slow) = rate.observe(clock, arrivals.credit()) {
                return Err(format!("fetching release {release}: {slow}; given up"));
            }
            let now = arrivals.count();
            if now != count {
                (count, quiet_since) = (now, Instant::now());
            } else if quiet_since.elapsed() >= silence {
                return Err(format!(
                    "fetching release {release}: no blob arrived from the store in {} (fetch_silence); given up",
                    humantime::format_duration(silence)
                ));
            }
        }
    }
}
