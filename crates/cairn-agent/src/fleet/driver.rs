//! The driver task: rounds of read, decide, write, act.
//!
//! A round reads the rollout record (and this agent's member record when
//! its version is not known: at start, after a failed member write),
//! decides, does the reads the decision asks for and decides again, then
//! writes in order by compare-and-swap. A conflict or a store error ends
//! the round: nothing is acted on that may not have been written. Then the
//! action: a wait (until its time, a local change, or a word from the
//! gate), a grant to the agent (and no deciding until the swap is over),
//! or a gate's check command.
//!
//! A wait names when to read the rollout record again (`refresh`), which
//! may be later than when to decide again (a heartbeat, a local change).
//! Before `refresh`, a round first decides on the record already read and
//! keeps that decision only if it writes nothing but this member's record
//! and waits; anything more (a read, a rollout write, a grant, a check)
//! makes it a full round. So a member waiting for its turn heartbeats
//! without reading the rollout record each time, as the protocol allows.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_rollout::{
    decide, Action, Attempt, CheckResult, Local, MemberRecord, MemberState, RolloutRead, Time,
    Timing, Versioned, View, Write,
};
use cairn_store::{RefStore, Store, StoreError};
use tokio::sync::{watch, Notify};

use super::io::{self, Names, WriteError};
use super::Trust;
use super::{lock, Grant, Shared};
use crate::config::FleetTiming;
use crate::gate::GateContext;
use crate::status::{now_ms, Status};

/// A decision that keeps asking for reads in one round is a bug.
const MAX_READ_STEPS: u32 = 8;

/// Check results kept for the protocol.
const MAX_CHECKS: usize = 16;

/// The longest wait after the store failed.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How long one read or write of the fleet records may take. A store that
/// accepts and never answers, or trickles a record byte by byte (which no
/// read timeout catches), would otherwise hold the driver for ever, even
/// after the store recovered: this member would stop deciding and
/// heartbeating. Past it the round fails like any store error (the write
/// may or may not have happened) and is retried with backoff.
const IO_TIMEOUT: Duration = Duration::from_secs(15);

/// `io` bounded by [`IO_TIMEOUT`].
async fn bounded<T>(
    what: &str,
    io: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(IO_TIMEOUT, io)
        .await
        .unwrap_or_else(|_| Err(no_answer(what)))
}

/// A write bounded by [`IO_TIMEOUT`].
async fn bounded_write(
    io: impl std::future::Future<Output = Result<(), WriteError>>,
) -> Result<(), WriteError> {
    tokio::time::timeout(IO_TIMEOUT, io)
        .await
        .unwrap_or_else(|_| Err(WriteError::Store(no_answer("writing a fleet record"))))
}

fn no_answer(what: &str) -> StoreError {
    cairn_store::RemoteError {
        kind: cairn_store::ErrorKind::Unavailable,
        store: "the followed store".into(),
        action: what.into(),
        detail: format!("no answer in {}s", IO_TIMEOUT.as_secs()),
        source: None,
    }
    .into()
}

pub(super) struct Driver {
    store: Store,
    names: Option<Names>,
    view: View,
    own_known: bool,
    status: watch::Receiver<Status>,
    shared: Arc<Mutex<Shared>>,
    to_driver: Arc<Notify>,
    to_agent: Arc<Notify>,
    checks: Vec<CheckResult>,
    failures: u32,
    /// Until when the rollout record already read may be decided on (the
    /// last wait's `refresh`); `None`: read it first.
    fresh_until: Option<Time>,
    /// For checking a newer statement a rollout record claims.
    trust: Trust,
    /// The last record version whose unsigned claim was logged.
    warned: Option<cairn_rollout::Version>,
}

impl Driver {
    pub fn new(
        cx: GateContext,
        timing: &FleetTiming,
        shared: Arc<Mutex<Shared>>,
        to_driver: Arc<Notify>,
        to_agent: Arc<Notify>,
    ) -> Self {
        let names = match Names::new(&cx.service, &cx.set, &cx.agent) {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::error!("fleet records: {e}");
                None
            }
        };
        let timing = Timing {
            poll: timing.poll,
            idle_poll: timing.idle_poll,
            heartbeat: timing.heartbeat,
            member_timeout: timing.member_timeout,
            steward_lease: timing.steward_lease,
            max_skew: timing.max_skew,
            check_retry: timing.check_retry,
            ..Timing::default()
        };
        Self {
            store: cx.store,
            names,
            view: View::new(cx.agent, timing),
            own_known: false,
            status: cx.status,
            shared,
            to_driver,
            to_agent,
            checks: Vec::new(),
            failures: 0,
            fresh_until: None,
            trust: cx.trust,
            warned: None,
        }
    }

    fn refs(&self) -> Arc<dyn RefStore> {
        self.store.refs.clone()
    }

    /// Runs until the member is stopped (its last record written) or the
    /// agent is gone.
    pub async fn run(mut self) {
        let Some(names) = self.names.clone() else {
            return;
        };
        loop {
            if self.stopped() {
                return self.last_word(&names).await;
            }
            self.refresh();
            let until = match self.round(&names).await {
                Ok(until) => {
                    if self.failures > 0 {
                        tracing::info!("the fleet records can be read and written again");
                    }
                    self.failures = 0;
                    until
                }
                Err(e) => {
                    self.failures += 1;
                    if self.failures == 1 {
                        tracing::warn!("fleet records: {e}");
                    }
                    self.own_known = false;
                    self.fresh_until = None;
                    let backoff = self.view.timing.poll * (1 << self.failures.min(5));
                    Time(now_ms()).plus(backoff.min(MAX_BACKOFF))
                }
            };
            if !self.sleep(until).await {
                return;
            }
        }
    }

    /// The view's local facts and timing from the agent's status and what
    /// the gate heard.
    fn refresh(&mut self) {
        let local = self.local();
        let sh = lock(&self.shared);
        self.view.accepted = sh.accepted.clone();
        if !sh.budget.is_zero() {
            self.view.timing.swap_budget = sh.budget;
        }
        drop(sh);
        self.view.local = local;
    }

    fn local(&self) -> Local {
        let s = self.status.borrow();
        let sh = lock(&self.shared);
        let accepted = sh.accepted.as_ref().map(|a| a.release);
        let reported = s
            .failed
            .iter()
            .rev()
            .find(|f| Some(f.release) == accepted)
            .or(s.failed.last())
            .map(|f| Attempt {
                release: f.release,
                sequence: f.sequence,
            });
        // The gate hears of a failure before the agent's status shows it.
        let heard = sh.failed.filter(|f| Some(f.release) == accepted);
        let failed = match (heard, reported) {
            (Some(h), Some(r)) if r.release == h.release && r.sequence >= h.sequence => Some(r),
            (Some(h), _) => Some(h),
            (None, r) => r,
        };
        Local {
            running: s.member.release,
            version: s.member.version.clone(),
            sequence: s.member.sequence,
            generation: s.member.generation,
            previous: s.member.previous,
            health: s.member.health,
            fetched: sh.fetched.clone(),
            failed,
            checks: self.checks.clone(),
            last_error: s.member.last_error.clone(),
        }
    }

    fn stopped(&self) -> bool {
        self.status.borrow().member.state == MemberState::Stopped
    }

    /// One round; returns when to start the next at the latest.
    async fn round(&mut self, names: &Names) -> Result<Time, StoreError> {
        if let Some(until) = self.on_record_read(names).await? {
            return Ok(until);
        }
        self.fresh_until = None;
        let refs = self.refs();
        self.view.new_round();
        let mut read = bounded(
            "reading the rollout record",
            io::rollout(refs.as_ref(), &names.rollout),
        )
        .await?;
        // An unreadable version is timed from when it was first read.
        if let (
            RolloutRead::Unreadable { version, since, .. },
            RolloutRead::Unreadable {
                version: before,
                since: first,
                ..
            },
        ) = (&mut read, &self.view.rollout)
        {
            if version == before {
                *since = *first;
            }
        }
        self.view.rollout = read;
        self.check_claim(names);
        if !self.own_known {
            self.view.own = bounded(
                "reading the member record",
                io::member(refs.as_ref(), &names.own),
            )
            .await?
            .map(|(version, record)| Versioned {
                version,
                value: record.unwrap_or_else(|| self.placeholder()),
            });
            self.own_known = true;
        }
        let mut d = decide(&self.view, Time(now_ms()));
        let mut steps = 0;
        while !d.reads.is_empty() {
            steps += 1;
            if steps > MAX_READ_STEPS {
                tracing::error!("the rollout decision keeps asking for reads: {:?}", d.reads);
                return Ok(Time(now_ms()).plus(self.view.timing.poll));
            }
            let reads = io::read(refs.as_ref(), &self.trust, names, &mut self.view, &d.reads);
            bounded("reading fleet records", reads).await?;
            d = decide(&self.view, Time(now_ms()));
        }
        tracing::debug!(
            "fleet decision: writes {:?}, action {:?}",
            d.writes
                .iter()
                .map(|w| match w {
                    cairn_rollout::Write::Member { .. } => "member".to_string(),
                    cairn_rollout::Write::Rollout { record, .. } => format!(
                        "rollout #{} {} wave {} slots {:?}",
                        record.sequence,
                        record.phase,
                        record.wave,
                        record.slots.iter().map(|s| &s.member).collect::<Vec<_>>()
                    ),
                })
                .collect::<Vec<_>>(),
            d.action
        );
        for w in d.writes {
            let member = matches!(w, cairn_rollout::Write::Member { .. });
            match bounded_write(io::write(refs.as_ref(), names, &mut self.view, w)).await {
                Ok(()) => {}
                Err(WriteError::Conflict) => {
                    if member {
                        self.own_known = false;
                    }
                    let again = self.view.timing.poll / 4;
                    return Ok(Time(now_ms()).plus(again));
                }
                Err(WriteError::Store(e)) => return Err(e),
            }
        }
        if let Action::Wait { refresh, .. } = &d.action {
            self.fresh_until = Some(*refresh);
        }
        Ok(self.act(d.action).await)
    }

    /// Checks the statement a rollout record claiming a newer sequence
    /// than the accepted one carries (`View::verified`); an unsigned claim
    /// is logged once per record version (the decision replaces it).
    fn check_claim(&mut self, names: &Names) {
        self.view.verified = None;
        let (RolloutRead::Read(r), Some(acc)) = (&self.view.rollout, &self.view.accepted) else {
            return;
        };
        if r.value.sequence <= acc.sequence {
            return;
        }
        let now = time::OffsetDateTime::now_utc();
        match self.trust.check(&r.value, acc.sequence, now) {
            Ok(v) => self.view.verified = Some(v),
            Err(e) => {
                if self.warned.as_ref() != Some(&r.version) {
                    tracing::warn!(
                        "{} claims statement #{} of release {}, but {e}: replacing it with #{}",
                        names.rollout,
                        r.value.sequence,
                        r.value.target,
                        acc.sequence
                    );
                    self.warned = Some(r.version.clone());
                }
            }
        }
    }

    /// A round on the rollout record already read, before its `refresh`
    /// time: the decision is kept (this member's record written, the wait
    /// begun) only if that is all it asks; `None` when a full round is due.
    async fn on_record_read(&mut self, names: &Names) -> Result<Option<Time>, StoreError> {
        let now = Time(now_ms());
        let Some(refresh) = self.fresh_until.filter(|r| now < *r) else {
            return Ok(None);
        };
        if !self.own_known || !matches!(self.view.rollout, RolloutRead::Read(_)) {
            return Ok(None);
        }
        // Other records read last round may have changed: a decision that
        // wants them asks again, which makes this a full round.
        self.view.new_round();
        let d = decide(&self.view, now);
        let quiet = d.reads.is_empty()
            && d.writes.iter().all(|w| matches!(w, Write::Member { .. }))
            && matches!(d.action, Action::Wait { until, .. } if until > now);
        if !quiet {
            return Ok(None);
        }
        let refs = self.refs();
        for w in d.writes {
            match bounded_write(io::write(refs.as_ref(), names, &mut self.view, w)).await {
                Ok(()) => {}
                Err(WriteError::Conflict) => {
                    self.own_known = false;
                    self.fresh_until = None;
                    return Ok(Some(now.plus(self.view.timing.poll / 4)));
                }
                Err(WriteError::Store(e)) => return Err(e),
            }
        }
        let Action::Wait { until, reason, .. } = d.action else {
            unreachable!("checked above");
        };
        self.set_reason(reason.to_string());
        Ok(Some(until.min(refresh)))
    }

    /// Records why the member waits; logged when it changes, so that the
    /// log says why a member does not move (a halt, a gate not believed).
    /// The reason may quote the rollout record (a halt's reason), which
    /// anyone who may write the store writes: escaped before it is shown.
    fn set_reason(&self, reason: String) {
        let reason = cairn_escape::text(reason.as_bytes()).into_owned();
        let mut sh = lock(&self.shared);
        if sh.reason.as_deref() != Some(reason.as_str()) {
            tracing::info!("rollout: {reason}");
            sh.reason = Some(reason);
        }
    }

    /// Carries the action out; returns when to decide again at the latest.
    async fn act(&mut self, action: Action) -> Time {
        let poll = self.view.timing.poll;
        match action {
            Action::Wait { until, reason, .. } => {
                self.set_reason(reason.to_string());
                until
            }
            Action::Fetch { release } => {
                // The agent fetches an accepted release on its own before it
                // asks the gate, which tells the driver.
                lock(&self.shared).reason = Some(format!("fetching {release}"));
                Time(now_ms()).plus(poll)
            }
            Action::Update { release, finish_by } => {
                self.grant(Grant::Update { release, finish_by }, finish_by)
                    .await
            }
            Action::RollBack { to, finish_by } => {
                self.grant(Grant::RollBack { to, finish_by }, finish_by)
                    .await
            }
            Action::RunCheck {
                gate,
                wave,
                command,
                timeout,
            } => {
                let passed = super::check::run(&command, timeout).await;
                let sequence = match &self.view.rollout {
                    RolloutRead::Read(r) => r.value.sequence,
                    _ => 0,
                };
                self.checks.push(CheckResult {
                    sequence,
                    wave,
                    gate,
                    passed,
                    at: Time(now_ms()),
                });
                let excess = self.checks.len().saturating_sub(MAX_CHECKS);
                self.checks.drain(..excess);
                Time(now_ms())
            }
        }
    }

    /// Hands `grant` to the agent and waits until it carried it out, or
    /// until `finish_by` passed without the agent taking it.
    async fn grant(&mut self, grant: Grant, finish_by: Time) -> Time {
        lock(&self.shared).grant = Some(grant);
        self.to_agent.notify_one();
        loop {
            {
                let mut sh = lock(&self.shared);
                if sh.grant.is_none() && !sh.busy {
                    break;
                }
                // Not taken by the end of its lease, or the agent moved on
                // to another statement: decide again.
                let moved_on = match (&sh.grant, &sh.accepted) {
                    (Some(Grant::Update { release, .. }), Some(a)) => a.release != *release,
                    _ => false,
                };
                if sh.grant.is_some() && (Time(now_ms()) >= finish_by || moved_on) {
                    sh.grant = None;
                    break;
                }
            }
            let poll = self.view.timing.poll;
            tokio::select! {
                _ = self.to_driver.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
            if self.stopped() {
                break;
            }
        }
        Time(now_ms())
    }

    /// Waits until `until`, a word from the gate, or a change of the local
    /// facts; false when the agent is gone.
    async fn sleep(&mut self, until: Time) -> bool {
        let ms = until.0.saturating_sub(now_ms()).max(0) as u64;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return true,
                _ = self.to_driver.notified() => return true,
                changed = self.status.changed() => {
                    if changed.is_err() {
                        return false;
                    }
                    drop(self.status.borrow_and_update());
                    if self.stopped() || self.local() != self.view.local {
                        return true;
                    }
                }
            }
        }
    }

    /// A record standing in for an unreadable own record (rewritten at
    /// once).
    fn placeholder(&self) -> MemberRecord {
        MemberRecord {
            agent: self.view.me.clone(),
            release: None,
            version: None,
            sequence: None,
            generation: None,
            target: None,
            state: MemberState::Starting,
            health: cairn_rollout::Health::Unknown,
            heartbeat: 0,
            last_error: None,
            previous: None,
            failed: None,
        }
    }

    /// The member record of a stopped member, written once.
    async fn last_word(&mut self, names: &Names) {
        let mut record = self.status.borrow().member.clone();
        record.heartbeat = now_ms() / 1000;
        record.failed = self.view.local.failed;
        let mut version = match &self.view.own {
            Some(o) if self.own_known => Some(cairn_store::Version(o.version.0.clone())),
            _ => None,
        };
        let refs = self.refs();
        if !self.own_known {
            version = refs.get(&names.own).await.ok().flatten().map(|v| v.version);
        }
        if let Err(e) = crate::status::write(&self.store, &names.own, &record, &mut version).await {
            tracing::warn!("writing member record {}: {e}", names.own);
        }
    }
}
