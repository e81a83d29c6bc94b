//! Links the `cairn` binary with packed relative relocations
//! (`-z pack-relative-relocs`, `DT_RELR`) where the linker and C library
//! support them.
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
