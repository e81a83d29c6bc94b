//! The behaviour every backend must show, as one suite each backend's tests
//! run against a fresh, empty store.
//!
//! It panics (with a message naming the broken property) instead of
//! returning errors, because it is only ever called from tests.

use std::time::Duration;

use cairn_digest::Digest;
use futures::StreamExt;

use crate::blob::{Assembled, BlobStore, BlobStoreExt};
use crate::error::StoreError;
use crate::refs::{RefName, RefStore};

/// Blob fixtures.
pub const BLOB_A: &[u8] = b"cairn conformance blob A";
/// Another blob.
pub const BLOB_B: &[u8] = b"cairn conformance blob B, a little longer";

/// Runs every blob property against an empty store.
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

    let lie = store
        .put(&b, Box::pin(std::io::Cursor::new(BLOB_A.to_vec())))
        .await;
    assert!(
        matches!(lie, Err(StoreError::Corrupt { .. })),
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
/// arrives, including an empty one and more than fit one HTTP batch; a
/// blob whose bytes lie is refused with [`StoreError::Corrupt`] naming it,
/// and is not stored.
pub async fn put_many(store: &dyn BlobStore) {
    let count = crate::blob::batch::MAX_BATCH_BLOBS + 10;
    let blobs: Vec<(Digest, Vec<u8>)> = (0..count)
        .map(|i| format!("put_many blob {i}").into_bytes())
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

/// Runs every ref property against an empty store.
pub async fn refs(store: &dyn RefStore) {
    let name = RefName::new("conformance/one").unwrap();
    assert!(store.get(&name).await.unwrap().is_none());
    let v1 = store
        .compare_and_swap(&name, None, b"1".to_vec())
        .await
        .unwrap();
    let again = store.compare_and_swap(&name, None, b"x".to_vec()).await;
    assert!(
        matches!(again, Err(StoreError::Conflict { .. })),
        "create over existing: {again:?}"
    );
    let got = store.get(&name).await.unwrap().unwrap();
    assert_eq!((got.value.as_slice(), &got.version), (&b"1"[..], &v1));

    let v2 = store
        .compare_and_swap(&name, Some(&v1), b"2".to_vec())
        .await
        .unwrap();
    assert_ne!(v1, v2, "a write must change the version");
    let stale = store
        .compare_and_swap(&name, Some(&v1), b"3".to_vec())
        .await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { .. })),
        "stale CAS won: {stale:?}"
    );
    assert_eq!(store.get(&name).await.unwrap().unwrap().value, b"2");

    let other = RefName::new("conformance/two/deep").unwrap();
    store
        .compare_and_swap(&other, None, b"d".to_vec())
        .await
        .unwrap();
    let unrelated = RefName::new("elsewhere").unwrap();
    store
        .compare_and_swap(&unrelated, None, b"e".to_vec())
        .await
        .unwrap();
    assert_eq!(
        store.list("conformance/").await.unwrap(),
        [name.clone(), other.clone()]
    );
    assert_eq!(
        store.list("conformance/tw").await.unwrap(),
        std::slice::from_ref(&other)
    );

    let too_big = store
        .compare_and_swap(&unrelated, None, vec![0; crate::refs::MAX_REF_SIZE + 1])
        .await;
    assert!(
        matches!(too_big, Err(StoreError::RefTooLarge { .. })),
        "{too_big:?}"
    );

    assert!(
        store.delete(&name, &v1).await.is_err(),
        "delete at a stale version"
    );
    store.delete(&name, &v2).await.unwrap();
    assert!(store.get(&name).await.unwrap().is_none());
    let v3 = store
        .compare_and_swap(&name, None, b"again".to_vec())
        .await
        .unwrap();
    assert_ne!(v3, v1, "a re-created ref reused an old version");
}

/// Checks that a backend which can watch reports a write under the prefix.
pub async fn watch(store: &dyn RefStore) {
    let Some(mut events) = store.watch("watched/").await.unwrap() else {
        return; // this backend is polled; nothing to check here
    };
    let name = RefName::new("watched/x").unwrap();
    store
        .compare_and_swap(&RefName::new("unwatched").unwrap(), None, b"u".to_vec())
        .await
        .unwrap();
    store
        .compare_and_swap(&name, None, b"w".to_vec())
        .await
        .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("no watch event within 5 s")
        .expect("watch stream ended")
        .unwrap();
    assert_eq!(ev.name, name);
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
    assert!(lie.is_err(), "chunks that do not hash to the file: {lie:?}");
    assert!(
        !store.has(&swapped).await.unwrap(),
        "a refused assembly stored something"
    );

    let short = Digest::of(&[BLOB_B, BLOB_B].concat());
    let short_list = store.assemble(&short, &[b]).await;
    assert!(
        short_list.is_err(),
        "sizes that do not add up: {short_list:?}"
    );
    assert!(!store.has(&short).await.unwrap());

    let absent = Digest::of(b"a chunk nobody stored");
    let with_absent = Digest::of(&[BLOB_A, b"a chunk nobody stored"].concat());
    let missing = store.assemble(&with_absent, &[a, absent]).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(d)) if d == absent),
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
