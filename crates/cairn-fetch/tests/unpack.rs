//! `unpack` of generated `.tar`, `.tar.gz` and `.tar.zst` archives, and
//! refusal of hostile ones without writing outside the destination.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use cairn_fetch::{unpack, unpack_with, UnpackError, UnpackLimits};
use tar::{EntryType, Header};

const APP: &[u8] = b"#!/bin/sh\necho hello\n";
const README: &[u8] = b"read me\n";

/// One archive entry with its name and link target written raw, so tests
/// can build entries the `tar` builder would refuse.
struct Entry<'a> {
    kind: EntryType,
    name: &'a str,
    link: &'a str,
    data: &'a [u8],
    mode: u32,
}

const fn file<'a>(name: &'a str, data: &'a [u8], mode: u32) -> Entry<'a> {
    Entry {
        kind: EntryType::Regular,
        name,
        link: "",
        data,
        mode,
    }
}

const fn link<'a>(kind: EntryType, name: &'a str, target: &'a str) -> Entry<'a> {
    Entry {
        kind,
        name,
        link: target,
        data: b"",
        mode: 0o777,
    }
}

fn tar_bytes(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = Header::new_gnu();
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..e.name.len()].copy_from_slice(e.name.as_bytes());
        gnu.linkname[..e.link.len()].copy_from_slice(e.link.as_bytes());
        h.set_entry_type(e.kind);
        h.set_size(e.data.len() as u64);
        h.set_mode(e.mode);
        h.set_cksum();
        b.append(&h, e.data).unwrap();
    }
    b.into_inner().unwrap()
}

fn good_entries() -> Vec<Entry<'static>> {
    vec![
        Entry {
            kind: EntryType::Directory,
            name: "bin/",
            link: "",
            data: b"",
            mode: 0o700,
        },
        file("bin/app", APP, 0o700),
        file("./README", README, 0o600),
        link(EntryType::Symlink, "bin/latest", "app"),
        link(EntryType::Symlink, "bin/readme", "../README"),
        link(EntryType::Link, "share/hello", "README"),
    ]
}

/// A scratch directory holding the archive, `dest/` and an `outside/`
/// that must stay empty.
struct Scratch {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        fs::create_dir(root.join("outside")).unwrap();
        Self { _dir: dir, root }
    }

    fn unpack(&self, name: &str, bytes: &[u8]) -> Result<(), UnpackError> {
        let archive = self.root.join(name);
        fs::write(&archive, bytes).unwrap();
        unpack(&archive, &self.dest())
    }

    fn dest(&self) -> PathBuf {
        self.root.join("dest")
    }

    fn assert_outside_untouched(&self) {
        assert_eq!(fs::read_dir(self.root.join("outside")).unwrap().count(), 0);
        for e in fs::read_dir(&self.root).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            assert!(
                ["outside", "dest"].contains(&name.as_str()) || name.starts_with("a."),
                "{name}"
            );
        }
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn check_good(dest: &Path) {
    assert_eq!(fs::read(dest.join("bin/app")).unwrap(), APP);
    assert_eq!(mode(&dest.join("bin/app")), 0o755);
    assert_eq!(mode(&dest.join("README")), 0o644);
    assert_eq!(
        fs::read_link(dest.join("bin/latest")).unwrap(),
        Path::new("app")
    );
    assert_eq!(fs::read(dest.join("bin/readme")).unwrap(), README);
    assert_eq!(fs::read(dest.join("share/hello")).unwrap(), README);
}

#[test]
fn unpacks_tar() {
    let s = Scratch::new();
    s.unpack("a.tar", &tar_bytes(&good_entries())).unwrap();
    check_good(&s.dest());
}

#[test]
fn unpacks_tar_gz() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar_bytes(&good_entries())).unwrap();
    let s = Scratch::new();
    s.unpack("a.tgz", &gz.finish().unwrap()).unwrap();
    check_good(&s.dest());
}

#[test]
fn unpacks_tar_zst() {
    let zst = zstd::encode_all(&tar_bytes(&good_entries())[..], 3).unwrap();
    let s = Scratch::new();
    s.unpack("a.tar.zst", &zst).unwrap();
    check_good(&s.dest());
}

#[test]
fn unknown_format() {
    let err = Scratch::new()
        .unpack("a.zip", b"PK\x03\x04 not a tar")
        .unwrap_err();
    assert!(matches!(err, UnpackError::UnknownFormat { .. }), "{err}");
}

/// Unpacks `entries` and expects a refusal naming `entry`.
fn refused(entries: &[Entry<'_>], entry: &str, reason: &str) {
    let s = Scratch::new();
    let err = s.unpack("a.tar", &tar_bytes(entries)).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(&err, UnpackError::Hostile { entry: e, .. } if e == entry),
        "{text}"
    );
    // (`entry` is the archive path or, for a symlink found escaping only
    // once all are in, its path in the tree.)
    assert!(text.contains(reason), "{text}");
    s.assert_outside_untouched();
}

#[test]
fn refuses_parent_dir() {
    refused(
        &[file("../outside/evil", b"x", 0o644)],
        "../outside/evil",
        "contains `..`",
    );
    refused(
        &[file("a/../../outside/evil", b"x", 0o644)],
        "a/../../outside/evil",
        "`..`",
    );
}

#[test]
fn refuses_absolute_path() {
    refused(
        &[file("/abs/evil", b"x", 0o644)],
        "/abs/evil",
        "is absolute",
    );
}

#[test]
fn refuses_symlink_escape_then_write_through() {
    let outside = "../outside";
    refused(
        &[
            link(EntryType::Symlink, "a", "/tmp"),
            file("a/x", b"x", 0o644),
        ],
        "a",
        "points outside",
    );
    refused(
        &[
            link(EntryType::Symlink, "a", outside),
            file("a/evil", b"x", 0o644),
        ],
        "a",
        "points outside",
    );
    refused(
        &[link(EntryType::Symlink, "d/a", "../../outside")],
        "d/a",
        "points outside",
    );
}

#[test]
fn refuses_a_symlink_escaping_through_another() {
    // Each target alone stays inside; `up` followed through `l` does not.
    let entries = [
        link(EntryType::Symlink, "a/b/c/l", "../../.."),
        link(EntryType::Symlink, "up", "a/b/c/l/../../.."),
    ];
    refused(&entries, "up", "points outside");
    // The same links in the other order: `up` first (then dangling, so
    // lexically inside), `l` after; the whole tree is checked at the end.
    let entries = [
        link(EntryType::Symlink, "up", "a/b/c/l/../../.."),
        link(EntryType::Symlink, "a/b/c/l", "../../.."),
    ];
    refused(&entries, "up", "leads outside the archive");
}

#[test]
fn unpacking_stops_at_its_limits_before_writing() {
    let s = Scratch::new();
    let archive = s.root.join("a.tar");
    // A header claiming 2 GiB of content, with none behind it.
    let mut h = Header::new_gnu();
    h.set_path("big").unwrap();
    h.set_size(2 << 30);
    h.set_mode(0o644);
    h.set_cksum();
    let mut bytes = h.as_bytes().to_vec();
    bytes.extend_from_slice(&[0u8; 1024]);
    fs::write(&archive, &bytes).unwrap();
    let limits = UnpackLimits {
        max_bytes: 1 << 30,
        ..UnpackLimits::default()
    };
    let err = unpack_with(&archive, &s.dest(), &limits).unwrap_err();
    assert!(
        matches!(&err, UnpackError::TooLarge { entry, .. } if entry == "big"),
        "{err}"
    );
    assert!(err.to_string().contains("1073741824 bytes"), "{err}");
    assert!(!s.dest().join("big").exists());

    // A decompression bomb: 80 MiB of zeros in a few KiB of zstd.
    let zeros = vec![0u8; 80 << 20];
    let tar = tar_bytes(&[file("zeros", &zeros, 0o644)]);
    let zst = zstd::encode_all(&tar[..], 19).unwrap();
    assert!(zst.len() < (80 << 20) / 200, "{}", zst.len());
    let err = s.unpack("a.tar.zst", &zst).unwrap_err();
    assert!(err.to_string().contains("decompression bomb"), "{err}");
    assert!(!s.dest().join("zeros").exists());

    // Entries are counted too.
    let limits = UnpackLimits {
        max_entries: 2,
        ..UnpackLimits::default()
    };
    fs::write(&archive, tar_bytes(&good_entries())).unwrap();
    let err = unpack_with(&archive, &s.root.join("a.second"), &limits).unwrap_err();
    assert!(err.to_string().contains("more than 2 entries"), "{err}");
    s.assert_outside_untouched();
}

#[test]
fn refuses_writing_through_an_inside_symlink() {
    let entries = [
        Entry {
            kind: EntryType::Directory,
            name: "sub",
            link: "",
            data: b"",
            mode: 0o755,
        },
        link(EntryType::Symlink, "a", "sub"),
        file("a/x", b"x", 0o644),
    ];
    refused(&entries, "a/x", "not a directory");
}

#[test]
fn refuses_hard_link_outside() {
    refused(
        &[link(EntryType::Link, "h", "../outside/x")],
        "h",
        "contains `..`",
    );
    refused(
        &[link(EntryType::Link, "h", "/etc/passwd")],
        "h",
        "is absolute",
    );
    refused(
        &[link(EntryType::Link, "h", "missing")],
        "h",
        "not a file unpacked before it",
    );
}

#[test]
fn refuses_devices_and_fifos() {
    refused(&[link(EntryType::Char, "null", "")], "null", "not allowed");
    refused(&[link(EntryType::Fifo, "pipe", "")], "pipe", "not allowed");
}

#[test]
fn hard_links_count_as_their_target_s_size() {
    let s = Scratch::new();
    // One 1 MiB file and twenty links to it: twenty-one files of 1 MiB
    // once snapshotted and materialized, in an archive of about 1 MiB.
    let big = vec![7u8; 1 << 20];
    let names: Vec<String> = (0..20).map(|i| format!("link{i}")).collect();
    let mut entries = vec![file("big", &big, 0o644)];
    entries.extend(names.iter().map(|n| link(EntryType::Link, n, "big")));
    let archive = s.root.join("a.tar");
    fs::write(&archive, tar_bytes(&entries)).unwrap();
    let limits = UnpackLimits {
        max_bytes: 8 << 20,
        ..UnpackLimits::default()
    };
    let err = unpack_with(&archive, &s.dest(), &limits).unwrap_err();
    assert!(
        matches!(&err, UnpackError::TooLarge { entry, .. } if entry == "link7"),
        "{err}"
    );
    assert!(err.to_string().contains("more than 8388608 bytes"), "{err}");
    assert!(!s.dest().join("link7").exists(), "refused before linking");
    s.assert_outside_untouched();
    // Within the limit, the same archive unpacks.
    let limits = UnpackLimits {
        max_bytes: 32 << 20,
        ..UnpackLimits::default()
    };
    unpack_with(&archive, &s.root.join("a.within"), &limits).unwrap();
    assert_eq!(fs::read(s.root.join("a.within/link19")).unwrap(), big);
}

#[test]
fn a_truncated_archive_is_an_error_naming_it() {
    let tar = tar_bytes(&good_entries());
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    // Cut inside the first file's content, and inside the compressed streams.
    let cases = [
        ("a.tar", &tar[..512 + APP.len() / 2]),
        ("a.tgz", &gz[..gz.len() / 2]),
        ("a.tar.zst", &zst[..zst.len() / 2]),
    ];
    for (name, bytes) in cases {
        let s = Scratch::new();
        let err = s.unpack(name, bytes).unwrap_err();
        assert!(matches!(err, UnpackError::Io { .. }), "{name}: {err}");
        assert!(err.to_string().contains(name), "{err}");
        s.assert_outside_untouched();
    }
}
