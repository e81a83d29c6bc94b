//! An in-memory store: the reference implementation of both traits, used by
//! tests and by the rollout simulator, and the yardstick the conformance
//! suite is written against.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use cairn_digest::Digest;
use futures::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::sync::broadcast;

use crate::blob::{read_error, BlobReader, BlobStore, VerifyingReader};
use crate::error::Result;
use crate::reach::Kind;
use crate::refs::{
    check_ref_size, conflict, parent_names, path_taken, RefEvent, RefName, RefStore, RefWatch,
    Version, Versioned,
};

/// Blobs and refs held in memory.
#[derive(Debug)]
pub struct MemoryStore {
    blobs: Mutex<BTreeMap<Digest, bytes::Bytes>>,
    refs: Mutex<BTreeMap<RefName, (u64, Vec<u8>)>>,
    counter: Mutex<u64>,
    events: broadcast::Sender<RefName>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            blobs: Mutex::default(),
            refs: Mutex::default(),
            counter: Mutex::new(0),
            events: broadcast::channel(1024).0,
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces a stored blob's bytes, bypassing verification: for tests of
    /// what readers do with a corrupt store.
    pub fn corrupt(&self, digest: &Digest, bytes: Vec<u8>) {
        self.blobs.lock().unwrap().insert(*digest, bytes.into());
    }

    fn next_version(&self) -> u64 {
        let mut c = self.counter.lock().unwrap();
        *c += 1;
        *c
    }
}

#[async_trait]
impl BlobStore for MemoryStore {
    async fn has_many(&self, digests: &[Digest]) -> Result<Vec<bool>> {
        let blobs = self.blobs.lock().unwrap();
        Ok(digests.iter().map(|d| blobs.contains_key(d)).collect())
    }

    async fn get(&self, digest: &Digest) -> Result<Option<BlobReader>> {
        let bytes = self.blobs.lock().unwrap().get(digest).cloned();
        Ok(bytes.map(|b| {
            Box::pin(VerifyingReader::new(std::io::Cursor::new(b), *digest)) as BlobReader
        }))
    }

    async fn put(&self, digest: &Digest, data: BlobReader) -> Result<()> {
        let mut verified = VerifyingReader::new(data, *digest);
        let mut bytes = Vec::new();
        verified
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| read_error(digest, e))?;
        self.blobs.lock().unwrap().insert(*digest, bytes.into());
        Ok(())
    }

    async fn has_closures(&self, roots: &[(Digest, Kind)]) -> Result<Option<Vec<bool>>> {
        crate::closure::has_closures(self, roots).await.map(Some)
    }

    async fn lookup(&self, hash: &[u8; 32]) -> Result<Option<Digest>> {
        let blobs = self.blobs.lock().unwrap();
        Ok(blobs.keys().find(|d| d.hash() == hash).copied())
    }
}

/// A ref that `name` would be the directory of, or that would be a
/// directory of `name`: refused as every backend refuses it.
fn in_the_way(refs: &BTreeMap<RefName, (u64, Vec<u8>)>, name: &RefName) -> Option<RefName> {
    if let Some(parent) = parent_names(name).find(|p| refs.contains_key(p)) {
        return Some(parent);
    }
    let below = format!("{name}/");
    refs.keys()
        .find(|n| n.as_str().starts_with(&below))
        .cloned()
}

#[async_trait]
impl RefStore for MemoryStore {
    async fn get(&self, name: &RefName) -> Result<Option<Versioned>> {
        Ok(self
            .refs
            .lock()
            .unwrap()
            .get(name)
            .map(|(v, value)| Versioned {
                value: value.clone(),
                version: Version(v.to_string()),
            }))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<RefName>> {
        let refs = self.refs.lock().unwrap();
        Ok(refs
            .keys()
            .filter(|n| n.as_str().starts_with(prefix))
            .cloned()
            .collect())
    }

    async fn compare_and_swap(
        &self,
        name: &RefName,
        expected: Option<&Version>,
        value: Vec<u8>,
    ) -> Result<Version> {
        check_ref_size(name, &value)?;
        let version = self.next_version();
        {
            let mut refs = self.refs.lock().unwrap();
            let found = refs.get(name).map(|(v, _)| Version(v.to_string()));
            if found.as_ref() != expected {
                return Err(conflict(name, expected, found.as_ref()));
            }
            if let Some(other) = in_the_way(&refs, name) {
                return Err(path_taken(name, &other));
            }
            refs.insert(name.clone(), (version, value));
        }
        let _ = self.events.send(name.clone());
        Ok(Version(version.to_string()))
    }

    async fn delete(&self, name: &RefName, expected: &Version) -> Result<()> {
        {
            let mut refs = self.refs.lock().unwrap();
            let found = refs.get(name).map(|(v, _)| Version(v.to_string()));
            if found.as_ref() != Some(expected) {
                return Err(conflict(name, Some(expected), found.as_ref()));
            }
            refs.remove(name);
        }
        let _ = self.events.send(name.clone());
        Ok(())
    }

    async fn watch(&self, prefix: &str) -> Result<Option<RefWatch>> {
        let prefix = prefix.to_string();
        let stream = broadcast_stream(self.events.subscribe())
            .filter_map(move |name| {
                let keep = name.as_str().starts_with(&prefix);
                async move { keep.then_some(Ok(RefEvent { name })) }
            })
            .boxed();
        Ok(Some(stream))
    }
}

/// A broadcast receiver as a stream; a lagging receiver skips what it missed
/// (watchers re-read refs, so a skipped event costs only latency).
fn broadcast_stream<T: Clone + Send + 'static>(
    rx: broadcast::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(v) => return Some((v, rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}
