//! Ref properties: compare-and-swap, racing writers, listing, limits,
//! deletion, and seeing changes (pushed, or by polling).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::error::{ErrorKind, StoreError};
use crate::refs::{watch_or_poll, IfChanged, RefName, RefStore, Version, Versioned};

/// Compare-and-swap, listing, the size limit and deletion, against a
/// store with no ref under `conformance/` or named `elsewhere`.
pub async fn refs(store: &dyn RefStore) {
    let name = RefName::new("conformance/one").unwrap();
    assert!(store.get(&name).await.unwrap().is_none());
    let v1 = store
        .compare_and_swap(&name, None, b"1".to_vec())
        .await
        .unwrap();
    let again = store.compare_and_swap(&name, None, b"x".to_vec()).await;
    assert!(
        matches!(&again, Err(e @ StoreError::Conflict { .. }) if e.kind() == ErrorKind::Conflict),
        "create over existing: {again:?}"
    );
    let got = store.get(&name).await.unwrap().unwrap();
    assert_eq!((got.value.as_slice(), &got.version), (&b"1"[..], &v1));

    let v2 = store
        .compare_and_swap(&name, Some(&v1), b"2".to_vec())
        .await
        .unwrap();
    assert_ne!(v1, v2, "a write must change the version");
    assert_eq!(
        store.get_if_changed(&name, &v2).await.unwrap(),
        IfChanged::Unchanged,
        "a conditional read at the current version"
    );
    assert_eq!(
        store.get_if_changed(&name, &v1).await.unwrap(),
        IfChanged::Changed(Some(Versioned {
            value: b"2".to_vec(),
            version: v2.clone()
        })),
        "a conditional read at an older version"
    );
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
        matches!(&too_big, Err(e @ StoreError::RefTooLarge { .. }) if e.kind() == ErrorKind::InvalidRequest),
        "{too_big:?}"
    );

    let stale_delete = store.delete(&name, &v1).await;
    assert!(
        stale_delete
            .as_ref()
            .is_err_and(|e| e.kind() == ErrorKind::Conflict),
        "delete at a stale version: {stale_delete:?}"
    );
    store.delete(&name, &v2).await.unwrap();
    assert!(store.get(&name).await.unwrap().is_none());
    assert_eq!(
        store.get_if_changed(&name, &v2).await.unwrap(),
        IfChanged::Changed(None),
        "a conditional read of a deleted ref"
    );
    let v3 = store
        .compare_and_swap(&name, None, b"again".to_vec())
        .await
        .unwrap();
    assert_ne!(v3, v1, "a re-created ref reused an old version");
}

/// A ref and a ref below it cannot both exist, on any backend: writing
/// `nest/a/b` beside `nest/a`, or `nest/a` above `nest/a/b/c`, is refused
/// as an invalid request naming the ref in the way
/// ([`StoreError::RefPathTaken`] from a backend itself), and both
/// refs stay as they were (a local store holds refs as files, as Git
/// does, and every backend keeps the same rule so a store can be copied
/// to any other). Uses refs under `nest/`.
pub async fn nesting(store: &dyn RefStore) {
    let a = RefName::new("nest/a").unwrap();
    let va = store
        .compare_and_swap(&a, None, b"a".to_vec())
        .await
        .unwrap();
    let below = RefName::new("nest/a/b").unwrap();
    let refused = store.compare_and_swap(&below, None, b"b".to_vec()).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.kind() == ErrorKind::InvalidRequest
                && e.to_string().contains("ref nest/a exists")),
        "a ref below an existing one: {refused:?}"
    );
    assert!(store.get(&below).await.unwrap().is_none());
    assert_eq!(store.get(&a).await.unwrap().unwrap().version, va);

    let deep = RefName::new("nest/c/d/e").unwrap();
    store
        .compare_and_swap(&deep, None, b"e".to_vec())
        .await
        .unwrap();
    for above in ["nest/c", "nest/c/d"] {
        let above = RefName::new(above).unwrap();
        let refused = store.compare_and_swap(&above, None, b"c".to_vec()).await;
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.kind() == ErrorKind::InvalidRequest
                    && e.to_string().contains("ref nest/c/d/e exists")),
            "a ref above an existing one: {refused:?}"
        );
        assert!(store.get(&above).await.unwrap().is_none());
    }
    // A sibling whose name merely starts with the same text is no parent.
    let sibling = RefName::new("nest/a-b").unwrap();
    store
        .compare_and_swap(&sibling, None, b"s".to_vec())
        .await
        .unwrap();
    assert_eq!(
        store.list("nest/").await.unwrap(),
        [a, sibling, deep],
        "the refused writes left nothing"
    );
}

/// Listing page by page ([`RefStore::list_page`]) gives what one list
/// gives, in order, whatever the page size: names sort as text, so
/// `b.x` comes before `b/c` and `b0` after `b/e/f`. Uses refs under
/// `pages/`.
pub async fn pages(store: &dyn RefStore) {
    let mut names: Vec<RefName> = [
        "pages/a",
        "pages/a-b",
        "pages/b0",
        "pages/b/c",
        "pages/b/e/f",
        "pages/b.x",
        "pages/b/d",
        "pages/c",
    ]
    .into_iter()
    .map(|n| RefName::new(n).unwrap())
    .collect();
    for name in &names {
        store
            .compare_and_swap(name, None, b"p".to_vec())
            .await
            .unwrap();
    }
    names.sort();
    assert_eq!(store.list("pages/").await.unwrap(), names);
    for limit in [1, 2, 10] {
        let mut paged = Vec::new();
        let mut after: Option<RefName> = None;
        loop {
            let page = store
                .list_page("pages/", after.as_ref(), limit)
                .await
                .unwrap();
            assert!(page.len() <= limit, "{limit}: {page:?}");
            match page.last() {
                Some(last) => after = Some(last.clone()),
                None => break,
            }
            paged.extend(page);
        }
        assert_eq!(paged, names, "pages of {limit}");
    }
    let page = store.list_page("pages/b", None, 10).await.unwrap();
    assert_eq!(page, names[2..7], "a prefix inside a segment");
    let after = RefName::new("pages/b/d").unwrap();
    let page = store.list_page("pages/b/", Some(&after), 10).await.unwrap();
    assert_eq!(page, names[5..6], "a directory's page after a cursor");
    let after = RefName::new("pages/b/c").unwrap();
    let page = store.list_page("pages/", Some(&after), 2).await.unwrap();
    assert_eq!(page, names[4..6], "a page from inside a directory on");
}

/// Writers racing on one ref from the same version: in every round
/// exactly one wins and every other gets a conflict; racing creates of one
/// name likewise. Uses refs under `race/`.
pub async fn races(store: &dyn RefStore) {
    const WRITERS: usize = 4;
    const ROUNDS: usize = 8;
    let name = RefName::new("race/one").unwrap();
    let mut version: Option<Version> = None;
    for round in 0..ROUNDS {
        let writes = (0..WRITERS).map(|w| {
            let value = format!("round {round} writer {w}").into_bytes();
            store.compare_and_swap(&name, version.as_ref(), value)
        });
        let outcomes = futures::future::join_all(writes).await;
        let mut won = None;
        for (w, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                Ok(v) => {
                    assert!(won.is_none(), "round {round}: two writers won");
                    won = Some((w, v));
                }
                Err(e) => assert_eq!(e.kind(), ErrorKind::Conflict, "round {round}: {e}"),
            }
        }
        let (w, v) = won.unwrap_or_else(|| panic!("round {round}: nobody won"));
        let now = store.get(&name).await.unwrap().expect("the ref exists");
        assert_eq!(now.version, v, "round {round}: the winner's version");
        assert_eq!(now.value, format!("round {round} writer {w}").into_bytes());
        version = Some(v);
    }
}

/// Checks that a write under a watched prefix is seen, and one outside it
/// is not: pushed by backends that can, by polling
/// ([`watch_or_poll`]) for the others. Uses refs under `watched/` and
/// `unwatched`.
pub async fn watch(store: Arc<dyn RefStore>) {
    let mut events = watch_or_poll(store.clone(), "watched/", Duration::from_millis(50))
        .await
        .unwrap();
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
