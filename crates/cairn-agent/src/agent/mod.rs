//! The agent itself: one task that owns the state directory, the held
//! sockets and the service processes, and reacts to what happens.
//!
//! [`Agent::start`] locks the state directory, opens the local store and
//! converges with what already runs (`recover.rs`). [`Agent::run`] then
//! loops, waking for:
//!
//! * a change of the channel (pushed by the store, or the poll timer):
//!   the acceptance chain runs, and an accepted release that is not what
//!   runs is fetched, materialized, put to the gate, and swapped in
//!   (`update.rs`);
//! * the service exiting on its own: restart with exponential backoff
//!   (`supervise.rs`);
//! * the health-check interval: steady-state probes, reported;
//! * a shutdown request: stop the service gracefully and exit, or leave
//!   it running for the next agent to adopt ([`ShutdownMode::Detach`]).
//!
//! Every step that the next agent must know about is in `state.json`
//! before it takes effect, so a kill -9 at any point converges on restart.

mod fetching;
mod launch;
mod recover;
mod supervise;
mod update;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cairn_release::HighWaterMarks;
use cairn_rollout::{Health, MemberRecord, MemberState};
use cairn_store::{FsStore, Store};
use cairn_trust::KeySet;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::config::AgentConfig;
use crate::gate::{Command, UpdateGate};
use cairn_recipe::HealthCheck;

use crate::health::{Monitor, ProbeTarget};
use crate::notify::Notifier;
use crate::phase::Phase;
use crate::process::spawn::Credentials;
use crate::process::ServiceProcess;
use crate::sockets::HeldSocket;
use crate::state::{AgentState, Layout};
use crate::status::{Counters, Status, UpdateTimings};

/// How the log pump is run: a program and its leading arguments (the
/// agent appends `--dir D --service S --tag T --max-bytes N --keep K`).
#[derive(Clone, Debug)]
pub struct PumpCommand {
    /// The program (`cairn` itself).
    pub program: PathBuf,
    /// Arguments before the agent's own.
    pub args: Vec<OsString>,
}

/// Everything the agent needs, resolved by the caller.
pub struct Settings {
    /// The configuration.
    pub config: AgentConfig,
    /// The agent's id (the configured one, or the hostname).
    pub id: String,
    /// The store followed, opened and probed.
    pub remote: Store,
    /// The public keys for the trust policy's key ids.
    pub keys: KeySet,
    /// How to run a log pump.
    pub pump: PumpCommand,
    /// systemd notifications.
    pub notifier: Notifier,
    /// Who the service runs as.
    pub credentials: Option<Credentials>,
    /// Whether to mount the state directory read-only for the service
    /// (needs root).
    pub read_only: bool,
    /// How often the member record is rewritten at the least.
    pub heartbeat: Duration,
    /// Fault injection: die with SIGKILL at this step of a swap.
    pub crash_at: Option<CrashPoint>,
}

/// A step of a swap at which the agent can be made to die (fault
/// injection for crash-recovery tests; `CAIRN_AGENT_CRASH_AT` in the CLI).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    /// The release is fetched and materialized; nothing switched.
    Fetched,
    /// `current` points at the new generation; no new process yet.
    Switched,
    /// The new process runs beside the old one; not yet healthy.
    Started,
    /// The new process is healthy; the old one is being stopped.
    Draining,
}

impl std::str::FromStr for CrashPoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "fetched" => Self::Fetched,
            "switched" => Self::Switched,
            "started" => Self::Started,
            "draining" => Self::Draining,
            _ => {
                return Err(format!(
                    "unknown crash point {s:?} (fetched, switched, started, draining)"
                ))
            }
        })
    }
}

/// How the agent should end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownMode {
    /// Stop the service gracefully, then exit (SIGTERM, SIGINT).
    Stop,
    /// Exit and leave the service running for the next agent (SIGUSR2).
    Detach,
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Another agent uses the state directory.
    #[error("another agent is using {0} (its lock is held)")]
    Locked(PathBuf),
    /// Someone but the agent's user may change the state directory.
    #[error("state directory {} {problem}: another local user could rewrite the marks, state and generations the agent trusts and runs", path.display())]
    UnsafeStateDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A file operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The state file.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The local store.
    #[error("the local store: {0}")]
    Store(#[from] cairn_store::StoreError),
    /// A generation.
    #[error(transparent)]
    Generation(#[from] crate::generation::GenerationError),
    /// A socket could not be bound.
    #[error("binding socket {name} ({address}): {source}")]
    Socket {
        /// Its name.
        name: String,
        /// Its address.
        address: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The service's user cannot reach its generations.
    #[error(transparent)]
    User(#[from] crate::users::UserError),
    /// The status endpoint could not be bound.
    #[error("binding the status endpoint {address}: {source}")]
    Status {
        /// Its address.
        address: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// A service process the agent watches, with what it needs to probe it.
#[derive(Debug)]
pub(crate) struct Running {
    pub process: ServiceProcess,
    pub generation: u64,
    /// Its probe and health check, if the release has one.
    pub probe: Option<(ProbeTarget, HealthCheck)>,
    pub monitor: Monitor,
    /// When it last became healthy (to reset the restart backoff).
    pub healthy_since: Option<Instant>,
    /// When it is probed next.
    pub next_probe: Instant,
}

/// The agent.
pub struct Agent {
    cfg: AgentConfig,
    id: String,
    remote: Store,
    local: Store,
    local_fs: Arc<FsStore>,
    keys: KeySet,
    pump: PumpCommand,
    notifier: Notifier,
    credentials: Option<Credentials>,
    read_only: bool,
    heartbeat: Duration,
    layout: Layout,
    marks: HighWaterMarks,
    state: AgentState,
    sockets: BTreeMap<String, HeldSocket>,
    serving: Option<Running>,
    phase: Phase,
    target: Option<cairn_release::Accepted>,
    status: watch::Sender<Status>,
    gate: Box<dyn UpdateGate>,
    restart: supervise::Restarts,
    poll: update::PollBackoff,
    retry_update: Option<Instant>,
    /// The release the gate last said to wait for (logged once).
    waiting_for: Option<cairn_digest::Digest>,
    /// The channel ref's version at the last full acceptance check.
    seen: Option<(cairn_store::Version, Instant)>,
    crash_at: Option<CrashPoint>,
    _lock: File,
}

impl Agent {
    /// Locks the state directory, opens the local store and converges with
    /// what runs (adopting the service a previous agent started, or
    /// starting the current generation).
    pub async fn start(s: Settings, gate: Box<dyn UpdateGate>) -> Result<Self, AgentError> {
        let layout = Layout::new(&s.config.state_dir);
        let lock = lock(&layout)?;
        if let Some(credentials) = &s.credentials {
            crate::users::check_reachable(credentials, layout.root())?;
        }
        let fs = FsStore::open(layout.store())?;
        let local = Store::local(fs);
        let local_fs = local.local.clone().expect("a local store has a directory");
        let state = AgentState::load(&layout)?;
        let member = MemberRecord {
            agent: s.id.clone(),
            release: None,
            version: None,
            sequence: None,
            generation: None,
            target: None,
            state: MemberState::Starting,
            health: Health::Unknown,
            heartbeat: 0,
            last_error: None,
            previous: None,
            failed: None,
        };
        let (status, _) = watch::channel(Status {
            member,
            service: s.config.service.clone(),
            channel: s.config.channel.clone(),
            set: s.config.set.clone(),
            current: None,
            processes: Vec::new(),
            last_update: None,
            failed: Vec::new(),
            refused: None,
            counters: Counters::default(),
        });
        let mut agent = Self {
            marks: HighWaterMarks::new(layout.marks()),
            cfg: s.config,
            id: s.id,
            remote: s.remote,
            local,
            local_fs,
            keys: s.keys,
            pump: s.pump,
            notifier: s.notifier,
            credentials: s.credentials,
            read_only: s.read_only,
            heartbeat: s.heartbeat,
            layout,
            state,
            sockets: BTreeMap::new(),
            serving: None,
            phase: Phase::Starting,
            target: None,
            status,
            gate,
            restart: supervise::Restarts::default(),
            poll: update::PollBackoff::default(),
            retry_update: None,
            waiting_for: None,
            seen: None,
            crash_at: s.crash_at,
            _lock: lock,
        };
        agent.recover().await?;
        Ok(agent)
    }

    /// A receiver of the agent's status (for the status endpoint).
    pub fn status(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    /// Runs until `shutdown` asks to stop; returns how it stopped.
    pub async fn run(
        mut self,
        mut shutdown: watch::Receiver<Option<ShutdownMode>>,
    ) -> ShutdownMode {
        let context = crate::gate::GateContext {
            store: self.remote.clone(),
            service: self.cfg.service.clone(),
            set: self.cfg.set.clone(),
            agent: self.id.clone(),
            status: self.status.subscribe(),
            trust: crate::fleet::Trust {
                policy: self.cfg.trust.policy.clone(),
                keys: self.keys.clone(),
            },
        };
        // A gate that runs the fleet protocol writes the member record
        // itself; otherwise the reporter does.
        let reporter = match self.gate.start(context) {
            Some(task) => task,
            None => tokio::spawn(crate::status::report(
                self.remote.clone(),
                self.status.subscribe(),
                self.heartbeat,
            )),
        };
        if let Some(addr) = self.cfg.status_listen {
            match crate::status::bind(addr).await {
                Ok(listener) => {
                    tokio::spawn(crate::status::serve(listener, self.status.subscribe()));
                }
                Err(e) => tracing::error!("status endpoint {addr}: {e}"),
            }
        }
        let changed = Arc::new(Notify::new());
        let watcher = tokio::spawn(update::watch_channel(
            self.remote.clone(),
            self.cfg.service.clone(),
            self.cfg.channel.clone(),
            changed.clone(),
        ));
        self.notifier.notify("READY=1\nSTATUS=running");
        let mut next_poll = Instant::now();
        let mode = loop {
            if let Some(mode) = *shutdown.borrow() {
                break mode;
            }
            let (restart_due, retry_due, probe_due) =
                (self.restart.due, self.retry_update, self.probe_due());
            let wake = tokio::select! {
                _ = shutdown.changed() => continue,
                command = self.gate.command() => Wake::Gate(command),
                _ = changed.notified() => Wake::Channel,
                _ = tokio::time::sleep_until(next_poll) => Wake::Channel,
                status = exited(&self.serving) => Wake::Exited(status),
                _ = at(restart_due) => Wake::Restart,
                _ = at(retry_due) => Wake::Retry,
                _ = at(probe_due) => Wake::Probe,
            };
            let polled = matches!(
                wake,
                Wake::Channel | Wake::Retry | Wake::Gate(Command::Recheck)
            );
            let work = self.handle(wake);
            tokio::select! {
                _ = work => {}
                _ = wait_for_shutdown(&mut shutdown) => {}
            }
            if polled {
                next_poll = Instant::now() + self.poll.delay(self.cfg.poll_interval);
            }
        };
        watcher.abort();
        self.shutdown(mode).await;
        if mode == ShutdownMode::Detach {
            reporter.abort();
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), reporter).await;
        mode
    }

    async fn handle(&mut self, wake: Wake) {
        match wake {
            Wake::Channel | Wake::Retry | Wake::Gate(Command::Recheck) => {
                self.retry_update = None;
                self.check_channel().await;
            }
            Wake::Gate(Command::RollBack { to }) => self.return_to(to).await,
            Wake::Exited(status) => self.service_exited(status).await,
            Wake::Restart => self.restart_service().await,
            Wake::Probe => self.probe_serving().await,
        }
    }

    /// Moves to `next`, refusing (and logging) a transition the diagram
    /// does not have.
    fn set_phase(&mut self, next: Phase) {
        if self.phase != next {
            if !self.phase.may_become(&next) {
                tracing::error!("unexpected transition {:?} -> {:?}", self.phase, next);
            }
            tracing::debug!("phase {:?} -> {:?}", self.phase, next);
            self.phase = next;
        }
        self.publish();
    }

    /// The status as it stands, sent to the reporter and the endpoint.
    fn publish(&self) {
        let current = crate::generation::current(&self.layout)
            .and_then(|n| self.state.generation(n))
            .map(|g| crate::status::CurrentView {
                generation: g.number,
                release: g.release,
                version: g.version.clone(),
            });
        let serving_gen = self
            .serving
            .as_ref()
            .and_then(|r| self.state.generation(r.generation));
        let health = match &self.serving {
            None => Health::Unknown,
            Some(r) if r.monitor.healthy() && r.healthy_since.is_some() => Health::Healthy,
            Some(_) => Health::Unhealthy,
        };
        let previous = serving_gen.and_then(|s| self.state.previous(&s.release));
        let processes = self
            .state
            .processes
            .iter()
            .map(|p| crate::status::ProcessView {
                pid: p.identity.pid,
                generation: p.generation,
                role: p.role,
            })
            .collect();
        self.status.send_modify(|s| {
            s.member.release = serving_gen.map(|g| g.release);
            s.member.version = serving_gen.map(|g| g.version.clone());
            s.member.sequence = serving_gen.map(|g| g.sequence);
            s.member.generation = serving_gen.map(|g| g.number);
            s.member.previous = previous;
            s.member.target = self.phase.target();
            s.member.state = self.phase.member_state();
            s.member.health = health;
            s.member.heartbeat = crate::status::now_ms() / 1000;
            s.current = current;
            s.processes = processes;
            s.failed = self.state.failed.clone();
        });
    }

    fn set_error(&self, error: Option<String>) {
        self.status.send_modify(|s| s.member.last_error = error);
    }

    fn count(&self, f: impl FnOnce(&mut Counters)) {
        self.status.send_modify(|s| f(&mut s.counters));
    }

    fn timings(&self, f: impl FnOnce(&mut UpdateTimings)) {
        self.status
            .send_modify(|s| f(s.last_update.get_or_insert_with(UpdateTimings::default)));
    }

    /// When the serving process is due for its next steady-state probe.
    fn probe_due(&self) -> Option<Instant> {
        let r = self.serving.as_ref()?;
        r.probe.as_ref()?;
        Some(r.next_probe)
    }

    /// Stops the service (or, detaching, leaves it to the next agent) and
    /// reports the member stopped.
    async fn shutdown(&mut self, mode: ShutdownMode) {
        self.notifier.notify("STOPPING=1");
        match mode {
            ShutdownMode::Stop => {
                tracing::info!("stopping the service");
                self.stop_everything().await;
                self.set_phase(Phase::Stopping);
            }
            ShutdownMode::Detach => {
                tracing::info!("leaving the service running for the next agent");
            }
        }
        self.save();
    }

    /// Kills the agent with SIGKILL if `point` is the configured crash
    /// point (fault injection: the crash-recovery tests stop the agent at
    /// an exact step of a swap this way).
    fn crash_point(&self, point: CrashPoint) {
        if self.crash_at == Some(point) {
            tracing::warn!("crash point {point:?} reached: killing the agent");
            // SAFETY: kill(2) on our own pid.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
    }
}

/// What woke the loop.
enum Wake {
    Channel,
    Gate(Command),
    Retry,
    Exited(Option<String>),
    Restart,
    Probe,
}

async fn exited(r: &Option<Running>) -> Option<String> {
    match r {
        Some(r) => r.process.exited().await,
        None => std::future::pending().await,
    }
}

async fn at(when: Option<Instant>) {
    match when {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

async fn wait_for_shutdown(rx: &mut watch::Receiver<Option<ShutdownMode>>) {
    while rx.borrow().is_none() {
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

fn lock(layout: &Layout) -> Result<File, AgentError> {
    let root = layout.root();
    check_ancestors(root)?;
    std::fs::create_dir_all(root).map_err(|source| AgentError::Io {
        action: "creating",
        path: root.to_path_buf(),
        source,
    })?;
    check_owned(root)?;
    let path = layout.lock();
    let file = File::create(&path).map_err(|source| AgentError::Io {
        action: "creating",
        path: path.clone(),
        source,
    })?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(AgentError::Locked(root.to_path_buf())),
        Err(e) => Err(AgentError::Io {
            action: "locking",
            path,
            source: e.into(),
        }),
    }
}

/// Every directory above the state directory must be root's or the
/// agent's user's, and not writable by group or others unless it is
/// sticky (`/tmp`): whoever may rename entries in one of them can swap the
/// state directory (or a symlink on the way to it) for one of their own
/// after it was checked, and have the agent trust their `state.json`
/// (which names processes it signals). Both the path as written and the
/// one its symlinks resolve to are checked; an ancestor that does not
/// exist yet is made by the agent.
fn check_ancestors(root: &std::path::Path) -> Result<(), AgentError> {
    use std::os::unix::fs::MetadataExt;
    let absolute = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
    let resolved = absolute.parent().and_then(|p| p.canonicalize().ok());
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let chains = [Some(absolute.clone()), resolved.map(|p| p.join("x"))];
    for dir in chains.iter().flatten().flat_map(|p| p.ancestors().skip(1)) {
        let Ok(meta) = std::fs::metadata(dir) else {
            continue;
        };
        let problem = if meta.uid() != 0 && meta.uid() != me {
            format!(
                "is owned by uid {}, not by root or the agent's uid {me}",
                meta.uid()
            )
        } else if meta.mode() & 0o022 != 0 && meta.mode() & 0o1000 == 0 {
            format!(
                "is writable by group or others and not sticky (mode {:04o}; chmod go-w it)",
                meta.mode() & 0o7777
            )
        } else {
            continue;
        };
        return Err(AgentError::UnsafeStateDir {
            path: root.to_path_buf(),
            problem: format!("is under {}, which {problem}", dir.display()),
        });
    }
    Ok(())
}

/// The state directory must be the agent's user's alone to change: its
/// high-water marks, `state.json` (which names the processes the agent
/// signals) and generations (what it runs) are trusted as they stand.
fn check_owned(root: &std::path::Path) -> Result<(), AgentError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(root).map_err(|source| AgentError::Io {
        action: "reading",
        path: root.to_path_buf(),
        source,
    })?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let problem = if meta.uid() != me {
        format!(
            "is owned by uid {}, not by the agent's uid {me}",
            meta.uid()
        )
    } else if meta.mode() & 0o022 != 0 {
        format!(
            "is writable by group or others (mode {:04o}; chmod go-w it)",
            meta.mode() & 0o7777
        )
    } else {
        return Ok(());
    };
    Err(AgentError::UnsafeStateDir {
        path: root.to_path_buf(),
        problem,
    })
}
