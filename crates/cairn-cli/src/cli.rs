//! The command-line grammar (clap derive). Validation beyond types happens
//! in each command's module.

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

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// The store: a path, file://PATH, s3://bucket/prefix or http(s)://host:port
    /// [default: ~/.local/share/cairn/store]
    #[arg(long, global = true, env = "CAIRN_STORE", value_name = "URL")]
    pub store: Option<String>,

    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with the content-addressed store directly.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Read and compare-and-swap refs (plumbing).
    #[command(subcommand)]
    Ref(RefCommand),
}

/// `cairn ref …`
#[derive(Debug, Subcommand)]
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
    },
}

/// `cairn store …`
#[derive(Debug, Subcommand)]
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
    Checkout {
        /// The tree's digest.
        digest: String,
        /// Where to write it.
        dir: PathBuf,
        /// Write writable copies instead of read-only hard links into the store.
        #[arg(long)]
        copy: bool,
    },
    /// Re-hash every blob; exit 1 naming each corrupt one.
    Verify,
    /// Delete blobs no ref reaches and older than the grace period.
    Gc {
        /// Only report what would be deleted.
        #[arg(long)]
        dry_run: bool,
        /// Never delete blobs younger than this (e.g. 30m, 2h).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        grace: Duration,
    },
}

/// `cairn store add`
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
