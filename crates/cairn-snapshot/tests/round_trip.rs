//! Snapshot and materialize against a real local store.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use cairn_snapshot::{
    materialize, snapshot, MaterializeOptions, NoProgress, Placement, SnapshotError,
    SnapshotOptions,
};
use cairn_store::FsStore;
use cairn_tree::DirectoryBuilder;
use proptest::prelude::*;

const LINKED: MaterializeOptions = MaterializeOptions {
    placement: Placement::Link,
};
const MOUNTED: MaterializeOptions = MaterializeOptions {
    placement: Placement::MountOnly,
};
const COPIED: MaterializeOptions = MaterializeOptions {
    placement: Placement::Copy,
};

fn add(store: &FsStore, path: &Path) -> cairn_snapshot::Added {
    snapshot(store, path, &SnapshotOptions::default(), &NoProgress).unwrap()
}

fn sample_tree(root: &Path) {
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::write(root.join("README"), "hello\n").unwrap();
    std::fs::write(root.join("bin/tool"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(
        root.join("bin/tool"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("bin/tool", root.join("tool")).unwrap();
}

#[test]
fn snapshot_checkout_snapshot_is_stable_and_keeps_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FsStore::open(tmp.path().join("store")).unwrap();
    sample_tree(&tmp.path().join("src"));
    let first = add(&store, &tmp.path().join("src"));
    assert!(first.is_tree);
    assert_eq!((first.files, first.files_read), (2, 2));

    for (name, options) in [("linked", LINKED), ("mounted", MOUNTED), ("copied", COPIED)] {
        let out = tmp.path().join(name);
        materialize(&store, &first.digest, &out, options, &NoProgress).unwrap();
        let mode = std::fs::metadata(out.join("bin/tool"))
            .unwrap()
            .permissions()
            .mode();
        assert_ne!(mode & 0o111, 0, "{name}: executable bit lost");
        // Only a tree that will be mounted read-only shares the executable
        // copy in cache/exec; a linked checkout gets its own.
        let links = std::fs::metadata(out.join("bin/tool")).unwrap().nlink();
        assert_eq!(links > 1, name == "mounted", "{name}: {links} links");
        assert_eq!(
            std::fs::read_link(out.join("tool")).unwrap(),
            Path::new("bin/tool")
        );
        assert!(out.join("empty").is_dir());
        assert_eq!(
            add(&store, &out).digest,
            first.digest,
            "{name}: digest changed"
        );
    }
}

#[test]
fn unchanged_files_are_not_read_again_and_changes_are_seen() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FsStore::open(tmp.path().join("store")).unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    // Stamps younger than a second are "racy" and never cached.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let first = add(&store, &src);
    let again = add(&store, &src);
    assert_eq!(again.digest, first.digest);
    assert_eq!(again.files_read, 0, "unchanged files were read");
    std::fs::write(src.join("README"), "changed\n").unwrap();
    let changed = add(&store, &src);
    assert_ne!(changed.digest, first.digest);
    assert_eq!(changed.files_read, 1);
}

/// Builds `dir/name` files as a snapshot should see them, by hand.
fn expected_tree(dirs: &[&str], per_dir: usize) -> cairn_digest::Digest {
    let mut root = DirectoryBuilder::new();
    for dir in dirs {
        let mut sub = DirectoryBuilder::new();
        for i in 0..per_dir {
            let content = format!("{dir} file {i}\n");
            sub.file(
                format!("f{i:03}"),
                cairn_digest::Digest::of(content.as_bytes()),
                i % 7 == 0,
            );
        }
        root.directory(*dir, cairn_tree::directory_digest(&sub.build().unwrap()));
    }
    cairn_tree::directory_digest(&root.build().unwrap())
}

#[test]
fn small_and_large_trees_match_a_tree_built_by_hand() {
    // Few files are stored on the calling thread, many on the I/O pool;
    // both must give every file its own digest and mode.
    for per_dir in [3, 150] {
        let tmp = tempfile::tempdir().unwrap();
        let store = FsStore::open(tmp.path().join("store")).unwrap();
        let src = tmp.path().join("src");
        let dirs = ["b", "a", "c"];
        for dir in dirs {
            std::fs::create_dir_all(src.join(dir)).unwrap();
            for i in 0..per_dir {
                let path = src.join(dir).join(format!("f{i:03}"));
                std::fs::write(&path, format!("{dir} file {i}\n")).unwrap();
                let mode = if i % 7 == 0 { 0o755 } else { 0o644 };
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            }
        }
        let added = add(&store, &src);
        assert_eq!(added.files, 3 * per_dir as u64);
        assert_eq!(
            added.digest,
            expected_tree(&dirs, per_dir),
            "{per_dir} files a directory"
        );
    }
}

#[test]
fn excludes_and_gitignore_leave_paths_out() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FsStore::open(tmp.path().join("store")).unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    std::fs::create_dir_all(src.join("target/debug")).unwrap();
    std::fs::write(src.join("target/debug/junk"), "x").unwrap();
    std::fs::write(src.join("notes.log"), "x").unwrap();
    std::fs::write(src.join(".gitignore"), "*.log\n").unwrap();
    let base = add(&store, &src);
    let excluded = snapshot(
        &store,
        &src,
        &SnapshotOptions {
            exclude: vec!["target".into()],
            gitignore: true,
            ..SnapshotOptions::default()
        },
        &NoProgress,
    )
    .unwrap();
    assert_eq!(base.files, 5);
    assert_eq!(excluded.files, 3, "target/ and *.log should be gone");
}

#[test]
fn sockets_and_fifos_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FsStore::open(tmp.path().join("store")).unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap();
    let err = snapshot(&store, &src, &SnapshotOptions::default(), &NoProgress).unwrap_err();
    assert!(
        matches!(err, SnapshotError::Unsupported { kind: "socket", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("sock"), "{err}");
    let err = snapshot(
        &store,
        &tmp.path().join("missing"),
        &SnapshotOptions::default(),
        &NoProgress,
    )
    .unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn escaping_symlinks_are_never_created() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FsStore::open(tmp.path().join("store")).unwrap();
    for target in ["/etc/passwd", "../outside", "a/../../x"] {
        let mut b = DirectoryBuilder::new();
        b.symlink("evil", target);
        let dir = b.build().unwrap();
        let digest = store
            .put_bytes_sync(&cairn_tree::encode_directory(&dir))
            .unwrap();
        let out = tmp.path().join("out");
        let err = materialize(&store, &digest, &out, LINKED, &NoProgress).unwrap_err();
        assert!(
            matches!(err, SnapshotError::EscapingSymlink { .. }),
            "{target}: {err}"
        );
        assert!(std::fs::symlink_metadata(out.join("evil")).is_err());
        std::fs::remove_dir_all(&out).unwrap();
    }
}

#[test]
fn a_symlink_escaping_through_another_is_never_created() {
    // a/b/c/l -> ../../.. names the root; up -> a/b/c/l/../../.. is
    // lexically `a`, but followed it goes through l and above the root.
    let tmp = tempfile::tempdir().unwrap();
    let store = FsStore::open(tmp.path().join("store")).unwrap();
    let put = |b: DirectoryBuilder| {
        store
            .put_bytes_sync(&cairn_tree::encode_directory(&b.build().unwrap()))
            .unwrap()
    };
    let mut c = DirectoryBuilder::new();
    c.symlink("l", "../../..");
    let mut b = DirectoryBuilder::new();
    b.directory("c", put(c));
    let mut a = DirectoryBuilder::new();
    a.directory("b", put(b));
    let mut root = DirectoryBuilder::new();
    root.directory("a", put(a))
        .symlink("up", "a/b/c/l/../../..");
    let digest = put(root);
    let out = tmp.path().join("out");
    let err = materialize(&store, &digest, &out, LINKED, &NoProgress).unwrap_err();
    match &err {
        SnapshotError::EscapingSymlink { path, .. } => assert_eq!(path, &out.join("up")),
        other => panic!("{other}"),
    }
    assert!(std::fs::symlink_metadata(out.join("up")).is_err());
    assert!(std::fs::symlink_metadata(out.join("a/b/c/l")).is_err());
}

#[test]
fn checkout_refuses_a_non_empty_destination_and_a_missing_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FsStore::open(tmp.path().join("store")).unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    let added = add(&store, &src);
    let err = materialize(&store, &added.digest, &src, LINKED, &NoProgress).unwrap_err();
    assert!(
        matches!(err, SnapshotError::DestinationNotEmpty(_)),
        "{err}"
    );

    let readme = cairn_digest::Digest::of(b"hello\n");
    std::fs::remove_file(store.blob_path(&readme)).unwrap();
    let err = materialize(
        &store,
        &added.digest,
        &tmp.path().join("o"),
        LINKED,
        &NoProgress,
    )
    .unwrap_err();
    assert!(err.to_string().contains(&readme.to_string()), "{err}");
}

/// A random tree: (relative path, content, executable) for files.
fn random_tree() -> impl Strategy<Value = Vec<(Vec<String>, Vec<u8>, bool)>> {
    let name = "[a-z]{1,3}";
    let path = proptest::collection::vec(name, 1..4);
    proptest::collection::vec(
        (
            path,
            proptest::collection::vec(any::<u8>(), 0..64),
            any::<bool>(),
        ),
        0..12,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn random_trees_round_trip(files in random_tree()) {
        let tmp = tempfile::tempdir().unwrap();
        let store = FsStore::open(tmp.path().join("store")).unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        for (parts, content, exec) in &files {
            let path = parts.iter().fold(src.clone(), |p, n| p.join(n));
            // Skip paths that collide with an existing file or directory.
            if std::fs::create_dir_all(path.parent().unwrap()).is_err() || path.exists() {
                continue;
            }
            std::fs::write(&path, content).unwrap();
            let mode = if *exec { 0o755 } else { 0o644 };
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let first = add(&store, &src);
        let out = tmp.path().join("out");
        materialize(&store, &first.digest, &out, LINKED, &NoProgress).unwrap();
        prop_assert_eq!(add(&store, &out).digest, first.digest);
    }
}
