//! Promotion, co-signing, history and rollback against a real (in-memory)
//! store, checked with the same verification every consumer uses.

use cairn_digest::Digest;
use cairn_release::{
    cosign, current, history, promote, publish_release, rollback_target, ReleaseError,
    DEFAULT_EXPIRY,
};
use cairn_store::{BlobStoreExt, Store};
use cairn_trust::{verify_channel, ChannelPolicy, KeySet, Refusal, Release, SigningKey};
use time::macros::datetime;
use time::OffsetDateTime;

const NOW: OffsetDateTime = datetime!(2026-11-23 12:00 UTC);

fn key(seed: u8) -> SigningKey {
    SigningKey::from_seed(&[seed; 32])
}

fn release(version: &str) -> Release {
    Release {
        service: "hello".into(),
        version: version.into(),
        artifact: Digest::of(version.as_bytes()),
        action: Digest::of(b"action"),
        run: serde_json::json!({"command": ["bin/hello"]}),
        deploy: None,
        provenance: Digest::of(b"provenance"),
        created: NOW,
    }
}

async fn publish(store: &Store, version: &str) -> Digest {
    publish_release(store, &release(version), &key(1))
        .await
        .unwrap()
}

fn policy(threshold: usize, keys: &[&SigningKey]) -> (ChannelPolicy, KeySet) {
    let policy = ChannelPolicy {
        service: "hello".into(),
        channel: "prod".into(),
        keys: keys.iter().map(|k| k.key_id()).collect(),
        threshold,
    };
    (policy, keys.iter().map(|k| k.public_key()).collect())
}

#[tokio::test]
async fn promotions_chain_with_growing_sequence() {
    let store = Store::memory();
    let (v1, v2) = (publish(&store, "1.0").await, publish(&store, "2.0").await);
    let first = promote(&store, "hello", "prod", &v1, &key(1), DEFAULT_EXPIRY, NOW)
        .await
        .unwrap();
    let second = promote(&store, "hello", "prod", &v2, &key(1), DEFAULT_EXPIRY, NOW)
        .await
        .unwrap();
    assert_eq!(
        (first.statement.sequence, second.statement.sequence),
        (1, 2)
    );
    assert_eq!(second.statement.previous, Some(first.digest()));
    let chain = history(&store, "hello", "prod").await.unwrap();
    let releases: Vec<_> = chain.iter().map(|e| e.statement.release).collect();
    assert_eq!(releases, [v2, v1]);

    let (p, keys) = policy(1, &[&key(1)]);
    let verified = verify_channel(&second.envelope, &p, &keys, Some(1), NOW).unwrap();
    assert_eq!(verified.statement.release, v2);
}

#[tokio::test]
async fn concurrent_promotions_never_overwrite_each_other() {
    let store = Store::memory();
    let releases: Vec<Digest> = publish_many(&store, 8).await;
    let tasks: Vec<_> = releases
        .iter()
        .map(|r| {
            let (store, r) = (store.clone(), *r);
            tokio::spawn(async move {
                promote(&store, "hello", "prod", &r, &key(1), DEFAULT_EXPIRY, NOW).await
            })
        })
        .collect();
    let mut sequences = Vec::new();
    for t in tasks {
        sequences.push(t.await.unwrap().unwrap().statement.sequence);
    }
    sequences.sort();
    assert_eq!(
        sequences,
        (1..=8).collect::<Vec<_>>(),
        "each promotion got its own sequence"
    );
    assert_eq!(history(&store, "hello", "prod").await.unwrap().len(), 8);
}

async fn publish_many(store: &Store, n: usize) -> Vec<Digest> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(publish(store, &format!("1.{i}")).await);
    }
    out
}

#[tokio::test]
async fn a_second_signature_makes_a_two_key_channel_effective() {
    let store = Store::memory();
    let v1 = publish(&store, "1.0").await;
    let (alice, bob) = (key(1), key(2));
    let (p, keys) = policy(2, &[&alice, &bob]);
    let pending = promote(&store, "hello", "prod", &v1, &alice, DEFAULT_EXPIRY, NOW)
        .await
        .unwrap();
    let refused = verify_channel(&pending.envelope, &p, &keys, None, NOW).unwrap_err();
    assert!(
        matches!(refused, Refusal::BelowThreshold { have: 1, need: 2 }),
        "{refused}"
    );

    // The same key signing again does not count twice.
    let again = cosign(&store, "hello", "prod", &alice, None).await.unwrap();
    assert!(verify_channel(&again.envelope, &p, &keys, None, NOW).is_err());

    let signed = cosign(&store, "hello", "prod", &bob, Some(&pending.digest()))
        .await
        .unwrap();
    assert_eq!(
        signed.digest(),
        pending.digest(),
        "co-signing does not change the statement"
    );
    verify_channel(&signed.envelope, &p, &keys, None, NOW).unwrap();
}

#[tokio::test]
async fn rollback_goes_to_the_previous_release_with_a_higher_sequence() {
    let store = Store::memory();
    let (v1, v2) = (publish(&store, "1.0").await, publish(&store, "2.0").await);
    for r in [v1, v2, v2] {
        promote(&store, "hello", "prod", &r, &key(1), DEFAULT_EXPIRY, NOW)
            .await
            .unwrap();
    }
    let target = rollback_target(&store, "hello", "prod", None)
        .await
        .unwrap();
    assert_eq!(target, v1);
    let rolled = promote(
        &store,
        "hello",
        "prod",
        &target,
        &key(1),
        DEFAULT_EXPIRY,
        NOW,
    )
    .await
    .unwrap();
    assert_eq!(rolled.statement.sequence, 4);
    assert_eq!(
        current(&store, "hello", "prod")
            .await
            .unwrap()
            .unwrap()
            .statement
            .release,
        v1
    );
}

#[tokio::test]
async fn promoting_what_is_not_a_release_is_refused_and_changes_nothing() {
    let store = Store::memory();
    let blob = store
        .blobs
        .put_bytes(b"just some bytes".to_vec())
        .await
        .unwrap();
    let err = promote(&store, "hello", "prod", &blob, &key(1), DEFAULT_EXPIRY, NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, ReleaseError::NotARelease(..)), "{err}");
    let v1 = publish(&store, "1.0").await;
    let err = promote(&store, "other", "prod", &v1, &key(1), DEFAULT_EXPIRY, NOW)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("service"), "{err}");
    let err = promote(
        &store,
        "hello",
        "bad channel",
        &v1,
        &key(1),
        DEFAULT_EXPIRY,
        NOW,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("channel"), "{err}");
    assert!(current(&store, "hello", "prod").await.unwrap().is_none());
    assert!(matches!(
        rollback_target(&store, "hello", "prod", None).await,
        Err(ReleaseError::EmptyChannel { .. })
    ));
}

#[tokio::test]
async fn repeated_rollbacks_walk_back_through_the_generations() {
    let store = Store::memory();
    let mut r = Vec::new();
    for v in ["1.0", "2.0", "3.0"] {
        let d = publish(&store, v).await;
        promote(&store, "hello", "prod", &d, &key(1), DEFAULT_EXPIRY, NOW)
            .await
            .unwrap();
        r.push(d);
    }
    let roll = || async {
        let to = rollback_target(&store, "hello", "prod", None).await?;
        promote(&store, "hello", "prod", &to, &key(1), DEFAULT_EXPIRY, NOW).await?;
        Ok::<_, ReleaseError>(to)
    };
    assert_eq!(roll().await.unwrap(), r[1]);
    assert_eq!(
        roll().await.unwrap(),
        r[0],
        "a second rollback goes further back"
    );
    assert!(matches!(
        roll().await,
        Err(ReleaseError::NothingToRollBackTo { .. })
    ));
    // A new release, then a rollback: back to the one it replaced.
    let v4 = publish(&store, "4.0").await;
    promote(&store, "hello", "prod", &v4, &key(1), DEFAULT_EXPIRY, NOW)
        .await
        .unwrap();
    assert_eq!(roll().await.unwrap(), r[0]);

    // --to: any release of the history, never one it did not have.
    let to = rollback_target(&store, "hello", "prod", Some(r[2])).await;
    assert_eq!(to.unwrap(), r[2]);
    let never = publish(&store, "9.9").await;
    let err = rollback_target(&store, "hello", "prod", Some(never)).await;
    assert!(
        matches!(err, Err(ReleaseError::NotInHistory { .. })),
        "{err:?}"
    );
    let here = rollback_target(&store, "hello", "prod", Some(r[0])).await;
    assert!(
        matches!(here, Err(ReleaseError::AlreadyThere { .. })),
        "{here:?}"
    );
}

#[tokio::test]
async fn history_keeps_every_statements_signers_and_date() {
    let store = Store::memory();
    let (v1, v2) = (publish(&store, "1.0").await, publish(&store, "2.0").await);
    promote(&store, "hello", "prod", &v1, &key(1), DEFAULT_EXPIRY, NOW)
        .await
        .unwrap();
    cosign(&store, "hello", "prod", &key(2), None)
        .await
        .unwrap();
    promote(&store, "hello", "prod", &v2, &key(3), DEFAULT_EXPIRY, NOW)
        .await
        .unwrap();
    let entries = history(&store, "hello", "prod").await.unwrap();
    let signers = |i: usize| -> Vec<String> {
        let env = entries[i].envelope.as_ref().unwrap();
        env.signatures.iter().map(|s| s.keyid.clone()).collect()
    };
    assert_eq!(signers(0), [key(3).key_id().to_string()]);
    assert_eq!(
        signers(1),
        [key(1).key_id().to_string(), key(2).key_id().to_string()],
        "the older statement keeps both signatures"
    );
    assert_eq!(entries[1].statement.issued, Some(NOW));
}

#[tokio::test]
async fn copying_a_channel_takes_its_history_and_never_rolls_back() {
    use cairn_release::{copy_channel, ChannelMove};
    use cairn_transfer::CopyOptions;
    let (a, b) = (Store::memory(), Store::memory());
    // What the fixture releases name, so their closures are whole.
    for bytes in [&b"1.0"[..], b"2.0", b"3.0", b"action", b"provenance"] {
        a.blobs.put_bytes(bytes.to_vec()).await.unwrap();
    }
    let (v1, v2) = (publish(&a, "1.0").await, publish(&a, "2.0").await);
    for r in [v1, v2] {
        promote(&a, "hello", "prod", &r, &key(1), DEFAULT_EXPIRY, NOW)
            .await
            .unwrap();
    }
    let opts = CopyOptions::default();
    let copied = copy_channel(&a, &b, "hello", "prod", &opts, &())
        .await
        .unwrap();
    assert_eq!(copied.channel, ChannelMove::Created);
    assert_eq!((copied.statements, copied.releases.len()), (2, 2));
    let there = history(&b, "hello", "prod").await.unwrap();
    assert_eq!(there.len(), 2);
    assert!(there.iter().all(|e| e.envelope.is_some()));
    let (p, keys) = policy(1, &[&key(1)]);
    let cur = current(&b, "hello", "prod").await.unwrap().unwrap();
    verify_channel(&cur.envelope, &p, &keys, None, NOW).unwrap();
    cairn_release::load_release(&b, &v1).await.unwrap();

    // Again: nothing changes. A co-signature at the source travels.
    let again = copy_channel(&a, &b, "hello", "prod", &opts, &())
        .await
        .unwrap();
    assert_eq!(again.channel, ChannelMove::UpToDate);
    cosign(&a, "hello", "prod", &key(2), None).await.unwrap();
    let signed = copy_channel(&a, &b, "hello", "prod", &opts, &())
        .await
        .unwrap();
    assert_eq!(signed.channel, ChannelMove::Signed);

    // The source moves on: the destination fast-forwards.
    let v3 = publish(&a, "3.0").await;
    promote(&a, "hello", "prod", &v3, &key(1), DEFAULT_EXPIRY, NOW)
        .await
        .unwrap();
    let ff = copy_channel(&a, &b, "hello", "prod", &opts, &())
        .await
        .unwrap();
    assert_eq!(ff.channel, ChannelMove::FastForwarded { from: 2 });

    // The destination promotes on its own: a copy would roll it back.
    promote(&b, "hello", "prod", &v1, &key(1), DEFAULT_EXPIRY, NOW)
        .await
        .unwrap();
    let before = current(&b, "hello", "prod").await.unwrap().unwrap();
    let err = copy_channel(&a, &b, "hello", "prod", &opts, &())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ReleaseError::Diverged { sequence: 4, .. }),
        "{err}"
    );
    let after = current(&b, "hello", "prod").await.unwrap().unwrap();
    assert_eq!(after.digest(), before.digest());
}
