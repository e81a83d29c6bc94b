//! What the CLI's integration tests share: a `cairn server` started as a
//! user starts it, and stopped (by its process id) when the guard drops.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running `cairn server` on a free loopback port.
pub struct Server {
    /// The server process (a test may signal it and wait for its exit).
    pub child: Child,
    /// Its URL, as it printed it (`http://…` or `https://…`).
    pub url: String,
}

impl Server {
    /// `cairn server --listen 127.0.0.1:0 --store STORE ARGS…`, with no store
    /// or token from the test's environment; returns once the server has
    /// printed where it listens.
    pub fn start<A: AsRef<OsStr>>(store: &Path, args: &[A]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["server", "--listen", "127.0.0.1:0", "--store"])
            .arg(store)
            .args(args)
            .env_remove("CAIRN_STORE")
            .env_remove("CAIRN_TOKEN")
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting cairn server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout is piped"))
            .read_line(&mut line)
            .expect("reading the server's first line");
        // Guarded before the line is checked, so a panic stops the server.
        let mut server = Self {
            child,
            url: String::new(),
        };
        server.url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
