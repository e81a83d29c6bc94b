//! Services: processes a step needs running (a database, the server a
//! test talks to), started inside the step's own sandbox before its
//! command, as testcontainers does without a container engine.
//!
//! A service shares everything with the command: the namespaces (so the
//! loopback interface: a service listening on `127.0.0.1:PORT` is reachable
//! by the command and by nothing outside), the user, the limits and the
//! system-call filter, the root filesystem and the workdir. Only its argv
//! and environment are its own. Pid 1 starts the services in order, waits
//! until each with a [`Readiness`] answers its probe, then starts the
//! command; when the command ends pid 1 exits and the kernel kills the
//! services with everything else in the namespace. A service that exits,
//! or does not answer before its deadline, ends the step with
//! [`crate::Termination::ServiceNotReady`] (its output is in the step's
//! log: services write to the same stdout and stderr).
//!
//! This module holds the plan's part (pure data and its validation); the
//! starting and probing is in `child.rs` and `ready.rs`, which run between
//! `fork` and `exec` and are lowered from this by `script.rs`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::plan::PlanError;

/// At most this many services per step.
pub const MAX_SERVICES: usize = 16;

/// One service of a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Its name, for messages.
    pub name: String,
    /// The command; `argv[0]` is searched in `env["PATH"]` unless it has a `/`.
    pub argv: Vec<String>,
    /// Its complete environment; nothing is inherited.
    pub env: BTreeMap<String, String>,
    /// When it is ready; `None`: as soon as it has been started.
    pub ready: Option<Readiness>,
}

/// How pid 1 learns that a service is ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// What is probed.
    pub probe: Probe,
    /// Time between probes.
    pub interval: Duration,
    /// Time allowed from the service's start to its first answered probe.
    pub deadline: Duration,
}

/// A probe, run by pid 1 inside the sandbox's network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Probe {
    /// A TCP connection to the address is accepted.
    Tcp(SocketAddr),
    /// `GET path` over HTTP/1.0 on the address answers with a 2xx status.
    Http {
        /// The address (the sandbox has no resolver: an IP literal).
        addr: SocketAddr,
        /// The absolute request path.
        path: String,
    },
    /// The command exits 0 (run like a service: same user, limits, filter).
    Exec(Vec<String>),
}

/// Checks the services of a plan.
pub(crate) fn validate(services: &[Service]) -> Result<(), PlanError> {
    if services.len() > MAX_SERVICES {
        return Err(PlanError::Service {
            name: services[MAX_SERVICES].name.clone(),
            reason: format!("a step has at most {MAX_SERVICES} services"),
        });
    }
    for s in services {
        let bad = |reason: &str| {
            Err(PlanError::Service {
                name: s.name.clone(),
                reason: reason.to_owned(),
            })
        };
        if s.argv.is_empty() || s.argv[0].is_empty() {
            return bad("argv is empty");
        }
        if s.argv.iter().any(|a| a.contains('\0')) {
            return bad("argv contains a NUL byte");
        }
        for (k, v) in &s.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return bad(&format!("invalid environment variable {k:?}"));
            }
        }
        let Some(r) = &s.ready else { continue };
        if r.interval.is_zero() || r.deadline.is_zero() {
            return bad("the probe's interval and deadline must be positive");
        }
        match &r.probe {
            Probe::Tcp(_) => {}
            Probe::Http { path, .. } => {
                let printable = path.bytes().all(|b| b.is_ascii_graphic());
                if !path.starts_with('/') || !printable || path.len() > 1024 {
                    return bad("the HTTP probe's path must be absolute, printable ASCII without spaces, at most 1024 bytes");
                }
            }
            Probe::Exec(argv) => {
                if argv.is_empty() || argv[0].is_empty() || argv.iter().any(|a| a.contains('\0')) {
                    return bad("the exec probe's argv is empty or contains a NUL byte");
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> Service {
        Service {
            name: "db".into(),
            argv: vec!["/srv/db".into()],
            env: BTreeMap::new(),
            ready: Some(Readiness {
                probe: Probe::Http {
                    addr: "127.0.0.1:8080".parse().unwrap(),
                    path: "/healthz".into(),
                },
                interval: Duration::from_millis(100),
                deadline: Duration::from_secs(5),
            }),
        }
    }

    #[test]
    fn a_plain_service_is_accepted_and_bad_ones_are_named() {
        assert_eq!(validate(&[service()]), Ok(()));
        type Edit = fn(&mut Service);
        let cases: [(&str, Edit); 5] = [
            ("argv is empty", |s| s.argv.clear()),
            ("invalid environment", |s| {
                s.env.insert("A=B".into(), "x".into());
            }),
            ("must be absolute", |s| {
                s.ready.as_mut().unwrap().probe = Probe::Http {
                    addr: "127.0.0.1:1".parse().unwrap(),
                    path: "/a b\r\nX: y".into(),
                }
            }),
            ("must be positive", |s| {
                s.ready.as_mut().unwrap().deadline = Duration::ZERO
            }),
            ("exec probe", |s| {
                s.ready.as_mut().unwrap().probe = Probe::Exec(vec![])
            }),
        ];
        for (needle, edit) in cases {
            let mut s = service();
            edit(&mut s);
            let err = validate(&[s]).unwrap_err().to_string();
            assert!(err.contains("\"db\"") && err.contains(needle), "{err}");
        }
        let many = vec![service(); MAX_SERVICES + 1];
        assert!(validate(&many).is_err());
    }
}
