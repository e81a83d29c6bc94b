//! Resolving `user` and `group` from agent.toml to ids, once at start, so
//! a typo fails then rather than at the first swap.

use std::ffi::CString;

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
    use super::*;

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
