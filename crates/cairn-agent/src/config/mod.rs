//! `agent.toml`: the agent's configuration, parsed and validated.
//!
//! ```toml
//! store = "http://127.0.0.1:7070"   # any store URL
//! token_file = "/etc/cairn/token"   # or token = "…" (never on a command line)
//! service = "hello"
//! channel = "prod"
//! set = "eu-1"                      # the deployment set
//! id = "host-a"                     # default: the hostname
//! state_dir = "/var/lib/cairn/hello" # default: /var/lib/cairn/<service>
//! poll_interval = "2s"              # when the store cannot push
//! fetch_silence = "60s"             # a fetch moving no blob that long is retried
//! fetch_min_rate = "8KiB"           # per second, over every fetch_rate_window,
//! fetch_rate_window = "2m"          #   each blob counting 4KiB at least; else retried
//! generations = 3                   # generations kept (at least 2)
//! user = "hello"                    # run the service as (default: the agent's user)
//! group = "hello"                   # default: the user's group
//! status_listen = "127.0.0.1:9100"  # member record and metrics over HTTP
//! keys_dir = "/etc/cairn/keys"      # where key ids are looked up
//!
//! [trust]                           # same meaning as a channel policy entry
//! keys = ["ed25519:…"]              # key ids, or "cairn-ed25519-pub:…" lines
//! threshold = 1
//!
//! [sockets]                         # held by the agent, passed as LISTEN_FDS
//! http = "127.0.0.1:8080"           # or "unix:/run/hello.sock"
//!
//! [env]                             # host-specific environment
//! LOG_LEVEL = "info"
//!
//! [hooks]                           # run with the old and new release in env
//! pre_swap = ["/usr/local/bin/drain"]
//! post_swap = ["/usr/local/bin/undrain"]
//! on_rollback = ["/usr/local/bin/page"]
//! timeout = "30s"
//!
//! [logs]
//! max_size = "10MiB"                # per file, then rotated
//! keep = 5                          # rotated files kept
//!
//! [fleet]                           # the rollout protocol's intervals
//! poll = "2s"                       # deciding while there is work
//! idle_poll = "60s"                 # the longest wait otherwise
//! heartbeat = "60s"                 # member record rewritten at least
//! member_timeout = "180s"           # a member silent this long is away
//! steward_lease = "30s"
//! max_skew = "2s"                   # clocks of the set differ by at most
//! check_retry = "30s"               # a failed gate check runs again after
//!
//! [deploy]                          # overrides the release's [deploy]
//! strategy = "canary"               # same shape as cairn.toml's
//! canary = { count = 1, bake = "5m" }
//! ```
//!
//! Parsing works as `cairn.toml`'s does: serde wire types with spans and
//! `deny_unknown_fields` (`wire.rs`), converted into the validated
//! [`AgentConfig`] (`convert.rs`). Every error names the file, the line and
//! column, and the key. The parse is pure: relative paths are resolved
//! against the file's directory, and what needs the machine (the token
//! file, the hostname, keys looked up by id) is resolved by the caller.

mod convert;
mod wire;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cairn_recipe::Location;
use cairn_trust::{ChannelPolicy, KeySet};

/// A validated `agent.toml`.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The store URL.
    pub store: String,
    /// Where the store token comes from, if one is needed.
    pub token: Option<TokenSource>,
    /// The service.
    pub service: String,
    /// The channel followed.
    pub channel: String,
    /// The deployment set.
    pub set: String,
    /// The agent's id, if given (else the hostname).
    pub id: Option<String>,
    /// The state directory.
    pub state_dir: PathBuf,
    /// How often the channel is read when the store cannot push (and as a
    /// safety net when it can).
    pub poll_interval: Duration,
    /// How long a fetch may go without a blob arriving before it is given
    /// up (and retried with backoff): a store that accepts and never
    /// answers, or trickles, must not hold a fetch for ever.
    pub fetch_silence: Duration,
    /// The least a fetch must move, in bytes a second (each blob counting
    /// at least [`crate::fetch::BLOB_CREDIT`]), over every
    /// [`AgentConfig::fetch_rate_window`]; a slower one is given up and
    /// retried, so a store cannot stretch a fetch without end.
    pub fetch_min_rate: u64,
    /// The window [`AgentConfig::fetch_min_rate`] is measured over.
    pub fetch_rate_window: Duration,
    /// Generations kept (the current one included).
    pub generations: usize,
    /// The user the service runs as.
    pub user: Option<String>,
    /// The group the service runs as.
    pub group: Option<String>,
    /// Where the status endpoint listens, if anywhere.
    pub status_listen: Option<SocketAddr>,
    /// The trust policy for the channel.
    pub trust: Trust,
    /// The sockets the agent holds, by name.
    pub sockets: BTreeMap<String, SocketAddress>,
    /// Host environment added to the release's.
    pub env: BTreeMap<String, String>,
    /// Hooks around swaps.
    pub hooks: Hooks,
    /// Log rotation.
    pub logs: LogLimits,
    /// `[fleet]`: the rollout protocol's intervals.
    pub fleet: FleetTiming,
    /// `[deploy]`: this set's rollout plan, overriding the release's.
    pub deploy: Option<cairn_rollout::Plan>,
}

/// `[fleet]`: how often the agent reads and writes the fleet records. The
/// swap budget is not here: it comes from each release's run
/// specification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetTiming {
    /// How often it decides while it has something to do.
    pub poll: Duration,
    /// The longest it waits between decisions otherwise.
    pub idle_poll: Duration,
    /// How often the member record is rewritten when nothing changed.
    pub heartbeat: Duration,
    /// A member silent this long is away (its turn is skipped).
    pub member_timeout: Duration,
    /// How long the steward lease lasts.
    pub steward_lease: Duration,
    /// The most two agents' clocks may differ by.
    pub max_skew: Duration,
    /// How long after a failed gate check it is run again.
    pub check_retry: Duration,
}

impl Default for FleetTiming {
    fn default() -> Self {
        let t = cairn_rollout::Timing::default();
        Self {
            poll: t.poll,
            idle_poll: t.idle_poll,
            heartbeat: t.heartbeat,
            member_timeout: t.member_timeout,
            steward_lease: t.steward_lease,
            max_skew: t.max_skew,
            check_retry: t.check_retry,
        }
    }
}

/// Where the store token is read from.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// Written in `agent.toml`.
    Inline(String),
    /// A file holding it (surrounding whitespace ignored).
    File(PathBuf),
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inline(_) => f.write_str("Inline(…)"),
            Self::File(p) => write!(f, "File({})", p.display()),
        }
    }
}

/// `[trust]`: a channel policy entry, and the public keys written inline.
#[derive(Clone, Debug)]
pub struct Trust {
    /// The policy entry (service and channel are the agent's).
    pub policy: ChannelPolicy,
    /// Keys given as `cairn-ed25519-pub:…` lines.
    pub inline_keys: KeySet,
    /// Where keys given by id only are looked up, if set in the file.
    pub keys_dir: Option<PathBuf>,
}

/// A socket address the agent binds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocketAddress {
    /// A TCP address (an IP literal and a port).
    Tcp(SocketAddr),
    /// A Unix stream socket path (`unix:/path`).
    Unix(PathBuf),
}

impl fmt::Display for SocketAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(a) => write!(f, "{a}"),
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// `[hooks]`.
#[derive(Clone, Debug, Default)]
pub struct Hooks {
    /// Before a swap; failing aborts it.
    pub pre_swap: Option<Vec<String>>,
    /// After a successful swap.
    pub post_swap: Option<Vec<String>>,
    /// After a rollback.
    pub on_rollback: Option<Vec<String>>,
    /// How long a hook may run.
    pub timeout: Duration,
}

/// `[logs]`: size-rotated service logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogLimits {
    /// Bytes per file before it is rotated.
    pub max_bytes: u64,
    /// Rotated files kept.
    pub keep: u32,
}

impl Default for LogLimits {
    fn default() -> Self {
        Self {
            max_bytes: 10 << 20,
            keep: 5,
        }
    }
}

/// An `agent.toml` that cannot be used, and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file, as given.
    pub file: String,
    /// Where, when known.
    pub location: Option<Location>,
    /// The key, when known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(at) = self.location {
            write!(f, ":{}:{}", at.line, at.column)?;
        }
        if let Some(key) = &self.key {
            write!(f, ": `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl AgentConfig {
    /// Parses and validates `text`, read from `file` (which names it in
    /// errors and anchors relative paths).
    pub fn parse(file: &std::path::Path, text: &str) -> Result<Self, ConfigError> {
        let src = convert::Source {
            file: file.display().to_string(),
            dir: file
                .parent()
                .map(|d| d.to_path_buf())
                .unwrap_or_else(|| PathBuf::from(".")),
            text,
        };
        let wire: wire::AgentWire = toml::from_str(text).map_err(|e| src.toml(&e))?;
        convert::config(&src, wire)
    }
}

#[cfg(test)]
mod tests;
