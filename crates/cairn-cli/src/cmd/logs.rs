//! `cairn logs SERVICE [-f]`: the service's output on this machine, from
//! the agent's state directory; and the hidden `cairn log-pump` the agent
//! starts for each service process.
//!
//! A service logs what its clients send it (a request's path, a header),
//! so its output is shown escaped (`cairn_escape::lines`: control
//! characters and bytes that are not UTF-8 made visible, lines kept); the
//! log files keep the raw bytes.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use cairn_agent::config::LogLimits;
use cairn_agent::logs::{pump as pump_lines, LogFiles, PumpSettings};
use cairn_agent::AgentConfig;

use crate::cli::{LogPumpArgs, LogsArgs};

/// Runs `cairn logs`.
pub async fn run(args: LogsArgs) -> Result<i32> {
    cairn_trust::document::validate_name("service", &args.service)?;
    let state_dir = match (&args.config, &args.state_dir) {
        (Some(file), _) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            AgentConfig::parse(file, &text)?.state_dir
        }
        (None, Some(dir)) => dir.clone(),
        (None, None) => PathBuf::from("/var/lib/cairn").join(&args.service),
    };
    let dir = state_dir.join("logs");
    if !dir.is_dir() {
        anyhow::bail!(
            "no logs for {} in {} (give the agent's --config or --state-dir)",
            args.service,
            dir.display()
        );
    }
    let files = LogFiles::new(dir, &args.service);
    let follow = args.follow;
    tokio::task::spawn_blocking(move || {
        let mut out = Escaped::new(std::io::stdout().lock());
        if follow {
            files.follow(&mut out, &|| false)?;
        } else {
            files.print(&mut out)?;
        }
        out.finish()
    })
    .await?
    .context("printing the logs")?;
    Ok(0)
}

/// Runs the hidden `cairn log-pump`: stdin to the rotated log files.
pub fn pump(args: LogPumpArgs) -> Result<i32> {
    let settings = PumpSettings {
        files: LogFiles::new(args.dir, &args.service),
        tag: args.tag,
        limits: LogLimits {
            max_bytes: args.max_bytes,
            keep: args.keep,
        },
    };
    pump_lines(std::io::stdin().lock(), &settings).context("writing the service's log")?;
    Ok(0)
}

/// A writer that escapes what passes through it line by line: a line is
/// written once its newline arrives, or, past [`Escaped::MAX_LINE`]
/// bytes, in pieces (cut before a character split by the cut).
struct Escaped<W: Write> {
    out: W,
    line: Vec<u8>,
}

impl<W: Write> Escaped<W> {
    /// A line longer than this is written in pieces of this size.
    const MAX_LINE: usize = 64 * 1024;

    fn new(out: W) -> Self {
        Self {
            out,
            line: Vec::new(),
        }
    }

    /// Writes `len` bytes of the pending line, escaped.
    fn emit(&mut self, len: usize) -> io::Result<()> {
        let shown = cairn_escape::lines(&self.line[..len]);
        self.out.write_all(shown.as_bytes())?;
        self.line.drain(..len);
        Ok(())
    }

    /// Writes what is left (a last line without its newline) and flushes.
    fn finish(mut self) -> io::Result<()> {
        self.emit(self.line.len())?;
        self.out.flush()
    }
}

impl<W: Write> Write for Escaped<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(buf);
        if let Some(end) = self.line.iter().rposition(|&b| b == b'\n') {
            self.emit(end + 1)?;
        }
        while self.line.len() > Self::MAX_LINE {
            let cut = match std::str::from_utf8(&self.line[..Self::MAX_LINE]) {
                // A character split by the cut waits for its other bytes.
                Err(e) if e.error_len().is_none() => e.valid_up_to().max(1),
                _ => Self::MAX_LINE,
            };
            self.emit(cut)?;
        }
        Ok(buf.len())
    }

    /// A follower flushes at the end of what there is for now: whole
    /// lines are out already, a partial one is written as it stands.
    fn flush(&mut self) -> io::Result<()> {
        let whole = match std::str::from_utf8(&self.line) {
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            _ => self.line.len(),
        };
        self.emit(whole)?;
        self.out.flush()
    }
}
