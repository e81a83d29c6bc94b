//! The link memory: symlink targets taken from it only while their
//! directory is unchanged, against a real local store.

use std::path::Path;
use std::time::Duration;

use cairn_snapshot::{snapshot, Added, NoProgress, SnapshotOptions};
use cairn_store::FsStore;

fn add(store: &FsStore, path: &Path) -> Added {
    snapshot(store, path, &SnapshotOptions::default(), &NoProgress).unwrap()
}

/// `bin/` with a program and 40 links to it, and a link at the top.
fn applets(root: &Path) {
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::write(root.join("bin/busybox"), "#!/bin/sh\n").unwrap();
    for i in 0..40 {
        std::os::unix::fs::symlink("busybox", root.join(format!("bin/applet{i}"))).unwrap();
    }
    std::os::unix::fs::symlink("bin/busybox", root.join("sh")).unwrap();
}

/// The digest a store that never saw `path` gives it.
fn fresh(tmp: &Path, path: &Path) -> cairn_digest::Digest {
    let store = FsStore::open(tmp.join(format!("fresh-{}", rand_suffix()))).unwrap();
    add(&store, path).digest
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Waits until what was just changed is older than the second the
/// memory distrusts.
fn settle() {
    std::thread::sleep(Duration::from_millis(1100));
}

#[test]
fn unchanged_directories_give_their_targets_and_a_retargeted_link_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FsStore::open(tmp.path().join("store")).unwrap();
    let src = tmp.path().join("src");
    applets(&src);
    // Just made: the directories are not remembered yet.
    let first = add(&store, &src);
    assert_eq!(first.links_read, 41);
    settle();
    assert_eq!(add(&store, &src).links_read, 41);
    let remembered = add(&store, &src);
    assert_eq!(
        remembered.links_read, 0,
        "every target came from the memory"
    );
    assert_eq!(remembered.digest, first.digest);

    // Retargeted by replacing the link, as every tool must.
    std::fs::remove_file(src.join("bin/applet7")).unwrap();
    std::os::unix::fs::symlink("../sh", src.join("bin/applet7")).unwrap();
    let changed = add(&store, &src);
    assert_eq!(
        changed.links_read, 40,
        "bin/ changed: all its links are read"
    );
    assert_ne!(changed.digest, first.digest);
    assert_eq!(changed.digest, fresh(tmp.path(), &src));

    // Renamed over, within the same second as the last walk.
    std::os::unix::fs::symlink("busybox", src.join("bin/new")).unwrap();
    std::fs::rename(src.join("bin/new"), src.join("bin/applet7")).unwrap();
    let again = add(&store, &src);
    assert_eq!(again.digest, first.digest);
    assert_eq!(again.digest, fresh(tmp.path(), &src));
}

#[test]
fn a_damaged_memory_costs_only_the_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FsStore::open(tmp.path().join("store")).unwrap();
    let src = tmp.path().join("src");
    applets(&src);
    settle();
    let first = add(&store, &src);
    assert_eq!(add(&store, &src).links_read, 0);
    let stat = tmp.path().join("store/cache/stat");
    let memories: Vec<_> = std::fs::read_dir(&stat)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "links"))
        .collect();
    assert_eq!(memories.len(), 1, "{memories:?}");
    let mut bytes = std::fs::read(&memories[0]).unwrap();
    // Cut inside a record, then a target changed to another of its length.
    std::fs::write(&memories[0], &bytes[..bytes.len() - 3]).unwrap();
    let cut = add(&store, &src);
    assert_eq!((cut.digest, cut.links_read), (first.digest, 41));
    let at = bytes.windows(7).position(|w| w == b"busybox").unwrap();
    bytes[at..at + 7].copy_from_slice(b"evilbox");
    std::fs::write(&memories[0], &bytes).unwrap();
    let damaged = add(&store, &src);
    assert_eq!((damaged.digest, damaged.links_read), (first.digest, 41));
    // Both times the memory was written anew.
    assert_eq!(add(&store, &src).links_read, 0);
}
