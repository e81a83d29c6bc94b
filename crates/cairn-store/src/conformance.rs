//! The behaviour every backend must show, as one suite each backend's tests
//! run against a fresh, empty store.
//!
//! It panics (with a message naming the broken property) instead of
//! returning errors, because it is only ever called from tests.

use std::time::Duration;

use cairn_digest::Digest;
use futures::StreamExt;

use crate::blob::{BlobStore, BlobStoreExt};
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

    let empty = store.put_bytes(Vec::new()).await.unwrap();
    assert_eq!(store.get_bytes(&empty).await.unwrap(), b"");
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
