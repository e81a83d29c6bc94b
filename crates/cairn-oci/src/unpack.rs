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
//! written through a link; symlink targets must stay inside the image;
//! hard links must name a regular file already unpacked; device nodes,
//! fifos and other special files are refused (a tree cannot hold them); a
//! whiteout must name one plain entry (`.wh...`, `.wh..`, `.wh.` and the
//! other `.wh..wh.` names are refused). The root directory's own entry,
//! `/` as umoci writes it, is the one absolute path accepted: a no-op. Expansion is bounded
//! ([`Limits`]): a layer may not inflate past a multiple of its compressed
//! size (beyond a floor), nor the image past a total, nor hold more than a
//! number of entries. Files keep only their executable bit; owners, times
//! and extended attributes are dropped, since trees do not record them.
//!
//! Blocking I/O; async callers use `spawn_blocking`.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tar::EntryType;

use crate::media::LayerCompression;

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

/// What has been spent of the [`Limits`] so far.
#[derive(Debug)]
pub struct Budget {
    limits: Limits,
    bytes: u64,
    entries: u64,
}

impl Budget {
    /// A fresh budget.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            bytes: 0,
            entries: 0,
        }
    }
}

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

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
    };
    let entries = tar.entries().map_err(io_at(dest))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| too_large_or(e, dest, layer_cap, total_left))?;
        budget.entries += 1;
        if budget.entries > budget.limits.entries {
            return Err(LayerError::TooLarge(format!(
                "more than {} entries",
                budget.limits.entries
            )));
        }
        applier.entry(&mut entry).map_err(|e| match e {
            LayerError::Io { source, path } => too_large_or(source, &path, layer_cap, total_left),
            other => other,
        })?;
    }
    budget.bytes += tar.into_inner().read;
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

struct Applier<'a> {
    dest: &'a Path,
    /// Paths (relative) this layer created: whiteouts leave them alone.
    created: HashSet<PathBuf>,
}

impl Applier<'_> {
    fn hostile(entry: &str, reason: impl Into<String>) -> LayerError {
        LayerError::Hostile {
            entry: entry.to_owned(),
            reason: reason.into(),
        }
    }

    fn io(path: &Path) -> impl FnOnce(io::Error) -> LayerError {
        let path = path.to_owned();
        move |source| LayerError::Io { path, source }
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), LayerError> {
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let raw_bytes = entry.path_bytes().into_owned();
        let raw = String::from_utf8(raw_bytes).map_err(|e| {
            Self::hostile(&String::from_utf8_lossy(e.as_bytes()), "path is not UTF-8")
        })?;
        // The root directory itself, as umoci writes it: nothing to do.
        if kind == EntryType::Directory && raw.trim_end_matches('/').is_empty() {
            return Ok(());
        }
        let parts = components(&raw, &raw)?;
        let Some((name, parents)) = parts.split_last() else {
            return match kind {
                EntryType::Directory => Ok(()),
                _ => Err(Self::hostile(&raw, "empty path")),
            };
        };
        let parent = self.make_parents(&raw, parents)?;
        let rel: PathBuf = parts.iter().collect();
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            return self.whiteout(&raw, &parent, parents, hidden);
        }
        let path = parent.join(name);
        match kind {
            EntryType::Directory => self.make_dir(&raw, &path, &rel),
            EntryType::Regular | EntryType::Continuous => {
                self.replace(&raw, &path, &rel)?;
                self.write_file(entry, &path)
            }
            EntryType::Symlink => {
                let target = link_name(entry, &raw)?;
                if !cairn_tree::symlink_target_stays_inside(parents.len(), &target) {
                    return Err(Self::hostile(
                        &raw,
                        format!("symlink target {target:?} points outside the image"),
                    ));
                }
                self.replace(&raw, &path, &rel)?;
                std::os::unix::fs::symlink(&target, &path).map_err(Self::io(&path))
            }
            EntryType::Link => {
                let target = link_name(entry, &raw)?;
                let source = self.hard_link_source(&raw, &target)?;
                self.replace(&raw, &path, &rel)?;
                fs::hard_link(&source, &path).map_err(Self::io(&path))
            }
            other => Err(Self::hostile(
                &raw,
                format!("entries of type {other:?} (devices, fifos, …) are not allowed"),
            )),
        }
    }

    /// Handles `.wh.NAME` in the directory `parent`.
    fn whiteout(
        &mut self,
        raw: &str,
        parent: &Path,
        parents: &[String],
        hidden: &str,
    ) -> Result<(), LayerError> {
        let rel_parent: PathBuf = parents.iter().collect();
        if format!("{WHITEOUT}{hidden}") == OPAQUE {
            for child in fs::read_dir(parent).map_err(Self::io(parent))? {
                let child = child.map_err(Self::io(parent))?;
                if !self.created.contains(&rel_parent.join(child.file_name())) {
                    remove_any(&child.path()).map_err(Self::io(&child.path()))?;
                }
            }
            return Ok(());
        }
        if hidden.starts_with(WHITEOUT) {
            return Err(Self::hostile(
                raw,
                "reserved whiteout name (only .wh..wh..opq is known)",
            ));
        }
        if cairn_tree::validate_name(hidden).is_err() {
            return Err(Self::hostile(
                raw,
                format!("whiteout of {hidden:?}, which is not a plain name"),
            ));
        }
        let rel = rel_parent.join(hidden);
        if self.created.contains(&rel) {
            return Ok(()); // a whiteout hides lower layers only
        }
        let target = parent.join(hidden);
        match fs::symlink_metadata(&target) {
            Ok(_) => remove_any(&target).map_err(Self::io(&target)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Self::io(&target)(e)),
        }
    }

    /// Walks (creating as needed) `parents` below the destination; refuses
    /// to pass through anything but a real directory.
    fn make_parents(&mut self, raw: &str, parents: &[String]) -> Result<PathBuf, LayerError> {
        let mut dir = self.dest.to_owned();
        let mut rel = PathBuf::new();
        for p in parents {
            dir.push(p);
            rel.push(p);
            match fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(Self::hostile(
                        raw,
                        format!(
                            "{} is not a directory (nothing is written through links)",
                            rel.display()
                        ),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    create_dir(&dir)?;
                    self.created.insert(rel.clone());
                }
                Err(e) => return Err(Self::io(&dir)(e)),
            }
        }
        Ok(dir)
    }

    fn make_dir(&mut self, raw: &str, path: &Path, rel: &Path) -> Result<(), LayerError> {
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => {
                self.replace(raw, path, rel)?;
                create_dir(path)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.created.insert(rel.to_owned());
                create_dir(path)
            }
            Err(e) => Err(Self::io(path)(e)),
        }
    }

    /// Clears `path` for a new entry: what a lower layer put there goes
    /// (a file may replace a directory); a directory this layer made is an
    /// error, a file it made is replaced (later entries win, as in tar).
    fn replace(&mut self, raw: &str, path: &Path, rel: &Path) -> Result<(), LayerError> {
        let fresh = self.created.insert(rel.to_owned());
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() && !fresh => Err(Self::hostile(
                raw,
                format!("{} is already a directory of this layer", rel.display()),
            )),
            Ok(_) => remove_any(path).map_err(Self::io(path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Self::io(path)(e)),
        }
    }

    fn write_file<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        path: &Path,
    ) -> Result<(), LayerError> {
        let mode = entry.header().mode().map_err(Self::io(path))?;
        let mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
        // create_new: never opens (or follows) anything already there.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .map_err(Self::io(path))?;
        io::copy(entry, &mut file).map_err(Self::io(path))?;
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(Self::io(path))
    }

    /// The file a hard link entry points at: a regular file already in the
    /// destination, reached through real directories only.
    fn hard_link_source(&self, raw: &str, target: &str) -> Result<PathBuf, LayerError> {
        let parts = components(raw, target)?;
        let mut source = self.dest.to_owned();
        for (i, p) in parts.iter().enumerate() {
            source.push(p);
            let last = i + 1 == parts.len();
            let ok = fs::symlink_metadata(&source).is_ok_and(|m| {
                if last {
                    m.is_file()
                } else {
                    m.is_dir()
                }
            });
            if !ok {
                return Err(Self::hostile(
                    raw,
                    format!("hard link target {target:?} is not a file unpacked before it"),
                ));
            }
        }
        if parts.is_empty() {
            return Err(Self::hostile(raw, "hard link with an empty target"));
        }
        Ok(source)
    }
}

fn create_dir(path: &Path) -> Result<(), LayerError> {
    fs::create_dir(path).map_err(Applier::io(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).map_err(Applier::io(path))
}

fn remove_any(path: &Path) -> io::Result<()> {
    if fs::symlink_metadata(path)?.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

/// The plain components of a path in a layer; `.` is dropped, anything
/// else that is not a valid tree name is refused.
fn components(entry: &str, path: &str) -> Result<Vec<String>, LayerError> {
    if path.starts_with('/') {
        return Err(Applier::hostile(
            entry,
            format!("path {path:?} is absolute"),
        ));
    }
    let mut parts = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                return Err(Applier::hostile(
                    entry,
                    format!("path {path:?} contains `..`"),
                ))
            }
            name => {
                cairn_tree::validate_name(name)
                    .map_err(|e| Applier::hostile(entry, e.to_string()))?;
                parts.push(name.to_owned());
            }
        }
    }
    Ok(parts)
}

fn link_name<R: Read>(entry: &tar::Entry<'_, R>, raw: &str) -> Result<String, LayerError> {
    let name = entry
        .link_name_bytes()
        .ok_or_else(|| Applier::hostile(raw, "link without a target"))?;
    String::from_utf8(name.into_owned())
        .map_err(|_| Applier::hostile(raw, "link target is not UTF-8"))
}
