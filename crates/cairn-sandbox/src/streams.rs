//! The step's stdout and stderr: pipes the executor copies into the
//! caller's writers, counting the bytes against `limits.log_bytes`.
//!
//! A step never holds a descriptor of a host file. Handed the caller's log
//! file itself, it could `fallocate` gigabytes of the host disk at once,
//! drop `O_APPEND` and write at a terabyte offset, truncate what was
//! logged, or simply print without end: the file lives on the host, where
//! neither `/out`'s nor `/tmp`'s size applies. A pipe admits only writes,
//! and the executor stops the step when it has written more than its log
//! limit (as Nix's `max-log-size`). The copy is done by the thread that
//! waits for the step anyway (`poll` on the pipes and the pidfd together),
//! so a step that prints nothing costs two `pipe2` calls. The writers are
//! the caller's: a log file, or one that also shows the lines as they come
//! (the build's), with no thread of its own following the file.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use rustix::pipe::{pipe_with, PipeFlags};

/// Bytes read from a pipe at once (the pipe's default capacity).
const CHUNK: usize = 64 << 10;

/// The read ends of the step's stdout and stderr, and where they go.
pub(crate) struct Streams {
    streams: [Stream; 2],
    written: u64,
    limit: Option<u64>,
    buf: Vec<u8>,
}

struct Stream {
    /// `None` once the pipe reached end of file (every writer is gone).
    read: Option<OwnedFd>,
    sink: Box<dyn Write>,
}

/// What a copy found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Copied {
    /// All there was (for now) is copied.
    Within,
    /// The step wrote more than its limit; what fit is copied.
    OverLimit,
}

impl Streams {
    /// Pipes for `stdout` and `stderr`; returns them with the write ends
    /// the step gets as its fd 1 and 2.
    pub(crate) fn new(
        stdout: Box<dyn Write>,
        stderr: Box<dyn Write>,
        limit: Option<u64>,
    ) -> io::Result<(Self, [OwnedFd; 2])> {
        let (out_r, out_w) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        let (err_r, err_w) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        // The step's ends block, as a terminal or file would.
        for w in [&out_w, &err_w] {
            rustix::fs::fcntl_setfl(w, rustix::fs::OFlags::empty())?;
        }
        let stream = |read, sink| Stream {
            read: Some(read),
            sink,
        };
        let streams = Streams {
            streams: [stream(out_r, stdout), stream(err_r, stderr)],
            written: 0,
            limit,
            buf: Vec::new(),
        };
        Ok((streams, [out_w, err_w]))
    }

    /// The raw descriptors to `poll` for input (`-1`: a closed stream,
    /// which `poll` skips).
    pub(crate) fn poll_fds(&self) -> [i32; 2] {
        self.streams
            .each_ref()
            .map(|s| s.read.as_ref().map_or(-1, AsRawFd::as_raw_fd))
    }

    /// Copies whatever the pipes hold now, without blocking, a chunk of
    /// each in turn (so the two streams keep their order in a shared log
    /// as closely as they can).
    pub(crate) fn copy_available(&mut self) -> Copied {
        if self.buf.is_empty() {
            self.buf = vec![0; CHUNK];
        }
        loop {
            let mut more = false;
            for i in 0..self.streams.len() {
                match self.copy_chunk(i) {
                    Chunk::Copied => more = true,
                    Chunk::Empty => {}
                    Chunk::OverLimit => return Copied::OverLimit,
                }
            }
            if !more {
                return Copied::Within;
            }
        }
    }

    /// Copies at most one chunk of stream `i`.
    fn copy_chunk(&mut self, i: usize) -> Chunk {
        let stream = &mut self.streams[i];
        let Some(read) = &stream.read else {
            return Chunk::Empty;
        };
        let n = loop {
            match rustix::io::read(read, &mut self.buf[..]) {
                Ok(0) => {
                    stream.read = None;
                    return Chunk::Empty;
                }
                Ok(n) => break n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return Chunk::Empty, // EAGAIN: all there is.
            }
        };
        let room = self.limit.map_or(u64::MAX, |l| l - self.written);
        let keep = n.min(usize::try_from(room).unwrap_or(usize::MAX));
        if let Err(e) = stream.sink.write_all(&self.buf[..keep]) {
            tracing::warn!(error = %e, "cannot write the step's output; dropping it");
        }
        self.written += keep as u64;
        if keep < n {
            Chunk::OverLimit
        } else {
            Chunk::Copied
        }
    }
}

/// What one read of a stream found.
enum Chunk {
    Copied,
    Empty,
    OverLimit,
}
