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

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_digest::Digest;
use cairn_store::s3::{S3Store, S3Url};
use cairn_store::{BlobStoreExt, Store};
use cairn_transfer::{copy_closure, CopyOptions, Kind, Progress};
use cairn_tree::proto::{Directory, FileNode};

const BUCKET: &str = "cairn-restart";
const FILES: usize = 400;

/// A running moto_server, stopped on drop.
struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Starts moto on `port` and creates the bucket.
    fn start(port: u16) -> Self {
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server is required: pip install 'moto[server]'");
        let moto = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while moto.http("GET", "/").is_none() {
            assert!(Instant::now() < deadline, "moto_server did not answer");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(moto.http("PUT", &format!("/{BUCKET}")), Some(200));
        moto
    }

    fn http(&self, method: &str, path: &str) -> Option<u16> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        );
        s.write_all(head.as_bytes()).ok()?;
        let mut response = String::new();
        s.read_to_string(&mut response).ok()?;
        response.split(' ').nth(1)?.parse().ok()
    }

    fn store(&self) -> Store {
        let url = format!(
            "s3://{BUCKET}/restart?endpoint=http://127.0.0.1:{}&region=us-east-1",
            self.port
        );
        let parsed = S3Url::parse(&url).unwrap();
        let builder = parsed
            .builder()
            .with_access_key_id("test")
            .with_secret_access_key("test");
        S3Store::with_builder(&parsed, builder)
            .unwrap()
            .into_store()
    }
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_completes_after_the_s3_server_restarts() {
    let source = Store::memory();
    let root = many_files(&source).await;
    let port = free_port();
    let moto = Moto::start(port);

    let copied = Arc::new(AtomicU64::new(0));
    let options = CopyOptions {
        concurrency: 4,
        ..CopyOptions::default()
    };
    let dest = moto.store();
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

    let moto = Moto::start(port);
    let dest = moto.store();
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
