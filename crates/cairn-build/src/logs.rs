//! A running step's log: one file both stdout and stderr append to (so
//! lines interleave as on a terminal), tailed live by a thread that hands
//! each complete line to the [`Reporter`], and read back at the end for the
//! tail shown when a step fails. Both are escaped for a terminal
//! (`cairn-escape`): a step's escape sequences never reach the user's
//! screen raw. The file keeps the raw bytes.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::BuildError;
use crate::Reporter;

/// Lines shown when a step fails.
pub const TAIL_LINES: usize = 20;

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
    let mut line = Vec::new();
    loop {
        // Read the flag first: after it is set, one more pass drains the file.
        let stopping = stop.load(Ordering::Acquire);
        loop {
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) if line.ends_with(b"\n") => {
                    emit(reporter, step, &line);
                    line.clear();
                }
                Ok(_) => {} // a partial line: wait for the rest
            }
        }
        if stopping {
            if !line.is_empty() {
                emit(reporter, step, &line);
            }
            return;
        }
        // `finish` unparks us; a token left by an early unpark is not lost.
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

fn emit(reporter: &dyn Reporter, step: &str, line: &[u8]) {
    reporter.log_line(step, &cairn_escape::text(trim_line_end(line)));
}

/// `line` without its `\n` or `\r\n`.
fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The last `n` lines of a log, escaped for a terminal.
pub fn last_lines(path: &Path, n: usize) -> Vec<String> {
    let mut bytes = Vec::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_end(&mut bytes);
    }
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    if bytes.is_empty() {
        return vec![];
    }
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    let start = lines.len().saturating_sub(n);
    lines[start..]
        .iter()
        .map(|l| cairn_escape::text(trim_line_end(l)).into_owned())
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
}
