//! Whether a store wrapper passes every method through as that method.
//!
//! A wrapper that leaves a method to the trait's default still gives right
//! answers, but silently loses what the wrapped backend does better: a
//! `put_many` that falls back to one `put` per blob is one HTTP request per
//! file instead of per batch, an `assemble` that answers "unsupported"
//! re-sends a large file whole. So the wrapper is put around a recorder
//! that notes which method reached it, and each method is called once.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cairn_digest::Digest;

use crate::blob::{Assembled, BlobReader, BlobStore, BlobStoreExt};
use crate::error::Result;
use crate::memory::MemoryStore;
use crate::reach::Kind;

/// Checks that the store `wrap` makes around another one passes each
/// [`BlobStore`] method to it as the same method.
pub async fn forwards_blobs(wrap: impl FnOnce(Arc<dyn BlobStore>) -> Arc<dyn BlobStore>) {
    let recorder = Arc::new(Recorder::default());
    let wrapper = wrap(recorder.clone());
    let a = recorder.inner.put_bytes(b"chunk a".to_vec()).await.unwrap();
    let b = Digest::of(b"chunk b");
    let file = Digest::of(b"chunk achunk b");

    let check = |method: &str, outcome: Result<()>| {
        let seen = std::mem::take(&mut *recorder.seen.lock().unwrap());
        assert_eq!(
            seen,
            [method],
            "the wrapper turned `{method}` into {seen:?} ({outcome:?})"
        );
    };
    check("has_many", wrapper.has_many(&[a]).await.map(drop));
    check("get", wrapper.get(&a).await.map(drop));
    check("lookup", wrapper.lookup(a.hash()).await.map(drop));
    let bytes = Box::pin(std::io::Cursor::new(b"chunk b".to_vec()));
    check("put", wrapper.put(&b, bytes).await);
    let many = vec![(a, b"chunk a".to_vec()), (b, b"chunk b".to_vec())];
    check("put_many", wrapper.put_many(many).await);
    check("flush", wrapper.flush().await);
    let roots = [(a, Kind::Leaf)];
    check("has_closures", wrapper.has_closures(&roots).await.map(drop));
    check("assemble", wrapper.assemble(&file, &[a, b]).await.map(drop));
}

/// A memory store that notes each method called on it.
#[derive(Debug, Default)]
struct Recorder {
    inner: MemoryStore,
    seen: Mutex<Vec<&'static str>>,
}

impl Recorder {
    fn note(&self, method: &'static str) {
        self.seen.lock().unwrap().push(method);
    }
}

#[async_trait]
impl BlobStore for Recorder {
    async fn has_many(&self, digests: &[Digest]) -> Result<Vec<bool>> {
        self.note("has_many");
        self.inner.has_many(digests).await
    }

    async fn get(&self, digest: &Digest) -> Result<Option<BlobReader>> {
        self.note("get");
        self.inner.get(digest).await
    }

    async fn lookup(&self, hash: &[u8; 32]) -> Result<Option<Digest>> {
        self.note("lookup");
        self.inner.lookup(hash).await
    }

    async fn put(&self, digest: &Digest, data: BlobReader) -> Result<()> {
        self.note("put");
        self.inner.put(digest, data).await
    }

    async fn put_many(&self, blobs: Vec<(Digest, Vec<u8>)>) -> Result<()> {
        self.note("put_many");
        self.inner.put_many(blobs).await
    }

    async fn flush(&self) -> Result<()> {
        self.note("flush");
        self.inner.flush().await
    }

    async fn has_closures(&self, roots: &[(Digest, Kind)]) -> Result<Option<Vec<bool>>> {
        self.note("has_closures");
        self.inner.has_closures(roots).await
    }

    async fn assemble(&self, file: &Digest, chunks: &[Digest]) -> Result<Assembled> {
        self.note("assemble");
        self.inner.assemble(file, chunks).await
    }
}
