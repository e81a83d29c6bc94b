//! Entry names and symlink targets: what a tree may contain.
//!
//! Both checks are pure string logic so that decoding, snapshotting and
//! materializing share one definition of "safe".

/// Why a name cannot be a tree entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The empty string.
    #[error("empty entry name")]
    Empty,
    /// `.` or `..`.
    #[error("entry name {0:?} is not allowed")]
    Dot(String),
    /// Contains `/` or NUL.
    #[error("entry name {0:?} contains '/' or NUL")]
    BadChar(String),
}

/// Checks that `name` can be one entry of a directory.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    match name {
        "" => Err(NameError::Empty),
        "." | ".." => Err(NameError::Dot(name.into())),
        _ if name.contains(['/', '\0']) => Err(NameError::BadChar(name.into())),
        _ => Ok(()),
    }
}

/// Whether a symlink at depth `depth` below the root (0 = in the root
/// directory itself) with `target` resolves inside the tree.
///
/// Absolute targets are outside by definition: the tree may be materialized
/// anywhere. A relative target is walked lexically; climbing above the root
/// at any point is an escape, even if the path comes back down.
pub fn symlink_target_stays_inside(depth: usize, target: &str) -> bool {
    if target.is_empty() || target.starts_with('/') || target.contains('\0') {
        return false;
    }
    let mut level = depth as isize;
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                level -= 1;
                if level < 0 {
                    return false;
                }
            }
            _ => level += 1,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("a.txt").is_ok());
        assert!(validate_name("..a").is_ok());
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert!(matches!(validate_name(".."), Err(NameError::Dot(_))));
        assert!(matches!(validate_name("a/b"), Err(NameError::BadChar(_))));
        assert!(matches!(validate_name("a\0"), Err(NameError::BadChar(_))));
    }

    #[test]
    fn symlink_targets() {
        assert!(symlink_target_stays_inside(0, "a/b"));
        assert!(symlink_target_stays_inside(1, "../b"));
        assert!(symlink_target_stays_inside(2, "../../x"));
        assert!(!symlink_target_stays_inside(0, "../x"));
        assert!(!symlink_target_stays_inside(1, "../../x"));
        assert!(!symlink_target_stays_inside(0, "/etc/passwd"));
        assert!(!symlink_target_stays_inside(0, "a/../../x"));
        assert!(!symlink_target_stays_inside(0, ""));
    }
}
