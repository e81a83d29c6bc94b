//! Steps for another platform: run under QEMU user emulation.
//!
//! A step with `platform = "linux/arm64"` on an amd64 machine runs its
//! programs through `qemu-aarch64-static` taken from the step's `emulator`
//! input (mounted at [`EMULATOR_MOUNT`]): a pinned store tree, part of the
//! action like any input, so the emulator is as reproducible as the rest
//! and the host's binfmt_misc configuration is neither needed nor changed.
//! The command line becomes `EMULATOR_MOUNT/qemu-ARCH-static PROGRAM ARGS…`
//! (the same for services and exec probes). QEMU emulates that one
//! program: a foreign program that starts other foreign programs (a shell
//! running a script) needs binfmt_misc, which the sandbox does not set up,
//! so a foreign step runs one program. The platform itself is a property
//! of the action (`cairn.platform`), so the cache never confuses
//! architectures. A step whose platform is the host's runs natively.

use cairn_recipe::{Platform, Step, EMULATOR_MOUNT};

/// The step's platform, if it is not this machine's.
pub fn foreign(step: &Step) -> Option<Platform> {
    step.platform.filter(|p| Some(*p) != Platform::host())
}

/// The emulator's file name for `platform` (`qemu-aarch64-static`).
pub fn emulator_file(platform: Platform) -> String {
    format!("qemu-{}-static", platform.qemu_arch())
}

/// `argv` as the sandbox runs it for `step`: through the emulator for a
/// foreign platform, as is otherwise.
pub fn argv(step: &Step, argv: &[String]) -> Vec<String> {
    match foreign(step) {
        Some(p) => std::iter::once(format!("{EMULATOR_MOUNT}/{}", emulator_file(p)))
            .chain(argv.iter().cloned())
            .collect(),
        None => argv.to_vec(),
    }
}
