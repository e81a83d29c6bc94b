//! One `cairn agent` process under test: its agent.toml, its state
//! directory, its sockets on free loopback ports, its status endpoint, and
//! cleanup (the agent and every service process it recorded are killed
//! when the test ends, pass or fail).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fixture::{fixture, CAIRN, SERVICE};

/// How an agent is configured beyond the defaults.
#[derive(Default)]
pub struct Options {
    /// The store it follows (default: the fixture's store, by path).
    pub store: Option<String>,
    /// `token = …`.
    pub token: Option<String>,
    /// Its state directory (default: `<test dir>/state`).
    pub state_dir: Option<PathBuf>,
    /// More top-level keys of agent.toml (`user = …`).
    pub top: String,
    /// More agent.toml, appended (tables such as `[env]`, `[hooks]`).
    pub extra: String,
    /// Its id (default `a1`).
    pub id: Option<String>,
    /// The channel it follows and the set it is in (default: the test's
    /// name), for several agents in one set.
    pub channel: Option<String>,
    /// The command the agent is started under (`ip netns exec HOST`).
    pub launcher: Vec<String>,
    /// The service it runs (default: the fixture's `http-hello`).
    pub service: Option<String>,
    /// The service's socket (default: a free loopback port).
    pub http: Option<SocketAddr>,
    /// The status endpoint (default: a free loopback port).
    pub status_listen: Option<SocketAddr>,
}

/// An agent under test.
pub struct TestAgent {
    /// The test's directory.
    pub dir: PathBuf,
    /// The agent's state directory.
    pub state: PathBuf,
    /// agent.toml.
    pub config: PathBuf,
    /// The service's socket.
    pub http: SocketAddr,
    /// The status endpoint.
    pub status_addr: SocketAddr,
    child: Option<Child>,
    log: PathBuf,
    launcher: Vec<String>,
}

/// A free loopback port (bound, read, released), never one handed out
/// before in this test process (the kernel may give a released port
/// again, and two agents of one test would then fight over it).
pub fn free_port() -> SocketAddr {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut given = GIVEN.lock().unwrap();
        if !given.contains(&addr.port()) {
            given.push(addr.port());
            return addr;
        }
    }
}

/// Polls `cond` every 50 ms for up to `timeout`; returns whether it held.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET path` with `Connection: close`: status code and body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not HTTP: {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

impl TestAgent {
    /// An agent following channel `name` of the fixture's service.
    pub fn new(name: &str, options: Options) -> Self {
        let fx = fixture();
        let dir = fx.root.join("tests").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let state = options
            .state_dir
            .clone()
            .unwrap_or_else(|| dir.join("state"));
        let http = options.http.unwrap_or_else(free_port);
        let status_addr = options.status_listen.unwrap_or_else(free_port);
        let store = options
            .store
            .clone()
            .unwrap_or_else(|| fx.store.display().to_string());
        let inline_token = options.token.is_some();
        let token = options
            .token
            .map(|t| format!("token = {t:?}\n"))
            .unwrap_or_default();
        let channel = options.channel.as_deref().unwrap_or(name);
        let id = options.id.as_deref().unwrap_or("a1");
        let service = options.service.as_deref().unwrap_or(SERVICE);
        let text = format!(
            r#"store = {store:?}
{token}service = "{service}"
channel = "{channel}"
set = "{channel}"
id = "{id}"
state_dir = {state:?}
poll_interval = "500ms"
status_listen = "{status_addr}"
{top}
[trust]
keys = [{public:?}]
threshold = 1

[sockets]
http = "{http}"
{extra}"#,
            public = fx.ci_public,
            top = options.top,
            extra = options.extra,
        );
        let config = dir.join("agent.toml");
        std::fs::write(&config, text).unwrap();
        if inline_token {
            // A token in agent.toml is refused unless only its owner may
            // read the file.
            use std::os::unix::fs::PermissionsExt;
            let private = std::fs::Permissions::from_mode(0o600);
            std::fs::set_permissions(&config, private).unwrap();
        }
        Self {
            log: dir.join("agent.log"),
            dir,
            state,
            config,
            http,
            status_addr,
            child: None,
            launcher: options.launcher,
        }
    }

    /// Starts `cairn agent` (its stderr appended to `agent.log`).
    pub fn start(&mut self) {
        self.start_with(&[]);
    }

    /// Starts `cairn agent` with extra environment variables.
    pub fn start_with(&mut self, env: &[(&str, &str)]) {
        assert!(self.child.is_none(), "the agent is already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut command = match self.launcher.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(CAIRN);
                c
            }
            None => Command::new(CAIRN),
        };
        let child = command
            .args(["agent", "--config"])
            .arg(&self.config)
            .env_remove("CAIRN_STORE")
            .env_remove("CAIRN_TOKEN")
            .env_remove("NOTIFY_SOCKET")
            .env("CAIRN_KEYS", self.dir.join("no-keys"))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting cairn agent");
        self.child = Some(child);
    }

    /// kill -9 of the agent (the service keeps running).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` to the agent and waits for it to exit.
    pub fn signal_and_wait(&mut self, signal: i32) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        // SAFETY: kill(2) on our child's pid.
        unsafe { libc::kill(c.id() as i32, signal) };
        c.wait().unwrap()
    }

    /// Waits (up to `timeout`) for the agent to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        let end = Instant::now() + timeout;
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < end,
                "the agent did not exit:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `/status` from the agent, if it answers.
    pub fn status(&self) -> Option<Value> {
        let (code, body) = http_get(self.status_addr, "/status").ok()?;
        (code == 200).then(|| serde_json::from_str(&body).ok())?
    }

    /// Waits until the agent's status satisfies `cond`; panics naming
    /// `what`, with the last status and the agent's log, if it does not.
    pub fn wait_for(&self, what: &str, timeout: Duration, cond: impl Fn(&Value) -> bool) -> Value {
        let mut last = None;
        let ok = eventually(timeout, || {
            last = self.status();
            last.as_ref().is_some_and(&cond)
        });
        assert!(
            ok,
            "timed out waiting for {what}; last status: {}\nagent log:\n{}",
            last.map(|v| v.to_string()).unwrap_or_default(),
            self.log()
        );
        last.unwrap()
    }

    /// Waits until the member runs `version`, healthy and idle.
    pub fn wait_serving(&self, version: &str, timeout: Duration) -> Value {
        self.wait_for(&format!("version {version} serving"), timeout, |s| {
            s["member"]["version"] == version
                && s["member"]["health"] == "healthy"
                && s["member"]["state"] == "running"
        })
    }

    /// The version the service answers `GET /` with.
    pub fn version(&self) -> Option<String> {
        let (code, body) = http_get(self.http, "/").ok()?;
        (code == 200).then(|| body.split(' ').nth(3).map(str::to_string))?
    }

    /// Pids of the service processes running from this agent's generations.
    pub fn service_pids(&self) -> Vec<i32> {
        let generations = self.state.join("generations");
        let mut pids = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let exe = std::fs::read_link(e.path().join("exe"));
            if exe.is_ok_and(|p| p.starts_with(&generations)) {
                pids.push(pid);
            }
        }
        pids
    }

    /// The agent's `state.json`.
    pub fn state_json(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.state.join("state.json")).unwrap()).unwrap()
    }

    /// Whether the agent's local store holds the blob `digest` (`sha256:…`).
    pub fn has_blob(&self, digest: &str) -> bool {
        let hex = digest.trim_start_matches("sha256:");
        let hex = hex.split('/').next().unwrap();
        self.state
            .join("store/blobs")
            .join(&hex[..2])
            .join(hex)
            .exists()
    }

    /// Generation directories in the state directory.
    pub fn generations(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.state.join("generations"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.kill9();
        for pid in self.service_pids() {
            // SAFETY: kill(2); the service leads its own process group.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
    }
}

/// `cairn server` on a fixed port, so it can come back there.
pub struct Server(Child);

impl Server {
    pub fn start(store: &Path, addr: SocketAddr) -> Self {
        Self::start_under(&[], store, addr)
    }

    /// Starts the server under `launcher` (`ip netns exec HOST`).
    pub fn start_under(launcher: &[&str], store: &Path, addr: SocketAddr) -> Self {
        let mut command = match launcher.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(CAIRN);
                c
            }
            None => Command::new(CAIRN),
        };
        let mut child = command
            .args(["server", "--listen", &addr.to_string(), "--store"])
            .arg(store)
            .env_remove("CAIRN_STORE")
            .env_remove("CAIRN_TOKEN")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("listening on"), "{line}");
        Self(child)
    }
}

impl Server {
    /// Sends SIGTERM and waits (up to `timeout`, else panics) for the
    /// server to exit; returns how it did.
    #[allow(dead_code)] // for the multi-host tests (tests/fleet_hosts)
    pub fn terminate(mut self, timeout: Duration) -> ExitStatus {
        // SAFETY: kill(2) on our child's pid (not yet waited for).
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + timeout;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < end,
                "cairn server did not exit within {timeout:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The hex of a digest text, for comparing with generation names.
pub fn hex(digest: &str) -> &str {
    digest
        .trim_start_matches("sha256:")
        .split('/')
        .next()
        .unwrap()
}

/// Makes `path` and returns it.
pub fn dir(path: &Path) -> PathBuf {
    std::fs::create_dir_all(path).unwrap();
    path.to_path_buf()
}
