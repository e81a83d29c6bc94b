//! A running step's log: one file both stdout and stderr append to (so
//! lines interleave as on a terminal), tailed live by a thread that hands
//! each complete line to the [`Reporter`], and read back at the end for the
//! tail shown when a step fails. Both are escaped for a terminal
//! (`cairn-escape`): a step's escape sequences never reach the user's
//! screen raw. The file keeps the raw bytes.
//!
//! What is shown is bounded whatever the step prints: a line longer than
//! [`MAX_SHOWN_LINE`] is cut (with the count of bytes left out), the live
//! tail never holds more than that of a line in memory, and the failure's
//! tail reads only the log's last [`TAIL_WINDOW`] bytes. A step printing a
//! gigabyte without a newline would otherwise be held whole in `cairn`'s
//! memory (outside the step's memory limit) and written whole to the
//! terminal.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::BuildError;
use crate::Reporter;

/// Lines shown when a step fails.
pub const TAIL_LINES: usize = 20;

/// Bytes of one line shown at most, live or in the failure's tail.
pub const MAX_SHOWN_LINE: usize = 4096;

/// Bytes at the end of the log the failure's tail is taken from.
pub const TAIL_WINDOW: u64 = 64 << 10;

/// A thread following a log file until told to stop.
pub struct Tail {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Tail {
    /// Follows `path` (already created), reporting lines as `step`.
    pub fn follow(
        path: &Path,
        step: &str,
        reporter: Arc<dyn Reporter>,
    ) -> Result<Self, BuildError> {
        let file = File::open(path).map_err(|e| BuildError::io("opening", path, e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, step) = (stop.clone(), step.to_owned());
        let thread = std::thread::spawn(move || follow(file, &stop2, &step, &*reporter));
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Reports what is left in the file and stops (at once: the thread is
    /// woken rather than left to finish its nap).
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

fn follow(file: File, stop: &AtomicBool, step: &str, reporter: &dyn Reporter) {
    let mut reader = BufReader::new(file);
    let mut line = Line::default();
    loop {
        // Read the flag first: after it is set, one more pass drains the file.
        let stopping = stop.load(Ordering::Acquire);
        loop {
            let buf = match reader.fill_buf() {
                Ok([]) | Err(_) => break,
                Ok(buf) => buf,
            };
            let (taken, complete) = match buf.iter().position(|b| *b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            line.push(&buf[..taken]);
            reader.consume(taken);
            if complete {
                emit(reporter, step, &line);
                line = Line::default();
            }
        }
        if stopping {
            if !line.shown.is_empty() {
                emit(reporter, step, &line);
            }
            return;
        }
        // `finish` unparks us; a token left by an early unpark is not lost.
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

/// A line being read: its first [`MAX_SHOWN_LINE`] bytes, and how many
/// more it had.
#[derive(Default)]
struct Line {
    shown: Vec<u8>,
    left_out: u64,
}

impl Line {
    fn push(&mut self, bytes: &[u8]) {
        let room = MAX_SHOWN_LINE.saturating_sub(self.shown.len());
        let kept = bytes.len().min(room);
        self.shown.extend_from_slice(&bytes[..kept]);
        self.left_out += (bytes.len() - kept) as u64;
    }

    /// The line escaped for a terminal, cut where it was.
    fn show(&self) -> String {
        let text = cairn_escape::text(trim_line_end(&self.shown));
        match self.left_out {
            0 => text.into_owned(),
            n => format!("{text}… ({n} more bytes in the log)"),
        }
    }
}

fn emit(reporter: &dyn Reporter, step: &str, line: &Line) {
    reporter.log_line(step, &line.show());
}

/// `line` without its `\n` or `\r\n`.
fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The last `n` lines of a log, escaped for a terminal (from its last
/// [`TAIL_WINDOW`] bytes, each cut at [`MAX_SHOWN_LINE`]).
pub fn last_lines(path: &Path, n: usize) -> Vec<String> {
    let mut bytes = Vec::new();
    let mut cut_start = false;
    if let Ok(mut f) = File::open(path) {
        let len = f.metadata().map_or(0, |m| m.len());
        if len > TAIL_WINDOW && f.seek(SeekFrom::Start(len - TAIL_WINDOW)).is_ok() {
            cut_start = true;
        }
        let _ = f.take(TAIL_WINDOW).read_to_end(&mut bytes);
    }
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    if bytes.is_empty() {
        return vec![];
    }
    let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    // The window's first line may be the end of a longer one: shown only
    // when it is all there is, marked as begun earlier.
    if cut_start && lines.len() > 1 {
        lines.remove(0);
        cut_start = false;
    }
    let start = lines.len().saturating_sub(n);
    lines[start..]
        .iter()
        .map(|l| {
            let mut line = Line::default();
            line.push(l);
            match cut_start {
                true => format!("…{}", line.show()),
                false => line.show(),
            }
        })
        .collect()
}

/// Where a failed step's log is kept: `<cache>/logs/<step>-<action hex>.log`.
pub fn kept_log_path(cache_dir: &Path, step: &str, action_hex: &str) -> PathBuf {
    cache_dir
        .join("logs")
        .join(format!("{step}-{action_hex}.log"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_is_escaped_and_the_file_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let raw = b"one\r\n\x1b]0;title\x07two\n\x1b[2Jthree\xff";
        std::fs::write(&log, raw).unwrap();
        assert_eq!(
            last_lines(&log, 2),
            ["\\x1b]0;title\\x07two", "\\x1b[2Jthree\\xff"]
        );
        assert_eq!(last_lines(&log, 5)[0], "one");
        assert_eq!(std::fs::read(&log).unwrap(), raw);
    }

    #[test]
    fn a_line_without_end_is_cut_live_and_in_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let mut raw = b"first\n".to_vec();
        raw.extend(std::iter::repeat_n(b'a', 300_000));
        std::fs::write(&log, &raw).unwrap();
        let tail = last_lines(&log, 5);
        assert_eq!(tail.len(), 1);
        let shown = "a".repeat(MAX_SHOWN_LINE);
        let more = 65536 - MAX_SHOWN_LINE;
        assert_eq!(tail[0], format!("…{shown}… ({more} more bytes in the log)"));

        struct Lines(std::sync::Mutex<Vec<String>>);
        impl Reporter for Lines {
            fn log_line(&self, _step: &str, line: &str) {
                self.0.lock().unwrap().push(line.to_owned());
            }
        }
        let lines = Arc::new(Lines(Default::default()));
        Tail::follow(&log, "s", lines.clone()).unwrap().finish();
        let got = lines.0.lock().unwrap().clone();
        let more = 300_000 - MAX_SHOWN_LINE;
        assert_eq!(
            got,
            [
                "first".to_owned(),
                format!("{shown}… ({more} more bytes in the log)")
            ]
        );
    }
}
