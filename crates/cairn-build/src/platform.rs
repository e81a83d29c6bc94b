//! Steps for another platform: run under QEMU user emulation.
//!
//! A step with `platform = "linux/arm64"` on an amd64 machine runs its
//! programs through `qemu-aarch64-static` taken from the step's `emulator`
//! input (mounted at [`EMULATOR_MOUNT`]): a pinned store tree, part of the
//! action like any input, so the emulator is as reproducible as the rest
//! and the host's binfmt_misc configuration is neither needed nor changed.
//! The command line becomes `EMULATOR_MOUNT/qemu-ARCH-static PROGRAM ARGS…`
//! (the same for services and exec probes), and the emulator is also
//! registered with the binfmt_misc of the sandbox's own user namespace
//! ([`cairn_sandbox::Emulator`], Linux 6.7 and later), so the foreign
//! programs that program starts (a shell running a script, `go test`
//! running a test binary) run under it too; on older kernels only the
//! first one does. The platform itself is a property of the action
//! (`cairn.platform`), so the cache never confuses architectures. A step
//! whose platform is the host's runs natively.

use std::path::PathBuf;

use cairn_recipe::{Platform, Step, EMULATOR_MOUNT};
use cairn_sandbox::Emulator;

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

/// The emulator the sandbox registers for `step`'s foreign programs.
pub fn emulator(step: &Step) -> Option<Emulator> {
    foreign(step).map(|p| Emulator {
        name: format!("cairn-{}", p.qemu_arch()),
        magic: p.elf_magic().to_vec(),
        mask: p.elf_mask().to_vec(),
        interpreter: PathBuf::from(format!("{EMULATOR_MOUNT}/{}", emulator_file(p))),
    })
}
