//! Reading a file into a temp file of the store once, hashing it on the way.
//!
//! Small files are read into a buffer, hashed and written by one thread.
//! A large file is copied by the kernel (`copy_file_range`: no trip through
//! user space, and a reflink where the file system shares blocks) while
//! this thread hashes what has been copied, read back from the temp file
//! (the page cache, just written): what is hashed is the blob's own bytes,
//! whatever happens to the source meanwhile. It is what a user would do
//! with two tools at once (`cp` and `sha256sum` side by side), without
//! reading the source twice. Where the kernel cannot copy between the two
//! files, a second thread writes what the first reads and hashes.
//!
//! Either way the temp file's writeback is started every
//! [`WRITEBACK_STEP`] bytes, after they are hashed, so the final sync finds
//! most of a large blob already on disk.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Condvar, Mutex};

use cairn_digest::{Digest, Hasher};

use crate::error::{Result, StoreError};

/// Files at least this large are copied with hashing and writing overlapped.
const PIPELINE_THRESHOLD: u64 = 8 << 20;
const CHUNK: usize = 1 << 20;
/// Bytes a large blob's writer lets accumulate before starting their
/// writeback ([`start_writeback`]).
const WRITEBACK_STEP: u64 = 16 << 20;
/// Chunks in flight between the hashing and the writing thread (memory bound).
const CHUNKS_IN_FLIGHT: usize = 8;
/// Bytes the kernel copies per `copy_file_range` call.
const KERNEL_COPY_STEP: usize = 8 << 20;

/// Copies `src` (of `len` bytes when opened) into `out` (the temp file at
/// `tmp`); returns the digest of what `out` now holds.
pub(super) fn copy_and_hash(
    src: &mut File,
    out: &mut File,
    source: &Path,
    tmp: &Path,
    len: u64,
) -> Result<Digest> {
    if len < PIPELINE_THRESHOLD {
        return copy_hashing(src, out, source, tmp, len);
    }
    match kernel_copy_then_hash(src, out, source, tmp)? {
        Some(digest) => Ok(digest),
        None => copy_pipelined(src, out, source, tmp),
    }
}

/// How far the kernel has copied, and whether it is done.
#[derive(Default)]
struct Progress {
    copied: u64,
    done: bool,
}

/// The kernel copies while this thread hashes; `None` if the kernel cannot
/// copy between these files (nothing was copied then).
fn kernel_copy_then_hash(
    src: &File,
    out: &File,
    source: &Path,
    tmp: &Path,
) -> Result<Option<Digest>> {
    let reader = File::open(tmp).map_err(|e| StoreError::io("opening", tmp, e))?;
    let progress = (Mutex::new(Progress::default()), Condvar::new());
    std::thread::scope(|scope| {
        let copier = scope.spawn(|| kernel_copy(src, out, &progress));
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; CHUNK];
        let (mut hashed, mut flushed) = (0u64, 0u64);
        loop {
            let (copied, done) = {
                let (lock, ready) = &progress;
                let mut p = lock.lock().expect("copy progress");
                while p.copied == hashed && !p.done {
                    p = ready.wait(p).expect("copy progress");
                }
                (p.copied, p.done)
            };
            while hashed < copied {
                let want = ((copied - hashed) as usize).min(CHUNK);
                let n = reader
                    .read_at(&mut buf[..want], hashed)
                    .map_err(|e| StoreError::io("reading", tmp, e))?;
                if n == 0 {
                    break; // cannot happen: the copy wrote these bytes
                }
                hasher.update(&buf[..n]);
                hashed += n as u64;
                if hashed - flushed >= WRITEBACK_STEP {
                    start_writeback(out, flushed, hashed - flushed);
                    flushed = hashed;
                }
            }
            if done && hashed >= copied {
                break;
            }
        }
        match copier.join().expect("the copying thread does not panic") {
            Ok(true) => Ok(Some(hasher.finish())),
            Ok(false) => Ok(None),
            Err(e) => Err(StoreError::io("copying", source, e)),
        }
    })
}

/// Copies all of `src` into `out` with `copy_file_range`, publishing how
/// far it got; `Ok(false)` if the kernel cannot copy between them.
fn kernel_copy(src: &File, out: &File, progress: &(Mutex<Progress>, Condvar)) -> io::Result<bool> {
    let (lock, ready) = progress;
    let finish = |supported: bool| {
        lock.lock().expect("copy progress").done = true;
        ready.notify_all();
        supported
    };
    loop {
        match rustix::fs::copy_file_range(src, None, out, None, KERNEL_COPY_STEP) {
            Ok(0) => return Ok(finish(true)),
            Ok(n) => {
                lock.lock().expect("copy progress").copied += n as u64;
                ready.notify_all();
            }
            Err(e) => {
                use rustix::io::Errno;
                let first = lock.lock().expect("copy progress").copied == 0;
                let unsupported = matches!(
                    e,
                    Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP
                );
                if first && unsupported {
                    return Ok(finish(false));
                }
                finish(true);
                return Err(e.into());
            }
        }
    }
}

fn copy_hashing(
    src: &mut File,
    out: &mut File,
    source: &Path,
    tmp: &Path,
    len: u64,
) -> Result<Digest> {
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; (len as usize).clamp(1, CHUNK) + 1];
    loop {
        let n = read_some(src, &mut buf, source)?;
        if n == 0 {
            return Ok(hasher.finish());
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| StoreError::io("writing", tmp, e))?;
    }
}

/// Starts writing `len` bytes at `offset` back to disk without waiting
/// for them. `POSIX_FADV_DONTNEED` on dirty pages starts their writeback
/// (and drops pages already clean), so the sync that makes a large blob
/// durable finds most of it on disk instead of writing all of it then:
/// the disk works while the rest of the file is still being read and
/// hashed. Advisory: a failure changes nothing but timing.
fn start_writeback(file: &File, offset: u64, len: u64) {
    let _ = rustix::fs::fadvise(
        file,
        offset,
        std::num::NonZeroU64::new(len),
        rustix::fs::Advice::DontNeed,
    );
}

fn copy_pipelined(src: &mut File, out: &mut File, source: &Path, tmp: &Path) -> Result<Digest> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(CHUNKS_IN_FLIGHT);
    let (back_tx, back_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> io::Result<()> {
            let mut written = 0u64;
            let mut flushed = 0u64;
            for chunk in rx {
                out.write_all(&chunk)?;
                written += chunk.len() as u64;
                if written - flushed >= WRITEBACK_STEP {
                    start_writeback(out, flushed, written - flushed);
                    flushed = written;
                }
                let _ = back_tx.send(chunk);
            }
            Ok(())
        });
        let mut hasher = Hasher::new();
        let read_result = loop {
            let mut buf = back_rx.try_recv().unwrap_or_else(|_| vec![0u8; CHUNK]);
            buf.resize(CHUNK, 0);
            let n = match read_some(src, &mut buf, source) {
                Ok(n) => n,
                Err(e) => break Err(e),
            };
            if n == 0 {
                break Ok(());
            }
            buf.truncate(n);
            hasher.update(&buf);
            if tx.send(buf).is_err() {
                break Ok(()); // the writer failed; its error is reported below
            }
        };
        drop(tx);
        let written = writer.join().expect("writer thread panicked");
        read_result?;
        written.map_err(|e| StoreError::io("writing", tmp, e))?;
        Ok(hasher.finish())
    })
}

fn read_some(src: &mut File, buf: &mut [u8], path: &Path) -> Result<usize> {
    loop {
        match src.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StoreError::io("reading", path, e)),
        }
    }
}
