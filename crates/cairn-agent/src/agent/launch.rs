//! Starting one service process from a generation: its sockets and probe
//! twins, its environment, its log pump, and its record in `state.json`
//! between the fork and the exec.

use std::os::fd::{AsFd, OwnedFd};

use cairn_recipe::{Probe, RunSpec};
use tokio::time::Instant;

use super::{Agent, Running};
use crate::generation;
use crate::health::{Monitor, ProbeTarget};
use crate::process::spawn::{self, Launch};
use crate::process::ServiceProcess;
use crate::sockets::{self, ProbeAddress};
use crate::state::{Generation, ProcessRecord, Role};

/// Why a process could not be started.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LaunchError {
    #[error("generation {0} is not kept any more")]
    NoGeneration(u64),
    #[error(transparent)]
    RunSpec(#[from] cairn_recipe::RunSpecError),
    #[error("the release needs socket `{0}`, which agent.toml's [sockets] does not define")]
    MissingSocket(String),
    #[error("making a probe listener for socket `{socket}`: {source}")]
    Twin {
        socket: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Spawn(#[from] spawn::SpawnError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> LaunchError {
    move |source| LaunchError::Io { what, source }
}

impl Agent {
    /// Starts generation `number` as a new process in `role`, recorded in
    /// `state.json` before it runs anything.
    pub(super) async fn launch(&mut self, number: u64, role: Role) -> Result<Running, LaunchError> {
        let g = self
            .state
            .generation(number)
            .cloned()
            .ok_or(LaunchError::NoGeneration(number))?;
        let run = RunSpec::from_json(&g.run)?;
        let dir = generation::dir(&self.layout, &g);
        let mut fds = Vec::new();
        let mut names = Vec::new();
        for name in &run.sockets {
            let held = self
                .sockets
                .get(name.as_str())
                .ok_or_else(|| LaunchError::MissingSocket(name.to_string()))?;
            fds.push(held.fd.as_fd());
            names.push(name.to_string());
        }
        let mut twin_fds: Vec<OwnedFd> = Vec::new();
        let mut twins: Vec<(String, ProbeAddress)> = Vec::new();
        if let Some(Probe::SocketHttp { socket, .. }) = run.health.as_ref().map(|h| &h.probe) {
            let held = self
                .sockets
                .get(socket.as_str())
                .ok_or_else(|| LaunchError::MissingSocket(socket.to_string()))?;
            let tag = format!("g{number}-{socket}-{}", crate::status::now_ms());
            let twin =
                sockets::twin(&held.address, &self.layout.run(), &tag).map_err(|source| {
                    LaunchError::Twin {
                        socket: socket.to_string(),
                        source,
                    }
                })?;
            twins.push((socket.to_string(), twin.address));
            names.push(socket.to_string());
            twin_fds.push(twin.fd);
        }
        fds.extend(twin_fds.iter().map(|f| f.as_fd()));
        let env = self.environment(&g, &run, &names);
        let (pipe_r, pipe_w) = pipe().map_err(io("making the log pipe"))?;
        let launch = Launch {
            program: run.command[0].clone().into(),
            argv: run.command.clone(),
            env,
            cwd: dir.clone(),
            fds,
            output: pipe_w.as_fd(),
            credentials: self.credentials,
            read_only: self.read_only.then(|| self.layout.root().to_path_buf()),
        };
        let forked = spawn::fork(&launch)?;
        drop(launch);
        let process = ServiceProcess::forked(forked.pid).map_err(io("watching the new process"))?;
        self.state.processes.push(ProcessRecord {
            identity: process.identity.clone(),
            generation: number,
            role,
            twins: twins.clone(),
        });
        if let Err(e) = self.state.save(&self.layout) {
            self.state.processes.pop();
            return Err(e.into()); // `forked` is dropped: the child exits unrun
        }
        let tag = format!("gen{number}[{}]", forked.pid);
        let pumped = self.spawn_pump(pipe_r, &tag);
        let released = pumped.and_then(|()| forked.release().map_err(LaunchError::from));
        if let Err(e) = released {
            self.forget(&process.identity);
            return Err(e);
        }
        drop(pipe_w);
        Ok(self.running(process, &g, &run, &twins))
    }

    /// A [`Running`] for `process` of generation `g`, probing `twins`.
    pub(super) fn running(
        &self,
        process: ServiceProcess,
        g: &Generation,
        run: &RunSpec,
        twins: &[(String, ProbeAddress)],
    ) -> Running {
        let check = run.health.clone();
        let probe = check.map(|check| {
            let target = match &check.probe {
                Probe::SocketHttp { socket, path } => {
                    let address = twins
                        .iter()
                        .find(|(n, _)| n == socket.as_str())
                        .map(|(_, a)| a.clone());
                    match address {
                        Some(address) => ProbeTarget::Twin {
                            address,
                            path: path.clone(),
                        },
                        // An adopted process recorded without a twin
                        // (cannot happen for ones this agent started).
                        None => ProbeTarget::Tcp("0.0.0.0:0".into()),
                    }
                }
                Probe::Http(url) => ProbeTarget::Url(url.clone()),
                Probe::Tcp(addr) => ProbeTarget::Tcp(addr.clone()),
                Probe::Exec(argv) => ProbeTarget::Exec {
                    argv: argv.clone(),
                    cwd: generation::dir(&self.layout, g),
                    env: self.environment(g, run, &[]),
                    credentials: self.credentials,
                },
            };
            (target, check)
        });
        let threshold = probe.as_ref().map_or(1, |(_, c)| c.threshold);
        let interval = probe
            .as_ref()
            .map_or(std::time::Duration::from_secs(1), |(_, c)| c.interval);
        Running {
            process,
            generation: g.number,
            probe,
            monitor: Monitor::new(threshold),
            healthy_since: None,
            next_probe: Instant::now() + interval,
        }
    }

    /// The service's environment: the release's, the agent's `[env]` over
    /// it, a default `PATH`, the socket variables and what it runs.
    fn environment(
        &self,
        g: &Generation,
        run: &RunSpec,
        fd_names: &[String],
    ) -> Vec<(String, String)> {
        let mut env = run.env.clone();
        env.extend(self.cfg.env.clone());
        env.entry("PATH".into())
            .or_insert_with(|| "/usr/local/bin:/usr/bin:/bin".into());
        if !fd_names.is_empty() {
            env.insert("LISTEN_FDS".into(), fd_names.len().to_string());
            env.insert("LISTEN_FDNAMES".into(), fd_names.join(":"));
        }
        env.insert("CAIRN_SERVICE".into(), self.cfg.service.clone());
        env.insert("CAIRN_RELEASE".into(), g.release.to_string());
        env.insert("CAIRN_VERSION".into(), g.version.clone());
        env.insert("CAIRN_GENERATION".into(), g.number.to_string());
        env.into_iter().collect()
    }

    /// Starts the log pump reading `pipe`, in its own session.
    fn spawn_pump(&self, pipe: OwnedFd, tag: &str) -> Result<(), LaunchError> {
        let limits = self.cfg.logs;
        let mut cmd = tokio::process::Command::new(&self.pump.program);
        cmd.args(&self.pump.args)
            .arg("--dir")
            .arg(self.layout.logs())
            .args(["--service", &self.cfg.service, "--tag", tag])
            .args(["--max-bytes", &limits.max_bytes.to_string()])
            .args(["--keep", &limits.keep.to_string()])
            .current_dir(self.layout.root())
            // It outlives the agent beside the service and needs nothing
            // of the agent's environment (a store's credentials among it).
            .env_clear()
            .stdin(std::process::Stdio::from(pipe))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        // SAFETY: setsid is async-signal-safe and touches no memory.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        // The child is reaped by tokio when it exits (its handle is dropped).
        cmd.spawn().map(drop).map_err(io("starting the log pump"))
    }

    /// Drops the record of a process that never ran.
    fn forget(&mut self, identity: &crate::process::Identity) {
        self.state.processes.retain(|p| p.identity != *identity);
        if let Err(e) = self.state.save(&self.layout) {
            tracing::error!("{e}");
        }
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    use std::os::fd::FromRawFd;
    // SAFETY: both are new and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}
