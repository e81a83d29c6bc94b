//! `platform = "linux/arm64"`: the platforms a step can be for, and what
//! running one under a user-mode emulator needs to know about it.
//!
//! Names follow the OCI image spec (`os/arch[/variant]`), with the GNU
//! architecture names accepted as aliases (`linux/aarch64` is
//! `linux/arm64`, `linux/x86_64` is `linux/amd64`), so a matrix over Zig or
//! Rust target triples can write `platform = "linux/${matrix.arch}"`. The
//! ELF magic and mask are the ones QEMU's `qemu-binfmt-conf.sh` registers:
//! they match executables and shared objects (`e_type` 2 or 3) of that
//! machine.

use std::fmt;

/// A platform a step can be for. Only Linux: the sandbox is Linux.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Platform {
    /// `linux/amd64` (x86-64).
    LinuxAmd64,
    /// `linux/arm64` (AArch64).
    LinuxArm64,
    /// `linux/arm/v7` (32-bit ARM, hard float).
    LinuxArmV7,
    /// `linux/riscv64`.
    LinuxRiscv64,
}

/// Every platform, for messages.
pub const PLATFORMS: [&str; 4] = [
    "linux/amd64",
    "linux/arm64",
    "linux/arm/v7",
    "linux/riscv64",
];

const ELF64: [u8; 7] = [0x7f, b'E', b'L', b'F', 2, 1, 1];
const ELF32: [u8; 7] = [0x7f, b'E', b'L', b'F', 1, 1, 1];

impl Platform {
    /// Parses an OCI platform name or one of its aliases.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "linux/amd64" | "linux/x86_64" => Self::LinuxAmd64,
            "linux/arm64" | "linux/arm64/v8" | "linux/aarch64" => Self::LinuxArm64,
            "linux/arm/v7" | "linux/armv7" | "linux/arm" => Self::LinuxArmV7,
            "linux/riscv64" => Self::LinuxRiscv64,
            _ => return None,
        })
    }

    /// The canonical name, e.g. `linux/arm64`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LinuxAmd64 => "linux/amd64",
            Self::LinuxArm64 => "linux/arm64",
            Self::LinuxArmV7 => "linux/arm/v7",
            Self::LinuxRiscv64 => "linux/riscv64",
        }
    }

    /// QEMU's name for the architecture: the emulator is
    /// `qemu-<this>-static` (`aarch64`, `x86_64`, `arm`, `riscv64`).
    pub fn qemu_arch(self) -> &'static str {
        match self {
            Self::LinuxAmd64 => "x86_64",
            Self::LinuxArm64 => "aarch64",
            Self::LinuxArmV7 => "arm",
            Self::LinuxRiscv64 => "riscv64",
        }
    }

    /// The platform of the machine this program was built for, if it is one.
    pub fn host() -> Option<Self> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Self::LinuxAmd64),
            "aarch64" => Some(Self::LinuxArm64),
            "arm" => Some(Self::LinuxArmV7),
            "riscv64" => Some(Self::LinuxRiscv64),
            _ => None,
        }
    }

    /// The first 20 bytes of this platform's ELF executables (ident,
    /// `e_type`, `e_machine`), as binfmt_misc matches them with
    /// [`Self::elf_mask`].
    pub fn elf_magic(self) -> [u8; 20] {
        let (ident, machine) = match self {
            Self::LinuxAmd64 => (ELF64, 0x3e),
            Self::LinuxArm64 => (ELF64, 0xb7),
            Self::LinuxArmV7 => (ELF32, 0x28),
            Self::LinuxRiscv64 => (ELF64, 0xf3),
        };
        let mut m = [0u8; 20];
        m[..7].copy_from_slice(&ident);
        m[16] = 2; // ET_EXEC; the mask lets ET_DYN (3) match too
        m[18] = machine;
        m
    }

    /// Which bits of [`Self::elf_magic`] must match: everything but the OS
    /// ABI byte, the padding, and the low bit of `e_type`.
    pub fn elf_mask(self) -> [u8; 20] {
        let mut m = [0xff; 20];
        m[7] = 0;
        m[16] = 0xfe;
        if self == Self::LinuxAmd64 {
            // qemu-binfmt-conf.sh also ignores the low bits of class and data.
            m[5] = 0xfe;
            m[6] = 0xfe;
        }
        m
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases() {
        for name in PLATFORMS {
            assert_eq!(Platform::parse(name).unwrap().as_str(), name);
        }
        assert_eq!(Platform::parse("linux/aarch64"), Some(Platform::LinuxArm64));
        assert_eq!(Platform::parse("linux/x86_64"), Some(Platform::LinuxAmd64));
        assert_eq!(Platform::parse("windows/amd64"), None);
    }

    #[test]
    fn the_aarch64_magic_is_qemus() {
        let p = Platform::LinuxArm64;
        let magic = b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00";
        let mask =
            b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff";
        assert_eq!(&p.elf_magic(), magic);
        assert_eq!(&p.elf_mask(), mask);
    }
}
