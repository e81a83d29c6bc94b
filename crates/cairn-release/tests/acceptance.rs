//! The acceptance chain against a real (in-memory) store: what it accepts,
//! each refusal by its type, and a store that cannot be asked told apart
//! from a refusal.

use cairn_digest::Digest;
use cairn_release::{
    accept, promote, publish_release, release_ref, AcceptError, Accepted, Mark, Refused,
    DEFAULT_EXPIRY,
};
use cairn_store::{BlobStoreExt, RefName, Store};
use cairn_trust::{ChannelPolicy, Document, KeySet, Refusal, Release, SigningKey};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const NOW: OffsetDateTime = datetime!(2026-11-23 12:00 UTC);
/// A Directory message with no entries: the empty tree.
const EMPTY_TREE: &[u8] = b"";

fn key(seed: u8) -> SigningKey {
    SigningKey::from_seed(&[seed; 32])
}

async fn publish(store: &Store, service: &str, version: &str, signer: &SigningKey) -> Digest {
    let artifact = store.blobs.put_bytes(EMPTY_TREE.to_vec()).await.unwrap();
    let release = Release {
        service: service.into(),
        version: version.into(),
        artifact,
        action: Digest::of(b"action"),
        run: serde_json::json!({"command": ["bin/hello"]}),
        provenance: Digest::of(b"provenance"),
        created: NOW,
        deploy: None,
    };
    publish_release(store, &release, signer).await.unwrap()
}

fn trust() -> (ChannelPolicy, KeySet) {
    let policy = ChannelPolicy {
        service: "hello".into(),
        channel: "prod".into(),
        keys: vec![key(1).key_id()],
        threshold: 1,
    };
    (policy, [key(1).public_key()].into_iter().collect())
}

async fn check(store: &Store, last: Option<&Mark>) -> Result<Accepted, AcceptError> {
    let (policy, keys) = trust();
    accept(store, &policy, &keys, last, NOW).await
}

async fn promote_at(store: &Store, channel: &str, release: &Digest) {
    promote(
        store,
        "hello",
        channel,
        release,
        &key(1),
        DEFAULT_EXPIRY,
        NOW,
    )
    .await
    .unwrap();
}

fn refusal(result: Result<Accepted, AcceptError>) -> Refused {
    match result {
        Err(AcceptError::Refused { reason, .. }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn accepts_a_good_statement_and_the_same_one_again() {
    let store = Store::memory();
    assert!(matches!(
        check(&store, None).await,
        Err(AcceptError::Empty { .. })
    ));
    let v1 = publish(&store, "hello", "1.0", &key(1)).await;
    promote_at(&store, "prod", &v1).await;
    let first = check(&store, None).await.unwrap();
    assert!(first.is_new);
    assert_eq!(
        (first.release_digest, first.release.version.as_str()),
        (v1, "1.0")
    );
    assert_eq!(first.run.command, ["bin/hello"]);
    let mark = first.mark();
    let again = check(&store, Some(&mark)).await.unwrap();
    assert!(
        !again.is_new,
        "the statement accepted last time is not news"
    );

    let v2 = publish(&store, "hello", "2.0", &key(1)).await;
    promote_at(&store, "prod", &v2).await;
    let second = check(&store, Some(&mark)).await.unwrap();
    assert!(second.is_new);
    assert_eq!(second.mark().sequence, 2);
}

#[tokio::test]
async fn older_and_equal_but_different_statements_are_replays() {
    let store = Store::memory();
    let v1 = publish(&store, "hello", "1.0", &key(1)).await;
    promote_at(&store, "prod", &v1).await;
    let old = store
        .refs
        .get(&RefName::new("channels/hello/prod").unwrap())
        .await
        .unwrap()
        .unwrap();
    promote_at(&store, "prod", &v1).await;
    let mark = check(&store, None).await.unwrap().mark();
    // Put statement #1 back: a replay the mark must refuse.
    let name = RefName::new("channels/hello/prod").unwrap();
    let now = store.refs.get(&name).await.unwrap().unwrap();
    store
        .refs
        .compare_and_swap(&name, Some(&now.version), old.value)
        .await
        .unwrap();
    let r = refusal(check(&store, Some(&mark)).await);
    assert!(matches!(
        r,
        Refused::Statement(Refusal::StaleSequence { got: 1, last: 2 })
    ));
    // A mark at #1 for another statement: #1 here is not that one.
    let other = Mark {
        sequence: 1,
        statement: Digest::of(b"another statement"),
        release: v1,
    };
    let r = refusal(check(&store, Some(&other)).await);
    assert!(matches!(
        r,
        Refused::Statement(Refusal::StaleSequence { .. })
    ));
}

#[tokio::test]
async fn expired_foreign_and_unsigned_statements_are_refused() {
    let store = Store::memory();
    let v1 = publish(&store, "hello", "1.0", &key(1)).await;
    promote(
        &store,
        "hello",
        "prod",
        &v1,
        &key(1),
        Duration::seconds(1),
        NOW,
    )
    .await
    .unwrap();
    let (policy, keys) = trust();
    let later = NOW + Duration::seconds(2);
    let r = accept(&store, &policy, &keys, None, later).await;
    assert!(matches!(
        refusal(r),
        Refused::Statement(Refusal::Expired { .. })
    ));

    // Signed by a key the policy does not list.
    promote(&store, "hello", "prod", &v1, &key(9), DEFAULT_EXPIRY, NOW)
        .await
        .unwrap();
    let r = refusal(check(&store, None).await);
    assert!(
        matches!(r, Refused::Statement(Refusal::UnknownKey(_))),
        "{r}"
    );

    // A statement for another service placed in this channel's ref.
    let other = publish(&store, "other", "1.0", &key(1)).await;
    promote(
        &store,
        "other",
        "prod",
        &other,
        &key(1),
        DEFAULT_EXPIRY,
        NOW,
    )
    .await
    .unwrap();
    let theirs = store
        .refs
        .get(&RefName::new("channels/other/prod").unwrap())
        .await
        .unwrap()
        .unwrap();
    let name = RefName::new("channels/hello/prod").unwrap();
    let ours = store.refs.get(&name).await.unwrap().unwrap();
    store
        .refs
        .compare_and_swap(&name, Some(&ours.version), theirs.value)
        .await
        .unwrap();
    let r = refusal(check(&store, None).await);
    assert!(matches!(
        r,
        Refused::Statement(Refusal::WrongService { .. })
    ));

    // Not an envelope at all.
    let now = store.refs.get(&name).await.unwrap().unwrap();
    store
        .refs
        .compare_and_swap(&name, Some(&now.version), b"{}".to_vec())
        .await
        .unwrap();
    assert!(matches!(
        refusal(check(&store, None).await),
        Refused::NotAnEnvelope(_)
    ));
}

#[tokio::test]
async fn releases_that_fail_their_own_checks_are_refused() {
    let store = Store::memory();
    // Released by a key the channel does not trust, promoted by one it does.
    let foreign = publish(&store, "hello", "1.0", &key(7)).await;
    promote_at(&store, "prod", &foreign).await;
    let r = refusal(check(&store, None).await);
    assert!(
        matches!(
            r,
            Refused::Release {
                reason: Refusal::ReleaseUntrusted { .. },
                ..
            }
        ),
        "{r}"
    );

    // Its envelope gone from the store: unsigned.
    let v2 = publish(&store, "hello", "2.0", &key(1)).await;
    promote_at(&store, "prod", &v2).await;
    let name = release_ref("hello", &v2).unwrap();
    let stored = store.refs.get(&name).await.unwrap().unwrap();
    store.refs.delete(&name, &stored.version).await.unwrap();
    let r = refusal(check(&store, None).await);
    assert!(matches!(r, Refused::ReleaseUnavailable { .. }), "{r}");

    // A run specification no agent could run.
    let mut bad = Release {
        service: "hello".into(),
        version: "3.0".into(),
        artifact: store.blobs.put_bytes(EMPTY_TREE.to_vec()).await.unwrap(),
        action: Digest::of(b"action"),
        run: serde_json::json!({"command": []}),
        provenance: Digest::of(b"provenance"),
        created: NOW,
        deploy: None,
    };
    let v3 = publish_release(&store, &bad, &key(1)).await.unwrap();
    promote_at(&store, "prod", &v3).await;
    let r = refusal(check(&store, None).await);
    assert!(matches!(r, Refused::BadRunSpec { .. }), "{r}");

    // An artifact that is not in the store.
    bad.run = serde_json::json!({"command": ["x"]});
    bad.artifact = Digest::of(b"never stored");
    let v4 = publish_release(&store, &bad, &key(1)).await.unwrap();
    promote_at(&store, "prod", &v4).await;
    let r = refusal(check(&store, None).await);
    assert!(matches!(r, Refused::Artifact { .. }), "{r}");
    assert!(bad.validate().is_ok());
}

/// Refs that cannot be reached: every call fails as a network outage does.
#[derive(Debug)]
struct Unreachable;

#[async_trait::async_trait]
impl cairn_store::RefStore for Unreachable {
    async fn get(&self, _: &RefName) -> cairn_store::Result<Option<cairn_store::Versioned>> {
        Err(down())
    }
    async fn list(&self, _: &str) -> cairn_store::Result<Vec<RefName>> {
        Err(down())
    }
    async fn compare_and_swap(
        &self,
        _: &RefName,
        _: Option<&cairn_store::Version>,
        _: Vec<u8>,
    ) -> cairn_store::Result<cairn_store::Version> {
        Err(down())
    }
    async fn delete(&self, _: &RefName, _: &cairn_store::Version) -> cairn_store::Result<()> {
        Err(down())
    }
}

fn down() -> cairn_store::StoreError {
    cairn_store::StoreError::io(
        "connecting to",
        "store",
        std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
    )
}

#[tokio::test]
async fn a_store_that_cannot_be_asked_is_not_a_refusal() {
    let mut store = Store::memory();
    store.refs = std::sync::Arc::new(Unreachable);
    let err = check(&store, None).await.unwrap_err();
    assert!(matches!(err, AcceptError::Store { .. }), "{err}");
    assert!(err.refusal().is_none());
}
