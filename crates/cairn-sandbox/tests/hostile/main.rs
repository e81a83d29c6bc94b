//! A hostile step's attempts, each run in the real sandbox (as root in
//! CI, so the step gets an id of its own): every one is refused, the
//! refusal shows in the step's own output or in how it ended, and the host
//! is unchanged afterwards.
//!
//! By theme: [`caller`] (nothing of the caller reaches a step),
//! [`privileges`] (system calls, ids, setuid files, emulators), [`limits`]
//! (what a step may use up, each end named), [`core_dumps`] (a crash
//! starts nothing on the host), [`host_view`] (what of the host a step
//! sees).

#[path = "../common/mod.rs"]
mod common;

mod caller;
mod core_dumps;
mod host_view;
mod limits;
mod privileges;

use std::collections::BTreeMap;

use cairn_sandbox::{FIRST_HOST_ID, HOST_ID_SLOTS};
use common::Ran;

/// The probe's `what: result` lines as a map.
pub(crate) fn results(r: &Ran) -> BTreeMap<String, String> {
    r.stdout
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(crate) fn in_step_range(id: u32) -> bool {
    (FIRST_HOST_ID..FIRST_HOST_ID + HOST_ID_SLOTS).contains(&id)
}
