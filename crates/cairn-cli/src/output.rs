//! Rendering: text or `--json` on stdout, errors on stderr (one line, or
//! one JSON object with `--json`), progress bars on stderr only when it is
//! a terminal, and closed pipes ended quietly.
//!
//! **Errors.** Text: `error: <one line>`, then any detail lines (a failed
//! step's log tail, differing files) indented below it. With `--json`,
//! one line of JSON on stderr:
//!
//! ```json
//! {"error": "<the one-line message>", "details": ["…"], "exit_code": 1}
//! ```
//!
//! `details` is empty when there are none; `exit_code` is the process's
//! exit status (2 for a usage error).
//!
//! **Untrusted text.** Much of what cairn prints comes from the store, a
//! record, a release, a recipe, a server's answer or a step, and anyone
//! who can write those could put escape sequences (a clipboard write, a
//! screen rewrite) or fake lines on the user's terminal. Each command
//! escapes such values where it puts them in a line (`cairn_escape::name`
//! for ids and names, `cairn_escape::text` for free text), and every text
//! line written here passes `cairn_escape::lines` once more, so a value a
//! command forgot can at worst add an unambiguous line, never a control
//! character. `--json` keeps the raw values: JSON escapes the controls
//! itself, and `cairn_escape::json` the few it leaves raw (DEL, C1, bidi),
//! as JSON escapes that decode to the same text.
//!
//! **Closed pipes.** `cairn store ls -r | head -2` closes cairn's stdout
//! early; like other Unix tools cairn then stops without a message, with
//! the status a shell shows for a command ended by `SIGPIPE` (141).
//! Write errors on stderr (nowhere left to report them) are ignored.

use std::fmt;
use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressStyle};

/// The exit status of a command whose stdout was closed under it
/// (128 + `SIGPIPE`, as a shell reports a command the signal ended).
pub const BROKEN_PIPE_EXIT: i32 = 141;

/// Prints a command's result as JSON or as text.
pub fn emit<T: serde::Serialize>(json: bool, value: &T, text: impl FnOnce(&T) -> String) {
    if json {
        let json = serde_json::to_string_pretty(value).expect("results serialize");
        stdout_line(&cairn_escape::json(&json));
    } else {
        let text = text(value);
        if !text.is_empty() {
            stdout_line(&cairn_escape::lines(text.as_bytes()));
        }
    }
}

/// An id, name or label from outside (the store, a record, a release, a
/// server), as shown: escaped and unambiguous (`cairn_escape::name`).
pub fn name(s: &str) -> String {
    cairn_escape::name_str(s).into_owned()
}

/// Free text from outside (an error, a reason), as shown: escaped, tabs
/// and backslashes kept (`cairn_escape::text`).
pub fn free(s: &str) -> String {
    cairn_escape::text(s.as_bytes()).into_owned()
}

/// Writes one line to stdout as it is (JSON, or text already escaped); a
/// closed stdout ends the process quietly.
pub fn stdout_line(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(BROKEN_PIPE_EXIT);
        }
        // Anything else (a full disk under a redirect) is an error too.
        let _ = writeln!(std::io::stderr(), "error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// Writes one line to stderr, ignoring failure (nowhere to report it);
/// control characters but newlines are escaped (see the module's docs).
pub fn stderr_line(text: &str) {
    let text = cairn_escape::lines(text.as_bytes());
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Whether `e` (or a cause of it) is a write to a closed pipe.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// An error with lines of detail below its one-line message.
#[derive(Debug)]
pub struct Detailed {
    message: String,
    details: Vec<String>,
}

impl Detailed {
    /// `message`, then `details` one per line.
    pub fn new(message: String, details: Vec<String>) -> Self {
        Self { message, details }
    }
}

impl fmt::Display for Detailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Detailed {}

/// Reports a failed command on stderr, as text or JSON.
pub fn report_error(json: bool, e: &anyhow::Error, exit_code: i32) {
    let message = one_line(e);
    let details: &[String] = e
        .downcast_ref::<Detailed>()
        .map_or(&[], |d| d.details.as_slice());
    report(json, &message, details, exit_code);
}

/// Reports a failure given as text (a usage error), as text or JSON.
pub fn report(json: bool, message: &str, details: &[String], exit_code: i32) {
    if json {
        let value = serde_json::json!({
            "error": message,
            "details": details,
            "exit_code": exit_code,
        });
        // JSON escapes control characters itself (the rest `cairn_escape`
        // writes as JSON escapes); an escape of ours would not be JSON.
        let value = value.to_string();
        let _ = writeln!(std::io::stderr().lock(), "{}", cairn_escape::json(&value));
        return;
    }
    // Errors name paths and quote what came from outside (a step's log
    // tail, file names): nothing of it reaches the terminal raw.
    let message = cairn_escape::text(message.as_bytes());
    stderr_line(&format!("error: {message}"));
    for line in details {
        stderr_line(&format!("  {}", cairn_escape::text(line.as_bytes())));
    }
}

/// The error and its causes joined, without repeating a cause whose text
/// its parent already includes. A newline in it (a name's, or a foreign
/// error's) is kept: [`report`] shows it as `\n`, so the message stays one
/// line and a name with a newline is shown as it is.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Where log events go: stderr, each event one line whatever its fields
/// hold. The formatter escapes ESC, BEL, DEL and the C1 controls in the
/// fields (its own colours are the only raw ESC); this writer escapes the
/// rest of the C0 controls, a carriage return and a newline before the
/// event's end among them, so a logged record text cannot rewrite a line
/// or fake one (an agent logs what other members and the store wrote).
pub struct LogWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stderr().lock().write_all(&log_event(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// One formatted event as written: controls but ESC and tab escaped,
/// the final newline kept.
fn log_event(event: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let (body, end) = match event.strip_suffix(b"\n") {
        Some(body) => (body, &b"\n"[..]),
        None => (event, &b""[..]),
    };
    let raw = |b: u8| b < 0x20 && b != 0x1b && b != b'\t';
    if !body.iter().copied().any(raw) {
        return std::borrow::Cow::Borrowed(event);
    }
    let mut out = Vec::with_capacity(event.len() + 8);
    for &b in body {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b if raw(b) => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
            b => out.push(b),
        }
    }
    out.extend_from_slice(end);
    std::borrow::Cow::Owned(out)
}

/// Whether stderr may carry colours and other ANSI codes: a terminal, and
/// `NO_COLOR` unset.
pub fn colours() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A progress bar counting files and bytes, hidden unless stderr is a TTY.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar for `what` ("adding", "checking out"...), with a known total of
    /// bytes if there is one.
    pub fn new(what: &str, total_bytes: Option<u64>) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self {
                bar: ProgressBar::hidden(),
            };
        }
        let bar = match total_bytes {
            Some(total) => ProgressBar::new(total).with_style(
                ProgressStyle::with_template(
                    "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                )
                .expect("valid template"),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {msg} {bytes} {bytes_per_sec} {elapsed}")
                    .expect("valid template"),
            ),
        };
        bar.set_message(what.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        Self { bar }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl cairn_snapshot::Progress for Progress {
    fn advance(&self, _files: u64, bytes: u64) {
        self.bar.inc(bytes);
    }
}

/// A writer that escapes what passes through it line by line: a line is
/// written once its newline arrives, or, past [`Escaped::MAX_LINE`]
/// bytes, in pieces (cut before a character split by the cut).
pub struct Escaped<W: Write> {
    out: W,
    line: Vec<u8>,
}

impl<W: Write> Escaped<W> {
    /// A line longer than this is written in pieces of this size.
    const MAX_LINE: usize = 64 * 1024;

    /// Escapes what is written on its way to `out`.
    pub fn new(out: W) -> Self {
        Self {
            out,
            line: Vec::new(),
        }
    }

    /// Writes `len` bytes of the pending line, escaped.
    fn emit(&mut self, len: usize) -> std::io::Result<()> {
        let shown = cairn_escape::lines(&self.line[..len]);
        self.out.write_all(shown.as_bytes())?;
        self.line.drain(..len);
        Ok(())
    }

    /// Writes what is left (a last line without its newline) and flushes.
    pub fn finish(mut self) -> std::io::Result<()> {
        self.emit(self.line.len())?;
        self.out.flush()
    }
}

impl<W: Write> Write for Escaped<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
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
    fn flush(&mut self) -> std::io::Result<()> {
        let whole = match std::str::from_utf8(&self.line) {
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            _ => self.line.len(),
        };
        self.emit(whole)?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_event_stays_one_line_and_keeps_its_colours() {
        let event = b"\x1b[32m INFO\x1b[0m halted: bad\rok\nFAKE\x0b\tend\n";
        assert_eq!(
            &*log_event(event),
            &b"\x1b[32m INFO\x1b[0m halted: bad\\rok\\nFAKE\\x0b\tend\n"[..]
        );
        assert!(matches!(
            log_event(b"plain\tline\n"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
