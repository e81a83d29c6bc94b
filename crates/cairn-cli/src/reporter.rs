//! Feedback on long work: the library crates report what they do through
//! their small progress traits (`cairn_transfer::Progress` for copies,
//! `cairn_snapshot::Progress` for snapshots, `cairn_build::Reporter` for
//! builds) and never print; this module implements them for the terminal.
//!
//! On a terminal a bar (indicatif) shows bytes moved against the bytes
//! planned; elsewhere nothing is drawn. With `-v` every copy logs what it
//! moves and where (`info`), so a log says what was fetched, uploaded or
//! built.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};

use cairn_digest::Digest;
use indicatif::{ProgressBar, ProgressStyle};

/// Progress of a copy between stores (uploads, downloads, `store copy`).
pub struct Transfer {
    what: String,
    bar: ProgressBar,
    planned: AtomicU64,
}

impl Transfer {
    /// A bar for `what` ("uploading to http://…"), hidden unless stderr is
    /// a terminal.
    pub fn new(what: &str) -> Self {
        let bar = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(0).with_style(
                ProgressStyle::with_template(
                    "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                )
                .expect("valid template"),
            );
            bar.set_message(what.to_string());
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        } else {
            ProgressBar::hidden()
        };
        Self {
            what: what.to_string(),
            bar,
            planned: AtomicU64::new(0),
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl cairn_transfer::Progress for Transfer {
    fn planned(&self, total: u64, missing: u64, bytes: u64) {
        self.planned.fetch_add(bytes, Ordering::Relaxed);
        self.bar.inc_length(bytes);
        if missing > 0 {
            tracing::info!("{}: {missing} of {total} blobs, {bytes} bytes", self.what);
        } else {
            tracing::debug!("{}: all {total} blobs already there", self.what);
        }
    }

    fn copied(&self, digest: &Digest, size: u64) {
        self.bar.inc(size);
        tracing::trace!("{}: {digest:#}", self.what);
    }
}
