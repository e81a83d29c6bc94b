//! A copy to S3 (moto) whose server is killed mid-copy and restarted on
//! the same port: rerunning the copy completes it and the destination then
//! holds the whole closure.
//!
//! moto keeps objects in memory, so the restarted server has lost the blobs
//! copied before the kill (and the bucket, which the test re-creates): the
//! rerun copies everything again. Against a durable S3 the same rerun would
//! copy only what is missing (`copy_closure` asks the destination first).
//!
//! Needs `moto_server` on PATH (`pip install 'moto[server]'`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_digest::Digest;
use cairn_store::moto::{free_port, Moto};
use cairn_store::{BlobStoreExt, Store};
use cairn_transfer::{copy_closure, CopyOptions, Kind, Progress};
use cairn_tree::proto::{Directory, FileNode};

const BUCKET: &str = "cairn-restart";
const FILES: usize = 400;

/// Starts moto on `port` with the bucket, and the destination store in it.
fn start_moto(port: u16) -> (Moto, Store) {
    let moto = Moto::start_on(port);
    moto.create_bucket(BUCKET);
    let dest = moto.store(BUCKET, "restart").into_store();
    (moto, dest)
}

/// Counts blobs that reached the destination.
struct Counter(Arc<AtomicU64>);

impl Progress for Counter {
    fn copied(&self, _digest: &Digest, _size: u64) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// One directory of `FILES` distinct 16 KiB files; returns its digest.
async fn many_files(store: &Store) -> Digest {
    let mut files = Vec::new();
    for i in 0..FILES {
        let bytes = format!("{i:08}").repeat(2048).into_bytes();
        let digest = store.blobs.put_bytes(bytes).await.unwrap();
        files.push(FileNode {
            name: format!("f{i:04}"),
            digest: Some(digest.into()),
            ..Default::default()
        });
    }
    let root = Directory {
        files,
        ..Default::default()
    };
    store
        .blobs
        .put_bytes(cairn_tree::encode_directory(&root))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_completes_after_the_s3_server_restarts() {
    let source = Store::memory();
    let root = many_files(&source).await;
    let port = free_port();
    let (moto, dest) = start_moto(port);

    let copied = Arc::new(AtomicU64::new(0));
    let options = CopyOptions {
        concurrency: 4,
        ..CopyOptions::default()
    };
    let counter = Counter(copied.clone());
    // The copy, bounded in case the client's retries stall it.
    let copy = tokio::time::timeout(
        Duration::from_secs(90),
        copy_closure(&source, &dest, root, Kind::Tree, &options, &counter),
    );
    let kill = async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        while copied.load(Ordering::SeqCst) < 20 {
            assert!(Instant::now() < deadline, "the copy made no progress");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(moto); // kills moto by its PID and waits for it
    };
    let (outcome, ()) = tokio::join!(copy, kill);
    assert!(
        matches!(outcome, Ok(Err(_))),
        "with its server gone the copy fails, within 90 s: {outcome:?}"
    );

    let (_moto, dest) = start_moto(port);
    let report = copy_closure(&source, &dest, root, Kind::Tree, &options, &())
        .await
        .expect("the rerun completes");
    assert_eq!(report.blobs_total, FILES as u64 + 1);
    let again = copy_closure(&source, &dest, root, Kind::Tree, &options, &())
        .await
        .unwrap();
    assert_eq!(again.blobs_copied, 0, "a second rerun has nothing to copy");
    // Every blob reads back verified, with the source's bytes.
    let root_bytes = dest.blobs.get_bytes(&root).await.unwrap();
    let dir = cairn_tree::decode_directory(&root_bytes).unwrap();
    for f in &dir.files {
        let digest = Digest::try_from(f.digest.as_ref().unwrap()).unwrap();
        let ours = source.blobs.get_bytes(&digest).await.unwrap();
        assert_eq!(dest.blobs.get_bytes(&digest).await.unwrap(), ours);
    }
    assert_eq!(dir.files.len(), FILES);
}
