//! Health checks: the four probes of a release's run specification, and
//! the waits built on them (become healthy before the deadline, stay
//! healthy through the bake time).
//!
//! An HTTP probe on a held socket goes to the process's private twin
//! ([`crate::sockets`]), never to the shared socket, so it is the process
//! being checked that answers. A probe is one request with `Connection:
//! close`; any status from 200 to 399 passes. A command probe runs in the
//! generation with the service's environment and user, and passes on exit
//! status 0. A process that exits fails its check at once.

use std::path::PathBuf;
use std::time::Duration;

use cairn_recipe::HealthCheck;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::process::spawn::Credentials;
use crate::process::ServiceProcess;
use crate::sockets::ProbeAddress;

/// The longest a single probe may take.
const MAX_PROBE_TIME: Duration = Duration::from_secs(10);

/// What one probe is sent to.
#[derive(Clone, Debug)]
pub enum ProbeTarget {
    /// `GET path` on a process's twin.
    Twin {
        /// The twin.
        address: ProbeAddress,
        /// The request path.
        path: String,
    },
    /// `GET` on an `http://host:port/path` URL.
    Url(String),
    /// A TCP connection to `host:port`.
    Tcp(String),
    /// A command that must exit 0.
    Exec {
        /// The command line.
        argv: Vec<String>,
        /// Where it runs (the generation).
        cwd: PathBuf,
        /// Its environment.
        env: Vec<(String, String)>,
        /// Who it runs as.
        credentials: Option<Credentials>,
    },
}

/// Why a process was found unhealthy.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unhealthy {
    /// The process exited.
    #[error("the process exited ({0})")]
    Exited(String),
    /// It did not pass a probe before the deadline.
    #[error("not healthy within {deadline:?}: {last}")]
    Deadline {
        /// The deadline.
        deadline: Duration,
        /// The last probe's failure.
        last: String,
    },
    /// It failed `threshold` probes in a row while baking.
    #[error("{failures} probes in a row failed during the bake time: {last}")]
    Bake {
        /// Consecutive failures.
        failures: u32,
        /// The last one.
        last: String,
    },
}

/// Sends one probe; `Err` says why it failed.
pub async fn probe(target: &ProbeTarget, timeout: Duration) -> Result<(), String> {
    let timeout = timeout.min(MAX_PROBE_TIME);
    match tokio::time::timeout(timeout, probe_once(target)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

async fn probe_once(target: &ProbeTarget) -> Result<(), String> {
    match target {
        ProbeTarget::Twin {
            address: ProbeAddress::Tcp(a),
            path,
        } => {
            let s = tokio::net::TcpStream::connect(a)
                .await
                .map_err(|e| e.to_string())?;
            http_get(s, &a.to_string(), path).await
        }
        ProbeTarget::Twin {
            address: ProbeAddress::Unix(p),
            path,
        } => {
            let s = tokio::net::UnixStream::connect(p)
                .await
                .map_err(|e| e.to_string())?;
            http_get(s, "localhost", path).await
        }
        ProbeTarget::Url(url) => {
            let (host, path) = split_url(url)?;
            let s = tokio::net::TcpStream::connect(host)
                .await
                .map_err(|e| e.to_string())?;
            http_get(s, host, path).await
        }
        ProbeTarget::Tcp(addr) => tokio::net::TcpStream::connect(addr)
            .await
            .map(drop)
            .map_err(|e| e.to_string()),
        ProbeTarget::Exec {
            argv,
            cwd,
            env,
            credentials,
        } => exec(argv, cwd, env, *credentials).await,
    }
}

/// `http://host:port/path` → (`host:port`, `/path`).
fn split_url(url: &str) -> Result<(&str, &str), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?} is not an http:// URL"))?;
    Ok(match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    })
}

async fn http_get<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    host: &str,
    path: &str,
) -> Result<(), String> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: cairn-agent\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 4096 {
        let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let line = line.lines().next().unwrap_or("");
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {line:?}"))?;
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("GET {path} answered {status}"))
    }
}

async fn exec(
    argv: &[String],
    cwd: &PathBuf,
    env: &[(String, String)],
    credentials: Option<Credentials>,
) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new(cwd.join(&argv[0]));
    cmd.args(&argv[1..])
        .current_dir(cwd)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(c) = credentials {
        cmd.uid(c.uid).gid(c.gid);
    }
    let out = cmd
        .output()
        .await
        .map_err(|e| format!("running {}: {e}", argv[0]))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr
        .lines()
        .last()
        .unwrap_or("")
        .chars()
        .take(200)
        .collect::<String>();
    Err(format!("{} exited with {}: {last}", argv[0], out.status))
}

/// Probes until one passes; fails if `process` exits or `check.deadline`
/// passes first.
pub async fn wait_healthy(
    process: &ServiceProcess,
    check: &HealthCheck,
    target: &ProbeTarget,
) -> Result<(), Unhealthy> {
    let deadline = Instant::now() + check.deadline;
    let mut last = String::from("no probe answered yet");
    let mut probed = false;
    loop {
        let started = Instant::now();
        let budget = deadline.saturating_duration_since(started);
        if budget.is_zero() {
            return Err(Unhealthy::Deadline {
                deadline: check.deadline,
                last,
            });
        }
        let full = check.interval.max(Duration::from_secs(2));
        let timeout = budget.min(full);
        tokio::select! {
            status = process.exited() => return Err(exited(status)),
            result = probe(target, timeout) => match result {
                Ok(()) => return Ok(()),
                // A probe the deadline cut short says less than the answer
                // before it (`answered 503`): keep that one.
                Err(_) if timeout < full && probed => {}
                Err(e) => {
                    probed = true;
                    last = e;
                }
            },
        }
        let next = (started + check.interval).min(deadline);
        tokio::select! {
            status = process.exited() => return Err(exited(status)),
            _ = tokio::time::sleep_until(next) => {}
        }
    }
}

/// Probes every interval for `check.bake`; fails on `check.threshold`
/// failures in a row or if `process` exits.
pub async fn bake(
    process: &ServiceProcess,
    check: &HealthCheck,
    target: &ProbeTarget,
) -> Result<(), Unhealthy> {
    let end = Instant::now() + check.bake;
    let mut monitor = Monitor::new(check.threshold);
    while Instant::now() < end {
        let next = (Instant::now() + check.interval).min(end);
        tokio::select! {
            status = process.exited() => return Err(exited(status)),
            _ = tokio::time::sleep_until(next) => {}
        }
        if Instant::now() >= end && check.bake.is_zero() {
            break;
        }
        let result = probe(target, check.interval.max(Duration::from_secs(2))).await;
        if let Some(last) = monitor.record(result) {
            return Err(Unhealthy::Bake {
                failures: monitor.failures,
                last,
            });
        }
    }
    if !process.is_running() {
        return Err(exited(process.exited().await));
    }
    Ok(())
}

fn exited(status: Option<String>) -> Unhealthy {
    Unhealthy::Exited(status.unwrap_or_else(|| "status unknown".into()))
}

/// Consecutive failures, for steady-state monitoring and baking.
#[derive(Clone, Debug)]
pub struct Monitor {
    threshold: u32,
    /// Failures in a row so far.
    pub failures: u32,
}

impl Monitor {
    /// A monitor that trips after `threshold` failures in a row.
    pub fn new(threshold: u32) -> Self {
        Self {
            threshold: threshold.max(1),
            failures: 0,
        }
    }

    /// Records one probe; returns the failure when the threshold is reached.
    pub fn record(&mut self, result: Result<(), String>) -> Option<String> {
        match result {
            Ok(()) => {
                self.failures = 0;
                None
            }
            Err(e) => {
                self.failures += 1;
                (self.failures >= self.threshold).then_some(e)
            }
        }
    }

    /// Whether the last probes passed (fewer failures than the threshold).
    pub fn healthy(&self) -> bool {
        self.failures < self.threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A one-shot HTTP server answering `status` to every request.
    fn server(status: u16) -> std::net::SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming().take(4) {
                let mut s = s.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = write!(s, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
            }
        });
        addr
    }

    #[tokio::test]
    async fn probes_pass_and_fail_for_their_reasons() {
        let t = Duration::from_secs(2);
        let ok = ProbeTarget::Twin {
            address: ProbeAddress::Tcp(server(200)),
            path: "/healthz".into(),
        };
        assert_eq!(probe(&ok, t).await, Ok(()));
        let bad = ProbeTarget::Url(format!("http://{}/healthz", server(503)));
        assert_eq!(
            probe(&bad, t).await,
            Err("GET /healthz answered 503".into())
        );
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(probe(&ProbeTarget::Tcp(closed.to_string()), t)
            .await
            .is_err());
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = ProbeTarget::Url(format!("http://{}/", silent.local_addr().unwrap()));
        let err = probe(&target, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(err.starts_with("no answer within"), "{err}");
        let exec = |code: &str| ProbeTarget::Exec {
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("echo why >&2; exit {code}"),
            ],
            cwd: "/".into(),
            env: vec![],
            credentials: None,
        };
        assert_eq!(probe(&exec("0"), t).await, Ok(()));
        let err = probe(&exec("3"), t).await.unwrap_err();
        assert!(err.contains("exit status: 3: why"), "{err}");
    }

    #[test]
    fn a_monitor_trips_only_after_the_threshold() {
        let mut m = Monitor::new(2);
        assert_eq!(m.record(Err("a".into())), None);
        assert!(m.healthy());
        assert_eq!(m.record(Err("b".into())), Some("b".into()));
        assert!(!m.healthy());
        assert_eq!(m.record(Ok(())), None);
        assert!(m.healthy());
        assert_eq!(split_url("http://h:1"), Ok(("h:1", "/")));
    }
}
