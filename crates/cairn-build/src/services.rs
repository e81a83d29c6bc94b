//! A test step's services, from the recipe to the sandbox plan.
//!
//! Each `[steps.NAME.services.SVC]` becomes a [`cairn_sandbox::Service`]:
//! its command, the step's environment plus its own, and its health check
//! turned into a probe the sandbox's pid 1 runs on the step's loopback
//! interface. The sandbox has no resolver, so an HTTP or TCP probe names
//! an IP address (`127.0.0.1`, `[::1]`); anything else is refused here
//! with the service named, before any sandbox starts.

use std::net::SocketAddr;

use cairn_recipe::{HealthCheck, Probe, Step};
use cairn_sandbox::{Readiness, Service};

use crate::error::BuildError;
use crate::run::Job;

/// The sandbox services of `job`, in name order.
pub fn plan(job: &Job) -> Result<Vec<Service>, BuildError> {
    let mut services = Vec::new();
    for (name, s) in &job.step.services {
        let bad = |reason: String| BuildError::BadService {
            step: job.name.clone(),
            service: name.to_string(),
            reason,
        };
        let mut env = job.env.clone();
        env.extend(s.env.clone());
        let ready = s.health.as_ref().map(|h| readiness(&job.step, h));
        let ready = ready.transpose().map_err(bad)?;
        services.push(Service {
            name: name.to_string(),
            argv: crate::platform::argv(&job.step, &s.run),
            env,
            ready,
        });
    }
    Ok(services)
}

fn readiness(step: &Step, h: &HealthCheck) -> Result<Readiness, String> {
    let probe = match &h.probe {
        Probe::Tcp(addr) => cairn_sandbox::Probe::Tcp(address(addr)?),
        Probe::Http(url) => {
            let (addr, path) = http(url)?;
            cairn_sandbox::Probe::Http { addr, path }
        }
        Probe::Exec(argv) => cairn_sandbox::Probe::Exec(crate::platform::argv(step, argv)),
        Probe::SocketHttp { .. } => {
            return Err(
                "a service holds no named sockets: probe http = \"http://127.0.0.1:PORT/path\""
                    .into(),
            )
        }
    };
    Ok(Readiness {
        probe,
        interval: h.interval,
        deadline: h.deadline,
    })
}

fn address(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        format!("health check address {text:?} is not IP:PORT (the sandbox has no resolver: write 127.0.0.1:PORT)")
    })
}

/// `http://IP:PORT/path` → the address and the path (`/` when absent).
fn http(url: &str) -> Result<(SocketAddr, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("health check URL {url:?} must start with http://"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Ok((address(authority)?, path.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_addresses_become_socket_addresses() {
        let (addr, path) = http("http://127.0.0.1:8080/healthz?x=1").unwrap();
        assert_eq!(addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(path, "/healthz?x=1");
        assert_eq!(http("http://[::1]:9").unwrap().1, "/");
        assert!(http("http://localhost:80/")
            .unwrap_err()
            .contains("no resolver"));
        assert!(http("ftp://127.0.0.1:1/").unwrap_err().contains("http://"));
        assert!(address("127.0.0.1").is_err());
    }
}
