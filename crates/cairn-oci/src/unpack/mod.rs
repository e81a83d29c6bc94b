//! Applying image layers to a directory, in order, without trusting them.
//!
//! A layer is a tar whose entries are added over the layers below it, with
//! *whiteouts* removing what lower layers put there (image spec,
//! "Representing Changes"): `.wh.NAME` deletes `NAME` beside it, and
//! `.wh..wh..opq` empties its directory of everything lower layers put in
//! it. Both act only on lower layers: what this layer itself adds stays.
//!
//! Every entry is checked before anything is written, with the rules
//! `cairn-fetch` applies to archives and more: paths are plain relative
//! names (no `..`, nothing absolute, UTF-8, valid tree names); parents are
//! walked from the destination without following symlinks, so nothing is
//! written through a link; symlinks must stay inside the image, resolved through
//! the image's other symlinks (`cairn_tree::LinkTree`: `a/b/l -> ../..` and
//! `up -> a/b/l/..` escape together);
//! hard links must name a regular file already unpacked; device nodes,
//! fifos and other special files are refused (a tree cannot hold them); a
//! whiteout must name one plain entry (`.wh...`, `.wh..`, `.wh.` and the
//! other `.wh..wh.` names are refused). The root directory's own entry,
//! `/` as umoci writes it, is the one absolute path accepted: a no-op. Expansion is bounded
//! ([`Limits`]): a layer may not inflate past a multiple of its compressed
//! size (beyond a floor), nor the image past a total, nor hold more than a
//! number of entries; the files a layer's hard links name count against
//! the same bounds (each link is a file of its own once the root is a
//! tree, and materializing it copies each). Files keep only their executable bit; owners, times
//! and extended attributes are dropped, since trees do not record them.
//!
//! Blocking I/O; async callers use `spawn_blocking`.

mod entry;

use std::collections::HashSet;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::media::LayerCompression;
use entry::Applier;

/// Bounds on what layers may expand to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of tar all layers together may inflate to.
    pub total_bytes: u64,
    /// A layer may inflate to `ratio` times its compressed size …
    pub ratio: u64,
    /// … or to this many bytes, whichever is more.
    pub ratio_floor: u64,
    /// Entries all layers together may hold.
    pub entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            total_bytes: 32 << 30,
            ratio: 100,
            ratio_floor: 256 << 20,
            entries: 2_000_000,
        }
    }
}

/// Why a layer was refused or could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// An entry that could escape the destination or is of a refused kind.
    #[error("refusing entry {entry:?}: {reason}")]
    Hostile {
        /// The entry's path as written in the layer.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The layer inflates past a limit.
    #[error("{0}")]
    TooLarge(String),
    /// Reading the layer or writing the destination failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file being read or written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// What has been spent of the [`Limits`] so far, and the symlinks the
/// layers applied so far have left (to judge escapes through each other).
#[derive(Debug)]
pub struct Budget {
    limits: Limits,
    bytes: u64,
    entries: u64,
    links: cairn_tree::LinkTree,
}

impl Budget {
    /// A fresh budget.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            bytes: 0,
            entries: 0,
            links: cairn_tree::LinkTree::new(),
        }
    }
}

/// Applies one layer (its blob bytes, compressed as `compression` says,
/// `compressed_size` long) over `dest`.
pub fn apply_layer(
    blob: impl Read,
    compression: LayerCompression,
    compressed_size: u64,
    dest: &Path,
    budget: &mut Budget,
) -> Result<(), LayerError> {
    let io_at = |path: &Path| {
        let path = path.to_owned();
        move |source| LayerError::Io { path, source }
    };
    let inflated: Box<dyn Read> = match compression {
        LayerCompression::None => Box::new(blob),
        LayerCompression::Gzip => Box::new(flate2::read::GzDecoder::new(blob)),
        LayerCompression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(blob).map_err(io_at(dest))?)
        }
    };
    let layer_cap = budget
        .limits
        .ratio
        .saturating_mul(compressed_size)
        .max(budget.limits.ratio_floor);
    let total_left = budget.limits.total_bytes.saturating_sub(budget.bytes);
    let capped = Capped {
        inner: PaddedEnd {
            inner: inflated,
            read: 0,
            trailer: None,
        },
        left: layer_cap.min(total_left),
        read: 0,
    };
    let mut tar = tar::Archive::new(capped);
    let mut applier = Applier {
        dest,
        created: HashSet::new(),
        links: &mut budget.links,
        linked: 0,
    };
    let entries = tar.entries().map_err(io_at(dest))?;
    let mut count = budget.entries;
    for entry in entries {
        let mut entry = entry.map_err(|e| too_large_or(e, dest, layer_cap, total_left))?;
        count += 1;
        if count > budget.limits.entries {
            return Err(LayerError::TooLarge(format!(
                "more than {} entries",
                budget.limits.entries
            )));
        }
        applier.entry(&mut entry).map_err(|e| match e {
            LayerError::Io { source, path } => too_large_or(source, &path, layer_cap, total_left),
            other => other,
        })?;
        // A hard link inflates the tree by its target's size; counted
        // against the same bounds as the tar's bytes.
        if applier.linked > layer_cap.min(total_left) {
            return Err(LayerError::TooLarge(format!(
                "the layer's hard links name more than {} bytes of files (at most {}x its compressed size, or {} bytes left of the image's limit)",
                layer_cap.min(total_left),
                layer_cap,
                total_left
            )));
        }
    }
    // A link that stayed inside when it was written may escape through a
    // link written after it (`up -> a/l/..` before `a/l -> ..`).
    if let Some(escape) = applier.links.first_escape() {
        return Err(LayerError::Hostile {
            entry: escape.path,
            reason: format!(
                "symlink target {:?} leads outside the image through the image's other symlinks",
                escape.target
            ),
        });
    }
    budget.entries = count;
    budget.bytes += tar.into_inner().read.saturating_add(applier.linked);
    Ok(())
}

/// Turns the cap's error into [`LayerError::TooLarge`], others into I/O.
fn too_large_or(e: io::Error, path: &Path, layer_cap: u64, total_left: u64) -> LayerError {
    if e.get_ref().is_some_and(|i| i.is::<CapExceeded>()) {
        return LayerError::TooLarge(format!(
            "the layer inflates past {} bytes (at most {}x its compressed size, or {} bytes left of the image's limit)",
            layer_cap.min(total_left),
            layer_cap,
            total_left
        ));
    }
    LayerError::Io {
        path: path.to_owned(),
        source: e,
    }
}

/// A tar stream that may end without its padding and end-of-archive
/// blocks (umoci writes such layers; Go's tar reader, and so every
/// container runtime, accepts them): at the inner end, zeros up to the
/// next 512-byte boundary and two more blocks, which is exactly the
/// trailer a complete tar has.
struct PaddedEnd<R> {
    inner: R,
    read: u64,
    trailer: Option<u64>,
}

impl<R: Read> Read for PaddedEnd<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.trailer.is_none() {
            let n = self.inner.read(buf)?;
            if n > 0 || buf.is_empty() {
                self.read += n as u64;
                return Ok(n);
            }
            self.trailer = Some((512 - self.read % 512) % 512 + 1024);
        }
        let left = self.trailer.as_mut().expect("set above");
        let n = buf.len().min(*left as usize);
        buf[..n].fill(0);
        *left -= n as u64;
        Ok(n)
    }
}

/// The marker error of an exceeded cap.
#[derive(Debug)]
struct CapExceeded;

impl std::fmt::Display for CapExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("layer expansion limit exceeded")
    }
}

impl std::error::Error for CapExceeded {}

/// A reader that fails once more than `left` bytes have passed.
struct Capped<R> {
    inner: R,
    left: u64,
    read: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            return Err(io::Error::other(CapExceeded));
        }
        self.left -= n as u64;
        self.read += n as u64;
        Ok(n)
    }
}
