//! Rendering: text or `--json` on stdout, progress bars on stderr only when
//! it is a terminal.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Prints a command's result as JSON or as text.
pub fn emit<T: serde::Serialize>(json: bool, value: &T, text: impl FnOnce(&T) -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).expect("results serialize")
        );
    } else {
        let text = text(value);
        if !text.is_empty() {
            println!("{text}");
        }
    }
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
