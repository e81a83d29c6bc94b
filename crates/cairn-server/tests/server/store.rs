//! The store contract through the server: the shared conformance suite,
//! racing writers, and Bazel-independent blob round trips.

use cairn_store::reach::Kind;
use cairn_store::{conformance, RefName, StoreError};

use crate::harness::TestServer;

#[tokio::test]
async fn conformance_suite_over_http() {
    let server = TestServer::start().await;
    let store = server.client(&server.admin);
    conformance::blobs(store.blobs.as_ref()).await;
    conformance::put_many(store.blobs.as_ref()).await;
    conformance::assemble(store.blobs.as_ref()).await;
    conformance::has_closures(store.blobs.as_ref()).await;
    let absent = (cairn_digest::Digest::of(b"absent"), Kind::Leaf);
    assert_eq!(
        store.blobs.has_closures(&[absent]).await.unwrap(),
        Some(vec![false]),
        "the server answers closure questions"
    );
    conformance::refs(store.refs.as_ref()).await;
    conformance::watch(store.refs.as_ref()).await;
}

#[tokio::test]
async fn two_writers_racing_one_ref_exactly_one_wins() {
    let server = TestServer::start().await;
    let a = server.client(&server.admin);
    let b = server.client(&server.admin);
    let name = RefName::new("race/one").unwrap();
    let mut version = a
        .refs
        .compare_and_swap(&name, None, b"0".to_vec())
        .await
        .unwrap();
    for round in 0..20 {
        let (ra, rb) = tokio::join!(
            a.refs
                .compare_and_swap(&name, Some(&version), format!("a{round}").into_bytes()),
            b.refs
                .compare_and_swap(&name, Some(&version), format!("b{round}").into_bytes()),
        );
        let (won, lost) = match (ra, rb) {
            (Ok(v), Err(e)) | (Err(e), Ok(v)) => (v, e),
            other => panic!("round {round}: expected exactly one winner, got {other:?}"),
        };
        assert!(matches!(lost, StoreError::Conflict { .. }), "{lost:?}");
        version = won;
    }
}

#[tokio::test]
async fn blobs_uploaded_through_the_server_are_in_the_local_store() {
    let server = TestServer::start().await;
    let store = server.client(&server.admin);
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let digest = cairn_store::BlobStoreExt::put_bytes(store.blobs.as_ref(), big.clone())
        .await
        .unwrap();
    assert!(server.fs.has_sync(&digest));
    let back = cairn_store::BlobStoreExt::get_bytes(store.blobs.as_ref(), &digest)
        .await
        .unwrap();
    assert_eq!(back, big);
}
