//! Following the channel and moving to what it says: accept, fetch,
//! materialize, ask the gate, swap with health checks, roll back.
//!
//! **The swap.** With sockets, zero-downtime: `current` is switched, the
//! new process starts on the same held sockets (plus its private probe
//! twin) while the old one keeps serving, and is health-checked on its
//! twin; once healthy the old one is stopped gracefully (its stop signal,
//! then its grace period to finish in-flight requests), and the new one
//! bakes. Without sockets there is nothing to share, so it is
//! stop-then-start: the old process stops before the new one starts
//! (documented as not zero-downtime).
//!
//! **Rollback.** If the new process fails before it is healthy, the old one
//! never stopped: `current` goes back and the new one is stopped. If it
//! fails while baking (the old one already stopped), the previous
//! generation is started again first, on the same sockets, and the failed
//! one stopped after. The failed release is recorded in `state.json` and
//! not tried again until a statement with a higher sequence arrives.

use std::sync::Arc;
use std::time::Duration;

use cairn_digest::Digest;
use cairn_recipe::RunSpec;
use cairn_release::{accept, AcceptError, Accepted};
use cairn_store::{IfChanged, Store};
use futures::StreamExt;
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Agent, Running};
use crate::fetch;
use crate::gate::{Decision, Outcome, UpdateRequest};
use crate::generation;
use crate::health;
use crate::hooks;
use crate::phase::Phase;
use crate::state::{FailedRelease, Generation, Role};
use crate::status::now_ms;

/// Failed releases remembered.
const MAX_FAILED: usize = 20;

/// How long an unchanged channel ref is trusted without running the whole
/// acceptance chain again (which also re-checks expiry).
const FULL_CHECK: Duration = Duration::from_secs(60);

/// How long reading the channel (its ref, then the acceptance chain) may
/// take before the store counts as unreachable. Without it, a read on a
/// connection whose peer went silent (a host cut off the network) hangs
/// until TCP gives up, and the agent, which reads between looking after
/// its service, would neither restart a crashed service nor report the
/// outage meanwhile.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Slows polling down while the store fails: the poll interval doubled per
/// failure, up to 30 s (or the interval, if longer).
#[derive(Debug, Default)]
pub(crate) struct PollBackoff {
    failures: u32,
    fetch_failures: u32,
}

impl PollBackoff {
    /// The delay before the next read of the channel.
    pub fn delay(&self, base: Duration) -> Duration {
        let cap = base.max(Duration::from_secs(30));
        (base * (1u32 << self.failures.min(6))).min(cap)
    }

    fn fetch_retry(&self) -> Duration {
        let ms = 1000u64 << self.fetch_failures.min(6);
        Duration::from_millis(ms.min(60_000))
    }
}

/// Wakes `changed` whenever the channel's ref changes, for stores that
/// push (a server's event stream, inotify on a local store); reconnects
/// with backoff. Returns at once for a store that cannot push: the agent's
/// poll timer covers it.
pub(crate) async fn watch_channel(
    store: Store,
    service: String,
    channel: String,
    changed: Arc<Notify>,
) {
    let name = format!("channels/{service}/{channel}");
    let mut delay = Duration::from_secs(1);
    loop {
        match store.refs.watch(&name).await {
            Ok(Some(mut events)) => {
                delay = Duration::from_secs(1);
                changed.notify_one(); // whatever changed while not watching
                while let Some(event) = events.next().await {
                    match event {
                        Ok(e) if e.name.as_str() == name => changed.notify_one(),
                        Ok(_) => {}
                        Err(e) => {
                            tracing::debug!("channel watch ended: {e}");
                            break;
                        }
                    }
                }
            }
            Ok(None) => return,
            Err(e) => tracing::debug!("watching {name}: {e}"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// Why a read that timed out failed.
fn no_answer() -> String {
    format!("no answer in {}s", READ_TIMEOUT.as_secs())
}

impl Agent {
    /// Reads the channel through the acceptance chain and acts on it.
    ///
    /// A poll first asks whether the channel ref moved from the version
    /// fully checked less than a minute ago: a conditional read, which on
    /// S3 and on a server is a 304 with no body. Unchanged, the chain is
    /// not run again (one small request per poll instead of four).
    pub(super) async fn check_channel(&mut self) {
        let noticed = now_ms();
        let (service, channel) = (self.cfg.service.clone(), self.cfg.channel.clone());
        let store_was_down = self.poll.failures > 0;
        let Ok(name) = cairn_release::channel_ref(&service, &channel) else {
            return;
        };
        let recent = self
            .seen
            .as_ref()
            .filter(|(_, at)| at.elapsed() < FULL_CHECK)
            .map(|(version, _)| version.clone());
        let read = async {
            match &recent {
                Some(known) => self.remote.refs.get_if_changed(&name, known).await,
                None => self.remote.refs.get(&name).await.map(IfChanged::Changed),
            }
        };
        let Ok(read) = tokio::time::timeout(READ_TIMEOUT, read).await else {
            return self.store_down(format!("reading {name}: {}", no_answer()));
        };
        let head = match read {
            Ok(IfChanged::Unchanged) => {
                self.store_up(store_was_down);
                return self.reconcile(noticed).await;
            }
            Ok(IfChanged::Changed(head)) => head.map(|v| v.version),
            Err(e) => return self.store_down(e.to_string()),
        };
        let mark = match self.marks.get(&service, &channel) {
            Ok(m) => m,
            Err(e) => return self.report_error(e.to_string()),
        };
        let now = OffsetDateTime::now_utc();
        let reading = accept(
            &self.remote,
            &self.cfg.trust.policy,
            &self.keys,
            mark.as_ref(),
            now,
        );
        let Ok(result) = tokio::time::timeout(READ_TIMEOUT, reading).await else {
            return self.store_down(format!(
                "reading {name}'s statement and release: {}",
                no_answer()
            ));
        };
        match result {
            Ok(accepted) => {
                self.store_up(store_was_down);
                if let Err(e) = self.marks.raise(&service, &channel, &accepted.mark()) {
                    return self.report_error(e.to_string());
                }
                if accepted.is_new {
                    tracing::info!(
                        "accepted {service}/{channel} #{}: release {} ({})",
                        accepted.statement.statement.sequence,
                        accepted.release_digest,
                        accepted.release.version
                    );
                }
                self.seen = head.map(|v| (v, Instant::now()));
                self.gate.accepted(&accepted);
                if self.status.borrow().refused.is_some() {
                    self.status.send_modify(|s| s.refused = None);
                    self.set_error(None);
                }
                self.target = Some(accepted);
                self.reconcile(noticed).await;
            }
            Err(AcceptError::Empty { .. }) => self.store_up(store_was_down),
            Err(e @ AcceptError::Refused { .. }) => {
                self.store_up(store_was_down);
                self.seen = head.map(|v| (v, Instant::now()));
                let msg = e.to_string();
                if self.status.borrow().refused.as_deref() != Some(msg.as_str()) {
                    tracing::warn!("{msg}");
                    self.count(|c| c.refusals += 1);
                    self.status.send_modify(|s| s.refused = Some(msg.clone()));
                    self.set_error(Some(msg));
                }
            }
            Err(e @ AcceptError::Store { .. }) => self.store_down(e.to_string()),
        }
    }

    fn store_up(&mut self, was_down: bool) {
        self.poll.failures = 0;
        if was_down {
            tracing::info!("the store answers again");
            self.set_error(None);
        }
    }

    fn store_down(&mut self, error: String) {
        self.poll.failures += 1;
        self.count(|c| c.store_errors += 1);
        let msg = format!("store unreachable, retrying: {error}");
        if self.poll.failures == 1 {
            tracing::warn!("{msg}");
        }
        self.set_error(Some(msg));
    }

    fn report_error(&mut self, msg: String) {
        tracing::error!("{msg}");
        self.set_error(Some(msg));
    }

    /// Moves to the accepted target unless it already runs or failed.
    async fn reconcile(&mut self, noticed: i64) {
        let Some(accepted) = self.target.clone() else {
            return;
        };
        let release = accepted.release_digest;
        let serving = self
            .serving
            .as_ref()
            .and_then(|r| self.state.generation(r.generation));
        if serving.is_some_and(|g| g.release == release) {
            if matches!(self.phase, Phase::Waiting(_) | Phase::Failed) {
                self.set_phase(Phase::Idle);
            }
            return;
        }
        if self
            .state
            .has_failed(&release, accepted.statement.statement.sequence)
        {
            return;
        }
        let current = generation::current(&self.layout).and_then(|n| self.state.generation(n));
        if self.serving.is_none() && current.is_some_and(|g| g.release == release) {
            return; // it is being restarted
        }
        if self.retry_update.is_some_and(|t| t > Instant::now()) {
            return;
        }
        self.update(accepted, noticed).await;
    }

    async fn update(&mut self, accepted: Accepted, noticed: i64) {
        let release = accepted.release_digest;
        let sequence = accepted.statement.statement.sequence;
        let version = accepted.release.version.clone();
        self.status.send_modify(|s| {
            s.last_update = Some(crate::status::UpdateTimings {
                release: Some(release),
                version: version.clone(),
                noticed,
                verified: now_ms(),
                ..Default::default()
            })
        });
        self.set_phase(Phase::Fetching(release));
        let number = match self.prepare(&accepted).await {
            Ok(n) => n,
            Err(msg) => {
                self.poll.fetch_failures += 1;
                self.count(|c| c.fetch_errors += 1);
                let retry = self.poll.fetch_retry();
                tracing::warn!("{msg}; retrying in {retry:?}");
                self.set_error(Some(msg));
                self.retry_update = Some(Instant::now() + retry);
                self.settle();
                return;
            }
        };
        self.poll.fetch_failures = 0;
        self.crash_point(super::CrashPoint::Fetched);
        let member = self.status.borrow().member.clone();
        let request = UpdateRequest {
            service: &self.cfg.service,
            set: &self.cfg.set,
            agent: &self.id,
            target: release,
            sequence,
            member: &member,
        };
        if let Decision::Wait {
            reason,
            retry_after,
        } = self.gate.decide(&request).await
        {
            if self.waiting_for != Some(release) {
                tracing::info!("waiting to update to {release}: {reason}");
            } else {
                tracing::debug!("waiting to update to {release}: {reason}");
            }
            self.waiting_for = Some(release);
            self.set_phase(Phase::Waiting(release));
            self.retry_update = Some(Instant::now() + retry_after);
            return;
        }
        self.set_phase(Phase::Updating(release));
        if let Err(e) = self.hook("pre_swap", number, None).await {
            let reason = format!("swap to {release} aborted: {e}");
            self.fail(release, sequence, &reason, Outcome::Aborted(reason.clone()))
                .await;
            return;
        }
        match self.swap(number).await {
            Ok(()) => {
                tracing::info!("now serving {version} ({release}), generation {number}");
                self.state.failed.retain(|f| f.release != release);
                self.save();
                self.count(|c| c.swaps += 1);
                self.set_error(None);
                if let Err(e) = self.hook("post_swap", number, None).await {
                    self.report_error(e.to_string());
                }
                self.gate.finished(&release, &Outcome::Swapped).await;
                self.timings(|t| {
                    t.done = now_ms();
                    t.outcome = "swapped".into();
                });
                self.settle();
                self.prune().await;
            }
            Err(reason) => {
                let reason = format!("release {version} ({release}) failed: {reason}");
                self.count(|c| c.rollbacks += 1);
                if let Err(e) = self.hook("on_rollback", number, Some(&reason)).await {
                    tracing::error!("{e}");
                }
                self.fail(
                    release,
                    sequence,
                    &reason,
                    Outcome::RolledBack(reason.clone()),
                )
                .await;
            }
        }
    }

    /// Returns to the kept generation of release `to` because the fleet's
    /// rollout rolls back (the same swap as an update), and tells the gate
    /// how it went.
    pub(super) async fn return_to(&mut self, to: Digest) {
        let serving = self
            .serving
            .as_ref()
            .and_then(|r| self.state.generation(r.generation))
            .map(|g| g.release);
        let kept = self.state.generations.iter().find(|g| g.release == to);
        let outcome = match (serving == Some(to), kept.map(|g| g.number)) {
            (true, _) => Outcome::Swapped,
            (false, None) => Outcome::Aborted(format!("no kept generation of {to} to return to")),
            (false, Some(number)) => {
                tracing::info!("the rollout rolls back: returning to {to}");
                self.set_phase(Phase::RollingBack(to));
                match self.swap(number).await {
                    Ok(()) => {
                        self.save();
                        self.count(|c| c.rollbacks += 1);
                        Outcome::Swapped
                    }
                    Err(reason) => Outcome::RolledBack(reason),
                }
            }
        };
        if let Outcome::Aborted(reason) | Outcome::RolledBack(reason) = &outcome {
            self.report_error(format!("returning to {to}: {reason}"));
        }
        self.gate.finished(&to, &outcome).await;
        self.settle();
    }

    /// Fetches the release and materializes its generation (reusing a kept
    /// one of the same release); returns the generation number.
    async fn prepare(&mut self, accepted: &Accepted) -> Result<u64, String> {
        let release = accepted.release_digest;
        let artifact = accepted.release.artifact;
        let fetched = self.fetch_supervised(release, artifact).await?;
        self.count(|c| c.fetched_bytes += fetched.bytes);
        self.timings(|t| {
            t.fetched = now_ms();
            t.fetched_bytes = fetched.bytes;
            t.fetched_blobs = fetched.blobs;
        });
        let kept = self.state.generations.iter().find(|g| g.release == release);
        if let Some(g) = kept {
            let n = g.number;
            self.timings(|t| t.materialized = now_ms());
            return Ok(n);
        }
        let number = self.state.next_generation.max(1);
        generation::materialize(&self.local_fs, &self.layout, number, &release, &artifact)
            .map_err(|e| e.to_string())?;
        self.state.next_generation = number + 1;
        self.state.generations.push(Generation {
            number,
            release,
            version: accepted.release.version.clone(),
            sequence: accepted.statement.statement.sequence,
            artifact,
            run: accepted.release.run.clone(),
            served: false,
        });
        self.state.save(&self.layout).map_err(|e| e.to_string())?;
        self.timings(|t| t.materialized = now_ms());
        Ok(number)
    }

    /// Swaps to generation `number`; on failure rolls back and says why.
    async fn swap(&mut self, number: u64) -> Result<(), String> {
        let g = self
            .state
            .generation(number)
            .cloned()
            .ok_or("generation vanished")?;
        let run = RunSpec::from_json(&g.run).map_err(|e| e.to_string())?;
        let mut old = self.serving.take();
        let old_gen = old.as_ref().map(|o| o.generation);
        if let Err(e) = generation::switch(&self.layout, &g) {
            self.serving = old;
            return Err(e.to_string());
        }
        self.crash_point(super::CrashPoint::Switched);
        let shared_sockets = !run.sockets.is_empty();
        if !shared_sockets {
            if let Some(o) = old.take() {
                self.stop_running(&o).await;
                self.timings(|t| t.old_stopped = now_ms());
            }
        }
        let mut new = match self.launch(number, Role::Starting).await {
            Ok(r) => r,
            Err(e) => return self.roll_back(old, None, old_gen, e.to_string()).await,
        };
        self.timings(|t| t.started = now_ms());
        self.publish();
        self.crash_point(super::CrashPoint::Started);
        if let Some((target, check)) = &new.probe {
            if let Err(e) = health::wait_healthy(&new.process, check, target).await {
                return self.roll_back(old, Some(new), old_gen, e.to_string()).await;
            }
        } else if !new.process.is_running() {
            return self
                .roll_back(old, Some(new), old_gen, "it exited at once".into())
                .await;
        }
        self.timings(|t| t.healthy = now_ms());
        if let Some(g) = self
            .state
            .generations
            .iter_mut()
            .find(|g| g.number == number)
        {
            g.served = true;
        }
        self.set_role(&new.process, Role::Serving);
        new.healthy_since = Some(Instant::now());
        if let Some(o) = old.take() {
            self.set_role(&o.process, Role::Draining);
            self.crash_point(super::CrashPoint::Draining);
            self.stop_running(&o).await;
            self.timings(|t| t.old_stopped = now_ms());
        }
        if let Some((target, check)) = &new.probe {
            if !check.bake.is_zero() {
                if let Err(e) = health::bake(&new.process, check, target).await {
                    return self
                        .roll_back(None, Some(new), old_gen, e.to_string())
                        .await;
                }
            }
        }
        self.serving = Some(new);
        self.publish();
        Ok(())
    }

    /// Goes back to generation `old_gen`: to `old` if it still runs, else
    /// by starting it again; `new` is stopped once the old one serves.
    async fn roll_back(
        &mut self,
        old: Option<Running>,
        new: Option<Running>,
        old_gen: Option<u64>,
        reason: String,
    ) -> Result<(), String> {
        let target = self.phase.target().unwrap_or_else(|| Digest::of(b""));
        self.set_phase(Phase::RollingBack(target));
        tracing::warn!("rolling back: {reason}");
        let previous = old_gen.and_then(|n| self.state.generation(n).cloned());
        match &previous {
            Some(g) => {
                if let Err(e) = generation::switch(&self.layout, g) {
                    tracing::error!("{e}");
                }
            }
            None => {
                let _ = std::fs::remove_file(self.layout.current());
            }
        }
        if let Some(o) = old {
            self.serving = Some(o);
        } else if let Some(g) = previous {
            if let Err(e) = self.start_serving(g.number).await {
                tracing::error!("could not bring generation {} back: {e}", g.number);
                self.schedule_restart();
            }
        }
        if let Some(n) = new {
            self.stop_running(&n).await;
        }
        self.publish();
        Err(reason)
    }

    async fn stop_running(&mut self, r: &Running) {
        match self.record_of(&r.process) {
            Some(rec) => self.stop_process(&rec, &r.process).await,
            None => {
                r.process.stop(libc::SIGTERM, Duration::from_secs(10)).await;
            }
        }
    }

    /// Records `release` as failed, tells the gate, reports.
    async fn fail(&mut self, release: Digest, sequence: u64, reason: &str, outcome: Outcome) {
        tracing::error!("{reason}");
        self.state.failed.retain(|f| f.release != release);
        self.state.failed.push(FailedRelease {
            release,
            sequence,
            reason: reason.to_string(),
        });
        let excess = self.state.failed.len().saturating_sub(MAX_FAILED);
        self.state.failed.drain(..excess);
        self.save();
        self.set_error(Some(reason.to_string()));
        let label = match &outcome {
            Outcome::Aborted(_) => "aborted",
            _ => "rolled-back",
        };
        self.gate.finished(&release, &outcome).await;
        // Pruned before the phase settles, and the outcome reported last,
        // so that whoever sees the update over sees it all done.
        self.prune().await;
        self.settle();
        self.timings(|t| {
            t.done = now_ms();
            t.outcome = label.into();
        });
    }

    /// Back to `Idle` when something serves, `Failed` when nothing does
    /// although a generation should.
    fn settle(&mut self) {
        let should_run = generation::current(&self.layout).is_some();
        let next = if self.serving.is_none() && should_run {
            Phase::Failed
        } else {
            Phase::Idle
        };
        self.set_phase(next);
    }

    /// Runs hook `name` around generation `number`, with the serving
    /// generation as the old one.
    async fn hook(
        &self,
        name: &str,
        number: u64,
        reason: Option<&str>,
    ) -> Result<(), hooks::HookError> {
        let argv = match name {
            "pre_swap" => &self.cfg.hooks.pre_swap,
            "post_swap" => &self.cfg.hooks.post_swap,
            _ => &self.cfg.hooks.on_rollback,
        };
        let Some(argv) = argv else { return Ok(()) };
        let new = self.state.generation(number);
        let old = self
            .serving
            .as_ref()
            .filter(|r| r.generation != number)
            .and_then(|r| self.state.generation(r.generation))
            .or_else(|| {
                // After a swap the old process is gone; the previous
                // generation is the one before `number` that is kept.
                let before = self.state.generations.iter().filter(|g| g.number != number);
                before.max_by_key(|g| g.number)
            });
        let describe = |g: Option<&Generation>| {
            g.map_or((String::new(), String::new(), String::new()), |g| {
                (
                    g.release.to_string(),
                    g.version.clone(),
                    g.number.to_string(),
                )
            })
        };
        let (or, ov, og) = describe(old);
        let (nr, nv, ng) = describe(new);
        let env = [
            ("CAIRN_SERVICE", self.cfg.service.clone()),
            ("CAIRN_CHANNEL", self.cfg.channel.clone()),
            ("CAIRN_SET", self.cfg.set.clone()),
            ("CAIRN_AGENT_ID", self.id.clone()),
            ("CAIRN_OLD_RELEASE", or),
            ("CAIRN_OLD_VERSION", ov),
            ("CAIRN_OLD_GENERATION", og),
            ("CAIRN_NEW_RELEASE", nr),
            ("CAIRN_NEW_VERSION", nv),
            ("CAIRN_NEW_GENERATION", ng),
            ("CAIRN_REASON", reason.unwrap_or_default().to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v));
        hooks::run(name, argv, self.layout.root(), &env, self.cfg.hooks.timeout).await
    }

    /// Keeps the newest generations that did not fail (and whatever runs
    /// or is current), removes the rest with their pins, and collects the
    /// local store.
    async fn prune(&mut self) {
        let keep = self.cfg.generations;
        let failed = |g: &Generation| self.state.failed.iter().any(|f| f.release == g.release);
        let mut numbers: Vec<u64> = self
            .state
            .generations
            .iter()
            .filter(|g| !failed(g))
            .map(|g| g.number)
            .collect();
        numbers.sort_unstable_by(|a, b| b.cmp(a));
        let current = generation::current(&self.layout);
        let running: Vec<u64> = self.state.processes.iter().map(|p| p.generation).collect();
        let doomed: Vec<Generation> = self
            .state
            .generations
            .iter()
            .filter(|g| !numbers[..keep.min(numbers.len())].contains(&g.number))
            .filter(|g| Some(g.number) != current && !running.contains(&g.number))
            .cloned()
            .collect();
        for g in &doomed {
            if let Err(e) = generation::remove(&self.layout, g) {
                tracing::error!("{e}");
                continue;
            }
            self.state.generations.retain(|k| k.number != g.number);
            tracing::info!("removed generation {} ({})", g.number, g.version);
        }
        if !doomed.is_empty() {
            self.save();
        }
        // Pins of removed generations, and of releases fetched (in part)
        // that never became one.
        let kept: Vec<_> = self.state.generations.iter().map(|g| g.release).collect();
        match fetch::unpin_all_but(&self.local, &kept).await {
            Ok(0) if doomed.is_empty() => return,
            Ok(_) => {}
            Err(e) => tracing::error!("{e}"),
        }
        match fetch::collect(&self.local, &self.local_fs).await {
            Ok(freed) => tracing::info!("local store: {freed} bytes freed"),
            Err(e) => tracing::error!("collecting the local store: {e}"),
        }
        self.publish();
    }
}
