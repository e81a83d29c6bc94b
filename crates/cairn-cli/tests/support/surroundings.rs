//! What a build's surroundings can vary, as reprotest varies them: the
//! hostname (a new UTS namespace), the umask, the user name and home, the
//! locale, the time zone, `SOURCE_DATE_EPOCH`, the clock (the monotonic
//! and boot clocks moved days ahead in a new time namespace, and the
//! source files' times with them) and the order in which the project's
//! files are created. [`PLAIN`] and [`VARIED`] are the two builds of
//! `reprotest/`.
//!
//! The wall clock (`CLOCK_REALTIME`) is the one part of the clock no
//! namespace moves (Linux's time namespaces offset only the monotonic
//! and boot clocks), and setting the machine's own clock would disturb
//! everything else running on it; the two builds run minutes apart, and
//! what reaches a step from the wall clock is pinned by the sandbox
//! (`SOURCE_DATE_EPOCH=0`, input times 1, output trees without times).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

/// In which order a project's files are created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// By path, as `ls` sorts them.
    Sorted,
    /// The reverse: the last file (and its directories) first.
    Reversed,
}

/// One build's surroundings.
#[derive(Clone, Copy, Debug)]
pub struct Surroundings {
    /// A hostname set in a new UTS namespace (`None`: the machine's own).
    pub hostname: Option<&'static str>,
    /// The umask `cairn` and the setup scripts start with.
    pub umask: &'static str,
    /// `USER` and `LOGNAME`.
    pub user: &'static str,
    /// `LANG` and `LC_ALL`.
    pub locale: &'static str,
    /// `TZ`.
    pub tz: &'static str,
    /// `SOURCE_DATE_EPOCH`.
    pub epoch: u64,
    /// How far ahead the clock is, in days: the monotonic and boot clocks
    /// of a new time namespace, and the project files' times.
    pub days_ahead: u32,
    /// The order the project's files are created in.
    pub order: Order,
}

/// The first build: the machine as it is, in a plain environment.
pub const PLAIN: Surroundings = Surroundings {
    hostname: None,
    umask: "022",
    user: "builder",
    locale: "C.UTF-8",
    tz: "UTC",
    epoch: 1_700_000_000,
    days_ahead: 0,
    order: Order::Sorted,
};

/// The second build: everything above changed.
pub const VARIED: Surroundings = Surroundings {
    hostname: Some("reprotest-elsewhere"),
    umask: "077",
    user: "someone",
    locale: "fr_FR.UTF-8",
    tz: "Pacific/Kiritimati",
    epoch: 1_700_000_000 + 10 * 86_400,
    days_ahead: 10,
    order: Order::Reversed,
};

impl Surroundings {
    /// `program`, not yet run, to be run in these surroundings with
    /// `home` as its home: nothing else of the test's environment.
    pub fn command(&self, program: &str, home: &Path) -> Command {
        std::fs::create_dir_all(home).unwrap();
        let mut script = format!("umask {} && exec \"$@\"", self.umask);
        if let Some(name) = self.hostname {
            script = format!("hostname {name} && {script}");
        }
        let mut namespaces = Vec::new();
        if self.hostname.is_some() {
            namespaces.push("--uts".to_string());
        }
        if self.days_ahead > 0 {
            let ahead = u64::from(self.days_ahead) * 86_400;
            namespaces.push("--time".to_string());
            namespaces.push(format!("--monotonic={ahead}"));
            namespaces.push(format!("--boottime={ahead}"));
        }
        let mut cmd = if namespaces.is_empty() {
            Command::new("sh")
        } else {
            let mut c = Command::new("unshare");
            c.args(&namespaces).arg("sh");
            c
        };
        cmd.args(["-c", &script, "sh", program])
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("HOME", home)
            .env("USER", self.user)
            .env("LOGNAME", self.user)
            .env("LANG", self.locale)
            .env("LC_ALL", self.locale)
            .env("TZ", self.tz)
            .env("SOURCE_DATE_EPOCH", self.epoch.to_string());
        cmd
    }

    /// The time the project's files are given: now, or days ahead.
    pub fn file_time(&self) -> SystemTime {
        SystemTime::now() + Duration::from_secs(u64::from(self.days_ahead) * 86_400)
    }
}
