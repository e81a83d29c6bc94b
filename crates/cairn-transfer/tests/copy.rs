//! Copying closures between stores: only what is missing moves, directories
//! arrive after their contents, and a changed large file moves only the
//! chunks around the change.

use std::sync::Arc;

use cairn_digest::Digest;
use cairn_store::{BlobReader, BlobStore, BlobStoreExt, FsStore, MemoryStore, Store};
use cairn_transfer::chunks::{chunk_ref, stored_list};
use cairn_transfer::{copy_closure, CopyOptions, CopyReport, CountingStore, Kind};
use cairn_tree::proto::{Directory, DirectoryNode, FileNode};

const FILE_A: &[u8] = b"file a";
const FILE_B: &[u8] = b"file b, in a subdirectory";
const MIB: usize = 1 << 20;

/// A small pseudo-random generator (xorshift), so the big file is the same
/// on every run without a dependency.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn file(name: &str, digest: Digest) -> FileNode {
    FileNode {
        name: name.into(),
        digest: Some(digest.into()),
        ..Default::default()
    }
}

/// root/{a, big, sub/{b}}; returns the root directory's digest.
async fn tree(store: &Store, big: Vec<u8>) -> Digest {
    let a = store.blobs.put_bytes(FILE_A.to_vec()).await.unwrap();
    let b = store.blobs.put_bytes(FILE_B.to_vec()).await.unwrap();
    let big = store.blobs.put_bytes(big).await.unwrap();
    let sub = Directory {
        files: vec![file("b", b)],
        ..Default::default()
    };
    let sub = store
        .blobs
        .put_bytes(cairn_tree::encode_directory(&sub))
        .await
        .unwrap();
    let root = Directory {
        files: vec![file("a", a), file("big", big)],
        directories: vec![DirectoryNode {
            name: "sub".into(),
            digest: Some(sub.into()),
        }],
        ..Default::default()
    };
    store
        .blobs
        .put_bytes(cairn_tree::encode_directory(&root))
        .await
        .unwrap()
}

/// A local store whose `blobs` count what is put through them.
fn counted_fs(dir: &std::path::Path) -> (Store, Arc<CountingStore>) {
    let fs = Arc::new(FsStore::open(dir).unwrap());
    let counting = Arc::new(CountingStore::new(fs.clone()));
    let store = Store {
        blobs: counting.clone(),
        refs: fs.clone(),
        local: Some(fs),
    };
    (store, counting)
}

async fn copy(from: &Store, to: &Store, root: Digest) -> CopyReport {
    copy_closure(from, to, root, Kind::Tree, &CopyOptions::default(), &())
        .await
        .unwrap()
}

#[tokio::test]
async fn memory_to_fs_copies_once() {
    let from = Store::memory();
    let root = tree(&from, noise(3 * MIB, 1)).await;
    let dir = tempfile::tempdir().unwrap();
    let to = Store::local(FsStore::open(dir.path()).unwrap());

    let first = copy(&from, &to, root).await;
    assert_eq!((first.blobs_total, first.blobs_copied), (5, 5), "{first:?}");
    assert_eq!(first.files_chunked, 1);
    assert_eq!(
        to.blobs.get_bytes(&root).await.unwrap().len() as u64,
        root.size()
    );

    let again = copy(&from, &to, root).await;
    assert_eq!(
        (again.blobs_copied, again.bytes_copied),
        (0, 0),
        "{again:?}"
    );
}

#[tokio::test]
async fn fs_to_fs_copies_once() {
    let src = tempfile::tempdir().unwrap();
    let from = Store::local(FsStore::open(src.path()).unwrap());
    let root = tree(&from, noise(100_000, 2)).await;
    let dst = tempfile::tempdir().unwrap();
    let to = Store::local(FsStore::open(dst.path()).unwrap());

    let first = copy(&from, &to, root).await;
    assert_eq!(first.blobs_copied, 5);
    assert_eq!(copy(&from, &to, root).await.blobs_copied, 0);
}

/// Records the order of puts.
#[derive(Debug, Default)]
struct Recording {
    inner: MemoryStore,
    order: std::sync::Mutex<Vec<Digest>>,
}

#[async_trait::async_trait]
impl BlobStore for Recording {
    async fn has_many(&self, d: &[Digest]) -> cairn_store::Result<Vec<bool>> {
        self.inner.has_many(d).await
    }
    async fn get(&self, d: &Digest) -> cairn_store::Result<Option<BlobReader>> {
        BlobStore::get(&self.inner, d).await
    }
    async fn put(&self, d: &Digest, data: BlobReader) -> cairn_store::Result<()> {
        self.inner.put(d, data).await?;
        self.order.lock().unwrap().push(*d);
        Ok(())
    }
}

/// A memory store that answers for whole subtrees and records every
/// digest it is asked about one by one.
#[derive(Debug, Default)]
struct Asked {
    inner: MemoryStore,
    asked: std::sync::Mutex<Vec<Digest>>,
}

#[async_trait::async_trait]
impl BlobStore for Asked {
    async fn has_many(&self, d: &[Digest]) -> cairn_store::Result<Vec<bool>> {
        self.asked.lock().unwrap().extend_from_slice(d);
        self.inner.has_many(d).await
    }
    async fn get(&self, d: &Digest) -> cairn_store::Result<Option<BlobReader>> {
        BlobStore::get(&self.inner, d).await
    }
    async fn put(&self, d: &Digest, data: BlobReader) -> cairn_store::Result<()> {
        self.inner.put(d, data).await
    }
    async fn has_closures(
        &self,
        roots: &[(Digest, Kind)],
    ) -> cairn_store::Result<Option<Vec<bool>>> {
        self.inner.has_closures(roots).await
    }
}

/// root/d0..d9, each with f0..f19 (contents from `seed` and their names);
/// returns the root and each directory's digest.
async fn wide_tree(store: &Store, changed: Option<(usize, usize)>) -> (Digest, Vec<Digest>) {
    let mut dirs = Vec::new();
    let mut nodes = Vec::new();
    for d in 0..10 {
        let mut files = Vec::new();
        for f in 0..20 {
            let mut content = format!("file {d}/{f}").into_bytes();
            if changed == Some((d, f)) {
                content.extend_from_slice(b", changed");
            }
            let digest = store.blobs.put_bytes(content).await.unwrap();
            files.push(file(&format!("f{f:02}"), digest));
        }
        let dir = Directory {
            files,
            ..Default::default()
        };
        let digest = store
            .blobs
            .put_bytes(cairn_tree::encode_directory(&dir))
            .await
            .unwrap();
        dirs.push(digest);
        nodes.push(DirectoryNode {
            name: format!("d{d}"),
            digest: Some(digest.into()),
        });
    }
    let root = Directory {
        directories: nodes,
        ..Default::default()
    };
    let root = store
        .blobs
        .put_bytes(cairn_tree::encode_directory(&root))
        .await
        .unwrap();
    (root, dirs)
}

#[tokio::test]
async fn a_recopy_asks_only_about_the_changed_subtree() {
    let from = Store::memory();
    let (first, _) = wide_tree(&from, None).await;
    let (second, dirs) = wide_tree(&from, Some((3, 7))).await;
    let asked = Arc::new(Asked::default());
    let to = Store {
        blobs: asked.clone(),
        refs: Arc::new(MemoryStore::new()),
        local: None,
    };
    let report = copy(&from, &to, first).await;
    assert_eq!(report.blobs_copied, 211, "{report:?}");
    asked.asked.lock().unwrap().clear();

    let report = copy(&from, &to, second).await;
    assert_eq!(
        report.blobs_copied, 3,
        "the changed file, its directory and the root: {report:?}"
    );
    let asked = std::mem::take(&mut *asked.asked.lock().unwrap());
    assert_eq!(
        asked.len(),
        22,
        "only the root, the changed directory and its 20 files: {asked:?}"
    );
    assert!(asked.contains(&dirs[3]) && asked.contains(&second));
    assert!(
        !asked.contains(&dirs[4]),
        "an unchanged subtree was asked about"
    );
    assert_eq!(
        to.blobs.get_bytes(&second).await.unwrap().len() as u64,
        second.size()
    );
}

#[tokio::test]
async fn a_directory_stored_without_its_files_is_filled_in() {
    let from = Store::memory();
    let (root, dirs) = wide_tree(&from, None).await;
    let to = Store::memory();
    // A directory blob whose files the destination never received, as a
    // cache client might upload: present, but not whole.
    let holed = from.blobs.get_bytes(&dirs[5]).await.unwrap();
    to.blobs.put_bytes(holed).await.unwrap();

    let report = copy(&from, &to, root).await;
    assert_eq!(
        report.blobs_copied, 210,
        "all but the holed directory: {report:?}"
    );
    assert_eq!(
        to.blobs.has_closures(&[(root, Kind::Tree)]).await.unwrap(),
        Some(vec![true]),
        "the copy left the destination incomplete"
    );
}

#[tokio::test]
async fn a_corrupt_source_blob_is_named_and_not_copied() {
    let src = tempfile::tempdir().unwrap();
    let fs = FsStore::open(src.path()).unwrap();
    let path_of_a = fs.blob_path(&Digest::of(FILE_A));
    let from = Store::local(fs);
    let root = tree(&from, noise(1000, 7)).await;
    // Same length, one byte flipped: only the hash can tell.
    let mut bytes = std::fs::read(&path_of_a).unwrap();
    bytes[0] ^= 1;
    std::fs::set_permissions(
        &path_of_a,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    std::fs::write(&path_of_a, bytes).unwrap();

    let dst = tempfile::tempdir().unwrap();
    for to in [
        Store::memory(),
        Store::local(FsStore::open(dst.path()).unwrap()),
    ] {
        let err = copy_closure(&from, &to, root, Kind::Tree, &CopyOptions::default(), &())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(&Digest::of(FILE_A).to_string()), "{err}");
        assert!(!to.blobs.has(&Digest::of(FILE_A)).await.unwrap());
        assert!(
            !to.blobs.has(&root).await.unwrap(),
            "the root arrived without its files"
        );
    }
}

#[tokio::test]
async fn directories_arrive_after_their_contents() {
    let from = Store::memory();
    let root = tree(&from, noise(1000, 6)).await;
    let rec = Arc::new(Recording::default());
    let to = Store {
        blobs: rec.clone(),
        refs: Arc::new(MemoryStore::new()),
        local: None,
    };
    copy(&from, &to, root).await;
    let order = rec.order.lock().unwrap().clone();
    assert_eq!(order.len(), 5);
    assert_eq!(
        order.last(),
        Some(&root),
        "root directory not last: {order:?}"
    );
    let sub_at = order
        .iter()
        .position(|d| *d != root && d.size() < 100 && !from_files().contains(d));
    assert_eq!(
        sub_at,
        Some(3),
        "subdirectory must come after the files, before the root"
    );
}

fn from_files() -> [Digest; 2] {
    [Digest::of(FILE_A), Digest::of(FILE_B)]
}

#[tokio::test]
async fn a_small_change_to_a_large_file_moves_only_its_chunks() {
    let v1 = noise(100 * MIB, 3);
    let mut v2 = v1.clone();
    let middle = 50 * MIB;
    v2[middle..middle + MIB].copy_from_slice(&noise(MIB, 4));

    let src = tempfile::tempdir().unwrap();
    let from = Store::local(FsStore::open(src.path()).unwrap());
    let root1 = tree(&from, v1).await;
    let root2 = tree(&from, v2.clone()).await;
    let dst = tempfile::tempdir().unwrap();
    let (to, counted) = counted_fs(dst.path());

    copy(&from, &to, root1).await;
    let first_bytes = counted.bytes();
    counted.reset();
    let second = copy(&from, &to, root2).await;
    let moved = counted.bytes();
    eprintln!("first copy put {first_bytes} bytes; second put {moved} bytes: {second:?}");
    assert!(
        moved <= 3 * MIB as u64,
        "second version moved {moved} bytes"
    );
    assert_eq!(second.bytes_copied, moved);
    assert!(second.chunks_reused > 0);

    let big = Digest::of(&v2);
    assert_eq!(
        to.blobs.get_bytes(&big).await.unwrap(),
        v2,
        "reassembled file"
    );
    let chunks = stored_list(&to, big)
        .await
        .unwrap()
        .expect("chunk list recorded");
    assert_eq!(chunks.iter().map(|c| c.size()).sum::<u64>(), big.size());
    assert!(to.refs.get(&chunk_ref(&big)).await.unwrap().is_some());
}

#[tokio::test]
async fn a_chunked_source_moves_chunks_blob_to_blob() {
    // memory → fs (records chunk lists in fs) → memory (uses them).
    let origin = Store::memory();
    let root = tree(&origin, noise(4 * MIB, 5)).await;
    let dir = tempfile::tempdir().unwrap();
    let middle = Store::local(FsStore::open(dir.path()).unwrap());
    copy(&origin, &middle, root).await;
    let last = Store::memory();
    let report = copy(&middle, &last, root).await;
    assert_eq!(report.blobs_copied, 5, "{report:?}");
    assert_eq!(report.files_chunked, 1);
    assert_eq!(
        last.blobs.get_bytes(&root).await.unwrap(),
        middle.blobs.get_bytes(&root).await.unwrap()
    );
}
