//! Blob properties: put and get, verification, batches, assembly, and
//! closure questions.

use cairn_digest::Digest;

use crate::blob::{Assembled, BlobStore, BlobStoreExt};
use crate::error::{ErrorKind, StoreError};

/// Blob fixtures.
pub const BLOB_A: &[u8] = b"cairn conformance blob A";
/// Another blob.
pub const BLOB_B: &[u8] = b"cairn conformance blob B, a little longer";

/// Put, get and verification, against a store that holds neither fixture.
pub async fn blobs(store: &dyn BlobStore) {
    let a = Digest::of(BLOB_A);
    let b = Digest::of(BLOB_B);
    assert_eq!(
        store.has_many(&[a, b]).await.unwrap(),
        [false, false],
        "empty store has blobs"
    );
    assert!(store.get(&a).await.unwrap().is_none(), "get of absent blob");
    assert_eq!(store.put_bytes(BLOB_A.to_vec()).await.unwrap(), a);
    assert_eq!(
        store.put_bytes(BLOB_A.to_vec()).await.unwrap(),
        a,
        "put is idempotent"
    );
    assert_eq!(store.has_many(&[a, b]).await.unwrap(), [true, false]);
    assert_eq!(store.get_bytes(&a).await.unwrap(), BLOB_A);
    for size in [a.size() - 1, a.size() + 1, 1 << 20] {
        let other = Digest::from_parts(*a.hash(), size);
        assert!(
            store.get(&other).await.unwrap().is_none(),
            "a stored blob asked for under another size ({size}) is absent"
        );
    }

    let lie = store
        .put(&b, Box::pin(std::io::Cursor::new(BLOB_A.to_vec())))
        .await;
    assert!(
        matches!(&lie, Err(e @ StoreError::Corrupt { .. }) if e.kind() == ErrorKind::Corrupt),
        "put of wrong bytes: {lie:?}"
    );
    assert!(
        !store.has(&b).await.unwrap(),
        "a refused put stored something"
    );

    assert_eq!(
        store.lookup(a.hash()).await.unwrap(),
        Some(a),
        "lookup by hash alone gives the full digest"
    );
    assert_eq!(
        store.lookup(b.hash()).await.unwrap(),
        None,
        "lookup of absent blob"
    );

    let empty = store.put_bytes(Vec::new()).await.unwrap();
    assert_eq!(store.get_bytes(&empty).await.unwrap(), b"");
    assert_eq!(store.lookup(empty.hash()).await.unwrap(), Some(empty));
    store.flush().await.unwrap();
}

/// Checks [`BlobStore::put_many`] against an empty store: every blob
/// arrives, including an empty one and more bytes than fit one HTTP batch
/// (how batches are split by count is checked by `blob::batch`'s own
/// tests); a blob whose bytes lie is refused with [`StoreError::Corrupt`]
/// naming it, and is not stored.
pub async fn put_many(store: &dyn BlobStore) {
    let size = 64 << 10;
    let count = (crate::blob::batch::MAX_BATCH_BYTES as usize).div_ceil(size) + 6;
    let blobs: Vec<(Digest, Vec<u8>)> = (0..count)
        .map(|i| {
            let mut blob = format!("put_many blob {i} ").into_bytes();
            blob.resize(size, i as u8);
            blob
        })
        .chain([Vec::new(), BLOB_A.to_vec()])
        .map(|b| (Digest::of(&b), b))
        .collect();
    let digests: Vec<Digest> = blobs.iter().map(|(d, _)| *d).collect();
    store.put_many(blobs.clone()).await.unwrap();
    assert!(
        store.has_many(&digests).await.unwrap().iter().all(|h| *h),
        "put_many lost blobs"
    );
    assert_eq!(
        store.get_bytes(&digests[count - 1]).await.unwrap(),
        blobs[count - 1].1
    );
    store.put_many(blobs).await.expect("put_many is idempotent");
    store.put_many(Vec::new()).await.unwrap();

    let b = Digest::of(BLOB_B);
    let lie = store.put_many(vec![(b, BLOB_A.to_vec())]).await;
    assert!(
        matches!(lie, Err(StoreError::Corrupt { expected, .. }) if expected == b),
        "put_many of wrong bytes must name the blob: {lie:?}"
    );
    assert!(!store.has(&b).await.unwrap(), "a refused blob was stored");
    store.flush().await.unwrap();
}

/// Checks [`BlobStore::assemble`] on a backend that supports it (others
/// answer `Unsupported` and are not checked further): the file appears,
/// built from stored chunks; a missing chunk is named; a list whose sizes
/// or bytes do not make the file is refused and stores nothing.
pub async fn assemble(store: &dyn BlobStore) {
    let a = store.put_bytes(BLOB_A.to_vec()).await.unwrap();
    let b = store.put_bytes(BLOB_B.to_vec()).await.unwrap();
    let whole = [BLOB_A, BLOB_B].concat();
    let file = Digest::of(&whole);
    match store.assemble(&file, &[a, b]).await.unwrap() {
        Assembled::Unsupported => return,
        Assembled::Stored => {}
    }
    assert_eq!(store.get_bytes(&file).await.unwrap(), whole, "assembled");
    assert_eq!(
        store.assemble(&file, &[a, b]).await.unwrap(),
        Assembled::Stored,
        "assemble is idempotent"
    );

    let swapped = Digest::of(&[BLOB_B, BLOB_A].concat());
    let lie = store.assemble(&swapped, &[a, b]).await;
    assert!(
        lie.as_ref().is_err_and(|e| e.kind() == ErrorKind::Corrupt),
        "chunks that do not hash to the file: {lie:?}"
    );
    assert!(
        !store.has(&swapped).await.unwrap(),
        "a refused assembly stored something"
    );

    let short = Digest::of(&[BLOB_B, BLOB_B].concat());
    let short_list = store.assemble(&short, &[b]).await;
    assert!(
        short_list
            .as_ref()
            .is_err_and(|e| e.kind() == ErrorKind::InvalidRequest),
        "sizes that do not add up: {short_list:?}"
    );
    assert!(!store.has(&short).await.unwrap());

    let absent = Digest::of(b"a chunk nobody stored");
    let with_absent = Digest::of(&[BLOB_A, b"a chunk nobody stored"].concat());
    let missing = store.assemble(&with_absent, &[a, absent]).await;
    assert!(
        matches!(&missing, Err(e @ StoreError::NotFound(d)) if *d == absent && e.kind() == ErrorKind::NotFound),
        "a missing chunk must be named: {missing:?}"
    );
    assert!(!store.has(&with_absent).await.unwrap());
}

/// Checks [`BlobStore::has_closures`] on a backend that answers it (others
/// answer `None` and are not checked further): a tree is complete only
/// when every blob below it is present; a directory stored without a file
/// it names is not, nor is one above it; an absent root is not; a
/// document naming a complete tree is, through its JSON edges.
pub async fn has_closures(store: &dyn BlobStore) {
    use crate::reach::Kind;
    use cairn_tree::{encode_directory, DirectoryBuilder};

    let dir = |files: &[(&str, Digest)], dirs: &[(&str, Digest)]| {
        let mut b = DirectoryBuilder::new();
        files.iter().for_each(|(n, d)| {
            b.file(*n, *d, false);
        });
        dirs.iter().for_each(|(n, d)| {
            b.directory(*n, *d);
        });
        encode_directory(&b.build().expect("valid fixture directory"))
    };
    let a = store.put_bytes(BLOB_A.to_vec()).await.unwrap();
    let b = store.put_bytes(BLOB_B.to_vec()).await.unwrap();
    let inner = store.put_bytes(dir(&[("a", a)], &[])).await.unwrap();
    let outer = store
        .put_bytes(dir(&[("b", b)], &[("inner", inner)]))
        .await
        .unwrap();
    let absent_file = Digest::of(b"a file nobody stored");
    let holed = store
        .put_bytes(dir(&[("gone", absent_file)], &[]))
        .await
        .unwrap();
    let above_hole = store
        .put_bytes(dir(&[], &[("holed", holed), ("inner", inner)]))
        .await
        .unwrap();
    let absent_dir = Digest::of(&dir(&[("c", a), ("d", b)], &[]));
    let doc = format!(
        r#"{{"artifact": {{"hash": "{}", "size": {}}}}}"#,
        outer,
        outer.size()
    );
    let doc = store.put_bytes(doc.into_bytes()).await.unwrap();

    let roots = [
        (outer, Kind::Tree),
        (inner, Kind::Tree),
        (holed, Kind::Tree),
        (above_hole, Kind::Tree),
        (absent_dir, Kind::Tree),
        (a, Kind::Leaf),
        (absent_file, Kind::Leaf),
        (doc, Kind::Unknown),
    ];
    let Some(answer) = store.has_closures(&roots).await.unwrap() else {
        return;
    };
    assert_eq!(
        answer,
        [true, true, false, false, false, true, false, true],
        "has_closures of outer, inner, holed, above_hole, absent_dir, a, absent_file, doc"
    );
    assert_eq!(store.has_closures(&[]).await.unwrap(), Some(Vec::new()));
}
