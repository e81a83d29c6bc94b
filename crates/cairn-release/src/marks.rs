//! High-water marks: the newest statement a consumer accepted, per service
//! and channel, kept on disk so rollback protection survives restarts.
//!
//! ```text
//! DIR/<service>/<channel>.json   {"sequence": 7, "statement": {…}, "release": {…}}
//! DIR/<service>/<channel>.lock   flock(2)ed while a mark is raised
//! ```
//!
//! A mark only ever rises: [`HighWaterMarks::raise`] re-reads under the
//! lock and keeps whichever is higher, so two consumers sharing the
//! directory (two `cairn channel verify` at once) cannot lower it. It is
//! written to a temporary file, synced and renamed into place, so a crash
//! leaves the old mark or the new one. A mark file that does not parse is
//! an error, never "no mark": silently forgetting it would reopen the door
//! to replayed statements.
//!
//! Marks are per consumer and keyed by (service, channel), not by store:
//! a statement is signed for a channel, and the store is only transport, so
//! an older statement must not become acceptable by being served from
//! another store.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use cairn_digest::Digest;
use cairn_trust::document::validate_name;

/// What a consumer accepted last on one channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mark {
    /// The statement's sequence.
    pub sequence: u64,
    /// The statement's digest (of its payload).
    pub statement: Digest,
    /// The release it named.
    pub release: Digest,
}

/// Why a mark could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MarkError {
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
    /// The mark file is not a mark.
    #[error("high-water mark {} is malformed ({source}); remove it only if you trust the channel's current statement", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A service or channel name that cannot be a file name.
    #[error(transparent)]
    Name(#[from] cairn_trust::DocumentError),
}

/// The marks kept in one directory.
#[derive(Clone, Debug)]
pub struct HighWaterMarks {
    dir: PathBuf,
}

impl HighWaterMarks {
    /// Marks kept under `dir` (created when the first mark is raised).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The mark for `service`/`channel`, if one was raised.
    pub fn get(&self, service: &str, channel: &str) -> Result<Option<Mark>, MarkError> {
        read(&self.path(service, channel, "json")?)
    }

    /// Raises the mark for `service`/`channel` to `mark` unless it already
    /// is at least as high; returns the mark now stored.
    pub fn raise(&self, service: &str, channel: &str, mark: &Mark) -> Result<Mark, MarkError> {
        let path = self.path(service, channel, "json")?;
        let dir = path.parent().expect("a mark has a directory").to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| io("creating", &dir, e))?;
        let lock_path = self.path(service, channel, "lock")?;
        let lock = File::create(&lock_path).map_err(|e| io("creating", &lock_path, e))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io("locking", &lock_path, e.into()))?;
        if let Some(stored) = read(&path)? {
            if stored.sequence >= mark.sequence {
                return Ok(stored);
            }
        }
        let tmp = dir.join(format!(".{channel}.json.tmp"));
        let bytes = serde_json::to_vec(mark).expect("a mark serializes");
        let mut file = File::create(&tmp).map_err(|e| io("creating", &tmp, e))?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| io("writing", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io("renaming", &tmp, e))?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("syncing", &dir, e))?;
        Ok(*mark)
    }

    fn path(&self, service: &str, channel: &str, ext: &str) -> Result<PathBuf, MarkError> {
        validate_name("service", service)?;
        validate_name("channel", channel)?;
        Ok(self.dir.join(service).join(format!("{channel}.{ext}")))
    }
}

fn io(action: &'static str, path: &Path, source: std::io::Error) -> MarkError {
    MarkError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn read(path: &Path) -> Result<Option<Mark>, MarkError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| MarkError::Malformed {
                    path: path.to_path_buf(),
                    source,
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("reading", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(sequence: u64) -> Mark {
        Mark {
            sequence,
            statement: Digest::of(&sequence.to_le_bytes()),
            release: Digest::of(b"release"),
        }
    }

    #[test]
    fn marks_only_rise_and_survive_reopening() {
        let tmp = tempfile::tempdir().unwrap();
        let marks = HighWaterMarks::new(tmp.path().join("accepted"));
        assert_eq!(marks.get("hello", "prod").unwrap(), None);
        assert_eq!(marks.raise("hello", "prod", &mark(3)).unwrap(), mark(3));
        assert_eq!(marks.raise("hello", "prod", &mark(2)).unwrap(), mark(3));
        assert_eq!(marks.raise("hello", "prod", &mark(5)).unwrap(), mark(5));
        let again = HighWaterMarks::new(tmp.path().join("accepted"));
        assert_eq!(again.get("hello", "prod").unwrap(), Some(mark(5)));
        assert_eq!(again.get("hello", "staging").unwrap(), None);
    }

    #[test]
    fn a_damaged_mark_is_an_error_not_a_reset() {
        let tmp = tempfile::tempdir().unwrap();
        let marks = HighWaterMarks::new(tmp.path());
        marks.raise("hello", "prod", &mark(1)).unwrap();
        std::fs::write(tmp.path().join("hello/prod.json"), b"{").unwrap();
        let err = marks.get("hello", "prod").unwrap_err().to_string();
        assert!(err.contains("hello/prod.json is malformed"), "{err}");
        assert!(marks.raise("hello", "prod", &mark(2)).is_err());
    }

    #[test]
    fn names_that_are_not_names_are_refused() {
        let marks = HighWaterMarks::new("/nonexistent");
        assert!(marks.get("../etc", "prod").is_err());
        assert!(marks.get("hello", "a/b").is_err());
    }
}
