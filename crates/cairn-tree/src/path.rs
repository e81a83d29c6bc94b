//! Entry names: what a tree may contain (symlinks are judged by
//! resolving them, in `links.rs`).
//!
//! Pure string logic, so that decoding, snapshotting and materializing
//! share one definition of "safe".

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
}
