//! Building, encoding and strictly decoding [`Directory`] messages.

use cairn_digest::{Digest, ParseDigestError};
use prost::Message;

use crate::path::{validate_name, NameError};
use crate::proto::{self, Directory, DirectoryNode, FileNode, SymlinkNode};

/// Why bytes are not a valid directory of a tree.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// Not protobuf at all.
    #[error("not a Directory message: {0}")]
    Decode(#[from] prost::DecodeError),
    /// An entry name is unusable.
    #[error(transparent)]
    Name(#[from] NameError),
    /// Names not in strictly increasing order, or repeated across kinds.
    #[error("entry {0:?} is out of order or duplicated")]
    Unsorted(String),
    /// A file or subdirectory without a digest, or with a malformed one.
    #[error("entry {name:?} has a bad digest: {source}")]
    BadDigest {
        /// The entry.
        name: String,
        /// What is wrong with it.
        #[source]
        source: ParseDigestError,
    },
    /// A file or subdirectory without a digest.
    #[error("entry {0:?} has no digest")]
    MissingDigest(String),
    /// A symlink with an empty target or NUL in it.
    #[error("symlink {0:?} has an empty or NUL-containing target")]
    BadSymlink(String),
    /// Valid fields, but not in the one canonical encoding.
    #[error("Directory is not canonically encoded (unknown fields or field order)")]
    NotCanonical,
}

/// Collects entries in any order and produces a sorted, valid [`Directory`].
#[derive(Default, Debug, Clone)]
pub struct DirectoryBuilder {
    dir: Directory,
}

impl DirectoryBuilder {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file.
    pub fn file(&mut self, name: impl Into<String>, digest: Digest, executable: bool) -> &mut Self {
        self.dir.files.push(FileNode {
            name: name.into(),
            digest: Some(digest.into()),
            is_executable: executable,
        });
        self
    }

    /// Adds a subdirectory by the digest of its encoded `Directory`.
    pub fn directory(&mut self, name: impl Into<String>, digest: Digest) -> &mut Self {
        self.dir.directories.push(DirectoryNode {
            name: name.into(),
            digest: Some(digest.into()),
        });
        self
    }

    /// Adds a symlink.
    pub fn symlink(&mut self, name: impl Into<String>, target: impl Into<String>) -> &mut Self {
        self.dir.symlinks.push(SymlinkNode {
            name: name.into(),
            target: target.into(),
        });
        self
    }

    /// Sorts and validates the entries.
    pub fn build(mut self) -> Result<Directory, TreeError> {
        self.dir.files.sort_by(|a, b| a.name.cmp(&b.name));
        self.dir.directories.sort_by(|a, b| a.name.cmp(&b.name));
        self.dir.symlinks.sort_by(|a, b| a.name.cmp(&b.name));
        // The digests came in as `Digest`s: well-formed by construction.
        validate(&self.dir, false)?;
        Ok(self.dir)
    }
}

/// Checks names, order, uniqueness across all three kinds, and digests.
pub fn validate_directory(dir: &Directory) -> Result<(), TreeError> {
    validate(dir, true)
}

fn validate(dir: &Directory, check_digests: bool) -> Result<(), TreeError> {
    let mut names: Vec<&str> =
        Vec::with_capacity(dir.files.len() + dir.directories.len() + dir.symlinks.len());
    check_sorted(dir.files.iter().map(|f| f.name.as_str()), &mut names)?;
    check_sorted(dir.directories.iter().map(|d| d.name.as_str()), &mut names)?;
    check_sorted(dir.symlinks.iter().map(|s| s.name.as_str()), &mut names)?;
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(TreeError::Unsorted(w[0].into()));
    }
    if check_digests {
        for f in &dir.files {
            check_digest(&f.name, f.digest.as_ref())?;
        }
        for d in &dir.directories {
            check_digest(&d.name, d.digest.as_ref())?;
        }
    }
    for s in &dir.symlinks {
        if s.target.is_empty() || s.target.contains('\0') {
            return Err(TreeError::BadSymlink(s.name.clone()));
        }
    }
    Ok(())
}

fn check_sorted<'a>(
    names: impl Iterator<Item = &'a str>,
    all: &mut Vec<&'a str>,
) -> Result<(), TreeError> {
    let mut prev: Option<&str> = None;
    for name in names {
        validate_name(name)?;
        if prev.is_some_and(|p| p >= name) {
            return Err(TreeError::Unsorted(name.into()));
        }
        prev = Some(name);
        all.push(name);
    }
    Ok(())
}

fn check_digest(name: &str, digest: Option<&proto::Digest>) -> Result<Digest, TreeError> {
    let d = digest.ok_or_else(|| TreeError::MissingDigest(name.into()))?;
    Digest::try_from(d).map_err(|source| TreeError::BadDigest {
        name: name.into(),
        source,
    })
}

/// The canonical bytes of a directory.
pub fn encode_directory(dir: &Directory) -> Vec<u8> {
    dir.encode_to_vec()
}

/// The digest naming a directory: that of its canonical bytes.
pub fn directory_digest(dir: &Directory) -> Digest {
    Digest::of(&encode_directory(dir))
}

/// Decodes and validates a directory; only the canonical encoding is accepted.
pub fn decode_directory(bytes: &[u8]) -> Result<Directory, TreeError> {
    let dir = Directory::decode(bytes)?;
    validate_directory(&dir)?;
    if dir.encoded_len() != bytes.len() || dir.encode_to_vec() != bytes {
        return Err(TreeError::NotCanonical);
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn blob(s: &str) -> Digest {
        Digest::of(s.as_bytes())
    }

    #[test]
    fn builder_sorts_and_round_trips() {
        let mut b = DirectoryBuilder::new();
        b.file("b", blob("b"), false)
            .file("a", blob("a"), true)
            .symlink("l", "a")
            .directory("d", directory_digest(&Directory::default()));
        let dir = b.build().unwrap();
        assert_eq!(dir.files[0].name, "a");
        let bytes = encode_directory(&dir);
        assert_eq!(decode_directory(&bytes).unwrap(), dir);
    }

    #[test]
    fn empty_directory_digest_is_reapi_empty() {
        // An empty message encodes to zero bytes, exactly as in REAPI.
        assert_eq!(directory_digest(&Directory::default()), Digest::empty());
    }

    #[test]
    fn unsorted_duplicate_and_bad_names_are_refused() {
        let unsorted = Directory {
            files: vec![file("b"), file("a")],
            ..Default::default()
        };
        assert!(matches!(
            decode_directory(&unsorted.encode_to_vec()),
            Err(TreeError::Unsorted(_))
        ));
        let dup = Directory {
            files: vec![file("a")],
            symlinks: vec![SymlinkNode {
                name: "a".into(),
                target: "x".into(),
            }],
            ..Default::default()
        };
        assert!(matches!(
            validate_directory(&dup),
            Err(TreeError::Unsorted(_))
        ));
        for bad in ["..", ".", "a/b", ""] {
            let d = Directory {
                files: vec![file(bad)],
                ..Default::default()
            };
            assert!(
                matches!(validate_directory(&d), Err(TreeError::Name(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn malformed_digest_is_refused() {
        let mut f = file("a");
        f.digest.as_mut().unwrap().hash = "XYZ".into();
        let d = Directory {
            files: vec![f],
            ..Default::default()
        };
        assert!(matches!(
            validate_directory(&d),
            Err(TreeError::BadDigest { .. })
        ));
    }

    #[test]
    fn unknown_fields_are_not_canonical() {
        let dir = Directory {
            files: vec![file("a")],
            ..Default::default()
        };
        let mut bytes = dir.encode_to_vec();
        bytes.extend_from_slice(&[0x78, 0x01]); // field 15, varint 1
        assert!(matches!(
            decode_directory(&bytes),
            Err(TreeError::NotCanonical)
        ));
    }

    fn file(name: &str) -> FileNode {
        FileNode {
            name: name.into(),
            digest: Some(blob(name).into()),
            is_executable: false,
        }
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_directory(&bytes);
        }
    }
}
