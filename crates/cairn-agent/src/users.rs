//! Resolving `user` and `group` from agent.toml to ids, once at start, so
//! a typo fails then rather than at the first swap.

use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::process::spawn::Credentials;

/// Why a user or group could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// No such user.
    #[error("no user {0:?} on this machine")]
    NoUser(String),
    /// No such group.
    #[error("no group {0:?} on this machine")]
    NoGroup(String),
    /// Switching users needs root.
    #[error("running the service as {0:?} needs the agent to run as root")]
    NotRoot(String),
    /// The service's user cannot traverse a directory above its
    /// generations, so every release would fail to start.
    #[error(
        "the service's user (uid {uid}, gid {gid}) cannot reach {}: {} is mode {mode:04o}, owned by uid {owner}; \
         put the state directory where that user may traverse, or let it",
        target.display(), blocked.display()
    )]
    Unreachable {
        /// The service's uid.
        uid: u32,
        /// The service's gid.
        gid: u32,
        /// The directory the service must reach.
        target: PathBuf,
        /// The directory it cannot search.
        blocked: PathBuf,
        /// That directory's permission bits.
        mode: u32,
        /// That directory's owner.
        owner: u32,
    },
    /// A directory on the way could not be read.
    #[error("checking that the service's user can reach {}: {source}", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Whether a process running with `credentials` (and no supplementary
/// groups, as the agent starts it) may search every directory from `/`
/// down to `target`. Checked once at start: a state directory below a
/// home or a `mktemp -d` (mode 0700) would otherwise make every release
/// roll back with "permission denied" at its first start.
pub fn check_reachable(credentials: &Credentials, target: &Path) -> Result<(), UserError> {
    if credentials.uid == 0 {
        return Ok(());
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| UserError::Io { path, source }
    };
    let target = target.canonicalize().map_err(io(target))?;
    for dir in target.ancestors() {
        let meta = std::fs::metadata(dir).map_err(io(dir))?;
        let mode = meta.mode() & 0o7777;
        let bit = if meta.uid() == credentials.uid {
            0o100
        } else if meta.gid() == credentials.gid {
            0o010
        } else {
            0o001
        };
        if mode & bit == 0 {
            return Err(UserError::Unreachable {
                uid: credentials.uid,
                gid: credentials.gid,
                target: target.clone(),
                blocked: dir.to_path_buf(),
                mode,
                owner: meta.uid(),
            });
        }
    }
    Ok(())
}

/// The ids for `user` (its primary group unless `group` is given); `None`
/// if neither is given (the service runs as the agent's user).
pub fn resolve(user: Option<&str>, group: Option<&str>) -> Result<Option<Credentials>, UserError> {
    if user.is_none() && group.is_none() {
        return Ok(None);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(UserError::NotRoot(
            user.or(group).unwrap_or_default().into(),
        ));
    }
    let (uid, primary) = match user {
        Some(u) => passwd(u).ok_or_else(|| UserError::NoUser(u.into()))?,
        // SAFETY: getuid/getgid have no preconditions.
        None => unsafe { (libc::getuid(), libc::getgid()) },
    };
    let gid = match group {
        Some(g) => group_id(g).ok_or_else(|| UserError::NoGroup(g.into()))?,
        None => primary,
    };
    Ok(Some(Credentials { uid, gid }))
}

fn passwd(name: &str) -> Option<(u32, u32)> {
    let name = CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 << 10];
    // SAFETY: zeroed passwd is a valid out-parameter for getpwnam_r.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call; buf outlives it.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut pw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some((pw.pw_uid, pw.pw_gid))
}

fn group_id(name: &str) -> Option<u32> {
    let name = CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 << 10];
    // SAFETY: zeroed group is a valid out-parameter for getgrnam_r.
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut result = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call; buf outlives it.
    let rc = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            &mut gr,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(gr.gr_gid)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_directory_the_user_cannot_search_is_named() {
        let nobody = Credentials {
            uid: 65534,
            gid: 65534,
        };
        let tmp = tempfile::tempdir().unwrap();
        let open = tmp.path().join("open");
        let closed = tmp.path().join("closed");
        for dir in [&open, &closed] {
            std::fs::create_dir_all(dir.join("state")).unwrap();
        }
        let mode =
            |dir: &Path, m| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(m));
        mode(tmp.path(), 0o755).unwrap();
        mode(&open, 0o711).unwrap();
        mode(&closed, 0o700).unwrap();
        check_reachable(&nobody, &open.join("state")).unwrap();
        match check_reachable(&nobody, &closed.join("state")) {
            Err(UserError::Unreachable { blocked, mode, .. }) => {
                assert_eq!(blocked, closed.canonicalize().unwrap());
                assert_eq!(mode, 0o700);
            }
            other => panic!("expected Unreachable, got {other:?}"),
        }
        // Root searches anything; the agent's own user needs no check.
        let root = Credentials { uid: 0, gid: 0 };
        check_reachable(&root, &closed.join("state")).unwrap();
    }

    #[test]
    fn resolves_root_and_refuses_unknown_names() {
        assert_eq!(resolve(None, None).unwrap(), None);
        // SAFETY: no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(
                resolve(Some("root"), None).unwrap(),
                Some(Credentials { uid: 0, gid: 0 })
            );
            assert!(matches!(
                resolve(Some("no-such-user-x"), None),
                Err(UserError::NoUser(_))
            ));
            assert!(matches!(
                resolve(Some("root"), Some("no-such-group-x")),
                Err(UserError::NoGroup(_))
            ));
        } else {
            assert!(matches!(
                resolve(Some("root"), None),
                Err(UserError::NotRoot(_))
            ));
        }
    }
}
