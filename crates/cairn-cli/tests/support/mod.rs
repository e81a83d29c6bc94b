//! What the CLI's integration tests share: `cairn` run as a user runs it
//! ([`cli`]); a `cairn server` started as a user starts it, and stopped
//! (by its process id) when the guard drops; the check every refusal gets
//! ([`refused`]); hosts made of network namespaces ([`netns`]); the
//! examples as a test's own projects ([`project`]), built in varied
//! surroundings ([`surroundings`]) and their outputs compared
//! ([`tree_diff`]).
#![allow(dead_code)] // each test binary uses its own part of this

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

pub mod cli;
pub mod netns;
pub mod project;
pub mod surroundings;
pub mod tree_diff;

/// Checks a refusal: the command exited with `code`, printed nothing on
/// stdout, and said why on stderr in one line (`error: …`, after any
/// progress lines; with `--json`, one JSON object whose `error` and
/// `exit_code` agree) containing `needle`. Returns that line.
pub fn refused(out: &Output, code: i32, needle: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(stderr.trim()) {
        assert_eq!(
            out.status.code(),
            Some(code),
            "exit status; stderr: {stderr}"
        );
        assert!(out.stdout.is_empty(), "a refusal printed on stdout");
        assert_eq!(json["exit_code"], code, "{stderr}");
        let error = json["error"].as_str().expect("an error message");
        assert!(error.contains(needle), "{needle:?} not in: {error}");
        return format!("error: {error}");
    }
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit status; stderr: {stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "a refusal printed on stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "not one error line: {stderr}");
    let last = stderr.trim_end().lines().last().unwrap_or_default();
    assert_eq!(last, errors[0], "the error is not the last line: {stderr}");
    assert!(last.starts_with("error: "), "{stderr}");
    assert!(last.contains(needle), "{needle:?} not in: {last}");
    last.to_string()
}

/// Checks that neither stdout nor stderr of `out` holds a character a
/// terminal acts on: ESC, BEL, CR, any C0 control but newline and tab,
/// DEL, a C1 control or a bidirectional override (what `cairn_escape`
/// makes visible); both must be UTF-8.
pub fn assert_terminal_safe(out: &Output) {
    for (what, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = String::from_utf8(bytes.clone())
            .unwrap_or_else(|e| panic!("{what} is not UTF-8 ({e}): {bytes:?}"));
        let raw: Vec<char> = text
            .chars()
            .filter(|&c| {
                (c.is_control() && c != '\n' && c != '\t')
                    || ('\u{202a}'..='\u{202e}').contains(&c)
                    || ('\u{2066}'..='\u{2069}').contains(&c)
            })
            .collect();
        assert!(raw.is_empty(), "{what} holds raw {raw:?}: {text}");
    }
}

/// A running `cairn server` on a free loopback port.
pub struct Server {
    /// The server process (a test may signal it and wait for its exit).
    pub child: Child,
    /// Its URL, as it printed it (`http://…` or `https://…`).
    pub url: String,
}

impl Server {
    /// The address of a plain-HTTP server, for tests that speak to it over
    /// raw sockets.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.url
            .trim_start_matches("http://")
            .parse()
            .expect("http://ADDR")
    }

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

    /// A token of a server over `store`, named `name`, with `scopes` (see
    /// [`cli::token`]), then the server over `store` ([`Server::start`]
    /// with no other arguments); returns both.
    pub fn with_token(store: &Path, name: &str, scopes: &[&str]) -> (Self, String) {
        let token = cli::token(store, name, scopes);
        (Self::start::<&str>(store, &[]), token)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
