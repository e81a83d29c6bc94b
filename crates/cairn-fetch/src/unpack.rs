//! Unpacking `.tar`, `.tar.gz` and `.tar.zst` archives without trusting them.
//!
//! An archive is data from outside, so every entry is checked before it is
//! written: only plain relative paths (no absolute paths, no `..`), only
//! regular files, directories, symlinks and hard links to files already
//! unpacked. Paths are walked component by component from the destination
//! without following symlinks: an entry `a/x` after a symlink `a -> /tmp`
//! is refused, not written through the link. Once every entry is in, each
//! symlink is resolved through the others (`cairn_tree::LinkTree`); one
//! that leads outside refuses the archive, naming it. Files keep only their
//! executable bit (0755 or 0644); owners and times are ignored, since trees
//! do not record them.
//!
//! What an archive may unpack to is bounded ([`UnpackLimits`]): the files'
//! total size, that size against the archive's own (a small archive that
//! expands a thousandfold is a decompression bomb) and the number of
//! entries. Each file's size is checked before a byte of it is written. A
//! hard link counts as its target's size again: once snapshotted, each
//! path is a file of its own in the tree, and materializing the tree for a
//! step copies every one of them, so a thousand links to a large file are
//! a thousand large files.
//!
//! This is blocking I/O; async callers run it in `spawn_blocking`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use cairn_tree::LinkTree;
use tar::EntryType;

/// Why an archive could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// Not a tar, gzip or zstd file.
    #[error("{}: not a .tar, .tar.gz or .tar.zst archive", archive.display())]
    UnknownFormat {
        /// The archive.
        archive: PathBuf,
    },
    /// An entry that could write outside the destination, or of a refused
    /// kind (device, fifo, …).
    #[error("{}: refusing entry {entry:?}: {reason}", archive.display())]
    Hostile {
        /// The archive.
        archive: PathBuf,
        /// The entry's path as written in the archive.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The archive unpacks to more than a limit allows.
    #[error("{}: refusing entry {entry:?}: {reason}", archive.display())]
    TooLarge {
        /// The archive.
        archive: PathBuf,
        /// The entry that went over.
        entry: String,
        /// Which limit, with its value.
        reason: String,
    },
    /// Reading the archive or writing the destination failed.
    #[error("{}: unpacking into {}: {source}", archive.display(), path.display())]
    Io {
        /// The archive.
        archive: PathBuf,
        /// The file being read or written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const TAR_MAGIC: &[u8] = b"ustar";
const TAR_MAGIC_OFFSET: usize = 257;

/// Bounds on what one archive may unpack to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// The files' sizes added up, in bytes (default 16 GiB).
    pub max_bytes: u64,
    /// Unpacked bytes per byte of the archive file, once past
    /// [`RATIO_FLOOR`] (default 200; source tarballs compress 3–10×).
    pub max_ratio: u64,
    /// Entries of any kind (default 1,000,000).
    pub max_entries: u64,
}

/// Unpacked bytes below which the expansion ratio is not checked: a tiny
/// archive of a few small files may well expand a hundredfold.
pub const RATIO_FLOOR: u64 = 64 << 20;

impl Default for UnpackLimits {
    fn default() -> Self {
        Self {
            max_bytes: 16 << 30,
            max_ratio: 200,
            max_entries: 1_000_000,
        }
    }
}

/// Unpacks `archive` into `dest_dir` (created if missing) within the
/// default [`UnpackLimits`].
pub fn unpack(archive: &Path, dest_dir: &Path) -> Result<(), UnpackError> {
    unpack_with(archive, dest_dir, &UnpackLimits::default())
}

/// Unpacks `archive` into `dest_dir` (created if missing) within `limits`.
/// On error, what was unpacked so far stays in `dest_dir`, which the caller
/// discards; nothing is ever written outside it.
pub fn unpack_with(
    archive: &Path,
    dest_dir: &Path,
    limits: &UnpackLimits,
) -> Result<(), UnpackError> {
    let archive_len = std::fs::metadata(archive).map(|m| m.len()).unwrap_or(0);
    let ctx = Ctx {
        archive,
        dest: dest_dir,
        limits: *limits,
        archive_len,
        links: std::cell::RefCell::new(LinkTree::new()),
        written: std::cell::Cell::new(0),
        entries: std::cell::Cell::new(0),
    };
    fs::create_dir_all(dest_dir).map_err(ctx.io(dest_dir))?;
    let mut file = File::open(archive).map_err(ctx.io(archive))?;
    let mut head = [0u8; TAR_MAGIC_OFFSET + 5];
    let n = read_up_to(&mut file, &mut head).map_err(ctx.io(archive))?;
    file.seek(SeekFrom::Start(0)).map_err(ctx.io(archive))?;
    let head = &head[..n];
    let reader: Box<dyn Read> = if head.starts_with(GZIP_MAGIC) {
        Box::new(flate2::read::GzDecoder::new(BufReader::new(file)))
    } else if head.starts_with(ZSTD_MAGIC) {
        Box::new(zstd::stream::read::Decoder::new(file).map_err(ctx.io(archive))?)
    } else if head.get(TAR_MAGIC_OFFSET..) == Some(TAR_MAGIC) {
        Box::new(BufReader::new(file))
    } else {
        return Err(UnpackError::UnknownFormat {
            archive: archive.to_owned(),
        });
    };
    let mut tar = tar::Archive::new(reader);
    for entry in tar.entries().map_err(ctx.io(archive))? {
        let mut entry = entry.map_err(ctx.io(archive))?;
        ctx.entry(&mut entry)?;
    }
    if let Some(escape) = ctx.links.borrow().first_escape() {
        return Err(ctx.hostile(
            &escape.path,
            format!(
                "symlink target {:?} leads outside the archive (resolved through its other symlinks)",
                escape.target
            ),
        ));
    }
    Ok(())
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

struct Ctx<'a> {
    archive: &'a Path,
    dest: &'a Path,
    limits: UnpackLimits,
    archive_len: u64,
    /// Every symlink unpacked so far, by path.
    links: std::cell::RefCell<LinkTree>,
    /// File bytes written so far.
    written: std::cell::Cell<u64>,
    entries: std::cell::Cell<u64>,
}

impl Ctx<'_> {
    fn io(&self, path: &Path) -> impl FnOnce(io::Error) -> UnpackError {
        let (archive, path) = (self.archive.to_owned(), path.to_owned());
        move |source| UnpackError::Io {
            archive,
            path,
            source,
        }
    }

    fn hostile(&self, entry: &str, reason: impl Into<String>) -> UnpackError {
        UnpackError::Hostile {
            archive: self.archive.to_owned(),
            entry: entry.to_owned(),
            reason: reason.into(),
        }
    }

    fn too_large(&self, entry: &str, reason: String) -> UnpackError {
        UnpackError::TooLarge {
            archive: self.archive.to_owned(),
            entry: entry.to_owned(),
            reason,
        }
    }

    /// Counts an entry and `bytes` more of file content against the limits.
    fn account(&self, entry: &str, bytes: u64) -> Result<(), UnpackError> {
        let l = &self.limits;
        let entries = self.entries.get() + 1;
        if entries > l.max_entries {
            let reason = format!("the archive has more than {} entries", l.max_entries);
            return Err(self.too_large(entry, reason));
        }
        self.entries.set(entries);
        let total = self.written.get().saturating_add(bytes);
        if total > l.max_bytes {
            let reason = format!(
                "its files add up to more than {} bytes (the unpacking limit)",
                l.max_bytes
            );
            return Err(self.too_large(entry, reason));
        }
        if total > RATIO_FLOOR && total > self.archive_len.saturating_mul(l.max_ratio) {
            let reason = format!(
                "it expands to more than {} times the archive's {} bytes (a decompression bomb?)",
                l.max_ratio, self.archive_len
            );
            return Err(self.too_large(entry, reason));
        }
        self.written.set(total);
        Ok(())
    }

    fn entry<R: Read>(&self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
            return Ok(());
        }
        let size = match kind {
            EntryType::Regular | EntryType::Continuous => entry.size(),
            EntryType::Link => self.linked_size(entry),
            _ => 0,
        };
        self.account(&raw, size)?;
        let parts = self.components(&raw, &raw)?;
        if parts.is_empty() {
            return match kind {
                EntryType::Directory => Ok(()),
                _ => Err(self.hostile(&raw, "empty path")),
            };
        }
        let (name, parents) = parts.split_last().expect("not empty");
        let parent = self.make_parents(&raw, parents)?;
        let path = parent.join(name);
        let rel = parts.join("/");
        if kind == EntryType::Symlink {
            let target = self.link_name(entry, &raw)?;
            let mut links = self.links.borrow_mut();
            links.insert(&rel, &target);
            // Refused at once if it leads outside through what is in so
            // far; later entries can still change that, hence the check
            // of the whole tree at the end.
            if links.resolve(&rel) == cairn_tree::Resolution::Escapes {
                return Err(self.hostile(
                    &raw,
                    format!("symlink target {target:?} points outside the archive"),
                ));
            }
        } else {
            self.links.borrow_mut().remove(&rel);
        }
        match kind {
            EntryType::Directory => self.make_dir(&raw, &path),
            EntryType::Regular | EntryType::Continuous => {
                self.clear(&raw, &path)?;
                self.write_file(entry, &path)
            }
            EntryType::Symlink => self.symlink(entry, &raw, &path),
            EntryType::Link => self.hard_link(entry, &raw, &path),
            other => Err(self.hostile(&raw, format!("entries of type {other:?} are not allowed"))),
        }
    }

    /// The plain components of an archive path; `.` is dropped, anything
    /// else that is not a normal name is refused.
    fn components(&self, entry: &str, path: &str) -> Result<Vec<String>, UnpackError> {
        let mut parts = Vec::new();
        for c in Path::new(path).components() {
            match c {
                Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
                Component::CurDir => {}
                Component::ParentDir => {
                    return Err(self.hostile(entry, format!("path {path:?} contains `..`")))
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(self.hostile(entry, format!("path {path:?} is absolute")))
                }
            }
        }
        Ok(parts)
    }

    /// Walks (creating as needed) the directories `parents` below the
    /// destination; refuses to pass through anything but a real directory.
    fn make_parents(&self, entry: &str, parents: &[String]) -> Result<PathBuf, UnpackError> {
        let mut dir = self.dest.to_owned();
        for p in parents {
            dir.push(p);
            self.make_dir(entry, &dir)?;
        }
        Ok(dir)
    }

    fn make_dir(&self, entry: &str, path: &Path) -> Result<(), UnpackError> {
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(self.hostile(
                entry,
                format!("{} exists and is not a directory", self.rel(path)),
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(path).map_err(self.io(path))?;
                fs::set_permissions(path, fs::Permissions::from_mode(0o755)).map_err(self.io(path))
            }
            Err(e) => Err(self.io(path)(e)),
        }
    }

    /// Removes a file or symlink an earlier entry left at `path` (later
    /// entries win, as in tar); a directory there is an error.
    fn clear(&self, entry: &str, path: &Path) -> Result<(), UnpackError> {
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => {
                Err(self.hostile(entry, format!("{} is already a directory", self.rel(path))))
            }
            Ok(_) => fs::remove_file(path).map_err(self.io(path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io(path)(e)),
        }
    }

    fn write_file<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        path: &Path,
    ) -> Result<(), UnpackError> {
        let executable = entry.header().mode().map_err(self.io(self.archive))? & 0o111 != 0;
        let mode = if executable { 0o755 } else { 0o644 };
        // create_new: never opens (or follows) anything already there.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .map_err(self.io(path))?;
        io::copy(entry, &mut file).map_err(self.io(path))?;
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(self.io(path))
    }

    fn symlink<R: Read>(
        &self,
        entry: &tar::Entry<'_, R>,
        raw: &str,
        path: &Path,
    ) -> Result<(), UnpackError> {
        let target = self.link_name(entry, raw)?;
        self.clear(raw, path)?;
        std::os::unix::fs::symlink(&target, path).map_err(self.io(path))
    }

    fn hard_link<R: Read>(
        &self,
        entry: &tar::Entry<'_, R>,
        raw: &str,
        path: &Path,
    ) -> Result<(), UnpackError> {
        let target = self.link_name(entry, raw)?;
        let parts = self.components(raw, &target)?;
        let mut source = self.dest.to_owned();
        for (i, p) in parts.iter().enumerate() {
            source.push(p);
            let meta = fs::symlink_metadata(&source).ok();
            let ok = meta.is_some_and(|m| {
                if i + 1 == parts.len() {
                    m.is_file()
                } else {
                    m.is_dir()
                }
            });
            if !ok {
                let msg = format!("hard link target {target:?} is not a file unpacked before it");
                return Err(self.hostile(raw, msg));
            }
        }
        if parts.is_empty() {
            return Err(self.hostile(raw, "hard link with an empty target"));
        }
        self.clear(raw, path)?;
        fs::hard_link(&source, path).map_err(self.io(path))
    }

    /// The size of the file a hard link entry names, if it is one already
    /// unpacked (else 0: [`Self::hard_link`] refuses the entry).
    fn linked_size<R: Read>(&self, entry: &tar::Entry<'_, R>) -> u64 {
        let Some(target) = entry.link_name_bytes() else {
            return 0;
        };
        let target = String::from_utf8_lossy(&target);
        let Ok(parts) = self.components(&target, &target) else {
            return 0;
        };
        let path = parts.iter().fold(self.dest.to_owned(), |p, c| p.join(c));
        fs::symlink_metadata(path)
            .ok()
            .filter(|m| m.is_file())
            .map_or(0, |m| m.len())
    }

    fn link_name<R: Read>(
        &self,
        entry: &tar::Entry<'_, R>,
        raw: &str,
    ) -> Result<String, UnpackError> {
        let name = entry
            .link_name_bytes()
            .ok_or_else(|| self.hostile(raw, "link without a target"))?;
        Ok(String::from_utf8_lossy(&name).into_owned())
    }

    fn rel(&self, path: &Path) -> String {
        path.strip_prefix(self.dest)
            .unwrap_or(path)
            .display()
            .to_string()
    }
}
