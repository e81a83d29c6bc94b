//! The sandbox *plan*: pure data describing one step, and its validation.
//!
//! A [`Plan`] says which host directories appear where, what to run, with
//! which environment and limits. It is built by the caller (who knows about
//! stores and recipes) and checked here without touching the filesystem, so
//! that every mistake a recipe can make is reported before any namespace is
//! created, naming the offending mount. The executor ([`crate::run`]) only
//! ever sees validated plans.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::services::Service;

/// Paths the sandbox itself provides; a plan may not mount on or under them.
pub const RESERVED: [&str; 4] = ["/out", "/proc", "/dev", "/tmp"];

/// The uid and gid the step runs as inside the sandbox (mapped to the
/// invoking user outside, or to an id of its own when that is root; see
/// [`crate::FIRST_HOST_ID`]). Not 0: the step has no capabilities at all.
pub const SANDBOX_ID: u32 = 1000;

/// Everything needed to run one step. Pure data: serializable, comparable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Host paths bound into the sandbox. A mount at `/` is allowed: its
    /// top-level entries are bound one by one onto the sandbox's tmpfs root.
    pub mounts: Vec<Mount>,
    /// The command; `argv[0]` is searched in `env["PATH"]` unless it has a `/`.
    pub argv: Vec<String>,
    /// The complete environment of the step; nothing is inherited.
    pub env: BTreeMap<String, String>,
    /// Working directory inside the sandbox. Inside a mount (or `/out`,
    /// `/tmp`) it is that mount's directory, as writable as the mount;
    /// otherwise it is a private writable tmpfs (sized like `/tmp`),
    /// discarded after the step.
    pub workdir: PathBuf,
    /// Hostname (and nothing else) seen by the step.
    pub hostname: String,
    /// Wall-clock limit; on expiry the whole process tree is killed.
    pub timeout: Duration,
    /// Resource limits.
    pub limits: Limits,
    /// Processes started before the command, in its sandbox (see
    /// [`Service`]); empty for a plain step.
    #[serde(default)]
    pub services: Vec<Service>,
    /// The interpreter of a foreign architecture's programs, registered
    /// with the sandbox's own binfmt_misc (see [`Emulator`]); `None` for
    /// a native step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emulator: Option<Emulator>,
}

/// A foreign architecture's interpreter (QEMU user emulation), registered
/// in the sandbox with binfmt_misc of the sandbox's own user namespace
/// (Linux 6.7 and later), so that every program of that architecture a
/// step starts, not only the first, runs under it. The host's binfmt_misc
/// is neither read nor changed. The file is opened when it is registered
/// (the `F` flag), from inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Emulator {
    /// The registration's name: ASCII letters, digits, `-` and `_`.
    pub name: String,
    /// The bytes at the start of the architecture's executables...
    pub magic: Vec<u8>,
    /// ...compared under this mask (as long as `magic`).
    pub mask: Vec<u8>,
    /// The interpreter's absolute path inside the sandbox.
    pub interpreter: PathBuf,
}

/// One host path made visible inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Absolute, normalized path inside the sandbox.
    pub target: PathBuf,
    /// Host directory or file.
    pub source: PathBuf,
    /// If true the step sees a private copy it may modify; the copy is
    /// discarded afterwards and `source` is never modified.
    pub writable: bool,
}

/// Resource limits; `None` means "no limit".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Memory of the whole step (cgroup memory controller, tmpfs included).
    pub memory_bytes: Option<u64>,
    /// Number of processes of the step (cgroup pids controller).
    pub max_processes: Option<u64>,
    /// `RLIMIT_NOFILE` of the step.
    pub open_files: Option<u64>,
    /// `RLIMIT_CPU` of the step (the step gets `SIGXCPU`, then `SIGKILL`).
    pub cpu_seconds: Option<u64>,
    /// `RLIMIT_FSIZE`: largest file the step may write.
    pub file_size_bytes: Option<u64>,
    /// Size of the `/tmp` tmpfs, and of the workdir's when it gets one (each).
    pub tmp_bytes: Option<u64>,
    /// Size of the `/out` tmpfs.
    pub out_bytes: Option<u64>,
    /// Files, directories and symlinks `/out` may hold (its tmpfs's
    /// `nr_inodes`): what storing `/out` costs the caller grows with them.
    #[serde(default)]
    pub out_files: Option<u64>,
    /// Bytes the step may write to its stdout and stderr together (the
    /// caller's log); past it the step is killed.
    #[serde(default)]
    pub log_bytes: Option<u64>,
}

impl Emulator {
    fn validate(&self) -> Result<(), PlanError> {
        let bad = |reason: &str| {
            Err(PlanError::Emulator {
                name: self.name.clone(),
                reason: reason.to_string(),
            })
        };
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 32
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            return bad("the name must be 1 to 32 ASCII letters, digits, `-` or `_`");
        }
        if self.magic.is_empty() || self.magic.len() > 128 || self.mask.len() != self.magic.len() {
            return bad("magic and mask must be 1 to 128 bytes, as long as each other");
        }
        check_normalized("emulator interpreter", &self.interpreter)?;
        if self.interpreter.to_string_lossy().contains(':') {
            return bad("the interpreter's path may not contain `:`");
        }
        Ok(())
    }
}

/// Why a plan was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    /// A mount target or the workdir is relative or not normalized.
    #[error("{what} {path:?} must be absolute and normalized (no `.`, `..` or empty parts)")]
    NotNormalized {
        /// Which field ("mount target", "workdir").
        what: &'static str,
        /// The offending path.
        path: PathBuf,
    },
    /// A mount's source is not an absolute host path.
    #[error("mount {target:?}: source {host:?} must be an absolute host path")]
    RelativeSource {
        /// Target of the mount.
        target: PathBuf,
        /// The offending host path.
        host: PathBuf,
    },
    /// Two mounts share a target.
    #[error("mount target {0:?} appears twice")]
    DuplicateTarget(PathBuf),
    /// A mount is on or under a path the sandbox provides itself.
    #[error("mount target {target:?} is on or under {reserved}, which the sandbox provides")]
    Reserved {
        /// The offending target.
        target: PathBuf,
        /// The reserved path it collides with.
        reserved: &'static str,
    },
    /// `argv` is empty.
    #[error("argv is empty")]
    EmptyArgv,
    /// A string contains a NUL byte (it could not be passed to the kernel).
    #[error("{what} contains a NUL byte: {value:?}")]
    Nul {
        /// Which field.
        what: &'static str,
        /// The offending value.
        value: String,
    },
    /// An environment variable name is empty or contains `=`.
    #[error("invalid environment variable name {0:?}")]
    EnvName(String),
    /// The hostname is empty or longer than 64 bytes.
    #[error("invalid hostname {0:?} (1 to 64 bytes)")]
    Hostname(String),
    /// The timeout is zero.
    #[error("timeout must be positive")]
    ZeroTimeout,
    /// The emulator cannot be registered as given.
    #[error("emulator {name:?}: {reason}")]
    Emulator {
        /// Its registration name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A service cannot be run as given.
    #[error("service {name:?}: {reason}")]
    Service {
        /// The service.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

impl Plan {
    /// Checks everything that can be checked without I/O.
    pub fn validate(&self) -> Result<(), PlanError> {
        let mut seen = BTreeSet::new();
        for m in &self.mounts {
            check_normalized("mount target", &m.target)?;
            if !m.source.is_absolute() {
                return Err(PlanError::RelativeSource {
                    target: m.target.clone(),
                    host: m.source.clone(),
                });
            }
            if let Some(reserved) = RESERVED.iter().find(|r| m.target.starts_with(r)) {
                return Err(PlanError::Reserved {
                    target: m.target.clone(),
                    reserved,
                });
            }
            if !seen.insert(&m.target) {
                return Err(PlanError::DuplicateTarget(m.target.clone()));
            }
            check_nul("mount source", &m.source.to_string_lossy())?;
        }
        check_normalized("workdir", &self.workdir)?;
        if self.argv.is_empty() {
            return Err(PlanError::EmptyArgv);
        }
        for a in &self.argv {
            check_nul("argv", a)?;
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') {
                return Err(PlanError::EnvName(k.clone()));
            }
            check_nul("env name", k)?;
            check_nul("env value", v)?;
        }
        if self.hostname.is_empty() || self.hostname.len() > 64 {
            return Err(PlanError::Hostname(self.hostname.clone()));
        }
        check_nul("hostname", &self.hostname)?;
        if self.timeout.is_zero() {
            return Err(PlanError::ZeroTimeout);
        }
        if let Some(e) = &self.emulator {
            e.validate()?;
        }
        crate::services::validate(&self.services)
    }

    /// The mounts, parents before children (so a mount point inside another
    /// mount exists when it is needed), the root mount first.
    pub fn mounts_in_order(&self) -> Vec<&Mount> {
        let mut v: Vec<&Mount> = self.mounts.iter().collect();
        v.sort_by_key(|m| (m.target.components().count(), m.target.clone()));
        v
    }
}

fn check_normalized(what: &'static str, path: &Path) -> Result<(), PlanError> {
    let s = path.to_string_lossy();
    let mut comps = path.components();
    let ok = comps.next() == Some(Component::RootDir)
        && comps.all(|c| matches!(c, Component::Normal(_)))
        && !s.contains("//")
        && !s.contains("/./")
        && !s.ends_with("/.")
        && (s == "/" || !s.ends_with('/'));
    if !ok {
        return Err(PlanError::NotNormalized {
            what,
            path: path.to_path_buf(),
        });
    }
    check_nul(what, &s)
}

fn check_nul(what: &'static str, value: &str) -> Result<(), PlanError> {
    if value.contains('\0') {
        return Err(PlanError::Nul {
            what,
            value: value.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            mounts: vec![Mount {
                target: "/".into(),
                source: "/srv/rootfs".into(),
                writable: false,
            }],
            argv: vec!["/bin/sh".into()],
            env: BTreeMap::new(),
            workdir: "/src".into(),
            hostname: "cairn".into(),
            timeout: Duration::from_secs(1),
            limits: Limits::default(),
            services: Vec::new(),
            emulator: None,
        }
    }

    fn with_target(t: &str) -> Plan {
        let mut p = plan();
        p.mounts.push(Mount {
            target: t.into(),
            source: "/x".into(),
            writable: false,
        });
        p
    }

    #[test]
    fn accepts_a_plain_plan() {
        assert_eq!(plan().validate(), Ok(()));
        assert_eq!(with_target("/src/sub").validate(), Ok(()));
    }

    fn emulator(name: &str, interpreter: &str, magic: usize, mask: usize) -> Plan {
        let mut p = plan();
        p.emulator = Some(Emulator {
            name: name.into(),
            magic: vec![0x7f; magic],
            mask: vec![0xff; mask],
            interpreter: interpreter.into(),
        });
        p
    }

    #[test]
    fn an_emulator_must_be_registrable() {
        assert_eq!(
            emulator("cairn-aarch64", "/e/qemu", 20, 20).validate(),
            Ok(())
        );
        for bad in [
            emulator("", "/e/qemu", 20, 20),
            emulator("a:b", "/e/qemu", 20, 20),
            emulator(&"x".repeat(33), "/e/qemu", 20, 20),
            emulator("q", "/e:x/qemu", 20, 20),
            emulator("q", "/e/qemu", 20, 19),
            emulator("q", "/e/qemu", 129, 129),
            emulator("q", "/e/qemu", 0, 0),
        ] {
            let err = bad.validate();
            assert!(matches!(err, Err(PlanError::Emulator { .. })), "{err:?}");
        }
        assert!(matches!(
            emulator("q", "e/qemu", 20, 20).validate(),
            Err(PlanError::NotNormalized { .. })
        ));
    }

    #[test]
    fn the_registration_escapes_every_magic_byte() {
        let e = Emulator {
            name: "cairn-aarch64".into(),
            magic: vec![0x7f, b':', 0],
            mask: vec![0xff, 0xff, 0xfe],
            interpreter: "/.cairn/emulator/qemu-aarch64-static".into(),
        };
        assert_eq!(
            String::from_utf8(crate::script::binfmt_line(&e)).unwrap(),
            r":cairn-aarch64:M::\x7f\x3a\x00:\xff\xff\xfe:/.cairn/emulator/qemu-aarch64-static:F"
        );
    }

    #[test]
    fn rejects_bad_targets() {
        for t in ["src", "/a/../b", "/a/./b", "/a/", "//a", "/a//b", "/a/."] {
            assert!(
                matches!(
                    with_target(t).validate(),
                    Err(PlanError::NotNormalized { .. })
                ),
                "{t}"
            );
        }
    }

    #[test]
    fn rejects_reserved_and_duplicates() {
        for t in ["/out", "/proc/x", "/dev", "/tmp/a"] {
            assert!(matches!(
                with_target(t).validate(),
                Err(PlanError::Reserved { .. })
            ));
        }
        assert_eq!(with_target("/outer").validate(), Ok(()));
        assert_eq!(
            with_target("/").validate(),
            Err(PlanError::DuplicateTarget("/".into()))
        );
    }

    #[test]
    fn rejects_bad_fields() {
        let mut p = plan();
        p.argv.clear();
        assert_eq!(p.validate(), Err(PlanError::EmptyArgv));
        let mut p = plan();
        p.env.insert("A=B".into(), "x".into());
        assert_eq!(p.validate(), Err(PlanError::EnvName("A=B".into())));
        let mut p = plan();
        p.timeout = Duration::ZERO;
        assert_eq!(p.validate(), Err(PlanError::ZeroTimeout));
        let mut p = plan();
        p.hostname = "a".repeat(65);
        assert!(matches!(p.validate(), Err(PlanError::Hostname(_))));
        let mut p = plan();
        p.argv.push("a\0b".into());
        assert!(matches!(p.validate(), Err(PlanError::Nul { .. })));
    }

    #[test]
    fn orders_parents_first() {
        let mut p = with_target("/a/b");
        p.mounts.push(Mount {
            target: "/a".into(),
            source: "/y".into(),
            writable: false,
        });
        let order: Vec<_> = p.mounts_in_order().iter().map(|m| &m.target).collect();
        assert_eq!(order, [Path::new("/"), Path::new("/a"), Path::new("/a/b")]);
    }

    #[test]
    fn round_trips_through_json() {
        let p = plan();
        let s = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Plan>(&s).unwrap(), p);
    }
}
