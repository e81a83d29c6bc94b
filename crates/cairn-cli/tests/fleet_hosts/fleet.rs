//! A fleet under test: a network of hosts ([`Net`]), the store on host 0,
//! and on each other host a `cairn agent` following one channel, serving
//! on the host's private address.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use cairn_store::moto::Moto;
use serde_json::Value;

use crate::fixture::{cairn, fixture, CAIRN, SERVICE};
use crate::harness::{Options, Server, TestAgent};
use crate::support::netns::{check_prerequisites, Host, Net};
use crate::watch::{answer, Target};

/// How long a member may take to reach a state.
pub const T: Duration = Duration::from_secs(60);
/// Where the store listens on host 0.
const STORE_PORT: u16 = 7000;
/// Where each member's service listens, on its host's address.
const SERVICE_PORT: u16 = 8080;
/// Each agent's status endpoint, on its host's loopback.
const STATUS_PORT: u16 = 9090;
/// The bucket of S3 fleets.
const BUCKET: &str = "cairn-fleet";
/// The rollout protocol's intervals, short so a rollout takes seconds
/// (`Fleet::story` passes the member timeout and skew bound to `cairn
/// status`).
const FLEET_TIMING: &str = r#"
[fleet]
poll = "300ms"
idle_poll = "2s"
heartbeat = "1s"
member_timeout = "4s"
steward_lease = "3s"
max_skew = "500ms"
"#;
/// moto accepts any credentials.
const AWS: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
];

/// The store the fleet follows (held: dropping it stops the process).
pub enum StoreProcess {
    Server(Server),
    S3(#[allow(dead_code)] Moto),
}

/// Agents on hosts, following `channel` of the fixture's service.
pub struct Fleet {
    /// The agents (member `i` runs on host `i + 1`); dropped first.
    pub members: Vec<TestAgent>,
    /// The store's process, on host 0.
    pub store: Option<StoreProcess>,
    /// The channel and deployment set.
    pub channel: String,
    /// The store's URL, as agents reach it.
    pub url: String,
    token_file: Option<PathBuf>,
    /// The network; dropped last, killing whatever is left in it.
    pub net: Net,
}

impl Fleet {
    /// `members` agents following a `cairn server` on host 0, with
    /// `extra` appended to their agent.toml (a `[deploy]` override).
    pub fn with_server(channel: &str, members: usize, extra: &str) -> Self {
        check_prerequisites();
        let fx = fixture();
        // `cairn server token create` rewrites the tokens file without a
        // lock: two at once lose one token. One at a time here.
        static TOKENS: Mutex<()> = Mutex::new(());
        let guard = TOKENS.lock().unwrap_or_else(|e| e.into_inner());
        let token = cairn(
            &fx.store,
            &fx.keys,
            &fx.root,
            &[
                "server",
                "token",
                "create",
                channel,
                "--scope",
                "read",
                "--scope",
                &format!("fleet:{SERVICE}"),
            ],
        );
        drop(guard);
        let net = Net::new(members + 1);
        let addr = SocketAddr::new(net.hosts[0].ip.into(), STORE_PORT);
        let server = Server::start_under(&net.hosts[0].launcher_str(), &fx.store, addr);
        let token_file = fx.root.join(format!("{channel}.token"));
        std::fs::write(&token_file, &token).unwrap();
        let mut fleet = Self {
            members: Vec::new(),
            store: Some(StoreProcess::Server(server)),
            channel: channel.to_string(),
            url: format!("http://{addr}"),
            token_file: Some(token_file),
            net,
        };
        fleet.start_members(members, Some(token), extra);
        fleet
    }

    /// `members` agents following an S3 bucket (moto on host 0).
    pub fn with_s3(channel: &str, members: usize, extra: &str) -> Self {
        check_prerequisites();
        let net = Net::new(members + 1);
        let host = &net.hosts[0];
        let moto = Moto::spawn_under(&host.launcher_str(), &host.ip.to_string(), STORE_PORT);
        host.run(|| {
            moto.wait_ready();
            moto.create_bucket(BUCKET);
        });
        let mut fleet = Self {
            members: Vec::new(),
            url: moto.url(BUCKET, channel),
            store: Some(StoreProcess::S3(moto)),
            channel: channel.to_string(),
            token_file: None,
            net,
        };
        fleet.start_members(members, None, extra);
        fleet
    }

    fn start_members(&mut self, count: usize, token: Option<String>, extra: &str) {
        for i in 0..count {
            let agent = self.member(i, token.clone(), extra);
            self.members.push(agent);
        }
    }

    /// Starts member `i`'s agent again (it stopped or died), with `env`.
    pub fn restart_member(&mut self, i: usize, env: &[(&str, &str)]) {
        let env: Vec<(&str, &str)> = AWS.iter().chain(env).copied().collect();
        self.members[i].start_with(&env);
    }

    /// Member `i`'s agent, started.
    fn member(&self, i: usize, token: Option<String>, extra: &str) -> TestAgent {
        let host = &self.net.hosts[i + 1];
        let mut agent = TestAgent::new(
            &format!("{}-m{i}", self.channel),
            Options {
                store: Some(self.url.clone()),
                token: token.clone(),
                launcher: host.launcher(),
                http: Some(SocketAddr::new(host.ip.into(), SERVICE_PORT)),
                status_listen: Some(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), STATUS_PORT)),
                channel: Some(self.channel.clone()),
                id: Some(format!("m{i}")),
                extra: format!("{FLEET_TIMING}{extra}"),
                ..Options::default()
            },
        );
        agent.start_with(&AWS);
        agent
    }

    /// Where the store listens (on host 0).
    pub fn store_addr(&self) -> SocketAddr {
        SocketAddr::new(self.net.hosts[0].ip.into(), STORE_PORT)
    }

    /// The host member `i` runs on.
    pub fn host(&self, i: usize) -> &Host {
        &self.net.hosts[i + 1]
    }

    /// Promotes `release` on the fleet's channel (signed in the fixture's
    /// store; for S3, the channel is then copied into the bucket from
    /// host 0, over the test network).
    pub fn promote(&self, release: &str) {
        let fx = fixture();
        fx.promote(release, &self.channel, "ci", None);
        if let Some(StoreProcess::S3(_)) = &self.store {
            let out = self.run_cairn(
                &self.net.hosts[0],
                &[
                    "--store",
                    fx.store.to_str().unwrap(),
                    "store",
                    "copy",
                    &format!("channels/{SERVICE}/{}", self.channel),
                    "--to",
                    &self.url,
                ],
            );
            assert!(out.is_ok(), "copying the channel to S3: {out:?}");
        }
    }

    /// Runs `cairn ARGS` on `host`; stdout, or stderr as the error.
    pub fn run_cairn(&self, host: &Host, args: &[&str]) -> Result<String, String> {
        let out = self.cairn_output(host, args);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    fn cairn_output(&self, host: &Host, args: &[&str]) -> Output {
        let fx = fixture();
        let mut command: Command = host.command(CAIRN);
        command
            .arg("--keys")
            .arg(&fx.keys)
            .args(args)
            .env_remove("CAIRN_STORE")
            .env_remove("CAIRN_TOKEN")
            .envs(AWS);
        command.output().expect("running cairn")
    }

    /// The member rows of `cairn status SERVICE --set CHANNEL --json`, run
    /// on member 0's host against the fleet's store; it must exit 0.
    pub fn status(&self) -> Vec<Value> {
        let (code, rows) = self.status_with_code();
        assert_eq!(code, Some(0), "cairn status exit status");
        rows
    }

    /// [`Fleet::status`] and the exit status (3: a failed rollout).
    pub fn status_with_code(&self) -> (Option<i32>, Vec<Value>) {
        let (code, report) = self.status_report();
        let rows = report["members"]
            .as_array()
            .unwrap_or_else(|| panic!("no members in {report}"))
            .clone();
        (code, rows)
    }

    /// The set's rollout as `cairn status --json` tells it (with the
    /// agents' member timeout and skew bound), and the exit status.
    pub fn story(&self) -> (Option<i32>, Value) {
        let (code, report) = self.status_report();
        (code, report["rollouts"][0].clone())
    }

    fn status_report(&self) -> (Option<i32>, Value) {
        let mut args = vec!["--store", self.url.as_str()];
        if let Some(f) = &self.token_file {
            args.extend(["--token-file", f.to_str().unwrap()]);
        }
        args.extend(["--json", "status", SERVICE, "--set", &self.channel]);
        args.extend(["--member-timeout", "4s", "--max-skew", "500ms"]);
        let out = self.cairn_output(self.host(0), &args);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "cairn status: {e}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code(), report)
    }

    /// The set's rollout record (`fleet/SERVICE/SET/rollout`), read on
    /// member 0's host through the fleet's store, if there is one.
    pub fn rollout(&self) -> Option<Value> {
        let name = format!("fleet/{SERVICE}/{}/rollout", self.channel);
        let mut args = vec!["--store", self.url.as_str()];
        if let Some(f) = &self.token_file {
            args.extend(["--token-file", f.to_str().unwrap()]);
        }
        args.extend(["--json", "ref", "get", &name]);
        let out = self.run_cairn(self.host(0), &args).ok()?;
        let v: Value = serde_json::from_str(&out).ok()?;
        serde_json::from_str(v["value"].as_str()?).ok()
    }

    /// Waits until the rollout record satisfies `cond`; panics naming
    /// `what` with the last record otherwise.
    pub fn wait_rollout(&self, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + T;
        loop {
            let last = self.rollout();
            if last.as_ref().is_some_and(&cond) {
                return last.unwrap();
            }
            assert!(Instant::now() < end, "rollout not {what}: {last:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until every member runs `version`, healthy.
    pub fn wait_all(&self, version: &str) {
        for (i, agent) in self.members.iter().enumerate() {
            self.host(i).run(|| agent.wait_serving(version, T));
        }
    }

    /// Waits until every member runs `version`, healthy, and the set's
    /// rollout of it is done (its slots released). A release promoted
    /// before that waits for the slots' leases to end.
    pub fn settle(&self, version: &str) {
        self.wait_all(version);
        let began = Instant::now();
        let done = self.wait_rollout(&format!("done on {version}, no slot held"), |r| {
            r["phase"] == "done"
                && r["version"] == version
                && r["slots"].as_array().is_some_and(|s| s.is_empty())
        });
        eprintln!(
            "{}: rollout of {version} done {:?} after every member served it: {done}",
            self.channel,
            began.elapsed()
        );
    }

    /// What member `i`'s service answers now (see [`answer`]).
    pub fn answer(&self, i: usize) -> Result<String, String> {
        let addr = self.members[i].http;
        self.host(i).run(|| answer(addr))
    }

    /// Where each member's service and status endpoint are, for
    /// [`observe`].
    pub fn targets(&self) -> Vec<Target> {
        (0..self.members.len())
            .map(|i| Target {
                host: self.host(i).clone(),
                http: self.members[i].http,
                status: self.members[i].status_addr,
            })
            .collect()
    }
}

/// Releases v1 and v2 of the fixture's service whose `[deploy]` says
/// rolling, at most one member unavailable; made once per test binary.
pub struct Rolling {
    pub v1: String,
    pub v2: String,
}

/// [`Rolling`], built on first use from the fixture's project.
pub fn rolling() -> &'static Rolling {
    static ROLLING: OnceLock<Rolling> = OnceLock::new();
    ROLLING.get_or_init(|| {
        let fx = fixture();
        let project = fx.root.join("src").join(SERVICE);
        let recipe = project.join("cairn.toml");
        let text = std::fs::read_to_string(&recipe).unwrap();
        let deploy = "\n[deploy]\nstrategy = \"rolling\"\nmax_unavailable = 1\n";
        std::fs::write(&recipe, format!("{text}{deploy}")).unwrap();
        let release = |version: &str| {
            let header = format!("#define VERSION \"{version}\"\n");
            std::fs::write(project.join("src/version.h"), header).unwrap();
            cairn(
                &fx.store,
                &fx.keys,
                &project,
                &["release", "--key", "ci", "--version", version],
            )
        };
        let rolling = Rolling {
            v1: release("1"),
            v2: release("2"),
        };
        std::fs::write(&recipe, text).unwrap();
        rolling
    })
}
