//! Supervision between updates: restart a service that exits on its own
//! (exponential backoff from 0.5 s to 30 s, reset once it has stayed up a
//! minute), probe it every health interval and report what the probes say,
//! and stop processes gracefully (the release's stop signal and grace, then
//! its whole process group killed).
//!
//! Steady-state probe failures are reported (member record health, the
//! status endpoint, the log), not acted on: restarting a process that is
//! merely slow would make an overload worse. A process that exits is
//! restarted.

use std::time::Duration;

use cairn_recipe::RunSpec;
use tokio::time::Instant;

use super::Agent;
use crate::health;
use crate::phase::Phase;
use crate::process::{signal_number, ServiceProcess};
use crate::state::{ProcessRecord, Role};

/// Restart attempts and when the next one is due.
#[derive(Debug, Default)]
pub(crate) struct Restarts {
    /// Restarts since the service last stayed up.
    pub attempts: u32,
    /// When the next restart is due, if one is.
    pub due: Option<Instant>,
}

/// How long a restarted service must stay up for the backoff to reset.
const STAYED_UP: Duration = Duration::from_secs(60);

impl Restarts {
    /// The delay before attempt `attempts + 1`: 0.5 s, 1 s, 2 s, … 30 s.
    pub fn delay(&self) -> Duration {
        let ms = 500u64.saturating_mul(1 << self.attempts.min(10));
        Duration::from_millis(ms.min(30_000))
    }
}

impl Agent {
    /// Starts generation `n` and waits until it is healthy; on success it
    /// is the serving process.
    pub(super) async fn start_serving(&mut self, n: u64) -> Result<(), String> {
        let mut running = self
            .launch(n, Role::Starting)
            .await
            .map_err(|e| e.to_string())?;
        if let Some((target, check)) = &running.probe {
            if let Err(e) = health::wait_healthy(&running.process, check, target).await {
                let rec = self.record_of(&running.process);
                if let Some(rec) = rec {
                    self.stop_process(&rec, &running.process).await;
                }
                return Err(format!("generation {n}: {e}"));
            }
        } else if !running.process.is_running() {
            let status = running.process.exited().await.unwrap_or_default();
            self.remove_record(&running.process);
            return Err(format!("generation {n} exited at once ({status})"));
        }
        if let Some(g) = self.state.generations.iter_mut().find(|g| g.number == n) {
            g.served = true;
        }
        self.set_role(&running.process, Role::Serving);
        running.healthy_since = Some(Instant::now());
        self.serving = Some(running);
        self.publish();
        Ok(())
    }

    /// The serving process exited on its own.
    pub(super) async fn service_exited(&mut self, status: Option<String>) {
        let Some(r) = self.serving.take() else { return };
        let status = status.unwrap_or_else(|| "status unknown".into());
        let stayed_up = r.healthy_since.is_some_and(|t| t.elapsed() >= STAYED_UP);
        if stayed_up {
            self.restart.attempts = 0;
        }
        // Anything it left in its process group could hold the sockets and
        // take connections nobody serves.
        crate::process::kill_group(r.process.pid(), libc::SIGKILL);
        self.remove_record(&r.process);
        let msg = format!(
            "service (generation {}, pid {}) exited ({status}); restarting in {:?}",
            r.generation,
            r.process.pid(),
            self.restart.delay()
        );
        tracing::warn!("{msg}");
        self.set_error(Some(msg));
        self.schedule_restart();
        self.publish();
    }

    /// Schedules the next restart after the backoff delay.
    pub(super) fn schedule_restart(&mut self) {
        self.restart.due = Some(Instant::now() + self.restart.delay());
    }

    /// Restarts the current generation (a due restart).
    pub(super) async fn restart_service(&mut self) {
        self.restart.due = None;
        if self.serving.is_some() {
            return; // an update started something meanwhile
        }
        let Some(n) = crate::generation::current(&self.layout) else {
            return;
        };
        self.restart.attempts += 1;
        self.count(|c| c.restarts += 1);
        match self.start_serving(n).await {
            Ok(()) => {
                tracing::info!("service restarted (generation {n})");
                self.set_error(None);
                if self.phase == Phase::Failed {
                    self.set_phase(Phase::Idle);
                }
            }
            Err(e) => {
                tracing::warn!("restart failed: {e}; next in {:?}", self.restart.delay());
                self.set_error(Some(format!("restart failed: {e}")));
                if self.phase == Phase::Idle {
                    self.set_phase(Phase::Failed);
                }
                self.schedule_restart();
            }
        }
    }

    /// One steady-state probe of the serving process.
    pub(super) async fn probe_serving(&mut self) {
        let Some(r) = self.serving.as_mut() else {
            return;
        };
        let Some((target, check)) = &r.probe else {
            return;
        };
        let timeout = check.interval.max(Duration::from_secs(2));
        let result = health::probe(target, timeout).await;
        r.next_probe = Instant::now() + check.interval;
        let was = r.monitor.healthy();
        let tripped = r.monitor.record(result);
        let now = r.monitor.healthy();
        if was && !now {
            let msg = format!("service unhealthy: {}", tripped.unwrap_or_default());
            tracing::warn!("{msg}");
            self.set_error(Some(msg));
        } else if !was && now {
            tracing::info!("service healthy again");
            self.set_error(None);
        }
        self.publish();
    }

    /// Stops `process` (recorded as `rec`) gracefully, as its release says;
    /// its record is `draining` meanwhile and removed after.
    pub(super) async fn stop_process(&mut self, rec: &ProcessRecord, process: &ServiceProcess) {
        let (signal, grace) = self
            .state
            .generation(rec.generation)
            .and_then(|g| RunSpec::from_json(&g.run).ok())
            .map(|run| (signal_number(&run.stop.signal), run.stop.grace))
            .unwrap_or((None, Duration::from_secs(10)));
        self.set_role(process, Role::Draining);
        let outcome = process.stop(signal.unwrap_or(libc::SIGTERM), grace).await;
        tracing::info!("process {} stopped: {outcome:?}", process.pid());
        self.remove_record(process);
    }

    /// Stops every service process (the agent is shutting down).
    pub(super) async fn stop_everything(&mut self) {
        if let Some(r) = self.serving.take() {
            if let Some(rec) = self.record_of(&r.process) {
                self.stop_process(&rec, &r.process).await;
            }
        }
        for rec in self.state.processes.clone() {
            if let Some(p) = ServiceProcess::adopt(&rec.identity) {
                self.stop_process(&rec, &p).await;
            } else {
                self.remove_record_of(&rec);
            }
        }
    }

    pub(super) fn record_of(&self, p: &ServiceProcess) -> Option<ProcessRecord> {
        self.state
            .processes
            .iter()
            .find(|r| r.identity == p.identity)
            .cloned()
    }

    pub(super) fn set_role(&mut self, p: &ServiceProcess, role: Role) {
        for r in &mut self.state.processes {
            if r.identity == p.identity {
                r.role = role;
            }
        }
        self.save();
    }

    pub(super) fn remove_record(&mut self, p: &ServiceProcess) {
        if let Some(rec) = self.record_of(p) {
            self.remove_record_of(&rec);
        }
    }

    /// Forgets a process that is gone, and removes its Unix probe twins.
    fn remove_record_of(&mut self, rec: &ProcessRecord) {
        for (_, address) in &rec.twins {
            if let crate::sockets::ProbeAddress::Unix(path) = address {
                let _ = std::fs::remove_file(path);
            }
        }
        self.state.processes.retain(|r| r.identity != rec.identity);
        self.save();
    }

    /// Saves `state.json`; a failure is reported (the disk may be full) and
    /// the agent carries on with what it knows in memory.
    pub(super) fn save(&mut self) {
        if let Err(e) = self.state.save(&self.layout) {
            tracing::error!("{e}");
            self.set_error(Some(e.to_string()));
        }
    }
}
