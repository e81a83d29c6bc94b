//! Names and paths as the recipe writes them, checked once.
//!
//! Service, input, step and socket names end up in store refs, platform
//! properties and `LISTEN_FDNAMES`, so they share one small alphabet.
//! Sandbox paths are absolute and normalized here so that two spellings of
//! one place (`/src` and `/src/`) are caught as the same mount target.

use std::fmt;

/// A validated name: `[a-z0-9][a-z0-9_-]*`, at most 63 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

/// The name of a step.
pub type StepName = Name;
/// The name of an input.
pub type InputName = Name;

impl Name {
    /// Checks `text` against `[a-z0-9][a-z0-9_-]*` (at most 63 characters).
    pub fn new(text: &str) -> Option<Self> {
        let mut bytes = text.bytes();
        let first_ok = bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let rest_ok =
            bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        (first_ok && rest_ok && text.len() <= 63).then(|| Self(text.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// Sandbox paths a mount may not cover: the sandbox provides them itself.
pub const RESERVED_PATHS: [&str; 4] = ["/out", "/proc", "/dev", "/tmp"];

/// Normalizes an absolute sandbox path: collapses repeated `/`, drops a
/// trailing `/`; refuses relative paths, `.`, `..` and NUL.
pub fn normalize_abs(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!("path {path:?} must be absolute (start with /)"));
    }
    let parts = relative_parts(path)?;
    Ok(format!("/{}", parts.join("/")))
}

/// Normalizes a relative path (an output below `/out`), refusing absolute
/// paths, `.`, `..`, NUL and the empty path.
pub fn normalize_rel(path: &str) -> Result<String, String> {
    if path.starts_with('/') {
        return Err(format!("path {path:?} must be relative to /out"));
    }
    let parts = relative_parts(path)?;
    if parts.is_empty() {
        return Err(format!("path {path:?} is empty"));
    }
    Ok(parts.join("/"))
}

fn relative_parts(path: &str) -> Result<Vec<&str>, String> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if let Some(bad) = parts
        .iter()
        .find(|p| **p == "." || **p == ".." || p.contains('\0'))
    {
        return Err(format!(
            "path {path:?} contains {bad:?}; write it without . or .."
        ));
    }
    Ok(parts)
}

/// The reserved path that `path` (normalized) is, or lies below, if any.
pub fn reserved_prefix(path: &str) -> Option<&'static str> {
    RESERVED_PATHS.into_iter().find(|r| {
        path == *r
            || path
                .strip_prefix(r)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(Name::new("build-2_x").is_some());
        for bad in ["", "-a", "_a", "A", "a.b", "a b", &"a".repeat(64)] {
            assert!(Name::new(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn paths() {
        assert_eq!(normalize_abs("/"), Ok("/".into()));
        assert_eq!(normalize_abs("//src//x/"), Ok("/src/x".into()));
        assert!(normalize_abs("src").is_err());
        assert!(normalize_abs("/a/../b").is_err());
        assert_eq!(normalize_rel("bin//app"), Ok("bin/app".into()));
        assert!(normalize_rel("/bin").is_err());
        assert_eq!(reserved_prefix("/tmp/x"), Some("/tmp"));
        assert_eq!(reserved_prefix("/tmpx"), None);
    }
}
