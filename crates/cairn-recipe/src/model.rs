//! The validated recipe: what `cairn.toml` means once every check passed.
//!
//! Holding a [`Recipe`] is proof that names are well-formed, every mount
//! refers to something declared, the steps form a DAG, mount targets are
//! distinct absolute paths outside the reserved ones, and the release's
//! health check uses a declared socket. Later stages (planning, action
//! compilation, the build and the agent) rely on that and do not re-check.

use std::collections::BTreeMap;
use std::time::Duration;

use cairn_digest::DigestRef;

use crate::name::{InputName, Name, StepName};
pub use crate::platform::Platform;

/// A parsed and validated `cairn.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    /// `[service] name`.
    pub service: Name,
    /// `[inputs.NAME]`.
    pub inputs: BTreeMap<InputName, Input>,
    /// `[steps.NAME]`.
    pub steps: BTreeMap<StepName, Step>,
    /// `[release]`, if the recipe makes a release.
    pub release: Option<Release>,
    /// `[deploy]`, if the recipe says how to roll out.
    pub deploy: Option<Deploy>,
}

/// Where an input's tree comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A path of the repository, snapshotted into a tree.
    Path {
        /// Relative to the directory holding `cairn.toml`.
        path: String,
        /// Globs left out of the snapshot.
        exclude: Vec<String>,
        /// Whether `.gitignore` files are honoured (default false).
        gitignore: bool,
    },
    /// A tree already in the store, pinned by digest.
    Tree(DigestRef),
    /// A fixed-output fetch: the bytes at `url` must have `digest`.
    Fetch {
        /// `http://`, `https://` or `file://` URL.
        url: String,
        /// The digest of the fetched bytes (the archive, before unpacking).
        digest: DigestRef,
        /// Unpack the archive into a tree instead of a one-file tree.
        unpack: bool,
    },
    /// A container image pinned by its manifest digest, its layers applied
    /// in order into a tree: `REGISTRY/REPO@sha256:…`, or a local OCI
    /// layout directory `PATH@sha256:…` (relative to `cairn.toml` when it
    /// starts with `./` or `../`).
    Oci {
        /// The reference as written.
        image: String,
        /// The manifest (or index) digest it is pinned by.
        digest: DigestRef,
    },
}

/// One build step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Sandbox path (absolute, normalized) to what is mounted there.
    pub mounts: BTreeMap<String, Mount>,
    /// Absolute, normalized working directory (default `/`).
    pub workdir: String,
    /// The command line; never empty.
    pub run: Vec<String>,
    /// Declared environment (never one of the fixed variables).
    pub env: BTreeMap<String, String>,
    /// Time allowed to run (default [`DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
    /// Resource limits.
    pub limits: Limits,
    /// Paths relative to `/out` that must exist when the step ends.
    pub outputs: Vec<String>,
    /// `test = true`: the step is a test. It passes when it exits 0 (a pass
    /// is cached like any result; a failure never is), it may write a
    /// report (`report`), and `[release] requires` can gate on it.
    pub test: bool,
    /// `report = "junit.xml"`: the test's report below `/out` (JUnit XML),
    /// whose failures are shown when the test fails.
    pub report: Option<String>,
    /// `platform = "linux/arm64"`: the platform the step's programs are
    /// built for. A step for another platform than the host's runs them
    /// under the user-mode emulator of its `emulator` input, which is
    /// mounted at [`EMULATOR_MOUNT`]. `None`: the host's, natively.
    pub platform: Option<Platform>,
    /// `[steps.NAME.services.SVC]`: processes started in the step's own
    /// sandbox before its command, each artifact mounted at
    /// `/services/SVC` ([`SERVICES_DIR`]).
    pub services: BTreeMap<Name, Service>,
}

/// Where a step's `emulator` input is mounted.
pub const EMULATOR_MOUNT: &str = "/.cairn/emulator";

/// Where the artifacts of a step's services are mounted, one directory each.
pub const SERVICES_DIR: &str = "/services";

/// A process a test step needs running, started in its sandbox (sharing its
/// loopback) before the step's command and stopped after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The step whose `/out` is the service's artifact.
    pub step: StepName,
    /// The command line (absolute paths, usually below `/services/SVC`).
    pub run: Vec<String>,
    /// Environment added to the step's.
    pub env: BTreeMap<String, String>,
    /// When the service is ready; `None`: as soon as it started. Probes as
    /// in `[release.run]`, except socket-relative HTTP (services hold no
    /// sockets of an agent's): `{ http = "http://127.0.0.1:PORT/path" }`,
    /// `{ tcp = "127.0.0.1:PORT" }` or `{ exec = [...] }`.
    pub health: Option<HealthCheck>,
}

/// The default step timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

/// What a mount shows, and whether the step may write to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// An input or another step's `/out`.
    pub source: MountSource,
    /// A private writable copy, discarded after the step.
    pub writable: bool,
}

/// The thing mounted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum MountSource {
    /// `"NAME"`: an input.
    Input(InputName),
    /// `"steps.NAME"`: another step's output.
    Step(StepName),
}

/// Resource limits of a step's sandbox. They are part of the action (a
/// step that fits in 4 GiB may fail in 1 GiB), so they always have a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `memory`: bytes of memory (cgroup `memory.max`), default 4 GiB.
    pub memory: u64,
    /// `processes`: tasks in the sandbox (`pids.max`), default 1024.
    pub processes: u32,
    /// `open_files`: `RLIMIT_NOFILE`, default 4096.
    pub open_files: u32,
    /// `tmp`: size of the `/tmp` tmpfs in bytes, default 1 GiB.
    pub tmp: u64,
    /// `out`: size of the `/out` tmpfs in bytes, and the most the files
    /// in it may add up to (sparse files at their full length), default
    /// 4 GiB. Like `/tmp` it is memory: `memory` must leave room for it.
    pub out: u64,
    /// `out_files`: files, directories and symlinks `/out` may hold,
    /// default 1 000 000 (storing each costs `cairn` memory and time).
    pub out_files: u64,
    /// `log`: bytes the step may write to stdout and stderr together
    /// (the log, kept on the host's disk), default 1 GiB; past it the
    /// step is killed.
    pub log: u64,
}

/// The default `limits.out_files`.
pub const DEFAULT_OUT_FILES: u64 = 1_000_000;

/// The default `limits.log`: 1 GiB.
pub const DEFAULT_LOG: u64 = 1 << 30;

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory: 4 << 30,
            processes: 1024,
            open_files: 4096,
            tmp: 1 << 30,
            out: 4 << 30,
            out_files: DEFAULT_OUT_FILES,
            log: DEFAULT_LOG,
        }
    }
}

/// `[release]`: which step's `/out` is the artifact and how to run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// The step whose output is the artifact.
    pub step: StepName,
    /// `[release.run]`.
    pub run: RunSpec,
    /// `requires = ["steps.unit", …]`: test steps that must pass, on the
    /// same inputs, before a release is signed (a matrix step's name stands
    /// for every step it expands to).
    pub requires: Vec<StepName>,
}

/// How an agent runs the artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    /// Command line, run in the artifact root; never empty.
    pub command: Vec<String>,
    /// Socket names the agent binds and passes as `LISTEN_FDS`.
    pub sockets: Vec<Name>,
    /// The health check, if any (none: healthy once started).
    pub health: Option<HealthCheck>,
    /// How to stop the process.
    pub stop: Stop,
    /// Environment of the service.
    pub env: BTreeMap<String, String>,
}

/// A health check and its timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// What is probed.
    pub probe: Probe,
    /// Time between probes (default 1s).
    pub interval: Duration,
    /// Time allowed to become healthy (default 30s).
    pub deadline: Duration,
    /// Time it must then stay healthy (default 0s).
    pub bake: Duration,
    /// Consecutive failed probes that make a started process unhealthy
    /// (default 3; at least 1).
    pub threshold: u32,
}

/// The four kinds of health probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// `{ http = "/path", socket = "NAME" }`: GET on a held socket.
    SocketHttp {
        /// One of the release's sockets.
        socket: Name,
        /// Absolute request path.
        path: String,
    },
    /// `{ http = "http://host:port/path" }`.
    Http(String),
    /// `{ tcp = "host:port" }`: a connection succeeds.
    Tcp(String),
    /// `{ exec = [...] }`: exits 0.
    Exec(Vec<String>),
}

/// `stop = { signal = "TERM", grace = "20s" }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    /// Signal name without `SIG` (one of [`SIGNALS`]), default `TERM`.
    pub signal: String,
    /// Time before `KILL` (default 10s).
    pub grace: Duration,
}

/// Consecutive failed probes that make a process unhealthy, unless a
/// health check says otherwise.
pub const DEFAULT_THRESHOLD: u32 = 3;

/// The signals a service may ask to be stopped with.
pub const SIGNALS: [&str; 8] = [
    "TERM", "INT", "QUIT", "HUP", "USR1", "USR2", "WINCH", "KILL",
];

/// `[deploy]`: how a new release reaches a deployment set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deploy {
    /// The rollout strategy.
    pub strategy: Strategy,
    /// Members updating at once: a number (at least 1) or a percentage of
    /// the set (default 1).
    pub max_unavailable: Amount,
    /// What happens to members already updated when one fails (default
    /// halt).
    pub on_failure: OnFailure,
    /// Conditions that must hold before each wave starts.
    pub gates: Vec<Gate>,
}

/// A number of members, or a share of the deployment set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    /// `2`: that many members (at least 1).
    Count(u32),
    /// `"10%"`: that percentage of the set's members (1 to 100).
    Percent(u32),
}

/// `on_failure = "halt" | "rollback"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Stop the rollout; members already updated keep the new release.
    Halt,
    /// Stop the rollout and return updated members to their previous
    /// release, as many at a time as `max_unavailable` allows.
    Rollback,
}

/// `strategy = "at-once" | "rolling" | "canary"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    /// Every member at once.
    AtOnce,
    /// `max_unavailable` members at a time.
    Rolling,
    /// `canary = { count, bake }`: `count` members first, watched for
    /// `bake`, then the rest as `rolling`.
    Canary {
        /// Members in the first wave: a number or a percentage (default 1).
        count: Amount,
        /// How long they must stay healthy (default 5m).
        bake: Duration,
    },
}

/// One entry of `gates = [...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// `{ fleet = "service/set", release = "sha256:…" }`: another fleet is
    /// healthy (on that release, if given).
    Fleet {
        /// Service name.
        service: Name,
        /// Deployment set.
        set: Name,
        /// The release it must run, if any.
        release: Option<DigestRef>,
    },
    /// `{ freeze = { from = 2025-12-20T00:00:00Z, until = … } }`: no rollout
    /// in this window (RFC 3339 times with offsets, as written).
    Freeze {
        /// Start of the window.
        from: String,
        /// End of the window.
        until: String,
    },
    /// `{ check = ["cmd", …], timeout = "1m" }`: a command run by the agent
    /// must exit 0 (default timeout 1m).
    Check {
        /// The command line.
        command: Vec<String>,
        /// Time allowed.
        timeout: Duration,
    },
}
