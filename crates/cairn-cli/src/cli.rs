//! The command-line grammar (clap derive). Validation beyond types happens
//! in each command's module.
//!
//! The doc comments here are `--help` text, written for a terminal
//! (`sha256:<hex>`, `[default: …]`), not for rustdoc.
#![allow(
    rustdoc::invalid_html_tags,
    rustdoc::broken_intra_doc_links,
    rustdoc::invalid_rust_codeblocks
)]

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// cairn: hermetic builds, a content-addressed store, signed releases and
/// self-deploying agents.
#[derive(Debug, Parser)]
#[command(name = "cairn", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// The store: a path, file://PATH, s3://bucket/prefix or http(s)://host:port
    /// [default: ~/.local/share/cairn/store]
    #[arg(long, global = true, env = "CAIRN_STORE", value_name = "URL")]
    pub store: Option<String>,

    /// Print machine-readable JSON instead of text; errors too, as one line
    /// on stderr: {"error": "…", "details": […], "exit_code": N}.
    #[arg(long, global = true)]
    pub json: bool,

    /// The signing keys directory [default: ~/.config/cairn/keys].
    #[arg(long, global = true, env = "CAIRN_KEYS", value_name = "DIR")]
    pub keys: Option<PathBuf>,

    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// A file holding the bearer token for an http(s):// store (a `cairn
    /// server`); CAIRN_TOKEN may hold the token itself. Never on the command
    /// line, where every local user sees it in `ps`.
    #[arg(long, global = true, env = "CAIRN_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// Refused: a token on the command line is visible to every local user.
    #[arg(long = "token", global = true, hide = true, value_name = "TOKEN")]
    pub token_on_command_line: Option<String>,
}

/// The top-level commands.
///
/// Every subcommand enum is `defer`red: a command's arguments are built
/// only when it is the one given. Building all of them took a quarter of
/// a cached `cairn build`'s instructions. With `defer`, a doc comment on
/// an arguments struct would become its command's about text in place of
/// the variant's, so those structs carry plain comments.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// Work with the content-addressed store directly.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Serve the store over HTTP (Bazel remote cache, cairn API, metrics).
    Server(ServerArgs),
    /// Manage signing keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Point a channel at a release with a new signed statement.
    Promote {
        /// The release: its digest (sha256:<hex> as printed) or its ref
        /// releases/<service>/<hex>.
        release: String,
        /// The channel, e.g. prod.
        #[arg(long)]
        channel: String,
        /// The key to sign with.
        #[arg(long)]
        key: String,
        /// How long the statement stays valid (e.g. 30d, 12h).
        #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
        expires: Duration,
        /// Also push the release's image (with its signed attestation) to
        /// REGISTRY/REPO[:TAG], tagged with the channel's name unless a tag
        /// is given; the tag moves only once the channel has (repeatable).
        #[arg(long, value_name = "REF")]
        push_image: Vec<String>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Point a channel back at an earlier release (a new statement with a higher sequence).
    Rollback {
        /// The service.
        service: String,
        /// The channel.
        #[arg(long)]
        channel: String,
        /// The key to sign with.
        #[arg(long)]
        key: String,
        /// The release to go back to: its version label, digest or
        /// releases/<service>/<hex>; any release of the channel's history
        /// [default: the one the current release replaced, so repeated
        /// rollbacks walk further back].
        #[arg(long, value_name = "RELEASE")]
        to: Option<String>,
        /// How long the statement stays valid.
        #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
        expires: Duration,
    },
    /// Inspect, co-sign and verify channels.
    #[command(subcommand)]
    Channel(ChannelCommand),
    /// Write trust policies (which keys a channel's consumers accept).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Export releases as reproducible OCI images, push and verify them.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Read and compare-and-swap refs (plumbing).
    #[command(subcommand)]
    Ref(RefCommand),
    /// Build a step of ./cairn.toml hermetically; prints its output tree digest.
    ///
    /// With a remote --store (s3://… or http(s)://…) the build runs in the
    /// local cache and uses the remote as a shared action cache: a step the
    /// cache lacks is taken from the remote's action cache when it is there
    /// (its outputs are fetched, nothing runs), and a step that runs has its
    /// outputs and then its action-cache entry uploaded, never replacing an
    /// entry already there. Pinned inputs the cache lacks come from the
    /// remote.
    Build(BuildArgs),
    /// Run every test step of ./cairn.toml and the steps they need, in parallel.
    ///
    /// Independent steps run at the same time, at most --jobs of them. A
    /// passing test is cached like any step, so a rerun without changes
    /// runs nothing; a failing test is never cached, and is shown with the
    /// tail of its log and the failures its JUnit report (`report = …`)
    /// lists. A failed step fails only the steps that need it: the others
    /// run on. Exit status 1 when any step failed. `[release] requires`
    /// makes `cairn release` refuse unless its tests passed here on the
    /// same inputs.
    Test(TestArgs),
    /// Build the release step, sign it with SLSA provenance, store it; prints the release digest.
    Release(ReleaseArgs),
    /// Rebuild a release from the recipe and inputs it recorded and compare the bytes.
    ///
    /// Everything comes from the store by digest: the recipe the release
    /// was built from and the tree of every input. It runs in any
    /// directory, needs no checkout of the source, and works on any machine
    /// that reaches the store. Every step runs again, uncached; the output
    /// must be the released artifact, byte for byte (exit 1 listing each
    /// differing file otherwise). An input whose bytes the store lacks is
    /// named, with how to provide it.
    Verify(VerifyArgs),
    /// Pause, resume or abort a deployment set's rollout.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Run the agent: follow a channel, run its releases, swap without downtime.
    ///
    /// Reads agent.toml (store, token, service, channel, set, trust, sockets,
    /// env, hooks…; see docs/ARCHITECTURE.md), opens and probes the store,
    /// adopts a service a previous agent left running, then follows the
    /// channel until SIGTERM or SIGINT (which stop the service gracefully)
    /// or SIGUSR2 (which leaves it running for the next agent).
    Agent(AgentArgs),
    /// Show a service's fleet members and the story of each set's rollout.
    ///
    /// Members: version, state, health, heartbeat. Rollout: target, phase,
    /// wave, members updated / updating / pending / failed, slots held and
    /// by whom until when, what the next wave waits on, time per wave.
    /// Exits 3 when a rollout stopped on a failure (halted, rolling back or
    /// rolled back).
    Status(StatusArgs),
    /// Print a service's output on this machine (-f: keep following).
    Logs(LogsArgs),
    /// Copy a service's output from stdin into its rotated log files
    /// (started by the agent, one per service process).
    #[command(hide = true)]
    LogPump(LogPumpArgs),
}

/// `cairn rollout …`: writes the set's rollout record by compare-and-swap;
/// the agents follow it.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum RolloutCommand {
    /// Start no more updates; members in the middle of one finish it.
    Pause(RolloutTarget),
    /// Continue a paused rollout, or a halted one from where it halted
    /// (members that failed are not tried again).
    Resume(RolloutTarget),
    /// Stop a rollout for good; promoting a newer statement starts a new one.
    Abort(RolloutTarget),
}

// Which rollout `cairn rollout` acts on.
#[derive(Debug, Args)]
pub struct RolloutTarget {
    /// The service.
    pub service: String,
    /// The deployment set [default: every set of the service with a rollout].
    #[arg(long)]
    pub set: Option<String>,
}

// `cairn agent`
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The agent's configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

// `cairn status SERVICE`
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The service.
    pub service: String,
    /// Only this deployment set [default: every set].
    #[arg(long)]
    pub set: Option<String>,
    /// The agents' `[fleet] member_timeout`: a member whose record is
    /// older than this plus the clock margin is shown away, as the
    /// rollout counts it [default: 3m, the agents' default].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub member_timeout: Option<Duration>,
    /// The agents' `[fleet] max_skew`, which sets that margin (twice it,
    /// plus a second) [default: 2s].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub max_skew: Option<Duration>,
}

// `cairn logs SERVICE`
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The service.
    pub service: String,
    /// Keep printing what the service writes, across rotations.
    #[arg(short, long)]
    pub follow: bool,
    /// The agent's configuration (its state_dir holds the logs).
    #[arg(long, value_name = "FILE", conflicts_with = "state_dir")]
    pub config: Option<PathBuf>,
    /// The agent's state directory [default: /var/lib/cairn/SERVICE].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

// `cairn log-pump` (internal)
#[derive(Debug, Args)]
pub struct LogPumpArgs {
    /// The log directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// The service (names the files).
    #[arg(long)]
    pub service: String,
    /// The prefix of each line.
    #[arg(long)]
    pub tag: String,
    /// Bytes per file before rotating.
    #[arg(long)]
    pub max_bytes: u64,
    /// Rotated files kept.
    #[arg(long)]
    pub keep: u32,
}

// Where the recipe is: `-C DIR` and `--file FILE`.
#[derive(Debug, Args, Clone)]
pub struct RecipeLocation {
    /// The directory holding cairn.toml [default: .].
    #[arg(short = 'C', value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The recipe file [default: DIR/cairn.toml].
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
}

impl RecipeLocation {
    /// The recipe file these options name.
    pub fn path(&self) -> PathBuf {
        match (&self.file, &self.dir) {
            (Some(f), _) => f.clone(),
            (None, Some(d)) => d.join("cairn.toml"),
            (None, None) => PathBuf::from("cairn.toml"),
        }
    }
}

// `cairn release …`
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, disable_version_flag = true)]
pub struct ReleaseArgs {
    #[command(subcommand)]
    pub command: Option<ReleaseCommand>,
    /// The step whose output is the artifact [default: the [release] step].
    pub step: Option<String>,
    /// The key to sign the release and its provenance with.
    #[arg(long)]
    pub key: Option<String>,
    /// The version label [default: the date and the artifact digest's first 8 hex digits].
    #[arg(long)]
    pub version: Option<String>,
    #[command(flatten)]
    pub recipe: RecipeLocation,
}

// `cairn release show`
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum ReleaseCommand {
    /// Show a release: its artifact, action, provenance and signatures.
    Show {
        /// The release: its digest (sha256:<hex> as printed) or its ref
        /// releases/<service>/<hex>.
        release: String,
    },
}

// `cairn verify RELEASE`
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The release: its digest (sha256:<hex> as printed) or its ref
    /// releases/<service>/<hex>.
    pub release: String,
}

/// `cairn key …`
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum KeyCommand {
    /// Make an Ed25519 key pair; prints its key id.
    Generate {
        /// The key's name.
        name: String,
        /// Replace an existing key of that name.
        #[arg(long)]
        force: bool,
    },
    /// List the keys in the keys directory.
    List,
    /// Print a public key as one line, for `cairn key import` elsewhere.
    Export {
        /// The key's name.
        name: String,
    },
    /// Add a public key from its one-line export.
    Import {
        /// The line `cairn key export` printed.
        line: String,
    },
}

/// `cairn channel …`
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum ChannelCommand {
    /// Show a channel's newest statement and its signatures.
    Show {
        /// The service.
        service: String,
        /// The channel.
        channel: String,
    },
    /// Every statement of a channel, newest first: sequence, when it was
    /// made, the release's version, who signed (key names where the keys
    /// directory knows them) and the release.
    History {
        /// The service.
        service: String,
        /// The channel.
        channel: String,
    },
    /// Add a signature to the newest statement (channels needing several).
    Sign {
        /// The service.
        service: String,
        /// The channel.
        channel: String,
        /// The key to sign with.
        #[arg(long)]
        key: String,
        /// Only sign if the newest statement is this one.
        #[arg(long)]
        statement: Option<String>,
    },
    /// Verify the channel's statement and release against a trust policy.
    ///
    /// The policy is a TOML file with one [[channel]] table per channel a
    /// consumer accepts: the key ids whose signatures count, and how many of
    /// them must sign the channel's newest statement (the release must be
    /// signed by one of them too):
    ///
    ///     [[channel]]
    ///     service = "hello"
    ///     channel = "prod"
    ///     keys = ["ed25519:…", "ed25519:…"]   # as `cairn key list` shows them
    ///     threshold = 2
    ///
    /// Write one with `cairn policy add FILE SERVICE CHANNEL --key NAME`
    /// rather than copying key ids by hand. Unknown fields, a key or channel
    /// listed twice, and a threshold above the number of keys are refused.
    ///
    /// On success the statement's sequence is remembered (per service and
    /// channel, in $XDG_STATE_HOME/cairn/accepted, else
    /// ~/.local/state/cairn/accepted), and any later statement with a lower
    /// sequence, or another statement with the same one, is refused.
    #[command(verbatim_doc_comment)]
    Verify {
        /// The service.
        service: String,
        /// The channel.
        channel: String,
        /// The trust policy file.
        #[arg(long)]
        policy: PathBuf,
        /// Also refuse statements not newer than this sequence.
        #[arg(long)]
        last_sequence: Option<u64>,
    },
}

/// `cairn policy …`
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum PolicyCommand {
    /// Add keys to a channel's entry in a trust policy file (creating the
    /// file or the entry); prints the entry.
    ///
    /// The file is rewritten in the format `cairn channel verify --help`
    /// describes, each key id followed by its name as a comment.
    Add {
        /// The policy file.
        file: PathBuf,
        /// The service.
        service: String,
        /// The channel.
        channel: String,
        /// A key whose signatures count (repeatable): a key name in the
        /// keys directory, a key id (ed25519:…), a public key as `cairn key
        /// export` prints it (cairn-ed25519-pub:…), or a file holding one.
        #[arg(long = "key", id = "key", required = true, value_name = "KEY")]
        key: Vec<String>,
        /// How many of the channel's keys must sign [default: the entry's
        /// threshold, or 1 for a new entry].
        #[arg(long)]
        threshold: Option<usize>,
    },
    /// Show a trust policy: each channel's keys (with names where known)
    /// and threshold.
    Show {
        /// The policy file.
        file: PathBuf,
    },
}

// How `cairn image` and `cairn promote --push-image` reach registries.
#[derive(Debug, Args, Clone, Default)]
pub struct RegistryArgs {
    /// Reach this registry (host:port) over plain HTTP; loopback registries
    /// always are (repeatable).
    #[arg(long, value_name = "HOST:PORT")]
    pub plain_http: Vec<String>,
    /// The registry user name, when the registry asks for one.
    #[arg(long, env = "CAIRN_REGISTRY_USER", value_name = "NAME")]
    pub registry_user: Option<String>,
    /// A file holding the registry password or token;
    /// CAIRN_REGISTRY_PASSWORD may hold it itself. Never on the command line.
    #[arg(long, value_name = "PATH")]
    pub registry_password_file: Option<PathBuf>,
    /// Refused: a password on the command line is visible to every local user.
    #[arg(long = "registry-password", hide = true, value_name = "SECRET")]
    pub registry_password_on_command_line: Option<String>,
    /// Upload blobs larger than this in chunks of this many bytes.
    #[arg(long, hide = true, value_name = "BYTES")]
    pub upload_chunk_size: Option<u64>,
}

// How an image is made from a release.
#[derive(Debug, Args, Clone)]
pub struct ImageOptions {
    /// A base image below the artifact: REGISTRY/REPO@sha256:<hex> or a
    /// layout directory PATH@sha256:<hex> (./, ../ or / first).
    #[arg(long, value_name = "IMAGE")]
    pub base: Option<String>,
    /// Where the artifact goes in the image (its working directory).
    #[arg(long, default_value = "/", value_name = "DIR")]
    pub root: String,
}

/// `cairn image …`
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum ImageCommand {
    /// Write a release as a reproducible OCI image layout; prints the manifest digest.
    Build {
        /// The release: its digest (sha256:<hex> as printed) or its ref
        /// releases/<service>/<hex>.
        release: String,
        /// The layout directory to create (new or empty) [default: ./SERVICE.oci].
        #[arg(long, value_name = "DIR")]
        output: Option<PathBuf>,
        #[command(flatten)]
        image: ImageOptions,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Push a release's image and a signed in-toto attestation to a registry.
    Push {
        /// The release: its digest (sha256:<hex> as printed) or its ref
        /// releases/<service>/<hex>.
        release: String,
        /// REGISTRY/REPO[:TAG]; the tag defaults to the release's version.
        reference: String,
        /// The key that signs the attestation.
        #[arg(long)]
        key: String,
        #[command(flatten)]
        image: ImageOptions,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Verify an image's signed attestation against a trust policy.
    Verify {
        /// REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:<hex>.
        reference: String,
        /// The trust policy file (the keys and threshold of a channel count).
        #[arg(long)]
        policy: PathBuf,
        /// The policy's channel whose keys must have signed [default: any
        /// channel of the image's service].
        #[arg(long)]
        channel: Option<String>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

/// `cairn ref …`
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum RefCommand {
    /// Print a ref's value (exit 1 if it does not exist).
    Get {
        /// The ref's name, e.g. channels/hello/prod.
        name: String,
    },
    /// List refs whose names start with PREFIX.
    List {
        /// The prefix ("" for all).
        #[arg(default_value = "")]
        prefix: String,
    },
    /// Set a ref to VALUE if it is still at the expected version.
    Set {
        /// The ref's name.
        name: String,
        /// The new value.
        value: String,
        /// The version the ref must be at (as printed by `cairn ref get --json`).
        #[arg(long, conflicts_with = "create")]
        expect: Option<String>,
        /// The ref must not exist yet.
        #[arg(long)]
        create: bool,
        /// Set it even if the store lacks what VALUE names (or part of what
        /// that reaches). Without it, such a value is refused: a dangling
        /// ref pins nothing.
        #[arg(long)]
        allow_dangling: bool,
    },
}

/// `cairn store …`
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum StoreCommand {
    /// Add a file or directory; prints its blob or tree digest.
    Add(AddArgs),
    /// Write a blob's bytes to stdout (verified).
    Cat {
        /// The blob: sha256:<hex> or sha256:<hex>/<size>.
        digest: String,
    },
    /// List a tree's entries.
    Ls {
        /// The tree's digest.
        digest: String,
        /// List subdirectories too.
        #[arg(short, long)]
        recursive: bool,
    },
    /// Materialize a tree into a new or empty directory.
    ///
    /// Each file is its own writable copy (a reflink where the file system
    /// can share blocks, else a copy): nothing done to the checkout can
    /// change the store.
    Checkout {
        /// The tree's digest.
        digest: String,
        /// Where to write it.
        dir: PathBuf,
        /// Hard-link files from the store instead of copying them: instant
        /// and free of space, but the files ARE the store's blobs. They are
        /// read-only, yet root ignores that: a write to a linked file by
        /// root corrupts the store (`cairn store verify` finds it).
        /// Executables are still copied.
        #[arg(long)]
        link: bool,
        /// Copy files (the default; kept for scripts that asked for it).
        #[arg(long, hide = true, conflicts_with = "link")]
        copy: bool,
    },
    /// Re-hash every blob and walk every ref; exit 1 naming each corrupt
    /// blob and each dangling ref (one naming what the store lacks).
    ///
    /// Maintenance of the backend: runs on a local directory store only (for a
    /// cairn server, on the server host against its own directory).
    Verify,
    /// Delete blobs nothing keeps, and derived data and leftovers with them.
    ///
    /// Kept: everything a ref reaches (a digest written as its value
    /// included), everything a command reused within the grace period, and
    /// every blob written within it. Safe while other commands run.
    /// Maintenance of the backend: runs on a local directory store only (for a
    /// cairn server, on the server host against its own directory).
    Gc {
        /// Only report what would be deleted.
        #[arg(long)]
        dry_run: bool,
        /// Keep blobs written or reused less than this ago (e.g. 30m, 2h).
        /// Commands running meanwhile are safe if they finish within it.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        grace: Duration,
    },
    /// Copy a tree, a release or a channel into another store, moving only
    /// what that store lacks (large files as content-defined chunks).
    ///
    /// A release (its digest, or releases/<service>/<hex>) is copied with
    /// everything a consumer needs: its signed envelope, provenance,
    /// artifact, action, recipe and input trees, so `release show`,
    /// `promote`, `channel` commands and `cairn verify` work there.
    ///
    /// A channel (channels/<service>/<channel>) is copied with its history:
    /// every statement with all its signatures and every release it names;
    /// the destination's channel is created, moved forward, or given the
    /// signatures it lacks. A destination channel with statements the source
    /// lacks (a promotion made there) is refused and left as it is: a copy
    /// never rolls a channel back.
    Copy {
        /// A digest (sha256:<hex> as printed), releases/<service>/<hex>, or
        /// channels/<service>/<channel>.
        digest: String,
        /// The destination store: a path, file://PATH, s3://… or http(s)://….
        #[arg(long, value_name = "URL")]
        to: String,
        /// What a digest names, if not a release (releases are recognized).
        #[arg(long, value_enum, default_value = "tree")]
        kind: CopyKind,
    },
}

/// What the root of `cairn store copy` is.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum CopyKind {
    /// A directory: copy its files and subdirectories.
    Tree,
    /// Plain bytes: copy only the blob.
    Blob,
    /// Anything: follow every digest it names (JSON, actions, trees).
    Unknown,
}

// `cairn store add`
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The file or directory to add.
    pub path: PathBuf,
    /// Leave out paths matching this gitignore-style pattern (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Also honour .gitignore files in the tree.
    #[arg(long)]
    pub gitignore: bool,
}

// `cairn server`
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ServerArgs {
    /// Manage the server's tokens instead of serving.
    #[command(subcommand)]
    pub command: Option<ServerCommand>,
    /// The address to listen on (port 0 picks a free one; the real address
    /// is printed as `listening on http://ADDR`, or `https://` with --tls-cert).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: String,
    /// The tokens file [default: tokens.toml in a local store].
    #[arg(long, value_name = "FILE")]
    pub tokens: Option<PathBuf>,
    /// Serve reads (blobs, action cache, refs, watch, metrics) without a token.
    #[arg(long)]
    pub anonymous_read: bool,
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs
    /// --tls-key. Clients trusting a private CA set CAIRN_CA_CERT=PEM.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key for --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Open connections one client address may hold; more are closed at once.
    #[arg(long, default_value_t = 128, value_name = "N")]
    pub max_connections_per_client: usize,
    /// Open connections in all (lowered to fit the file-descriptor limit).
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub max_connections: usize,
    /// Time a client has to send a whole request head once the connection
    /// waits for one (also how long an idle keep-alive connection stays).
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub header_timeout: Duration,
    /// Longest pause in a request body, and longest wait for a client to
    /// read a response.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub idle_timeout: Duration,
    /// Bytes a second a request body must bring, and a client that holds
    /// up a response must read, measured over each --idle-timeout; slower
    /// uploads are refused (408) and slower readers cut off (0: pauses only).
    #[arg(long, default_value_t = 1024, value_name = "BYTES")]
    pub min_transfer_rate: u64,
}

// `cairn server …`
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum ServerCommand {
    /// Manage bearer tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

/// `cairn server token …`
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum TokenCommand {
    /// Create a token (printed once; only its hash is kept).
    Create {
        /// Who holds it (for logs and revocation).
        name: String,
        /// read, write, admin, promote:SERVICE or fleet:SERVICE (repeatable).
        #[arg(long = "scope", required = true, value_name = "SCOPE")]
        scopes: Vec<String>,
        /// The tokens file [default: tokens.toml in the local store].
        #[arg(long, value_name = "FILE")]
        tokens: Option<PathBuf>,
    },
    /// List the tokens: holder and scopes (the tokens themselves are not kept).
    List {
        /// The tokens file [default: tokens.toml in the local store].
        #[arg(long, value_name = "FILE")]
        tokens: Option<PathBuf>,
    },
    /// Revoke a token by its holder's name; a running server refuses it
    /// from its next request on.
    Revoke {
        /// Who holds it (as `token list` shows).
        name: String,
        /// The tokens file [default: tokens.toml in the local store].
        #[arg(long, value_name = "FILE")]
        tokens: Option<PathBuf>,
    },
}

// `cairn build [STEP]`
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The step [default: the release's step, or the only step].
    #[arg(conflicts_with = "all")]
    pub step: Option<String>,
    /// Build every step, independent ones in parallel (see `cairn test`).
    #[arg(long)]
    pub all: bool,
    /// With --all: how many steps run at once [default: the number of CPUs].
    #[arg(long, short = 'j', requires = "all", value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
    /// Run the step(s) again even if cached and fail if any output byte differs.
    #[arg(long)]
    pub check: bool,
    /// Neither use nor update the action cache.
    #[arg(long, conflicts_with = "check")]
    pub no_cache: bool,
    #[command(flatten)]
    pub recipe: RecipeLocation,
}

// `cairn test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// Test steps to run [default: every step with `test = true`].
    pub steps: Vec<String>,
    /// How many steps run at once [default: the number of CPUs].
    #[arg(long, short = 'j', value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
    /// Run every step again even if cached (the passes are not recorded).
    #[arg(long)]
    pub no_cache: bool,
    #[command(flatten)]
    pub recipe: RecipeLocation,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every command's definition is consistent (unique names, valid
    /// defaults): clap checks this only when a command is first used.
    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
