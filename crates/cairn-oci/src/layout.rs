//! OCI image layouts on disk: `oci-layout`, `index.json`, `blobs/sha256/…`.
//!
//! [`Layout`] reads one (an image made by skopeo or umoci, a base image, a
//! cache of pulled blobs), verifying every blob against its digest as it is
//! read. [`Staging`] writes a new one beside its destination and renames it
//! into place, so an export that fails leaves nothing at the destination.
//! Files are 0644 and directories 0755 whatever the umask: two exports are
//! byte-identical, and readable by the tools that check them.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use cairn_digest::{Digest, HashingReader};

use crate::error::{ExportError, SpecError};
use crate::spec::{to_bytes, Index};

/// The `oci-layout` file's contents.
pub const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
/// The annotation naming a manifest in `index.json` (skopeo's `oci:DIR:NAME`).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An image layout directory, read.
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
}

/// Why a layout could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// Not a layout (no `oci-layout` file) or unreadable.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A blob whose bytes do not match its digest.
    #[error("{}: blob {expected} has digest {got:#} instead", root.display())]
    Mismatch {
        /// The layout.
        root: PathBuf,
        /// The digest asked for.
        expected: Digest,
        /// What the file hashes to.
        got: Digest,
    },
    /// A document that does not parse.
    #[error(transparent)]
    Spec(#[from] SpecError),
}

impl Layout {
    /// Opens the layout at `root` (it must have an `oci-layout` file).
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, LayoutError> {
        let root = root.into();
        let marker = root.join("oci-layout");
        fs::metadata(&marker).map_err(|source| LayoutError::Io {
            path: marker,
            source,
        })?;
        Ok(Self { root })
    }

    /// Opens `root` as a layout, creating an empty one if it does not exist
    /// (a cache of pulled blobs).
    pub fn create(root: impl Into<PathBuf>) -> Result<Self, LayoutError> {
        let root = root.into();
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| LayoutError::Io { path, source }
        };
        fs::create_dir_all(root.join("blobs/sha256")).map_err(io(&root))?;
        let marker = root.join("oci-layout");
        if !marker.exists() {
            fs::write(&marker, OCI_LAYOUT).map_err(io(&marker))?;
        }
        Ok(Self { root })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where blob `digest` lives (whether or not it is there).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Whether the blob is there with the right size (not yet verified).
    pub fn has(&self, digest: &Digest) -> bool {
        fs::metadata(self.blob_path(digest)).is_ok_and(|m| m.is_file() && m.len() == digest.size())
    }

    /// A blob's bytes, verified.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, LayoutError> {
        let path = self.blob_path(digest);
        let file = File::open(&path).map_err(|source| LayoutError::Io {
            path: path.clone(),
            source,
        })?;
        let mut reader = HashingReader::new(file.take(digest.size() + 1));
        let mut bytes = Vec::with_capacity(digest.size().min(1 << 20) as usize);
        reader
            .read_to_end(&mut bytes)
            .map_err(|source| LayoutError::Io { path, source })?;
        let (got, _) = reader.finish();
        if got != *digest {
            return Err(LayoutError::Mismatch {
                root: self.root.clone(),
                expected: *digest,
                got,
            });
        }
        Ok(bytes)
    }

    /// The parsed `index.json`.
    pub fn index(&self) -> Result<Index, LayoutError> {
        let path = self.root.join("index.json");
        let bytes = fs::read(&path).map_err(|source| LayoutError::Io {
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| {
            SpecError::Json {
                what: path.display().to_string(),
                source,
            }
            .into()
        })
    }

    /// Adds `bytes` as a blob (a manifest fetched and verified); returns
    /// their digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, LayoutError> {
        let digest = Digest::of(bytes);
        if self.has(&digest) {
            return Ok(digest);
        }
        let dir = self.root.join("blobs/sha256");
        let io = |source| LayoutError::Io {
            path: dir.clone(),
            source,
        };
        let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io)?;
        std::io::Write::write_all(&mut tmp, bytes).map_err(io)?;
        self.put_verified(tmp.into_temp_path(), &digest)?;
        Ok(digest)
    }

    /// Adds `file` (already verified to hash to `digest`) as a blob, by
    /// rename; a blob already there is kept.
    pub fn put_verified(
        &self,
        file: tempfile::TempPath,
        digest: &Digest,
    ) -> Result<(), LayoutError> {
        let dest = self.blob_path(digest);
        let io = |source| LayoutError::Io {
            path: dest.clone(),
            source,
        };
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).map_err(io)?;
        file.persist(&dest).map_err(|e| io(e.error))
    }
}

/// A layout being written beside its destination.
pub struct Staging {
    dir: tempfile::TempDir,
    dest: PathBuf,
}

impl Staging {
    /// Starts a layout that will become `dest` (which must not exist or be
    /// an empty directory).
    pub fn new(dest: &Path) -> Result<Self, ExportError> {
        if fs::read_dir(dest).is_ok_and(|mut d| d.next().is_some()) {
            return Err(ExportError::NotEmpty(dest.to_owned()));
        }
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        fs::create_dir_all(parent).map_err(ExportError::io(parent))?;
        let dir = tempfile::Builder::new()
            .prefix(".cairn-image-")
            .tempdir_in(parent)
            .map_err(ExportError::io(parent))?;
        let blobs = dir.path().join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(ExportError::io(&blobs))?;
        Ok(Self {
            dir,
            dest: dest.to_owned(),
        })
    }

    /// The directory blobs are written into.
    pub fn blobs_dir(&self) -> PathBuf {
        self.dir.path().join("blobs/sha256")
    }

    /// Writes bytes as a blob; returns their digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, ExportError> {
        let digest = Digest::of(bytes);
        let path = self.blobs_dir().join(digest.hex());
        fs::write(&path, bytes).map_err(ExportError::io(&path))?;
        Ok(digest)
    }

    /// Copies blob `digest` from `from` (verifying it).
    pub fn copy_blob(&self, from: &Layout, digest: &Digest) -> Result<(), LayoutError> {
        let bytes_ok = from.read_blob(digest)?;
        let path = self.blobs_dir().join(digest.hex());
        fs::write(&path, bytes_ok).map_err(|source| LayoutError::Io { path, source })
    }

    /// Writes `oci-layout` and `index.json`, fixes permissions and renames
    /// the layout into place.
    pub fn finish(self, index: &Index) -> Result<PathBuf, ExportError> {
        let root = self.dir.path();
        let write = |name: &str, bytes: &[u8]| {
            let path = root.join(name);
            fs::write(&path, bytes).map_err(ExportError::io(&path))
        };
        write("oci-layout", OCI_LAYOUT)?;
        write("index.json", &to_bytes(index))?;
        normalize_modes(root).map_err(ExportError::io(root))?;
        if self.dest.is_dir() {
            // Empty (checked in new): replaced by the finished layout.
            fs::remove_dir(&self.dest).map_err(ExportError::io(&self.dest))?;
        }
        let root = self.dir.keep();
        fs::rename(&root, &self.dest).map_err(|e| {
            let _ = fs::remove_dir_all(&root);
            ExportError::io(&self.dest)(e)
        })?;
        Ok(self.dest)
    }
}

/// 0755 for directories, 0644 for files, below and including `dir`.
fn normalize_modes(dir: &Path) -> io::Result<()> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            normalize_modes(&entry.path())?;
        } else {
            fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o644))?;
        }
    }
    Ok(())
}
