//! A running step's log: one file both stdout and stderr append to (so
//! lines interleave as on a terminal), each complete line handed to the
//! [`Reporter`] as the sandbox copies it there, and read back at the end
//! for the tail shown when a step fails. Both are escaped for a terminal
//! (`cairn-escape`): a step's escape sequences never reach the user's
//! screen raw. The file keeps the raw bytes.
//!
//! The lines are shown by the thread that waits for the step and copies
//! its output anyway (see `cairn-sandbox`'s `streams.rs`): no thread of
//! its own follows the file, so a step that prints nothing costs nothing
//! here, and a line is shown the moment it is written.
//!
//! What is shown is bounded whatever the step prints: a line longer than
//! [`MAX_SHOWN_LINE`] is cut (with the count of bytes left out), a stream
//! never holds more than that of a line in memory, and the failure's tail
//! reads only the log's last [`TAIL_WINDOW`] bytes. A step printing a
//! gigabyte without a newline would otherwise be held whole in `cairn`'s
//! memory (outside the step's memory limit) and written whole to the
//! terminal.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::Reporter;

/// Lines shown when a step fails.
pub const TAIL_LINES: usize = 20;

/// Bytes of one line shown at most, live or in the failure's tail.
pub const MAX_SHOWN_LINE: usize = 4096;

/// Bytes at the end of the log the failure's tail is taken from.
pub const TAIL_WINDOW: u64 = 64 << 10;

/// One of a step's two streams on its way to the log: the raw bytes go to
/// the file, and each line, once complete, to the [`Reporter`]. A last
/// line without a newline is shown when the stream is dropped, at the
/// step's end.
pub struct LogStream {
    file: File,
    step: Arc<str>,
    reporter: Arc<dyn Reporter>,
    line: Line,
}

impl LogStream {
    /// Appends to `file` (opened for appending), showing lines as `step`.
    pub fn new(file: File, step: Arc<str>, reporter: Arc<dyn Reporter>) -> Self {
        Self {
            file,
            step,
            reporter,
            line: Line::default(),
        }
    }

    fn show(&mut self, mut bytes: &[u8]) {
        while let Some(end) = bytes.iter().position(|b| *b == b'\n') {
            self.line.push(&bytes[..=end]);
            emit(&*self.reporter, &self.step, &std::mem::take(&mut self.line));
            bytes = &bytes[end + 1..];
        }
        self.line.push(bytes);
    }
}

impl Write for LogStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.file.write(buf)?;
        self.show(&buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for LogStream {
    fn drop(&mut self) {
        if !self.line.shown.is_empty() {
            emit(&*self.reporter, &self.step, &self.line);
        }
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
        let shown_log = dir.path().join("shown");
        let mut stream =
            LogStream::new(File::create(&shown_log).unwrap(), "s".into(), lines.clone());
        // As the sandbox writes: in chunks that split lines anywhere.
        for chunk in raw.chunks(7000) {
            stream.write_all(chunk).unwrap();
        }
        drop(stream);
        assert_eq!(std::fs::read(&shown_log).unwrap(), raw);
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
