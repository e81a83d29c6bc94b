//! Converging at start-up, after a clean stop or a kill -9 at any step.
//!
//! `state.json` names every service process that may be alive. Each is
//! checked against its recorded identity (pid, start time, boot):
//!
//! * the newest live `serving` process is adopted: it keeps serving, and
//!   `current` is pointed back at its generation if a swap was cut off
//!   after the switch;
//! * every other live process (`starting`: a swap that had not finished;
//!   `draining`: a stop that had not finished; a second `serving`, which
//!   cannot happen but is not trusted not to) is stopped gracefully;
//! * if nothing serves, the `current` generation is started.
//!
//! The listening sockets are taken back from a live process before any is
//! stopped ([`crate::sockets::reclaim`]); only sockets no live process
//! holds are bound afresh. So exactly one version serves afterwards, on the
//! same sockets, and a swap that was cut off is simply tried again when
//! the channel is next read.

use cairn_recipe::RunSpec;

use super::{Agent, AgentError};
use crate::generation;
use crate::phase::Phase;
use crate::process::ServiceProcess;
use crate::sockets::{self, HeldSocket};
use crate::state::{ProcessRecord, Role, SocketRecord};

impl Agent {
    pub(super) async fn recover(&mut self) -> Result<(), AgentError> {
        generation::clean_temporaries(&self.layout)?;
        let mut alive: Vec<(ProcessRecord, ServiceProcess)> = Vec::new();
        for rec in std::mem::take(&mut self.state.processes) {
            match ServiceProcess::adopt(&rec.identity) {
                Some(p) => alive.push((rec, p)),
                None => tracing::info!(
                    "process {} (generation {}) is gone",
                    rec.identity.pid,
                    rec.generation
                ),
            }
        }
        self.state.processes = alive.iter().map(|(r, _)| r.clone()).collect();
        let keeper = alive
            .iter()
            .enumerate()
            .filter(|(_, (r, _))| r.role == Role::Serving)
            .max_by_key(|(_, (r, _))| r.generation)
            .map(|(i, _)| i);
        if let Some(i) = keeper {
            alive.swap(0, i);
        }
        self.acquire_sockets(&alive)?;
        self.state.save(&self.layout)?;
        let keeper = keeper.map(|_| alive.remove(0));
        for (rec, process) in alive {
            tracing::info!(
                "stopping process {} of generation {} ({:?} when the agent stopped)",
                rec.identity.pid,
                rec.generation,
                rec.role
            );
            self.stop_process(&rec, &process).await;
        }
        match keeper {
            Some((rec, process)) => self.adopt(rec, process)?,
            None => self.start_current().await,
        }
        Ok(())
    }

    fn adopt(&mut self, rec: ProcessRecord, process: ServiceProcess) -> Result<(), AgentError> {
        tracing::info!(
            "adopted process {} of generation {}",
            rec.identity.pid,
            rec.generation
        );
        let Some(g) = self.state.generation(rec.generation).cloned() else {
            return Ok(()); // unreachable: a process's generation is kept
        };
        if generation::current(&self.layout) != Some(g.number) {
            generation::switch(&self.layout, &g)?;
        }
        let run = RunSpec::from_json(&g.run).ok();
        let mut running = match &run {
            Some(run) => self.running(process, &g, run, &rec.twins),
            None => return Ok(()),
        };
        running.healthy_since = Some(tokio::time::Instant::now());
        self.serving = Some(running);
        self.set_phase(Phase::Idle);
        Ok(())
    }

    /// Starts the generation `current` points at, if there is one.
    async fn start_current(&mut self) {
        let current =
            generation::current(&self.layout).filter(|n| self.state.generation(*n).is_some());
        match current {
            Some(n) => {
                tracing::info!("nothing serves; starting generation {n}");
                match self.start_serving(n).await {
                    Ok(()) => self.set_phase(Phase::Idle),
                    Err(e) => {
                        tracing::error!("starting generation {n}: {e}");
                        self.set_error(Some(e));
                        self.set_phase(Phase::Failed);
                        self.schedule_restart();
                    }
                }
            }
            None => self.set_phase(Phase::Idle),
        }
    }

    /// Holds every configured socket: taken back from a live process (the
    /// first in `alive` first) when one holds it, bound otherwise.
    fn acquire_sockets(
        &mut self,
        alive: &[(ProcessRecord, ServiceProcess)],
    ) -> Result<(), AgentError> {
        let mut records = Vec::new();
        for (name, address) in self.cfg.sockets.clone() {
            let recorded = self
                .state
                .sockets
                .iter()
                .find(|s| s.name == name && s.address == address.to_string());
            let reclaimed = recorded.and_then(|r| {
                alive.iter().find_map(|(_, p)| {
                    let fd = sockets::reclaim(p, r.inode)?;
                    Some(HeldSocket {
                        name: name.clone(),
                        address: address.clone(),
                        fd,
                        inode: r.inode,
                    })
                })
            });
            let held = match reclaimed {
                Some(h) => {
                    tracing::info!("took socket {name} ({address}) back from the running service");
                    h
                }
                None => sockets::bind(&name, &address).map_err(|source| AgentError::Socket {
                    name: name.clone(),
                    address: address.to_string(),
                    source,
                })?,
            };
            records.push(SocketRecord {
                name: name.clone(),
                address: address.to_string(),
                inode: held.inode,
            });
            self.sockets.insert(name, held);
        }
        self.state.sockets = records;
        Ok(())
    }
}
