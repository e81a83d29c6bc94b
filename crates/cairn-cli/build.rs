//! Links the `cairn` binary so that it starts fast: every command pays
//! the start, a cached build above all, and a sandboxed step's whole cost
//! is a few milliseconds.
//!
//! ## Packed relative relocations
//!
//! With `-z pack-relative-relocs` (`DT_RELR`) where the linker and C
//! library support them.
//!
//! `cairn` is a position-independent executable with about 32,000
//! relative relocations; as `RELA` entries their table is 780 KB that the
//! dynamic loader reads at every start, and every `cairn` command (a cached
//! build above all) pays that start. Packed, the table is under 10 KB. The
//! addresses stay randomized: this changes how the relocations are stored,
//! not that there are any. glibc reads `DT_RELR` from 2.36 on and the
//! binary then names `GLIBC_ABI_DT_RELR`, so an older glibc refuses it
//! loudly at load rather than misrunning it. The flag is probed with the C
//! compiler that links Rust binaries, and left out where the linker does
//! not know it.
//!
//! ## The unwinder linked in, not loaded
//!
//! Rust's standard library names `libgcc_s.so.1` for its unwinder. Loading
//! it runs its constructor, which asks the processor for its features:
//! twelve `cpuid` instructions, and under a hypervisor every `cpuid` traps
//! to it (10-20 µs each on the virtual machines we measure on, so about
//! 0.2 ms of every start). The same unwinder is in `libgcc_eh.a`, which
//! has no constructor. Where the C compiler has it, a linker script named
//! `libgcc_s.so` in a directory searched first makes `-lgcc_s` link it
//! statically; the binary then needs only the C library. Elsewhere
//! (another toolchain, a cross build) the binary links as before.

use std::io::Write;
use std::process::{Command, Stdio};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os != "linux" || env != "gnu" {
        return;
    }
    if links_with("-Wl,-z,pack-relative-relocs") {
        println!("cargo:rustc-link-arg-bin=cairn=-Wl,-z,pack-relative-relocs");
    }
    if let Some(dir) = static_unwinder() {
        println!("cargo:rustc-link-search=native={}", dir.display());
    }
}

/// A directory holding a `libgcc_s.so` linker script that links
/// `libgcc_eh.a` instead, if the C compiler has that archive.
fn static_unwinder() -> Option<std::path::PathBuf> {
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let found = Command::new(compiler)
        .arg("-print-file-name=libgcc_eh.a")
        .stderr(Stdio::null())
        .output()
        .ok()?;
    // An absent file is printed back as its bare name.
    let archive = std::path::PathBuf::from(String::from_utf8(found.stdout).ok()?.trim());
    if !found.status.success() || !archive.is_absolute() || !archive.is_file() {
        return None;
    }
    let dir = std::path::Path::new(&std::env::var_os("OUT_DIR")?).join("unwinder");
    std::fs::create_dir_all(&dir).ok()?;
    let script = format!("INPUT({})\n", archive.display());
    std::fs::write(dir.join("libgcc_s.so"), script).ok()?;
    Some(dir)
}

/// Whether the C compiler links a PIE program with `flag`, and it runs.
fn links_with(flag: &str) -> bool {
    let Some(out) = std::env::var_os("OUT_DIR") else {
        return false;
    };
    let exe = std::path::Path::new(&out).join("probe-relr");
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let child = Command::new(compiler)
        .args(["-x", "c", "-", "-pie", "-fPIE", flag, "-o"])
        .arg(&exe)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return false;
    };
    let program = b"static int x; int *p = &x; int main(void) { return *p; }\n";
    let written = child
        .stdin
        .take()
        .is_some_and(|mut stdin| stdin.write_all(program).is_ok());
    let linked = child.wait().is_ok_and(|s| s.success()) && written;
    // Cross builds cannot run the probe; they link without the flag.
    let target = std::env::var("TARGET").unwrap_or_default();
    let host = std::env::var("HOST").unwrap_or_default();
    linked && target == host && Command::new(&exe).status().is_ok_and(|s| s.success())
}
