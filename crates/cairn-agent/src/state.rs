//! What the agent must remember across its own crash: the state directory's
//! layout and `state.json`.
//!
//! ```text
//! STATE/
//!   lock                    flock(2)ed by the one agent using this directory
//!   state.json              generations, service processes, sockets, failures
//!   current -> generations/<n>-<release hex>
//!   generations/<n>-<hex>/  one materialized release each, read-only
//!   store/                  the local store (releases and artifacts fetched)
//!   accepted/<service>/<channel>.json   the high-water mark
//!   logs/<service>.log[.N]  the service's output
//!   run/                    probe twins that are Unix sockets
//! ```
//!
//! `state.json` is replaced whole by rename after an fsync, before every
//! step that the next agent must know about: a process is recorded between
//! its fork and its exec ([`crate::process::spawn`]), so a kill -9 at any
//! moment leaves a file that names every service process alive. A file
//! that does not parse stops the agent with an error: guessing would risk
//! running two versions.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use cairn_digest::Digest;
use serde::{Deserialize, Serialize};

use crate::process::Identity;
use crate::sockets::ProbeAddress;

/// Paths in the state directory.
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The state directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The local store.
    pub fn store(&self) -> PathBuf {
        self.root.join("store")
    }

    /// Where generations live.
    pub fn generations(&self) -> PathBuf {
        self.root.join("generations")
    }

    /// The `current` symlink.
    pub fn current(&self) -> PathBuf {
        self.root.join("current")
    }

    /// `state.json`.
    pub fn state_file(&self) -> PathBuf {
        self.root.join("state.json")
    }

    /// The lock file.
    pub fn lock(&self) -> PathBuf {
        self.root.join("lock")
    }

    /// The high-water marks.
    pub fn marks(&self) -> PathBuf {
        self.root.join("accepted")
    }

    /// The service's logs.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// Unix probe twins.
    pub fn run(&self) -> PathBuf {
        self.root.join("run")
    }
}

/// `state.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentState {
    /// The number the next generation gets.
    #[serde(default)]
    pub next_generation: u64,
    /// Generations kept, oldest first.
    #[serde(default)]
    pub generations: Vec<Generation>,
    /// Service processes started and not known to be gone.
    #[serde(default)]
    pub processes: Vec<ProcessRecord>,
    /// The sockets held, by inode.
    #[serde(default)]
    pub sockets: Vec<SocketRecord>,
    /// Releases that failed and are not retried until a newer statement.
    #[serde(default)]
    pub failed: Vec<FailedRelease>,
}

/// One materialized release.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// Its number.
    pub number: u64,
    /// The release.
    pub release: Digest,
    /// Its version label.
    pub version: String,
    /// The sequence of the statement it was accepted from.
    pub sequence: u64,
    /// The artifact tree.
    pub artifact: Digest,
    /// The release's run specification (as in the release), so the agent
    /// can restart the service without the store.
    pub run: serde_json::Value,
    /// Whether it ever served here (became healthy after a swap, or was
    /// adopted serving). Only such a generation is a rollback's
    /// destination: one materialized and never run (a newer statement
    /// came before its turn) is not a release this member ran. Absent in
    /// the state of agents before it was recorded: those generations were
    /// then counted as run, as they were.
    #[serde(default = "ran_before_it_was_recorded")]
    pub served: bool,
}

fn ran_before_it_was_recorded() -> bool {
    true
}

impl Generation {
    /// Its directory name under `generations/`.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.number, self.release.hex())
    }
}

/// What a service process is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Started, not yet healthy: on the agent's restart it is stopped.
    Starting,
    /// Serving.
    Serving,
    /// Being stopped: on the agent's restart the stop is finished.
    Draining,
}

/// A service process the agent started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    /// Who it is.
    pub identity: Identity,
    /// The generation it runs.
    pub generation: u64,
    /// What it is doing.
    pub role: Role,
    /// Its private probe listeners, by socket name.
    #[serde(default)]
    pub twins: Vec<(String, ProbeAddress)>,
}

/// A socket the agent holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketRecord {
    /// Its name.
    pub name: String,
    /// Its address, as configured.
    pub address: String,
    /// Its inode.
    pub inode: u64,
}

/// A release that failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedRelease {
    /// The release.
    pub release: Digest,
    /// The statement sequence it came with.
    pub sequence: u64,
    /// Why, in one line.
    pub reason: String,
}

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `state.json` does not parse.
    #[error("{} is malformed ({source}); stop every process it may name and move it away to start afresh", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

fn io(action: &'static str, path: &Path, source: std::io::Error) -> StateError {
    StateError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

impl AgentState {
    /// The release a rollback from `serving` returns to: the newest kept
    /// generation of another release that served here and did not fail.
    pub fn previous(&self, serving: &Digest) -> Option<Digest> {
        let failed = |r: &Digest| self.failed.iter().any(|f| &f.release == r);
        self.generations
            .iter()
            .filter(|g| g.served && &g.release != serving && !failed(&g.release))
            .max_by_key(|g| g.number)
            .map(|g| g.release)
    }

    /// Reads `state.json` (a missing file is a fresh state).
    pub fn load(layout: &Layout) -> Result<Self, StateError> {
        let path = layout.state_file();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| StateError::Malformed { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self {
                next_generation: 1,
                ..Self::default()
            }),
            Err(e) => Err(io("reading", &path, e)),
        }
    }

    /// Writes `state.json` durably (temporary file, fsync, rename, fsync).
    pub fn save(&self, layout: &Layout) -> Result<(), StateError> {
        let path = layout.state_file();
        let tmp = layout.root().join("state.json.tmp");
        let bytes = serde_json::to_vec_pretty(self).expect("the state serializes");
        // The owner's alone: it holds each generation's run specification
        // (its environment among it). Never through a planted symlink.
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io("creating", &tmp, e))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| io("writing", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io("renaming", &tmp, e))?;
        sync_dir(layout.root()).map_err(|e| io("syncing", layout.root(), e))
    }

    /// The generation numbered `n`.
    pub fn generation(&self, n: u64) -> Option<&Generation> {
        self.generations.iter().find(|g| g.number == n)
    }

    /// Whether `release` failed at `sequence` or later.
    pub fn has_failed(&self, release: &Digest, sequence: u64) -> bool {
        self.failed
            .iter()
            .any(|f| f.release == *release && f.sequence >= sequence)
    }
}

/// fsyncs a directory (after a rename in it).
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_is_the_owners_alone_and_a_planted_symlink_is_not_followed() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path().join("state"));
        std::fs::create_dir(layout.root()).unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, b"untouched").unwrap();
        std::os::unix::fs::symlink(&elsewhere, layout.root().join("state.json.tmp")).unwrap();
        AgentState::load(&layout).unwrap().save(&layout).unwrap();
        assert_eq!(std::fs::read(&elsewhere).unwrap(), b"untouched");
        let meta = std::fs::symlink_metadata(layout.state_file()).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.mode() & 0o7777, 0o600);
    }

    #[test]
    fn state_round_trips_and_damage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let fresh = AgentState::load(&layout).unwrap();
        assert_eq!(fresh.next_generation, 1);
        let mut s = fresh;
        s.generations.push(Generation {
            number: 1,
            release: Digest::of(b"r"),
            version: "1.0".into(),
            sequence: 4,
            artifact: Digest::of(b"a"),
            run: serde_json::json!({"command": ["x"]}),
            served: true,
        });
        s.failed.push(FailedRelease {
            release: Digest::of(b"bad"),
            sequence: 5,
            reason: "unhealthy".into(),
        });
        s.save(&layout).unwrap();
        let back = AgentState::load(&layout).unwrap();
        assert_eq!(back, s);
        assert!(back.has_failed(&Digest::of(b"bad"), 5));
        assert!(
            !back.has_failed(&Digest::of(b"bad"), 6),
            "a newer statement retries"
        );
        assert_eq!(
            back.generations[0].dir_name(),
            format!("1-{}", Digest::of(b"r").hex())
        );
        std::fs::write(layout.state_file(), b"{").unwrap();
        let err = AgentState::load(&layout).unwrap_err().to_string();
        assert!(err.contains("state.json is malformed"), "{err}");
    }

    #[test]
    fn a_rollback_returns_only_to_a_generation_that_served_here() {
        let g = |number: u64, name: &[u8], served: bool| Generation {
            number,
            release: Digest::of(name),
            version: number.to_string(),
            sequence: number,
            artifact: Digest::of(b"a"),
            run: serde_json::Value::Null,
            served,
        };
        let mut s = AgentState {
            generations: vec![g(1, b"v1", true), g(2, b"v2", false), g(3, b"v3", true)],
            ..AgentState::default()
        };
        // v2 was materialized, then v3 came before its turn: never run.
        assert_eq!(s.previous(&Digest::of(b"v3")), Some(Digest::of(b"v1")));
        s.generations[1].served = true;
        assert_eq!(s.previous(&Digest::of(b"v3")), Some(Digest::of(b"v2")));
        // A generation recorded by an agent before `served` existed ran.
        let old: Generation = serde_json::from_value(serde_json::json!({
            "number": 1, "release": Digest::of(b"v1"), "version": "1", "sequence": 1,
            "artifact": Digest::of(b"a"), "run": null
        }))
        .unwrap();
        assert!(old.served);
    }
}
