//! Service logs: written by a small pump process, rotated by size, read
//! by `cairn logs`.
//!
//! A service's stdout and stderr are a pipe to a *log pump*: `cairn`
//! itself, run with a hidden subcommand that calls [`pump`]. The pump is a
//! separate process, in the service's session, for the same reason the
//! service is: when the agent dies (or is upgraded) the service keeps
//! writing, and a pipe whose reader is gone would kill it with `SIGPIPE`.
//! The pump exits when the service and everything it started have closed
//! the pipe. (runit's `svlogd` and s6's `s6-log` are built the same way.)
//!
//! Files: `STATE/logs/<service>.log`, then `.1` (newest rotated) … `.N`.
//! Each line is prefixed with a tag naming the generation and process
//! (`gen2[1234] …`).
//! During a swap two pumps append to the same file: each write is whole
//! lines in one `write(2)` on an `O_APPEND` file, and rotation happens under
//! an `flock` with a re-check, so lines neither interleave nor get lost.
//!
//! A service may log secrets, so the logs are the agent's user's alone:
//! the directory is 0700, every file (current, rotated, the rotation
//! lock) 0600, and one found wider (made by an older version) is narrowed
//! before anything is written to it. A symlink planted in their place is
//! never followed.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::LogLimits;

/// Longest line kept whole; longer ones are split.
const MAX_LINE: usize = 64 << 10;

/// Where a service's logs are.
#[derive(Clone, Debug)]
pub struct LogFiles {
    dir: PathBuf,
    name: String,
}

impl LogFiles {
    /// The logs of `service` in `dir` (`STATE/logs`).
    pub fn new(dir: impl Into<PathBuf>, service: &str) -> Self {
        Self {
            dir: dir.into(),
            name: service.to_string(),
        }
    }

    /// The file being written.
    pub fn current(&self) -> PathBuf {
        self.dir.join(format!("{}.log", self.name))
    }

    fn rotated(&self, n: u32) -> PathBuf {
        self.dir.join(format!("{}.log.{n}", self.name))
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.join(format!("{}.log.lock", self.name))
    }

    /// Every file, oldest first, the current one last.
    pub fn all(&self) -> Vec<PathBuf> {
        let mut rotated: Vec<(u32, PathBuf)> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let n = name
                    .strip_prefix(&format!("{}.log.", self.name))?
                    .parse()
                    .ok()?;
                Some((n, e.path()))
            })
            .collect();
        rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
        let mut out: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
        out.push(self.current());
        out
    }

    /// Copies every file, oldest first, to `out`.
    pub fn print(&self, out: &mut dyn Write) -> io::Result<()> {
        for path in self.all() {
            match File::open(&path) {
                Ok(mut f) => {
                    io::copy(&mut f, out)?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Prints everything, then what is appended, across rotations, until
    /// `stop` says so (checked every 200 ms).
    pub fn follow(&self, out: &mut dyn Write, stop: &dyn Fn() -> bool) -> io::Result<()> {
        let all = self.all();
        for path in &all[..all.len() - 1] {
            if let Ok(mut f) = File::open(path) {
                io::copy(&mut f, out)?;
            }
        }
        let mut file: Option<(File, u64)> = None;
        loop {
            if file.is_none() {
                file = File::open(self.current())
                    .ok()
                    .and_then(|f| Some((f.try_clone().ok()?, f.metadata().ok()?.ino())));
            }
            if let Some((f, ino)) = &mut file {
                io::copy(f, out)?;
                out.flush()?;
                let now = std::fs::metadata(self.current()).map(|m| m.ino()).ok();
                if now != Some(*ino) {
                    io::copy(f, out)?; // the rest of the file just rotated away
                    file = None;
                    continue;
                }
            }
            if stop() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// What a pump writes where.
#[derive(Clone, Debug)]
pub struct PumpSettings {
    /// The files.
    pub files: LogFiles,
    /// The prefix of each line (`gen2[1234]`).
    pub tag: String,
    /// Rotation.
    pub limits: LogLimits,
}

/// Copies `input` to the log files line by line until it ends.
///
/// Writing never stops the pump: lines that cannot be written (a full
/// disk) are counted and dropped, and a note saying how many is written
/// once writing works again. A pump that exited would leave the service a
/// pipe without a reader, and its next write would kill it.
pub fn pump(mut input: impl Read, s: &PumpSettings) -> io::Result<()> {
    let _ = private_dir(&s.files.dir);
    let mut writer = Writer {
        s,
        file: append(&s.files.current()).ok(),
        dropped: 0,
    };
    let mut buf = vec![0u8; 64 << 10];
    let mut partial: Vec<u8> = Vec::new();
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        partial.extend_from_slice(&buf[..n]);
        let mut out = Vec::with_capacity(partial.len() + 64);
        let mut start = 0;
        for (i, b) in partial.iter().enumerate() {
            if *b == b'\n' || i + 1 - start >= MAX_LINE {
                line(&mut out, &s.tag, &partial[start..=i]);
                start = i + 1;
            }
        }
        partial.drain(..start);
        if !out.is_empty() {
            writer.write(&out);
        }
    }
    if !partial.is_empty() {
        let mut out = Vec::new();
        line(&mut out, &s.tag, &partial);
        writer.write(&out);
    }
    Ok(())
}

fn line(out: &mut Vec<u8>, tag: &str, text: &[u8]) {
    out.extend_from_slice(tag.as_bytes());
    out.push(b' ');
    out.extend_from_slice(text);
    if text.last() != Some(&b'\n') {
        out.push(b'\n');
    }
}

struct Writer<'a> {
    s: &'a PumpSettings,
    file: Option<File>,
    /// Lines dropped since the last successful write.
    dropped: u64,
}

impl Writer<'_> {
    /// Writes whole lines; on failure counts them as dropped.
    fn write(&mut self, bytes: &[u8]) {
        if self.try_write(bytes).is_err() {
            self.dropped += bytes.iter().filter(|b| **b == b'\n').count() as u64;
            self.file = None;
        }
    }

    fn try_write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.reopen_if_needed()?;
        let file = self.file.as_mut().expect("opened above");
        if self.dropped > 0 {
            let note = format!(
                "{} [{} lines dropped: the log could not be written]\n",
                self.s.tag, self.dropped
            );
            file.write_all(note.as_bytes())?;
            self.dropped = 0;
        }
        file.write_all(bytes)?;
        if file.stream_position()? >= self.s.limits.max_bytes {
            self.rotate()?;
        }
        Ok(())
    }

    /// (Re)opens the current file if there is none, or if another pump
    /// rotated it away.
    fn reopen_if_needed(&mut self) -> io::Result<()> {
        let ours = match &self.file {
            Some(f) => Some(f.metadata()?.ino()),
            None => None,
        };
        let path = std::fs::metadata(self.s.files.current())
            .map(|m| m.ino())
            .ok();
        if ours.is_none() || path != ours {
            let _ = private_dir(&self.s.files.dir);
            self.file = Some(append(&self.s.files.current())?);
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let files = &self.s.files;
        let lock = private_file(&files.lock_path(), false)?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)?;
        let ours = match &self.file {
            Some(f) => f.metadata()?.ino(),
            None => return Ok(()),
        };
        let path = std::fs::metadata(files.current()).map(|m| m.ino()).ok();
        if path == Some(ours) {
            let keep = self.s.limits.keep;
            let _ = std::fs::remove_file(files.rotated(keep.max(1)));
            for n in (1..keep).rev() {
                let _ = std::fs::rename(files.rotated(n), files.rotated(n + 1));
            }
            if keep == 0 {
                std::fs::remove_file(files.current())?;
            } else {
                std::fs::rename(files.current(), files.rotated(1))?;
            }
        }
        self.file = Some(append(&files.current())?);
        Ok(())
    }
}

/// Mode of the log directory.
pub const DIR_MODE: u32 = 0o700;

/// Mode of every log file.
pub const FILE_MODE: u32 = 0o600;

fn append(path: &Path) -> io::Result<File> {
    private_file(path, true)
}

/// Opens (creating) `path` for writing, the owner's alone: created 0600,
/// narrowed to 0600 if it was wider, never through a symlink.
fn private_file(path: &Path, append: bool) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .mode(FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    narrow(&file.metadata()?, |p| file.set_permissions(p), FILE_MODE)?;
    Ok(file)
}

/// Makes the log directory (0700), or narrows it to 0700.
fn private_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    narrow(&meta, |p| std::fs::set_permissions(dir, p), DIR_MODE)
}

/// Sets `mode` when the permissions of what `meta` describes grant group
/// or others anything.
fn narrow(
    meta: &std::fs::Metadata,
    set: impl FnOnce(std::fs::Permissions) -> io::Result<()>,
    mode: u32,
) -> io::Result<()> {
    if meta.mode() & 0o077 != 0 {
        set(std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path, tag: &str, max_bytes: u64, keep: u32) -> PumpSettings {
        PumpSettings {
            files: LogFiles::new(dir, "hello"),
            tag: tag.into(),
            limits: LogLimits { max_bytes, keep },
        }
    }

    #[test]
    fn lines_are_tagged_and_a_last_partial_line_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path(), "v1[7]", 1 << 20, 2);
        pump(&b"one\ntwo\nthree"[..], &s).unwrap();
        let text = std::fs::read_to_string(s.files.current()).unwrap();
        assert_eq!(text, "v1[7] one\nv1[7] two\nv1[7] three\n");
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn the_logs_are_the_owners_alone_rotated_ones_too() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("logs");
        let s = settings(&dir, "t", 100, 2);
        for round in 0..3 {
            let input: String = (0..10).map(|i| format!("secret {round}{i:02}\n")).collect();
            pump(input.as_bytes(), &s).unwrap();
        }
        let all = s.files.all();
        assert_eq!(all.len(), 3, "{all:?}");
        assert_eq!(mode(&dir), 0o700);
        for f in all.iter().chain([&s.files.lock_path()]) {
            assert_eq!(mode(f), 0o600, "{}", f.display());
        }
    }

    #[test]
    fn logs_left_wider_by_an_older_agent_are_narrowed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("logs");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let s = settings(&dir, "t", 1 << 20, 2);
        std::fs::write(s.files.current(), b"old\n").unwrap();
        std::fs::set_permissions(s.files.current(), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        pump(&b"new\n"[..], &s).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&s.files.current()), 0o600);
        let text = std::fs::read_to_string(s.files.current()).unwrap();
        assert_eq!(text, "old\nt new\n");
    }

    #[test]
    fn a_symlink_planted_as_the_log_file_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("logs");
        std::fs::create_dir(&dir).unwrap();
        let target = tmp.path().join("elsewhere");
        std::fs::write(&target, b"").unwrap();
        let s = settings(&dir, "t", 1 << 20, 2);
        std::os::unix::fs::symlink(&target, s.files.current()).unwrap();
        pump(&b"secret\n"[..], &s).unwrap();
        assert_eq!(
            std::fs::read(&target).unwrap(),
            b"",
            "written through the link"
        );
    }

    #[test]
    fn files_rotate_by_size_and_only_keep_so_many() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path(), "t", 100, 2);
        let input: String = (0..100).map(|i| format!("line {i:03}\n")).collect();
        // Read in small pieces, as a pipe delivers them.
        struct Slow<'a>(&'a [u8]);
        impl Read for Slow<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(buf.len()).min(30);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        pump(Slow(input.as_bytes()), &s).unwrap();
        let all = s.files.all();
        assert_eq!(all.len(), 3, "current + 2 kept: {all:?}");
        let mut printed = Vec::new();
        s.files.print(&mut printed).unwrap();
        let text = String::from_utf8(printed).unwrap();
        assert!(text.ends_with("t line 099\n"), "{text}");
        let numbers: Vec<u32> = text
            .lines()
            .map(|l| l.trim_start_matches("t line ").parse().unwrap())
            .collect();
        assert!(
            numbers.windows(2).all(|w| w[1] == w[0] + 1),
            "in order: {numbers:?}"
        );
    }
}
