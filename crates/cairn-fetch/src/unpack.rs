//! Unpacking `.tar`, `.tar.gz` and `.tar.zst` archives without trusting them.
//!
//! An archive is data from outside, so every entry is checked before it is
//! written: only plain relative paths (no absolute paths, no `..`), only
//! regular files, directories, symlinks that stay inside the destination
//! and hard links to files already unpacked. Paths are walked component by
//! component from the destination without following symlinks: an entry
//! `a/x` after a symlink `a -> /tmp` is refused, not written through the
//! link. Files keep only their executable bit (0755 or 0644); owners and
//! times are ignored, since trees do not record them.
//!
//! This is blocking I/O; async callers run it in `spawn_blocking`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

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

/// Unpacks `archive` into `dest_dir` (created if missing). On error, what
/// was unpacked so far stays in `dest_dir`, which the caller discards;
/// nothing is ever written outside it.
pub fn unpack(archive: &Path, dest_dir: &Path) -> Result<(), UnpackError> {
    let ctx = Ctx {
        archive,
        dest: dest_dir,
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

    fn entry<R: Read>(&self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
            return Ok(());
        }
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
        match kind {
            EntryType::Directory => self.make_dir(&raw, &path),
            EntryType::Regular | EntryType::Continuous => {
                self.clear(&raw, &path)?;
                self.write_file(entry, &path)
            }
            EntryType::Symlink => self.symlink(entry, &raw, parents.len(), &path),
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
        depth: usize,
        path: &Path,
    ) -> Result<(), UnpackError> {
        let target = self.link_name(entry, raw)?;
        if !cairn_tree::symlink_target_stays_inside(depth, &target) {
            return Err(self.hostile(
                raw,
                format!("symlink target {target:?} points outside the archive"),
            ));
        }
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
