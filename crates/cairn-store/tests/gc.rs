//! Garbage collection of the local store: what it keeps (roots, claims,
//! large directories), what it removes besides blobs (leftovers of dead
//! writers, derived caches) and what `dangling_refs` reports.

use std::os::unix::fs::MetadataExt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use cairn_digest::Digest;
use cairn_store::blob::{BlobReader, BlobStore};
use cairn_store::dangling::dangling_refs;
use cairn_store::gc::{collect_garbage, GcOptions, GcReport};
use cairn_store::reach::{Kind, Live, MAX_DOCUMENT};
use cairn_store::{FsStore, MemoryStore, RefName, RefStore};
use cairn_tree::{encode_directory, DirectoryBuilder};

const HOUR: Duration = Duration::from_secs(3600);

fn open() -> (tempfile::TempDir, FsStore) {
    let dir = tempfile::tempdir().unwrap();
    let fs = FsStore::open(dir.path().join("store")).unwrap();
    (dir, fs)
}

/// Makes every blob file look written two hours ago.
fn age_all(fs: &FsStore) {
    let old = SystemTime::now() - 2 * HOUR;
    for b in fs.list_blobs().unwrap() {
        age_path(&fs.blob_path(&b.digest), old);
    }
}

fn age_path(path: &std::path::Path, when: SystemTime) {
    std::fs::File::open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

async fn pin(fs: &FsStore, name: &str, value: impl Into<Vec<u8>>) {
    let name = RefName::new(name).unwrap();
    fs.compare_and_swap(&name, None, value.into())
        .await
        .unwrap();
}

async fn gc(fs: &FsStore) -> GcReport {
    collect_garbage(fs, &GcOptions::default()).await.unwrap()
}

/// A directory of 120,000 entries naming 1,000 distinct files, and a
/// subdirectory naming one more: its encoding is over 8 MiB. Returns it
/// and every blob it reaches, all stored in `fs`.
fn big_directory(fs: &FsStore) -> (Digest, Vec<Digest>) {
    static ENCODED: std::sync::OnceLock<(Vec<Vec<u8>>, Vec<u8>)> = std::sync::OnceLock::new();
    let (small, big) = ENCODED.get_or_init(|| {
        let files: Vec<Vec<u8>> = (0..1000)
            .map(|i| format!("file {i}").into_bytes())
            .collect();
        let mut sub = DirectoryBuilder::new();
        sub.file("deep", Digest::of(b"deep below"), false);
        let sub = encode_directory(&sub.build().unwrap());
        let mut b = DirectoryBuilder::new();
        for i in 0..120_000 {
            b.file(
                format!("f{i:06}"),
                Digest::of(&files[i % files.len()]),
                false,
            );
        }
        b.directory("zz-sub", Digest::of(&sub));
        let big = encode_directory(&b.build().unwrap());
        let mut small = files;
        small.extend([b"deep below".to_vec(), sub]);
        (small, big)
    });
    assert!(big.len() as u64 > MAX_DOCUMENT, "{} bytes", big.len());
    let mut all: Vec<Digest> = small
        .iter()
        .map(|b| fs.put_bytes_sync(b).unwrap())
        .collect();
    let dir = fs.put_bytes_sync(big).unwrap();
    all.push(dir);
    (dir, all)
}

fn assert_all_present(fs: &FsStore, blobs: &[Digest]) {
    let missing: Vec<_> = blobs.iter().filter(|d| !fs.has_sync(d)).collect();
    assert!(
        missing.is_empty(),
        "{} blobs deleted: {missing:?}",
        missing.len()
    );
}

#[tokio::test]
async fn a_directory_over_eight_mebibytes_keeps_everything_below_it() {
    // Named three ways: a digest as a ref's text (unknown kind, read only
    // as far as needed), inside a document, and as a tree by a claim.
    for how in ["text", "document", "claim"] {
        let (_dir, fs) = open();
        let (tree, blobs) = big_directory(&fs);
        let unrelated = fs.put_bytes_sync(b"nobody names me").unwrap();
        match how {
            "text" => pin(&fs, "pins/big", format!("{tree:#}")).await,
            "document" => {
                let doc = format!(
                    r#"{{"artifact": {{"hash": "sha256:{}", "size": {}}}}}"#,
                    tree.hex(),
                    tree.size()
                );
                let doc = fs.put_bytes_sync(doc.as_bytes()).unwrap();
                pin(&fs, "docs/release", format!("{doc:#}")).await;
            }
            _ => fs.claim(&[(tree, Kind::Tree)]).unwrap(),
        }
        age_all(&fs);
        let report = gc(&fs).await;
        assert_all_present(&fs, &blobs);
        assert_eq!(report.removed, vec![unrelated], "{how}");
        if how == "text" {
            assert!(dangling_refs(&fs).await.unwrap().is_empty());
        }
    }
}

/// Counts the bytes read through `get`.
#[derive(Debug, Default)]
struct CountingReads {
    inner: MemoryStore,
    read: Arc<AtomicU64>,
}

struct Counted {
    inner: BlobReader,
    read: Arc<AtomicU64>,
}

impl tokio::io::AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = self.inner.as_mut().poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        polled
    }
}

#[async_trait]
impl BlobStore for CountingReads {
    async fn has_many(&self, d: &[Digest]) -> cairn_store::Result<Vec<bool>> {
        self.inner.has_many(d).await
    }
    async fn get(&self, d: &Digest) -> cairn_store::Result<Option<BlobReader>> {
        let read = self.read.clone();
        Ok(BlobStore::get(&self.inner, d)
            .await?
            .map(|inner| Box::pin(Counted { inner, read }) as BlobReader))
    }
    async fn put(&self, d: &Digest, data: BlobReader) -> cairn_store::Result<()> {
        self.inner.put(d, data).await
    }
}

#[tokio::test]
async fn large_data_of_unknown_kind_is_read_only_as_far_as_it_takes() {
    use cairn_store::BlobStoreExt;
    let store = CountingReads::default();
    let mut data = vec![0u8; 16 << 20];
    data[..4].copy_from_slice(b"\x7fELF");
    let data = store.put_bytes(data).await.unwrap();
    let doc = format!(
        r#"{{"binary": {{"hash": "sha256:{}", "size": {}}}}}"#,
        data.hex(),
        data.size()
    );
    let doc = store.put_bytes(doc.into_bytes()).await.unwrap();
    let mut live = Live::new();
    live.add(&store, [(doc, Kind::Unknown)]).await.unwrap();
    assert!(live.contains(data.hash()) && live.contains(doc.hash()));
    let read = store.read.load(Ordering::Relaxed);
    assert!(
        read <= doc.size() + (64 << 10) + (64 << 10),
        "read {read} bytes"
    );
}

#[tokio::test]
async fn refs_holding_a_digest_as_text_are_roots_in_every_spelling() {
    let (_dir, fs) = open();
    let spellings = |d: &Digest| {
        [
            format!("{d:#}"),
            format!("{d}"),
            format!("{}\n", d.hex()),
            format!("{}/{}", d.hex(), d.size()),
        ]
    };
    let mut kept = Vec::new();
    for i in 0..4 {
        let file = fs
            .put_bytes_sync(format!("in tree {i}").as_bytes())
            .unwrap();
        let mut b = DirectoryBuilder::new();
        b.file("f", file, false);
        let tree = fs
            .put_bytes_sync(&encode_directory(&b.build().unwrap()))
            .unwrap();
        pin(&fs, &format!("pins/{i}"), spellings(&tree)[i].clone()).await;
        kept.extend([file, tree]);
    }
    // A fetch ref keeps the fetched bytes its name carries, besides its tree.
    let archive = fs.put_bytes_sync(b"fetched archive bytes").unwrap();
    let unpacked = fs.put_bytes_sync(b"unpacked").unwrap();
    pin(
        &fs,
        &format!("fetch/{}", archive.hex()),
        format!("{unpacked:#}"),
    )
    .await;
    kept.extend([archive, unpacked]);
    let garbage = fs.put_bytes_sync(b"garbage").unwrap();
    age_all(&fs);
    let report = gc(&fs).await;
    assert_all_present(&fs, &kept);
    assert_eq!(report.removed, vec![garbage]);
}

#[tokio::test]
async fn what_another_handle_claimed_survives_and_a_claimed_tree_keeps_its_files() {
    let (_dir, writer) = open();
    let collector = FsStore::open(writer.root()).unwrap();
    let file = writer.put_bytes_sync(b"reused by a writer").unwrap();
    let mut b = DirectoryBuilder::new();
    b.file("f", file, false);
    let tree = writer
        .put_bytes_sync(&encode_directory(&b.build().unwrap()))
        .unwrap();
    let loose = writer.put_bytes_sync(b"reused alone").unwrap();
    let garbage = writer.put_bytes_sync(b"not reused").unwrap();
    age_all(&writer);
    writer
        .claim(&[(tree, Kind::Tree), (loose, Kind::Leaf)])
        .unwrap();
    let report = gc(&collector).await;
    assert_all_present(&collector, &[file, tree, loose]);
    assert_eq!(report.removed, vec![garbage]);
}

#[tokio::test]
async fn leftovers_of_dead_writers_go_and_those_of_live_ones_stay() {
    let (_dir, fs) = open();
    let tmp = fs.root().join("tmp");
    // What a writer killed with -9 leaves: files nobody holds.
    std::fs::write(tmp.join("4242-4242-0"), vec![1u8; 1000]).unwrap();
    let dead_dir = fs.cache_dir().join("trees").join(".tmp-dead");
    std::fs::create_dir_all(dead_dir.join("t")).unwrap();
    std::fs::write(dead_dir.join("t/file"), vec![2u8; 500]).unwrap();
    // What live writers hold.
    let (live_file, _held_file) = fs.temp_file_in(&tmp).unwrap();
    let live_dir = fs.temp_dir_in(&fs.cache_dir().join("build")).unwrap();
    let report = gc(&fs).await;
    assert_eq!((report.temp.entries, report.temp.bytes), (2, 1500));
    assert!(live_file.exists() && live_dir.path().exists());
    assert!(!dead_dir.exists());
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 1);

    // Opening the store sweeps tmp/ too.
    std::fs::write(tmp.join("4243-4243-0"), b"x").unwrap();
    drop(FsStore::open(fs.root()).unwrap());
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 1);
}

#[tokio::test]
async fn derived_caches_of_collected_blobs_are_collected_and_counted() {
    let (_dir, fs) = open();
    let kept_file = fs.put_bytes_sync(&[5u8; 3000]).unwrap();
    let mut b = DirectoryBuilder::new();
    b.file("k", kept_file, true);
    let kept_tree = fs
        .put_bytes_sync(&encode_directory(&b.build().unwrap()))
        .unwrap();
    pin(&fs, "pins/kept", format!("{kept_tree:#}")).await;
    let gone_file = fs.put_bytes_sync(&[6u8; 7000]).unwrap();
    let mut b = DirectoryBuilder::new();
    b.file("g", gone_file, true);
    let gone_tree = fs
        .put_bytes_sync(&encode_directory(&b.build().unwrap()))
        .unwrap();
    let held_file = fs.put_bytes_sync(&[7u8; 100]).unwrap();
    let mut b = DirectoryBuilder::new();
    b.file("h", held_file, false);
    let held_tree = fs
        .put_bytes_sync(&encode_directory(&b.build().unwrap()))
        .unwrap();

    // As builds leave them: materialized trees linking blobs, executable
    // copies, a failed step's log, a stat cache nobody used for weeks.
    let cache = fs.cache_dir();
    let mut old = vec![];
    for (tree, file, name) in [
        (kept_tree, kept_file, "k"),
        (gone_tree, gone_file, "g"),
        (held_tree, held_file, "h"),
    ] {
        let dir = cache.join("trees").join(tree.hex());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::hard_link(fs.blob_path(&file), dir.join(name)).unwrap();
        old.push(dir);
    }
    std::fs::create_dir_all(cache.join("exec")).unwrap();
    for file in [kept_file, gone_file] {
        let exec = cache.join("exec").join(file.hex());
        std::fs::copy(fs.blob_path(&file), &exec).unwrap();
        old.push(exec);
    }
    std::fs::create_dir_all(cache.join("logs")).unwrap();
    std::fs::write(cache.join("logs/s-old.log"), vec![b'x'; 300]).unwrap();
    std::fs::write(cache.join("logs/s-new.log"), b"recent").unwrap();
    old.push(cache.join("logs/s-old.log"));
    std::fs::create_dir_all(cache.join("stat")).unwrap();
    std::fs::write(cache.join("stat/unused"), vec![0u8; 40]).unwrap();
    age_all(&fs);
    for path in &old {
        age_path(path, SystemTime::now() - 2 * HOUR);
    }
    age_path(
        &cache.join("stat/unused"),
        SystemTime::now() - 30 * 24 * HOUR,
    );
    // A build is using this one right now.
    let in_use = std::fs::File::open(cache.join("trees").join(held_tree.hex())).unwrap();
    rustix::fs::flock(&in_use, rustix::fs::FlockOperation::LockShared).unwrap();

    let report = gc(&fs).await;
    let c = report.caches;
    // The gone tree's link was its blob's last: its 7000 bytes are freed.
    assert_eq!((c.trees.entries, c.trees.bytes), (1, 7000));
    assert_eq!((c.exec.entries, c.exec.bytes), (1, 7000));
    assert_eq!((c.logs.entries, c.logs.bytes), (1, 300));
    assert_eq!((c.stat.entries, c.stat.bytes), (1, 40));
    assert!(cache.join("trees").join(kept_tree.hex()).exists());
    assert!(cache.join("trees").join(held_tree.hex()).exists());
    assert!(cache.join("exec").join(kept_file.hex()).exists());
    assert!(cache.join("logs/s-new.log").exists());
    assert!(report.freed_bytes() >= 7000 + 7000 + 300 + 40 + gone_file.size());
    let on_disk: u64 = walk_sizes(fs.root());
    assert!(
        on_disk < 3000 * 3 + 10_000,
        "still on disk: {on_disk} bytes"
    );
}

/// The bytes of every inode under `dir`, each once.
fn walk_sizes(dir: &std::path::Path) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else if seen.insert(m.ino()) {
                total += m.len();
            }
        }
    }
    total
}

#[tokio::test]
async fn dangling_refs_name_what_they_miss() {
    let (_dir, fs) = open();
    let file = fs.put_bytes_sync(b"will vanish").unwrap();
    let mut b = DirectoryBuilder::new();
    b.file("f", file, false);
    let tree = fs
        .put_bytes_sync(&encode_directory(&b.build().unwrap()))
        .unwrap();
    pin(&fs, "pins/whole", format!("{tree:#}")).await;
    pin(
        &fs,
        "pins/nothing",
        format!("sha256:{}", Digest::of(b"never stored").hex()),
    )
    .await;
    pin(&fs, "notes/plain", "just a note").await;
    assert_eq!(dangling_refs(&fs).await.unwrap().len(), 1);
    std::fs::remove_file(fs.blob_path(&file)).unwrap();
    let dangling = dangling_refs(&fs).await.unwrap();
    let names: Vec<_> = dangling
        .iter()
        .map(|d| d.name.as_str().to_string())
        .collect();
    assert_eq!(names, ["pins/nothing", "pins/whole"]);
    assert_eq!(dangling[1].missing, file.into());
}

/// An action-cache entry as a Bazel client writes it: its output directory
/// is a REAPI `Tree` message (`tree_digest`, no `root_directory_digest`),
/// and the files that tree lists are named nowhere else. They are live for
/// as long as the entry is (they were read as a leaf, and collected).
#[tokio::test]
async fn the_files_of_an_action_result_s_output_tree_are_kept() {
    use cairn_tree::proto::{ActionResult, Directory, FileNode, OutputDirectory, Tree};
    use prost::Message;
    let (_dir, fs) = open();
    let top = fs.put_bytes_sync(b"top-level output\n").unwrap();
    let nested = fs.put_bytes_sync(b"nested output\n").unwrap();
    let file = |name: &str, digest: Digest| FileNode {
        name: name.into(),
        digest: Some(digest.into()),
        ..Default::default()
    };
    let tree = Tree {
        root: Some(Directory {
            files: vec![file("a.txt", top)],
            ..Default::default()
        }),
        children: vec![Directory {
            files: vec![file("b.txt", nested)],
            ..Default::default()
        }],
    };
    let tree = fs.put_bytes_sync(&tree.encode_to_vec()).unwrap();
    let result = ActionResult {
        output_directories: vec![OutputDirectory {
            path: "out".into(),
            tree_digest: Some(tree.into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let unrelated = fs.put_bytes_sync(b"named by nothing\n").unwrap();
    pin(
        &fs,
        &format!("ac/{}", "ab".repeat(32)),
        result.encode_to_vec(),
    )
    .await;
    age_all(&fs);
    gc(&fs).await;
    assert_all_present(&fs, &[tree, top, nested]);
    assert!(
        !fs.blob_path(&unrelated).exists(),
        "the control was not collected"
    );
}
