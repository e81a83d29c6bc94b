//! Layers applied for real to a directory: whiteouts with the image spec's
//! meaning, and every hostile entry refused by name with nothing written
//! outside the destination. Tars are made byte by byte (raw headers), so
//! they can hold what well-behaved tools never write.

use std::fs;
use std::io::Write;
use std::path::Path;

use cairn_oci::media::LayerCompression;
use cairn_oci::unpack::{apply_layer, Budget, LayerError, Limits};

/// One tar entry: path, type flag, link target, contents.
struct E(&'static str, u8, &'static str, &'static [u8]);

const FILE: u8 = b'0';
const HARDLINK: u8 = b'1';
const SYMLINK: u8 = b'2';
const CHAR_DEVICE: u8 = b'3';
const DIR: u8 = b'5';
const FIFO: u8 = b'6';

/// A tar of `entries` with raw names (no validation by the tar crate).
fn tar_of(entries: &[E]) -> Vec<u8> {
    let mut out = Vec::new();
    for E(path, kind, link, data) in entries {
        let mut h = tar::Header::new_old();
        let old = h.as_old_mut();
        old.name[..path.len()].copy_from_slice(path.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_mode(if *kind == DIR { 0o755 } else { 0o644 });
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        h.as_old_mut().linkflag = [*kind];
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn apply(dest: &Path, entries: &[E]) -> Result<(), LayerError> {
    let tar = tar_of(entries);
    let mut budget = Budget::new(Limits::default());
    apply_layer(
        &tar[..],
        LayerCompression::None,
        tar.len() as u64,
        dest,
        &mut budget,
    )
}

fn refused(entries: &[E], expect: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("root");
    fs::create_dir(&dest).unwrap();
    fs::write(tmp.path().join("outside"), b"keep").unwrap();
    let err = apply(&dest, entries).expect_err("hostile layer accepted");
    assert!(matches!(err, LayerError::Hostile { .. }), "{err}");
    assert!(err.to_string().contains(expect), "{err}");
    assert_eq!(fs::read(tmp.path().join("outside")).unwrap(), b"keep");
    let names: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names.len(),
        2,
        "something was written beside the destination: {names:?}"
    );
}

#[test]
fn dotdot_and_absolute_paths_are_refused() {
    refused(&[E("../outside", FILE, "", b"x")], "contains `..`");
    refused(&[E("a/../../outside", FILE, "", b"x")], "contains `..`");
    refused(&[E("/etc/passwd", FILE, "", b"x")], "is absolute");
}

#[test]
fn links_out_are_refused() {
    refused(&[E("escape", SYMLINK, "../outside", b"")], "points outside");
    refused(&[E("abs", SYMLINK, "/etc/passwd", b"")], "points outside");
    refused(&[E("hard", HARDLINK, "../outside", b"")], "contains `..`");
    refused(&[E("hard", HARDLINK, "/etc/passwd", b"")], "is absolute");
    refused(
        &[E("hard", HARDLINK, "missing", b"")],
        "not a file unpacked before it",
    );
}

#[test]
fn links_escaping_through_other_links_are_refused() {
    // Each target alone stays inside; followed, `up` climbs out.
    let chain = [
        E("a/", DIR, "", b""),
        E("a/b/", DIR, "", b""),
        E("a/b/c/", DIR, "", b""),
        E("a/b/c/l", SYMLINK, "../../..", b""),
        E("up", SYMLINK, "a/b/c/l/../../..", b""),
    ];
    refused(&chain, "points outside");
    // The same links the other way round: `up` looks harmless when written.
    let reversed = [
        E("a/", DIR, "", b""),
        E("a/b/", DIR, "", b""),
        E("a/b/c/", DIR, "", b""),
        E("up", SYMLINK, "a/b/c/l/../../..", b""),
        E("a/b/c/l", SYMLINK, "../../..", b""),
    ];
    refused(&reversed, "through the image's other symlinks");
}

#[test]
fn a_link_escapes_through_a_link_of_a_later_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("root");
    fs::create_dir(&d).unwrap();
    let mut budget = Budget::new(Limits::default());
    let mut layer = |entries: &[E]| {
        let tar = tar_of(entries);
        apply_layer(
            &tar[..],
            LayerCompression::None,
            tar.len() as u64,
            &d,
            &mut budget,
        )
    };
    layer(&[E("up", SYMLINK, "x/y/..", b""), E("x/", DIR, "", b"")]).unwrap();
    // `x/y -> ..` alone names the root: outside only together with `up`.
    let err =
        layer(&[E("x/y", SYMLINK, "..", b"")]).expect_err("escape through a later layer accepted");
    assert!(matches!(err, LayerError::Hostile { .. }), "{err}");
    assert!(err.to_string().contains("outside"), "{err}");
}

#[test]
fn removed_links_no_longer_count() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("root");
    fs::create_dir(&d).unwrap();
    let mut budget = Budget::new(Limits::default());
    let mut layer = |entries: &[E]| {
        let tar = tar_of(entries);
        apply_layer(
            &tar[..],
            LayerCompression::None,
            tar.len() as u64,
            &d,
            &mut budget,
        )
    };
    layer(&[E("a/", DIR, "", b""), E("a/l", SYMLINK, "..", b"")]).unwrap();
    // `a/l` is gone (whited out with its directory): `up` through a real
    // directory a/l stays inside.
    layer(&[
        E(".wh.a", FILE, "", b""),
        E("a/", DIR, "", b""),
        E("a/l/", DIR, "", b""),
        E("up", SYMLINK, "a/l/..", b""),
    ])
    .unwrap();
    assert_eq!(fs::read_link(d.join("up")).unwrap(), Path::new("a/l/.."));
}

#[test]
fn nothing_is_written_through_a_symlink() {
    refused(
        &[E("d", SYMLINK, ".", b""), E("d/x", FILE, "", b"x")],
        "is not a directory",
    );
}

#[test]
fn whiteout_tricks_are_refused() {
    refused(&[E(".wh...", FILE, "", b"")], "not a plain name");
    refused(&[E("a/.wh..", FILE, "", b"")], "not a plain name");
    refused(&[E(".wh.", FILE, "", b"")], "not a plain name");
    refused(
        &[E(".wh..wh.plnk", FILE, "", b"")],
        "reserved whiteout name",
    );
}

#[test]
fn devices_and_fifos_are_refused() {
    refused(&[E("dev/null", CHAR_DEVICE, "", b"")], "not allowed");
    refused(&[E("fifo", FIFO, "", b"")], "not allowed");
}

#[test]
fn huge_expansion_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // 64 MiB of zeros in one file: gzip makes it about 64 KiB.
    let zeros = vec![0u8; 64 << 20];
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(zeros.len() as u64);
    h.set_mode(0o644);
    tar.append_data(&mut h, "bomb", &zeros[..]).unwrap();
    let tar = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let limits = Limits {
        ratio: 100,
        ratio_floor: 1 << 20,
        ..Limits::default()
    };
    let err = apply_layer(
        &gz[..],
        LayerCompression::Gzip,
        gz.len() as u64,
        tmp.path(),
        &mut Budget::new(limits),
    )
    .unwrap_err();
    assert!(matches!(err, LayerError::TooLarge(_)), "{err}");
    assert!(err.to_string().contains("inflates past"), "{err}");
}

#[test]
fn whiteouts_remove_what_lower_layers_put() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    apply(
        d,
        &[
            E("etc/", DIR, "", b""),
            E("etc/a", FILE, "", b"a"),
            E("etc/b", FILE, "", b"b"),
            E("opq/", DIR, "", b""),
            E("opq/old", FILE, "", b"old"),
            E("gone/", DIR, "", b""),
            E("gone/x", FILE, "", b"x"),
        ],
    )
    .unwrap();
    apply(
        d,
        &[
            E("etc/.wh.a", FILE, "", b""),
            E("opq/new", FILE, "", b"new"),
            E("opq/.wh..wh..opq", FILE, "", b""),
            E(".wh.gone", FILE, "", b""),
            E("etc/c", HARDLINK, "etc/b", b""),
        ],
    )
    .unwrap();
    assert!(!d.join("etc/a").exists());
    assert_eq!(fs::read(d.join("etc/b")).unwrap(), b"b");
    assert_eq!(fs::read(d.join("etc/c")).unwrap(), b"b");
    assert!(
        !d.join("opq/old").exists(),
        "opaque whiteout keeps lower files"
    );
    assert_eq!(
        fs::read(d.join("opq/new")).unwrap(),
        b"new",
        "opaque whiteout removed its own layer's file"
    );
    assert!(!d.join("gone").exists());
}

#[test]
fn a_later_layer_replaces_a_directory_with_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    apply(d, &[E("x/", DIR, "", b""), E("x/y", FILE, "", b"y")]).unwrap();
    apply(d, &[E("x", FILE, "", b"now a file")]).unwrap();
    assert_eq!(fs::read(d.join("x")).unwrap(), b"now a file");
}

#[test]
fn a_tar_cut_after_its_last_data_is_read_as_umoci_writes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tar = tar_of(&[E("a", FILE, "", b"abc")]);
    tar.truncate(512 + 3); // no padding, no end-of-archive blocks
    let mut budget = Budget::new(Limits::default());
    apply_layer(
        &tar[..],
        LayerCompression::None,
        tar.len() as u64,
        tmp.path(),
        &mut budget,
    )
    .unwrap();
    assert_eq!(fs::read(tmp.path().join("a")).unwrap(), b"abc");
}

#[test]
fn hard_links_to_a_large_file_count_as_that_many_files() {
    let tmp = tempfile::tempdir().unwrap();
    // 1 MiB of noise and 40 links to it: 41 MiB once a tree, in a 1 MiB layer.
    let big: &'static [u8] = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect::<Vec<u8>>()
        .leak();
    let names: Vec<&'static str> = (0..40).map(|i| &*format!("link{i}").leak()).collect();
    let mut entries = vec![E("big", FILE, "", big)];
    entries.extend(names.iter().map(|n| E(n, HARDLINK, "big", b"")));
    let tar = tar_of(&entries);
    let limits = Limits {
        ratio: 4,
        ratio_floor: 1 << 20,
        ..Limits::default()
    };
    let err = apply_layer(
        &tar[..],
        LayerCompression::None,
        tar.len() as u64,
        tmp.path(),
        &mut Budget::new(limits),
    )
    .unwrap_err();
    assert!(matches!(err, LayerError::TooLarge(_)), "{err}");
    assert!(
        err.to_string().contains("hard links name more than"),
        "{err}"
    );
    assert!(!tmp.path().join("link39").exists(), "stopped at the limit");
}
