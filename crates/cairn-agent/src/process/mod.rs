//! Service processes: started gated, identified beyond their pid, watched
//! through a pidfd, stopped as a process group.
//!
//! A service process outlives the agent (its own session, its own log
//! writer, sockets it holds itself), so after the agent restarts it is
//! *adopted*: found again from its recorded [`Identity`] and watched
//! through a pidfd, though it is no longer the agent's child.

pub mod identity;
pub mod pidfd;
pub mod spawn;

use std::time::Duration;

pub use identity::Identity;
pub use pidfd::Pidfd;

/// One running service process.
#[derive(Debug)]
pub struct ServiceProcess {
    /// Who it is.
    pub identity: Identity,
    pidfd: Pidfd,
}

/// How a stop ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// It exited within the grace period (wait status if it was our child).
    Exited(Option<String>),
    /// It was killed when the grace period ran out.
    Killed,
}

impl ServiceProcess {
    /// The process just forked as `pid` (its start time is taken now and
    /// does not change at exec).
    pub fn forked(pid: i32) -> std::io::Result<Self> {
        Ok(Self {
            pidfd: Pidfd::open(pid)?,
            identity: Identity::of(pid)?,
        })
    }

    /// The process `identity` names, if it is still alive.
    pub fn adopt(identity: &Identity) -> Option<Self> {
        Some(Self {
            pidfd: Pidfd::adopt(identity)?,
            identity: identity.clone(),
        })
    }

    /// Its pid.
    pub fn pid(&self) -> i32 {
        self.identity.pid
    }

    /// Its pidfd.
    pub fn pidfd(&self) -> &Pidfd {
        &self.pidfd
    }

    /// Whether it is still running.
    pub fn is_running(&self) -> bool {
        !self.pidfd.has_exited()
    }

    /// Resolves when it exits; then reaps it if it is our child and says
    /// how it ended.
    pub async fn exited(&self) -> Option<String> {
        self.pidfd.exited().await;
        pidfd::reap(self.pid()).map(pidfd::describe)
    }

    /// Sends `signal`, waits up to `grace` for it to exit, then kills its
    /// whole process group. Whatever else is left in its group afterwards
    /// is killed too: a leftover child holding the listening sockets would
    /// take connections nobody serves.
    pub async fn stop(&self, signal: i32, grace: Duration) -> Stopped {
        let _ = self.pidfd.signal(signal);
        let outcome = match tokio::time::timeout(grace, self.exited()).await {
            Ok(status) => Stopped::Exited(status),
            Err(_) => {
                kill_group(self.pid(), libc::SIGKILL);
                let _ = self.pidfd.signal(libc::SIGKILL);
                self.exited().await;
                Stopped::Killed
            }
        };
        kill_group(self.pid(), libc::SIGKILL);
        outcome
    }
}

/// Sends `signal` to the process group `pgid` (the service's session
/// leader's pid), if any process is left in it.
pub fn kill_group(pgid: i32, signal: i32) {
    if pgid > 1 {
        // SAFETY: kill(2) with a negative pid signals a process group.
        unsafe { libc::kill(-pgid, signal) };
    }
}

/// The signal number for a name of [`cairn_recipe::model::SIGNALS`].
pub fn signal_number(name: &str) -> Option<i32> {
    Some(match name {
        "TERM" => libc::SIGTERM,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "HUP" => libc::SIGHUP,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "WINCH" => libc::SIGWINCH,
        "KILL" => libc::SIGKILL,
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
