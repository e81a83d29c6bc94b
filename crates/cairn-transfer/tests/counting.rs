//! [`CountingStore`], the one store wrapper: it passes every method through
//! as itself (so the store behind it still batches, assembles and answers
//! closure questions), passes the whole conformance suite, and counts the
//! blobs of a batch like those of single puts.

use std::sync::Arc;

use cairn_digest::Digest;
use cairn_store::{conformance, BlobStore, FsStore, MemoryStore, Store};
use cairn_transfer::CountingStore;

#[tokio::test]
async fn counting_store_forwards_every_method() {
    conformance::forwards_blobs(|inner| Arc::new(CountingStore::new(inner))).await;
}

#[tokio::test]
async fn counting_store_conforms_over_memory() {
    let memory = Arc::new(MemoryStore::new());
    let store = Store {
        blobs: Arc::new(CountingStore::new(memory.clone())),
        refs: memory,
        local: None,
    };
    conformance::all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counting_store_conforms_over_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FsStore::open(dir.path()).unwrap());
    let store = Store {
        blobs: Arc::new(CountingStore::new(fs.clone())),
        refs: fs,
        local: None,
    };
    conformance::all(&store).await;
}

#[tokio::test]
async fn batched_puts_are_counted() {
    let counting = CountingStore::new(Arc::new(MemoryStore::new()));
    let blobs: Vec<(Digest, Vec<u8>)> = [&b"one"[..], b"two!", b""]
        .iter()
        .map(|b| (Digest::of(b), b.to_vec()))
        .collect();
    counting.put_many(blobs).await.unwrap();
    assert_eq!((counting.puts(), counting.bytes()), (3, 7));
}
