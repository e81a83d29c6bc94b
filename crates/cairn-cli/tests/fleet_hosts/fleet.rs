//! A fleet under test: a network of hosts ([`Net`]), the store on host 0,
//! and on each other host a `cairn agent` following one channel, serving
//! on the host's private address; plus [`observe`], which polls every
//! member's service while something happens.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cairn_store::moto::Moto;
use serde_json::Value;

use crate::fixture::{cairn, fixture, CAIRN, SERVICE};
use crate::harness::{http_get, Options, Server, TestAgent};
use crate::support::netns::{Host, Net};

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
    /// `members` agents following a `cairn server` on host 0.
    pub fn with_server(channel: &str, members: usize) -> Self {
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
        fleet.start_members(members, Some(token));
        fleet
    }

    /// `members` agents following an S3 bucket (moto on host 0).
    pub fn with_s3(channel: &str, members: usize) -> Self {
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
        fleet.start_members(members, None);
        fleet
    }

    fn start_members(&mut self, count: usize, token: Option<String>) {
        for i in 0..count {
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
                    ..Options::default()
                },
            );
            agent.start_with(&AWS);
            self.members.push(agent);
        }
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
        let fx = fixture();
        let mut command: Command = host.command(CAIRN);
        command
            .arg("--keys")
            .arg(&fx.keys)
            .args(args)
            .env_remove("CAIRN_STORE")
            .env_remove("CAIRN_TOKEN")
            .envs(AWS);
        let out = command.output().expect("running cairn");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// `cairn status SERVICE --set CHANNEL --json`, run on member 0's host
    /// against the fleet's store.
    pub fn status(&self) -> Vec<Value> {
        let mut args = vec!["--store", self.url.as_str()];
        if let Some(f) = &self.token_file {
            args.extend(["--token-file", f.to_str().unwrap()]);
        }
        args.extend(["--json", "status", SERVICE, "--set", &self.channel]);
        let out = self
            .run_cairn(self.host(0), &args)
            .unwrap_or_else(|e| panic!("cairn status: {e}"));
        serde_json::from_str::<Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    /// Waits until every member runs `version`, healthy.
    pub fn wait_all(&self, version: &str) {
        for (i, agent) in self.members.iter().enumerate() {
            self.host(i).run(|| agent.wait_serving(version, T));
        }
    }

    /// What member `i`'s service answers now (see [`answer`]).
    pub fn answer(&self, i: usize) -> Result<String, String> {
        let addr = self.members[i].http;
        self.host(i).run(|| answer(addr))
    }

    /// Where each member's service is, for [`observe`].
    pub fn targets(&self) -> Vec<(Host, SocketAddr)> {
        (0..self.members.len())
            .map(|i| (self.host(i).clone(), self.members[i].http))
            .collect()
    }
}

/// The version a service answers `GET /` with, or why there was none.
pub fn answer(addr: SocketAddr) -> Result<String, String> {
    match http_get(addr, "/")? {
        (200, body) => body
            .split(' ')
            .nth(3)
            .map(str::to_string)
            .ok_or_else(|| format!("not a version: {body:?}")),
        (code, body) => Err(format!("HTTP {code}: {body}")),
    }
}

/// One answer of one member's service, and when it came.
pub type Answer = (Instant, Result<String, String>);

/// Polls every target's service (every 25 ms, from inside its host) while
/// `during` runs; returns what `during` returned and every answer.
pub fn observe<R>(
    targets: &[(Host, SocketAddr)],
    during: impl FnOnce() -> R,
) -> (R, Vec<Vec<Answer>>) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let pollers: Vec<_> = targets
            .iter()
            .map(|(host, addr)| {
                let stop = &stop;
                s.spawn(move || {
                    host.run(|| {
                        let mut answers = Vec::new();
                        while !stop.load(Ordering::SeqCst) {
                            answers.push((Instant::now(), answer(*addr)));
                            std::thread::sleep(Duration::from_millis(25));
                        }
                        answers
                    })
                })
            })
            .collect();
        let result = during();
        stop.store(true, Ordering::SeqCst);
        let answers = pollers.into_iter().map(|p| p.join().unwrap()).collect();
        (result, answers)
    })
}

/// When a member moved: the first answer of the new version, and the
/// last of the old one (after the first while both processes share the
/// socket during the swap).
pub struct Moved {
    pub first_new: Instant,
    pub last_old: Option<Instant>,
}

/// Checks one member's answers: every request answered, by `from` or `to`
/// only, `from` first and `to` last.
pub fn check_moved(member: usize, answers: &[Answer], from: &str, to: &str) -> Moved {
    let mut first_new = None;
    let mut last_old = None;
    for (at, a) in answers {
        match a.as_deref() {
            Ok(v) if v == to => {
                first_new.get_or_insert(*at);
            }
            Ok(v) if v == from => last_old = Some(*at),
            other => panic!("member {member} answered {other:?} (moving {from} to {to})"),
        }
    }
    let first_new = first_new.unwrap_or_else(|| panic!("member {member} never answered {to}"));
    assert_eq!(
        answers.last().unwrap().1.as_deref(),
        Ok(to),
        "member {member}'s last answer"
    );
    assert!(
        answers[0].1.as_deref() == Ok(from),
        "member {member} answered {to} before the promotion"
    );
    Moved {
        first_new,
        last_old: last_old.filter(|&t| t > first_new),
    }
}
