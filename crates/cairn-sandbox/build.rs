//! Compiles the system-call filter (`src/filter/refused.rs`) into one
//! seccomp-bpf program for the target's architecture, with libseccomp, and
//! writes it as a Rust array the crate includes.
//!
//! Why at build time, and why libseccomp:
//!
//! * Installing a filter costs the kernel a pass of the program for every
//!   system call number (it precomputes which calls the filter always
//!   allows, so that those never run it). A program that compares the
//!   number with each refused call in turn makes that pass long: the 605
//!   instructions of the earlier, linear programs took about 0.4 ms to
//!   install, a tenth of a step that runs `/bin/true`. libseccomp lays the
//!   numbers out as a binary tree (`set_ctl_optimize(2)`), so each call is
//!   decided in a handful of comparisons.
//! * libseccomp knows every architecture's call numbers, x32's included,
//!   and how each handles them; nothing is hand-written BPF.
//! * The program is a constant: compiling it at build time costs a step
//!   nothing, and the `cairn` binary does not link libseccomp (only this
//!   build script does).

use std::fmt::Write as _;
use std::path::PathBuf;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};

include!("src/filter/refused.rs");

/// `EPERM` and `ENOSYS` on every architecture below (asm-generic's).
const EPERM: i32 = 1;
const ENOSYS: i32 = 38;

fn main() {
    println!("cargo:rerun-if-changed=src/filter/refused.rs");
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets the target");
    // x32 shares x86-64's kernel entry: its calls are filtered by their own
    // numbers. 32-bit x86 (`int 0x80`) is another architecture, which the
    // filter kills.
    let arches: &[ScmpArch] = match target.as_str() {
        "x86_64" => &[ScmpArch::X8664, ScmpArch::X32],
        "aarch64" => &[ScmpArch::Aarch64],
        "riscv64" => &[ScmpArch::Riscv64],
        other => panic!("no system-call filter for architecture {other}"),
    };
    let program = compile(arches).unwrap_or_else(|e| panic!("compiling the filter: {e}"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("filter.rs"), render(&program)).expect("writing the filter");
}

fn compile(arches: &[ScmpArch]) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let mut filter = ScmpFilterContext::new(ScmpAction::Allow)?;
    for arch in arches {
        if !filter.is_arch_present(*arch)? {
            filter.add_arch(*arch)?;
        }
    }
    let native = ScmpArch::native();
    if !arches.contains(&native) {
        filter.remove_arch(native)?;
    }
    filter.set_act_badarch(ScmpAction::KillProcess)?;
    filter.set_ctl_optimize(2)?;
    for refused in REFUSED {
        let action = ScmpAction::Errno(match refused.refusal {
            Refusal::Eperm => EPERM,
            Refusal::Enosys => ENOSYS,
        });
        // Named in the build machine's numbering; libseccomp translates the
        // name into each architecture's, and leaves the call out of those
        // that lack it.
        let call = ScmpSyscall::from_name(refused.name)
            .map_err(|e| format!("system call `{}`: {e}", refused.name))?;
        match refused.when {
            When::Always => {
                filter.add_rule(action, call)?;
            }
            When::FlagSet(arg, bits) => {
                let cmp = ScmpArgCompare::new(arg, ScmpCompareOp::MaskedEqual(bits), bits);
                filter.add_rule_conditional(action, call, &[cmp])?;
            }
            When::Resource(arg, value, set) => {
                // The kernel reads the resource as an `unsigned int`: the
                // upper half of the register must not let a call by.
                let low = ScmpCompareOp::MaskedEqual(0xFFFF_FFFF);
                let mut cmps = vec![ScmpArgCompare::new(arg, low, value)];
                if let Some(set) = set {
                    cmps.push(ScmpArgCompare::new(set, ScmpCompareOp::NotEqual, 0));
                }
                filter.add_rule_conditional(action, call, &cmps)?;
            }
            When::LowDword(arg, values) => {
                for value in values {
                    let low = ScmpCompareOp::MaskedEqual(0xFFFF_FFFF);
                    let cmp = ScmpArgCompare::new(arg, low, *value);
                    filter.add_rule_conditional(action, call, &[cmp])?;
                }
            }
        }
    }
    let path =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("filter.bpf");
    filter.export_bpf(&std::fs::File::create(&path)?)?;
    Ok(std::fs::read(&path)?)
}

/// The program as a Rust array of `libc::sock_filter` (eight bytes each:
/// code, jt, jf, k, in the target's byte order, which is the build
/// machine's for every architecture above).
fn render(program: &[u8]) -> String {
    assert!(
        program.len().is_multiple_of(8) && !program.is_empty(),
        "libseccomp wrote {} bytes, not a whole program",
        program.len()
    );
    let mut s = String::from(
        "/// The system-call filter, compiled by `build.rs` with libseccomp.\n\
         pub(crate) static PROGRAM: &[libc::sock_filter] = &[\n",
    );
    for insn in program.chunks_exact(8) {
        let code = u16::from_ne_bytes([insn[0], insn[1]]);
        let k = u32::from_ne_bytes([insn[4], insn[5], insn[6], insn[7]]);
        let _ = writeln!(
            s,
            "    libc::sock_filter {{ code: {code:#06x}, jt: {}, jf: {}, k: {k:#010x} }},",
            insn[2], insn[3]
        );
    }
    s.push_str("];\n");
    s
}
