//! What a snapshot and a checkout may not do to the store: vouch for a blob
//! that is gone or damaged (the stat cache), or hand out a blob's inode to
//! someone who can write it (a checkout).

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use cairn_snapshot::{
    materialize, snapshot, snapshot_unconfirmed, Added, MaterializeOptions, NoProgress, Placement,
    SnapshotOptions, Unconfirmed,
};
use cairn_store::FsStore;

fn add(store: &FsStore, path: &Path) -> Added {
    snapshot(store, path, &SnapshotOptions::default(), &NoProgress).unwrap()
}

/// A source tree old enough to be cached, added twice so the second add is
/// all stat cache hits. Returns the store, the source and the README's blob.
fn cached_tree(tmp: &Path) -> (FsStore, std::path::PathBuf, Added) {
    let store = FsStore::open(tmp.join("store")).unwrap();
    let src = tmp.join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("README"), "precious words\n").unwrap();
    for i in 0..100 {
        std::fs::write(src.join("sub").join(format!("f{i}")), format!("file {i}\n")).unwrap();
    }
    // Stamps younger than a second are "racy" and never cached.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let first = add(&store, &src);
    let again = add(&store, &src);
    assert_eq!((again.digest, again.files_read), (first.digest, 0));
    (store, src, first)
}

fn readme_blob(store: &FsStore) -> std::path::PathBuf {
    store.blob_path(&cairn_digest::Digest::of(b"precious words\n"))
}

/// Writes to a blob file in place, as root may (read-only modes stop
/// nobody with CAP_DAC_OVERRIDE).
fn write_in_place(path: &Path, f: impl FnOnce(&mut std::fs::File)) {
    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f(&mut file);
}

fn assert_store_whole(store: &FsStore) {
    let report = store.verify_all(&|_| {}).unwrap();
    assert!(report.corrupt.is_empty(), "corrupt: {:?}", report.corrupt);
}

#[test]
fn a_deleted_blob_is_stored_again_not_vouched_for() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, src, first) = cached_tree(tmp.path());
    std::fs::remove_file(readme_blob(&store)).unwrap();
    let again = add(&store, &src);
    assert_eq!(again.digest, first.digest);
    assert_eq!(again.files_read, 1, "the missing blob was vouched for");
    assert!(readme_blob(&store).exists());
    assert_store_whole(&store);
}

/// A way root damages a blob file in place.
type Damage = fn(&mut std::fs::File);

#[test]
fn a_blob_damaged_in_place_is_replaced() {
    let damages: [(&str, Damage); 2] = [
        ("appended to", |f| {
            use std::io::Seek;
            f.seek(std::io::SeekFrom::End(0)).unwrap();
            f.write_all(b"appended by root\n").unwrap();
        }),
        ("overwritten at the same size", |f| {
            f.write_all(b"PRECIOUS").unwrap();
        }),
    ];
    for (how, damage) in damages {
        let tmp = tempfile::tempdir().unwrap();
        let (store, src, first) = cached_tree(tmp.path());
        write_in_place(&readme_blob(&store), damage);
        assert!(!store.verify_all(&|_| {}).unwrap().corrupt.is_empty());
        let again = add(&store, &src);
        assert_eq!(again.digest, first.digest, "{how}");
        assert_eq!(
            again.files_read, 1,
            "{how}: the damaged blob was vouched for"
        );
        assert_store_whole(&store);
        // And the cache trusts the repaired blob from then on.
        assert_eq!(add(&store, &src).files_read, 0, "{how}");
    }
}

/// A build's snapshot for an action key only (stat cache hits taken on
/// the files' metadata), then confirmed before a step mounts it.
fn unconfirmed(store: &FsStore, src: &Path) -> (Added, Unconfirmed) {
    snapshot_unconfirmed(store, src, &SnapshotOptions::default(), &NoProgress).unwrap()
}

/// A way a blob file goes bad.
type BlobDamage = fn(&Path);

#[test]
fn confirming_a_trusted_snapshot_stores_a_lost_or_damaged_blob_again() {
    let damages: [(&str, BlobDamage); 2] = [
        ("deleted", |blob| std::fs::remove_file(blob).unwrap()),
        ("overwritten", |blob| {
            write_in_place(blob, |f| f.write_all(b"PRECIOUS").unwrap())
        }),
    ];
    for (how, damage) in damages {
        let tmp = tempfile::tempdir().unwrap();
        let (store, src, first) = cached_tree(tmp.path());
        damage(&readme_blob(&store));
        let (trusted, mut pending) = unconfirmed(&store, &src);
        assert_eq!(trusted.digest, first.digest, "{how}");
        assert_eq!(trusted.files_read, 0, "{how}: the trusted pass read a file");
        let confirmed = pending.confirm(&store).unwrap();
        assert_eq!(confirmed.digest, first.digest, "{how}");
        assert_eq!(confirmed.files_read, 1, "{how}: the blob was vouched for");
        assert_store_whole(&store);
        // Confirmed once: asking again neither reads nor changes anything.
        assert_eq!(pending.confirm(&store).unwrap(), confirmed, "{how}");
    }
}

#[test]
fn confirming_checks_the_walked_tree_without_walking_again() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, src, first) = cached_tree(tmp.path());
    let (_, mut pending) = unconfirmed(&store, &src);
    // A file added and a symlink made after the action key was taken are
    // not part of what the step mounts: the tree stays the walked one.
    std::fs::write(src.join("later"), "added after the walk\n").unwrap();
    std::os::unix::fs::symlink("README", src.join("sub/link")).unwrap();
    assert_eq!(pending.confirm(&store).unwrap().digest, first.digest);
    // A file whose blob is gone and whose content changed since makes a
    // different tree, which the build refuses to run under the old key.
    let (_, mut pending) = unconfirmed(&store, &src);
    let before = pending.added().digest;
    std::fs::remove_file(readme_blob(&store)).unwrap();
    std::fs::write(src.join("README"), "other words\n").unwrap();
    let after = pending.confirm(&store).unwrap().digest;
    assert_ne!(after, before, "a changed file was confirmed as the old one");
}

#[test]
fn a_blob_file_replaced_by_an_intact_copy_is_checked_not_reread() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, src, _) = cached_tree(tmp.path());
    // Another writer replaced the file with the same bytes (a new inode).
    let blob = readme_blob(&store);
    let copy = tmp.path().join("copy");
    std::fs::copy(&blob, &copy).unwrap();
    std::fs::rename(&copy, &blob).unwrap();
    let again = add(&store, &src);
    assert_eq!(again.files_read, 0);
    assert_store_whole(&store);
}

#[test]
fn writing_to_a_default_checkout_never_reaches_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _, first) = cached_tree(tmp.path());
    let out = tmp.path().join("out");
    materialize(
        &store,
        &first.digest,
        &out,
        MaterializeOptions::default(),
        &NoProgress,
    )
    .unwrap();
    let checked_out = out.join("README");
    let meta = std::fs::metadata(&checked_out).unwrap();
    assert_ne!(
        meta.ino(),
        std::fs::metadata(readme_blob(&store)).unwrap().ino()
    );
    assert_eq!(meta.permissions().mode() & 0o777, 0o644);
    // What a user (root, in CI and agents) does to a checkout.
    write_in_place(&checked_out, |f| {
        use std::io::Seek;
        f.seek(std::io::SeekFrom::End(0)).unwrap();
        f.write_all(b"local edit\n").unwrap();
    });
    assert_store_whole(&store);
}

#[test]
fn a_linked_checkout_shares_the_store_s_inodes_as_its_help_says() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _, first) = cached_tree(tmp.path());
    let out = tmp.path().join("out");
    let link = MaterializeOptions {
        placement: Placement::Link,
    };
    materialize(&store, &first.digest, &out, link, &NoProgress).unwrap();
    let linked = std::fs::metadata(out.join("README")).unwrap();
    assert_eq!(
        linked.ino(),
        std::fs::metadata(readme_blob(&store)).unwrap().ino()
    );
    assert_eq!(
        linked.permissions().mode() & 0o222,
        0,
        "a linked file is writable"
    );
}

#[test]
fn a_deleted_directory_blob_is_stored_again_when_nothing_else_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, src, first) = cached_tree(tmp.path());
    // The same bytes as the tree's `sub` directory, wherever it is added.
    let sub = add(
        &FsStore::open(tmp.path().join("other")).unwrap(),
        &src.join("sub"),
    )
    .digest;
    for gone in [first.digest, sub] {
        std::fs::remove_file(store.blob_path(&gone)).unwrap();
        let again = add(&store, &src);
        assert_eq!((again.digest, again.files_read), (first.digest, 0));
        assert!(store.has_sync(&gone), "{gone} was vouched for, not stored");
    }
    assert_store_whole(&store);
}

/// The tree of `src` as a store that never saw it makes it.
fn fresh_tree(tmp: &Path, src: &Path, options: &SnapshotOptions) -> cairn_digest::Digest {
    let dir = tempfile::tempdir_in(tmp).unwrap();
    let store = FsStore::open(dir.path().join("store")).unwrap();
    snapshot(&store, src, options, &NoProgress).unwrap().digest
}

#[test]
fn changes_that_leave_every_file_cached_still_change_the_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, src, first) = cached_tree(tmp.path());
    let renamed = |from: &str, to: &str| std::fs::rename(src.join(from), src.join(to)).unwrap();
    type Change<'a> = Box<dyn Fn() + 'a>;
    // Files stay stat cache hits while the tree changes around them, but
    // a moved file gets a new ctime, so it is read again (and, "racy",
    // would be read once more after: it comes last), as is `f2`, left out
    // of the snapshot before it and so of its cache.
    let changes: [(&str, Change, SnapshotOptions); 4] = [
        (
            "a directory renamed",
            Box::new(|| renamed("sub", "sub2")),
            SnapshotOptions::default(),
        ),
        (
            "an empty directory made",
            Box::new(|| std::fs::create_dir(src.join("empty")).unwrap()),
            SnapshotOptions::default(),
        ),
        (
            "a file excluded",
            Box::new(|| ()),
            SnapshotOptions {
                exclude: vec!["f2".into()],
                ..SnapshotOptions::default()
            },
        ),
        (
            "a file moved",
            Box::new(|| renamed("sub2/f1", "f1")),
            SnapshotOptions::default(),
        ),
    ];
    let mut seen = vec![first.digest];
    for (what, change, options) in changes {
        change();
        let added = snapshot(&store, &src, &options, &NoProgress).unwrap();
        let expected_reads = if what == "a file moved" { 2 } else { 0 };
        assert_eq!(
            added.files_read, expected_reads,
            "{what}: the others are still cached"
        );
        assert_eq!(
            added.digest,
            fresh_tree(tmp.path(), &src, &options),
            "{what}"
        );
        assert!(
            !seen.contains(&added.digest),
            "{what}: the tree did not change"
        );
        seen.push(added.digest);
    }
    assert_store_whole(&store);
}

#[test]
fn a_file_renamed_where_the_walk_has_it_in_the_same_place_changes_the_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FsStore::open(tmp.path().join("store")).unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("solo")).unwrap();
    std::fs::write(src.join("solo/a"), "alone\n").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let first = add(&store, &src);
    assert_eq!(add(&store, &src).files_read, 0);
    std::fs::rename(src.join("solo/a"), src.join("solo/b")).unwrap();
    let renamed = add(&store, &src);
    assert_ne!(renamed.digest, first.digest);
    assert_eq!(
        renamed.digest,
        fresh_tree(tmp.path(), &src, &SnapshotOptions::default())
    );
}
