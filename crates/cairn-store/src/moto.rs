//! A real S3-compatible server for tests: `moto_server` on loopback,
//! stopped (by its process id) when the guard drops.
//!
//! Like [`conformance`](crate::conformance), this exists for the tests of
//! every crate that talks to S3, so they share one way of starting it.
//! It panics instead of returning errors. Starting fails, never skips,
//! when moto is not installed (`pip install 'moto[server]'`), so a machine
//! without it is noticed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::s3::{S3Store, S3Url};

/// `moto_server`, answering one request at a time. Its usual threaded
/// server checks `If-Match` and writes without a lock between, so two
/// racing conditional writes can both succeed, which AWS S3 never allows;
/// served one at a time, moto keeps the guarantee the ref tests check.
/// (Everything else is `moto_server`'s own start-up.)
const SERIAL_MOTO: &str = "import sys, moto.server as m, werkzeug.serving as w
m.run_simple = lambda *a, **k: w.run_simple(*a, **{**k, 'threaded': False})
m.main(sys.argv[1:])";

/// How long moto may take to answer after it starts.
const STARTUP: Duration = Duration::from_secs(60);

/// A running `moto_server`.
pub struct Moto {
    child: Child,
    host: String,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// The moto process's id (to stop and continue it, as a store that
    /// stops answering for a while).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts moto on a free loopback port and waits until it answers.
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// Starts moto on `port` (to restart it where a client expects it).
    pub fn start_on(port: u16) -> Self {
        Self::launch(port, None)
    }

    /// Starts moto checking credentials, with `bucket` created: every later
    /// request needs keys moto's IAM knows, and it knows none, so each is
    /// refused (403 `InvalidAccessKeyId`), as AWS refuses wrong keys.
    pub fn start_refusing_credentials(bucket: &str) -> Self {
        // Two requests pass unchecked: the readiness probe and the bucket.
        let moto = Self::launch(free_port(), Some(2));
        moto.create_bucket(bucket);
        moto
    }

    /// Starts moto on `host:port` under `launcher` (a command that runs
    /// another, such as `ip netns exec NAME`, for an address only a network
    /// namespace has). Returns at once: the caller, where that address is
    /// reachable, waits with [`Moto::wait_ready`].
    pub fn spawn_under(launcher: &[&str], host: &str, port: u16) -> Self {
        Self::spawn(launcher, host, port, None)
    }

    fn launch(port: u16, unchecked_requests: Option<u32>) -> Self {
        let moto = Self::spawn(&[], "127.0.0.1", port, unchecked_requests);
        moto.wait_ready();
        moto
    }

    fn spawn(launcher: &[&str], host: &str, port: u16, unchecked: Option<u32>) -> Self {
        let mut command = match launcher.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg("python3");
                c
            }
            None => Command::new("python3"),
        };
        if let Some(n) = unchecked {
            command.env("INITIAL_NO_AUTH_ACTION_COUNT", n.to_string());
        }
        let child = command
            .args(["-c", SERIAL_MOTO, "-H", host, "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 with moto is required: pip install 'moto[server]'");
        Self {
            child,
            host: host.to_string(),
            port,
        }
    }

    /// Waits until moto answers (panics after a minute, or if it exited).
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + STARTUP;
        while self.http("GET", "/", b"").is_none() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer on {}:{} in {STARTUP:?}",
                self.host,
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates `bucket` (moto keeps everything in memory, so a restarted
    /// server needs its buckets again).
    pub fn create_bucket(&self, bucket: &str) {
        assert_eq!(
            self.http("PUT", &format!("/{bucket}"), b""),
            Some(200),
            "creating bucket {bucket}"
        );
    }

    /// The store URL of `prefix` in `bucket`.
    pub fn url(&self, bucket: &str, prefix: &str) -> String {
        format!(
            "s3://{bucket}/{prefix}?endpoint=http://{}:{}&region=us-east-1",
            self.host, self.port
        )
    }

    /// An S3 store on `prefix` in `bucket`, with moto's test credentials.
    pub fn store(&self, bucket: &str, prefix: &str) -> S3Store {
        let parsed = S3Url::parse(&self.url(bucket, prefix)).expect("a valid moto URL");
        S3Store::with_builder(&parsed, parsed.builder(&self.credentials()))
            .expect("an S3 store on moto")
    }

    /// moto's test credentials, as [`OpenOptions::aws`](crate::OpenOptions::aws)
    /// takes them (moto accepts any).
    pub fn credentials(&self) -> std::collections::BTreeMap<String, String> {
        [
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// A plain, unsigned HTTP request (moto does not check signatures);
    /// the status code, or `None` if nothing answered.
    pub fn http(&self, method: &str, path: &str, body: &[u8]) -> Option<u16> {
        let mut s = TcpStream::connect((self.host.as_str(), self.port)).ok()?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.host,
            self.port,
            body.len()
        );
        s.write_all(head.as_bytes()).ok()?;
        s.write_all(body).ok()?;
        let mut response = String::new();
        s.read_to_string(&mut response).ok()?;
        response.split(' ').nth(1)?.parse().ok()
    }
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("binding a loopback port")
        .local_addr()
        .expect("a bound socket has an address")
        .port()
}
