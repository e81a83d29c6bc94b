//! Writing a layer: a deterministic tar of some entries, compressed with
//! fixed gzip settings, or left uncompressed when that is smaller.
//!
//! Every header is made from the entry alone: ustar format, mtime
//! [`LAYER_MTIME`], uid and gid 0 with empty user and group names, mode
//! 0755 for directories and executables, 0644 for other files, 0777 for
//! symlinks, no extended attributes and no PAX records (long names use
//! the GNU long-name entry, as `tar` does). Nothing of the machine, the
//! clock, the umask or the user running the export reaches the bytes.
//!
//! gzip runs at level 6 with a zero mtime and "unknown" OS byte in its
//! header; the compressor is the one `Cargo.lock` pins, so one cairn build
//! gives one stream on every machine. Both forms are written at once and
//! the smaller is kept: a layer of already-compressed files is stored as a
//! plain tar rather than growing by gzip's framing.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use cairn_digest::{Digest, HashingWriter};
use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};
use tar::{EntryType, Header};

use crate::entries::{Entry, EntryKind};
use crate::error::ExportError;
use crate::media;
use crate::source::TreeSource;

/// The mtime of every entry: the `SOURCE_DATE_EPOCH` every build step sees.
pub const LAYER_MTIME: u64 = 0;
/// The gzip level.
pub const GZIP_LEVEL: u32 = 6;
/// gzip's "unknown" operating system, so the header does not say where it
/// was made.
const GZIP_OS_UNKNOWN: u8 = 255;

/// A layer written to a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerBlob {
    /// The blob (compressed or not): the layer's descriptor digest.
    pub digest: Digest,
    /// The uncompressed tar's digest: the config's `diff_id`.
    pub diff_id: Digest,
    /// [`media::OCI_LAYER_GZIP`] or [`media::OCI_LAYER_TAR`].
    pub media_type: &'static str,
}

/// Writes the layer of `entries` (paths placed under `root`, e.g. `""` or
/// `app`) into `dir` as a blob file named by its hex digest. Every parent
/// directory of an entry is written before it, once.
pub fn write_layer(
    source: &dyn TreeSource,
    entries: &[Entry],
    root: &str,
    dir: &Path,
) -> Result<LayerBlob, ExportError> {
    let raw_tmp = tempfile::NamedTempFile::new_in(dir).map_err(ExportError::io(dir))?;
    let gz_tmp = tempfile::NamedTempFile::new_in(dir).map_err(ExportError::io(dir))?;
    let tee = Tee {
        raw: HashingWriter::new(BufWriter::new(
            raw_tmp
                .as_file()
                .try_clone()
                .map_err(ExportError::io(dir))?,
        )),
        gz: GzBuilder::new()
            .mtime(0)
            .operating_system(GZIP_OS_UNKNOWN)
            .write(
                HashingWriter::new(BufWriter::new(
                    gz_tmp.as_file().try_clone().map_err(ExportError::io(dir))?,
                )),
                Compression::new(GZIP_LEVEL),
            ),
    };
    let mut tar = tar::Builder::new(tee);
    let mut written = BTreeSet::new();
    for entry in entries {
        let path = join(root, &entry.path);
        append_parents(&mut tar, &path, &mut written).map_err(ExportError::io(dir))?;
        if written.insert(path.clone()) {
            append(source, &mut tar, &path, &entry.kind)?;
        }
    }
    let tee = tar.into_inner().map_err(ExportError::io(dir))?;
    let (diff_id, raw) = tee.raw.finish();
    raw.into_inner()
        .map_err(|e| ExportError::io(dir)(e.into_error()))?;
    let (gz_digest, gz) = tee.gz.finish().map_err(ExportError::io(dir))?.finish();
    gz.into_inner()
        .map_err(|e| ExportError::io(dir)(e.into_error()))?;
    let (tmp, digest, media_type) = if gz_digest.size() < diff_id.size() {
        (gz_tmp, gz_digest, media::OCI_LAYER_GZIP)
    } else {
        (raw_tmp, diff_id, media::OCI_LAYER_TAR)
    };
    let dest = dir.join(digest.hex());
    tmp.persist(&dest)
        .map_err(|e| ExportError::io(&dest)(e.error))?;
    Ok(LayerBlob {
        digest,
        diff_id,
        media_type,
    })
}

/// `root` and `path` joined with `/`.
fn join(root: &str, path: &str) -> String {
    if root.is_empty() {
        path.to_owned()
    } else {
        format!("{root}/{path}")
    }
}

/// Both forms of the layer at once: the plain tar and its gzip stream.
struct Tee {
    raw: HashingWriter<BufWriter<File>>,
    gz: GzEncoder<HashingWriter<BufWriter<File>>>,
}

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.raw.write_all(buf)?;
        self.gz.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.raw.flush()?;
        self.gz.flush()
    }
}

fn header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut h = Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(LAYER_MTIME);
    h.set_uid(0);
    h.set_gid(0);
    // new_ustar leaves user and group names empty and device numbers zero.
    h
}

fn append_parents<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    written: &mut BTreeSet<String>,
) -> io::Result<()> {
    let mut end = 0;
    while let Some(i) = path[end..].find('/') {
        end += i;
        let parent = &path[..end];
        if written.insert(parent.to_owned()) {
            append_dir(tar, parent)?;
        }
        end += 1;
    }
    Ok(())
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str) -> io::Result<()> {
    let mut h = header(EntryType::Directory, 0o755, 0);
    tar.append_data(&mut h, format!("{path}/"), io::empty())
}

fn append<W: Write>(
    source: &dyn TreeSource,
    tar: &mut tar::Builder<W>,
    path: &str,
    kind: &EntryKind,
) -> Result<(), ExportError> {
    let io_err = |source| ExportError::Source {
        what: format!("entry {path}"),
        source,
    };
    match kind {
        EntryKind::Dir => append_dir(tar, path).map_err(io_err),
        EntryKind::Symlink(target) => {
            let mut h = header(EntryType::Symlink, 0o777, 0);
            tar.append_link(&mut h, path, target).map_err(io_err)
        }
        EntryKind::File { digest, executable } => {
            let mode = if *executable { 0o755 } else { 0o644 };
            let mut h = header(EntryType::Regular, mode, digest.size());
            let reader = source.open(digest).map_err(io_err)?;
            // The store verifies the bytes; the length is checked here so a
            // short read cannot shift every later header.
            let mut counted = Counted {
                inner: reader,
                left: digest.size(),
            };
            tar.append_data(&mut h, path, &mut counted)
                .map_err(io_err)?;
            if counted.left != 0 {
                return Err(io_err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("file {digest} is shorter than its size"),
                )));
            }
            Ok(())
        }
    }
}

/// A reader that yields at most `left` more bytes.
struct Counted<R> {
    inner: R,
    left: u64,
}

impl<R: io::Read> io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let max = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..max])?;
        self.left -= n as u64;
        Ok(n)
    }
}
