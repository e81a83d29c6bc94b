//! Image references: `REGISTRY/REPO[:TAG][@sha256:HEX]` for a registry, or
//! a local layout directory `PATH@sha256:HEX` (a path starting with `/`,
//! `./` or `../`).
//!
//! The registry part follows Docker's rule: the first component is a
//! registry host when it contains `.` or `:` or is `localhost`; otherwise
//! the registry is Docker Hub and a one-component name gets `library/`.

use std::fmt;
use std::path::PathBuf;

use cairn_digest::DigestRef;

/// Why a reference does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("image reference {text:?}: {reason}")]
pub struct ReferenceError {
    /// The reference as given.
    pub text: String,
    /// What is wrong.
    pub reason: String,
}

/// An image in a registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]`, e.g. `127.0.0.1:5000`.
    pub registry: String,
    /// `team/service`.
    pub repository: String,
    /// The tag, if given.
    pub tag: Option<String>,
    /// The manifest digest, if given (`sha256:…`, no size).
    pub digest: Option<DigestRef>,
}

/// Where an image comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageLocation {
    /// A registry.
    Registry(Reference),
    /// A local OCI image layout directory, with the manifest digest.
    Layout {
        /// The directory.
        path: PathBuf,
        /// The manifest (required: a layout's index can change).
        digest: DigestRef,
    },
}

const DOCKER_HUB: &str = "docker.io";

impl Reference {
    /// Parses `REGISTRY/REPO[:TAG][@sha256:HEX]`.
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        let err = |reason: &str| ReferenceError {
            text: text.to_owned(),
            reason: reason.to_owned(),
        };
        let (name_tag, digest) = match text.split_once('@') {
            Some((n, d)) => (n, Some(parse_digest(d).map_err(|r| err(&r))?)),
            None => (text, None),
        };
        let (registry, rest) = match name_tag.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_owned(), rest.to_owned())
            }
            Some(_) => (DOCKER_HUB.to_owned(), name_tag.to_owned()),
            None => (DOCKER_HUB.to_owned(), format!("library/{name_tag}")),
        };
        // A tag follows the last ':' after the last '/'.
        let slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match rest[slash..].rfind(':') {
            Some(i) => (
                rest[..slash + i].to_owned(),
                Some(rest[slash + i + 1..].to_owned()),
            ),
            None => (rest.clone(), None),
        };
        if repository.is_empty() || !repository.split('/').all(valid_path_component) {
            return Err(err(
                "the repository must be lowercase components [a-z0-9._-] separated by '/'",
            ));
        }
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
                && !t.starts_with(['.', '-']);
            if !ok {
                return Err(err(
                    "a tag is 1-128 characters [A-Za-z0-9_.-], not starting with '.' or '-'",
                ));
            }
        }
        if registry.is_empty() || registry.contains(['/', '@', ' ']) {
            return Err(err("bad registry host"));
        }
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The digest, or an error saying a tag alone is not a pin.
    pub fn pinned(&self) -> Result<DigestRef, ReferenceError> {
        self.digest.ok_or_else(|| ReferenceError {
            text: self.to_string(),
            reason: "a tag is not a pin: name the manifest as REGISTRY/REPO@sha256:<hex>".into(),
        })
    }

    /// `registry/repository`, for messages and attestation subjects.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Self {
        Self {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn valid_path_component(c: &str) -> bool {
    !c.is_empty()
        && c.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
        && c.starts_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
}

fn parse_digest(text: &str) -> Result<DigestRef, String> {
    let r: DigestRef = text
        .parse()
        .map_err(|_| format!("{text:?} is not sha256:<64 lowercase hex>"))?;
    if r.size.is_some() {
        return Err(format!("{text:?}: a manifest digest has no /size"));
    }
    Ok(r)
}

impl ImageLocation {
    /// Parses a registry reference or, for text starting with `/`, `./` or
    /// `../`, a layout directory `PATH@sha256:HEX`. Both must be pinned.
    pub fn parse_pinned(text: &str) -> Result<Self, ReferenceError> {
        if text.starts_with(['/', '.']) {
            let Some((path, digest)) = text.rsplit_once('@') else {
                return Err(ReferenceError {
                    text: text.to_owned(),
                    reason: "a layout directory needs its manifest: PATH@sha256:<hex>".into(),
                });
            };
            let digest = parse_digest(digest).map_err(|reason| ReferenceError {
                text: text.to_owned(),
                reason,
            })?;
            return Ok(Self::Layout {
                path: PathBuf::from(path),
                digest,
            });
        }
        let r = Reference::parse(text)?;
        r.pinned()?;
        Ok(Self::Registry(r))
    }
}

impl fmt::Display for ImageLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Registry(r) => r.fmt(f),
            Self::Layout { path, digest } => write!(f, "{}@{digest}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn registry_references() {
        let r = Reference::parse("127.0.0.1:5000/team/svc:v1").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("127.0.0.1:5000", "team/svc")
        );
        assert_eq!(r.tag.as_deref(), Some("v1"));
        let r = Reference::parse(&format!("localhost/x@sha256:{HEX}")).unwrap();
        assert_eq!(r.registry, "localhost");
        assert_eq!(r.digest.unwrap().hex(), HEX);
        let r = Reference::parse("debian:bookworm").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("docker.io", "library/debian")
        );
        assert_eq!(r.to_string(), "docker.io/library/debian:bookworm");
    }

    #[test]
    fn bad_references_are_refused() {
        for bad in [
            "",
            "reg:5000/",
            "reg:5000/UPPER",
            "reg:5000/a:",
            "reg:5000/a@sha256:12",
            "reg:5000/a:-x",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_tag_is_not_a_pin() {
        let err = ImageLocation::parse_pinned("127.0.0.1:5000/a:latest").unwrap_err();
        assert!(err.reason.contains("not a pin"), "{err}");
        let err = ImageLocation::parse_pinned("./layout").unwrap_err();
        assert!(err.reason.contains("PATH@sha256"), "{err}");
        let ok = ImageLocation::parse_pinned(&format!("./img@sha256:{HEX}")).unwrap();
        assert!(matches!(ok, ImageLocation::Layout { .. }));
    }
}
