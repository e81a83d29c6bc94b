//! Every backend against the shared conformance suite, and the local
//! store's own guarantees (layout, atomicity, corruption handling).

use std::sync::Arc;

use cairn_digest::Digest;
use cairn_store::{
    conformance, BlobStoreExt, ErrorKind, FsStore, RefName, RefStore, Store, StoreError,
};

#[tokio::test]
async fn memory_store_conforms() {
    conformance::all(&Store::memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FsStore::open(dir.path().join("store")).unwrap();
    conformance::all(&Store::local(fs)).await;
}

#[test]
fn fs_store_refuses_a_foreign_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious.txt"), "x").unwrap();
    for err in [
        FsStore::open(dir.path()).unwrap_err(),
        FsStore::open_existing(dir.path()).unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
        let text = err.to_string();
        assert!(text.contains("is not a cairn store"), "{text}");
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("precious.txt")).unwrap(),
        "x"
    );
}

#[test]
fn opening_an_existing_store_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("absent");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for path in [&absent, &empty] {
        let err = FsStore::open_existing(path).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("no store at {}", path.display())),
            "{err}"
        );
    }
    assert!(!absent.exists(), "a read-only open created the directory");
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
    FsStore::open(&absent).unwrap();
    FsStore::open_existing(&absent).unwrap();
}

#[tokio::test]
async fn blobs_are_read_only_and_leave_no_temp_files() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let fs = FsStore::open(dir.path()).unwrap();
    let big = vec![7u8; 9 << 20]; // takes the pipelined path
    let src = dir.path().join("big-src");
    std::fs::write(&src, &big).unwrap();
    let d = fs.put_file(&src).unwrap();
    assert_eq!(d, Digest::of(&big));
    let small = fs.put_bytes_sync(b"small").unwrap();
    for digest in [d, small] {
        let mode = std::fs::metadata(fs.blob_path(&digest))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o444, "blob {digest} is writable");
    }
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
}

#[test]
fn a_durable_put_stores_the_file_and_keeps_a_blob_already_there() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let fs = FsStore::open(dir.path()).unwrap();
    let big: Vec<u8> = (0..(9u32 << 20)).map(|i| (i % 251) as u8).collect();
    for (name, bytes) in [("big", &big[..]), ("small", &b"small file"[..])] {
        let src = dir.path().join(name);
        std::fs::write(&src, bytes).unwrap();
        let d = fs.put_file_durable(&src).unwrap();
        assert_eq!(d, Digest::of(bytes));
        assert_eq!(std::fs::read(fs.blob_path(&d)).unwrap(), bytes);
        let inode = std::fs::metadata(fs.blob_path(&d)).unwrap().ino();
        // Again: the blob file is kept, not replaced.
        assert_eq!(fs.put_file_durable(&src).unwrap(), d);
        assert_eq!(std::fs::metadata(fs.blob_path(&d)).unwrap().ino(), inode);
    }
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
    let missing = dir.path().join("missing");
    let err = fs.put_file_durable(&missing).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

#[tokio::test]
async fn corrupt_and_truncated_blobs_are_caught_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FsStore::open(dir.path()).unwrap();
    let flipped = fs.put_bytes_sync(b"bit flip victim").unwrap();
    let truncated = fs.put_bytes_sync(b"truncation victim").unwrap();
    overwrite(&fs.blob_path(&flipped), b"bit flip victiM");
    overwrite(&fs.blob_path(&truncated), b"truncation");

    let err = fs.get_bytes(&flipped).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    // Truncation shows in the size: the store treats the blob as missing,
    // and a put repairs it.
    assert!(!fs.has(&truncated).await.unwrap());
    fs.put_bytes(b"truncation victim".to_vec()).await.unwrap();
    assert_eq!(
        fs.get_bytes(&truncated).await.unwrap(),
        b"truncation victim"
    );

    let report = fs.verify_all(&|_| {}).unwrap();
    assert_eq!(report.checked, 2);
    assert_eq!(report.corrupt.len(), 1);
    assert_eq!(report.corrupt[0].0, flipped);
}

#[tokio::test]
async fn concurrent_compare_and_swap_has_exactly_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FsStore::open(dir.path()).unwrap());
    let name = RefName::new("race/one").unwrap();
    let v0 = fs
        .compare_and_swap(&name, None, b"start".to_vec())
        .await
        .unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (fs, name, v0) = (fs.clone(), name.clone(), v0.clone());
            tokio::spawn(async move {
                fs.compare_and_swap(&name, Some(&v0), format!("writer {i}").into_bytes())
                    .await
            })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(wins, 1);
}

#[tokio::test]
async fn malformed_ref_file_is_reported_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FsStore::open(dir.path()).unwrap();
    std::fs::write(dir.path().join("refs/broken"), "no version line").unwrap();
    let err = RefStore::get(&fs, &RefName::new("broken").unwrap())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("missing its version line"),
        "{err}"
    );
}

fn overwrite(path: &std::path::Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// The first ref under a new directory is reported even when it lands
/// before the recursive watch reaches that directory (a watcher that
/// missed it would wait forever): 300 new directories, each with its ref
/// written at once after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ref_in_a_directory_made_just_before_it_is_watched() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path().join("store")).unwrap();
    let mut events = store
        .watch("fresh/")
        .await
        .unwrap()
        .expect("the fs store pushes");
    for i in 0..300 {
        let name = RefName::new(format!("fresh/d{i}/x")).unwrap();
        store
            .compare_and_swap(&name, None, b"v".to_vec())
            .await
            .unwrap();
        loop {
            let ev = tokio::time::timeout(std::time::Duration::from_secs(5), events.next())
                .await
                .unwrap_or_else(|_| panic!("no event for {name} within 5 s"))
                .expect("the watch ended")
                .unwrap();
            if ev.name == name {
                break;
            }
        }
    }
}
