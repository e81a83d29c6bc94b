//! A remote action cache in front of the local one, the way Bazel's
//! `--remote_cache` works.
//!
//! Builds always run in a local directory store (they snapshot and
//! materialize files); a [`Remote`] is another store — a `cairn server` or
//! an S3 bucket — shared by every machine. With one attached:
//!
//! * **Lookup.** A step missing from the local action cache is looked up in
//!   the remote's (`ac/<action hex>`, the same ref and encoding). On a hit
//!   its output tree and log are copied into the local store
//!   ([`copy_closure`] verifies every blob it stores), the entry is recorded
//!   locally, and the step is reported as cached from the remote. An entry
//!   whose blobs the remote no longer has is a miss.
//! * **Publish.** After a step runs, its output tree and log are copied to
//!   the remote *first* and the entry *last*, so no reader ever finds an
//!   entry whose outputs are absent. The entry is created with a
//!   compare-and-swap from absent: an entry already there is never
//!   overwritten. One with the same output is simply ours too; one with a
//!   different output means the step is not reproducible, which is reported
//!   as a warning (the local cache keeps our result). A step that was a
//!   local hit is published too when the remote lacks it, so results built
//!   before the remote was attached reach it. Publishing is best effort: a
//!   failure (a read-only token, say) is a warning, not a failed build.
//! * **Inputs.** A pinned tree or a fetch's declared blob that the local
//!   store lacks is copied from the remote when it is there (a fetch then
//!   needs no network); a digest written without its size gets it from
//!   the remote ([`cairn_store::BlobStore::lookup`]).

use cairn_digest::Digest;
use cairn_recipe::Input;
use cairn_store::{BlobStoreExt, FsStore, Store, StoreError};
use cairn_transfer::{copy_closure, CopyOptions, Kind, TransferError};

use crate::cache::{self, CachedResult};
use crate::error::BuildError;

/// What publishing one step's result did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// The remote now holds our entry and everything it reaches.
    Created,
    /// The remote already had an entry with the same output.
    AlreadyThere,
    /// The remote has an entry with a different output; it was kept.
    Differs {
        /// The remote entry's output tree.
        theirs: Digest,
    },
}

/// The shared store whose action cache and blobs back the local ones.
#[derive(Clone, Debug)]
pub struct Remote {
    store: Store,
}

impl Remote {
    /// A remote cache in `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// The remote's complete result for `action`, its output tree and log
    /// copied into `local` and its entry recorded there; `None` on a miss.
    #[tracing::instrument(skip_all, fields(action = %action))]
    pub async fn fetch(
        &self,
        local: &Store,
        fs: &FsStore,
        action: &Digest,
    ) -> Result<Option<CachedResult>, BuildError> {
        let name = cache::ref_name(action);
        let entry = self
            .store
            .refs
            .get(&name)
            .await
            .map_err(|e| remote_err(format!("reading ref {name}"), e))?;
        let Some(entry) = entry else {
            return Ok(None);
        };
        let Some(result) = cache::decode(&entry.value) else {
            tracing::warn!(action = %action, "malformed remote action cache entry ignored");
            return Ok(None);
        };
        for (root, kind) in closure(&result) {
            match copy_closure(&self.store, local, root, kind, &CopyOptions::default(), &()).await {
                Ok(_) => {}
                Err(e) if is_missing(&e) => {
                    tracing::warn!(action = %action, error = %e, "incomplete remote action cache entry ignored");
                    return Ok(None);
                }
                Err(e) => return Err(transfer_err(format!("copying {root} from the remote"), e)),
            }
        }
        if !cache::complete(fs, &result) {
            return Ok(None);
        }
        cache::store_entry(&*local.refs, action, entry.value).await?;
        Ok(Some(result))
    }

    /// Copies `local`'s entry for `action` and what it reaches to the
    /// remote: the blobs first, the entry last, never replacing an entry
    /// the remote already has. `Ok(None)` when `local` has no usable entry.
    #[tracing::instrument(skip_all, fields(action = %action))]
    pub async fn publish(
        &self,
        local: &Store,
        action: &Digest,
    ) -> Result<Option<Published>, BuildError> {
        let name = cache::ref_name(action);
        let ours = local
            .refs
            .get(&name)
            .await
            .map_err(|e| BuildError::store(format!("reading ref {name}"), e))?;
        let Some((ours, result)) = ours.and_then(|v| cache::decode(&v.value).map(|r| (v.value, r)))
        else {
            return Ok(None);
        };
        if let Some(published) = self.compare(action, &result).await? {
            return Ok(Some(published));
        }
        for (root, kind) in closure(&result) {
            copy_closure(
                local,
                &self.store,
                root,
                kind,
                &CopyOptions::whole_files(),
                &(),
            )
            .await
            .map_err(|e| transfer_err(format!("copying {root} to the remote"), e))?;
        }
        match self.store.refs.compare_and_swap(&name, None, ours).await {
            Ok(_) => Ok(Some(Published::Created)),
            // Another machine published first: compare with theirs.
            Err(StoreError::Conflict { .. }) => Ok(Some(
                self.compare(action, &result)
                    .await?
                    .unwrap_or(Published::AlreadyThere),
            )),
            Err(e) => Err(remote_err(format!("writing ref {name}"), e)),
        }
    }

    /// How the remote's entry for `action`, if any, relates to `ours`.
    async fn compare(
        &self,
        action: &Digest,
        ours: &CachedResult,
    ) -> Result<Option<Published>, BuildError> {
        let name = cache::ref_name(action);
        let theirs = self
            .store
            .refs
            .get(&name)
            .await
            .map_err(|e| remote_err(format!("reading ref {name}"), e))?;
        Ok(theirs.map(|v| match cache::decode(&v.value) {
            Some(t) if t.output != ours.output => Published::Differs { theirs: t.output },
            // Same output (metadata such as timestamps may differ), or an
            // entry we cannot read: either way it is not ours to replace.
            _ => Published::AlreadyThere,
        }))
    }

    /// Makes a pinned input available locally: the tree of a `tree` input
    /// or the declared blob of a fetch, copied from the remote when the
    /// local store lacks it and the remote has it. Anything else is left to
    /// the usual resolution (which reports what is missing).
    #[tracing::instrument(skip_all, fields(input = name))]
    pub async fn pull_input(
        &self,
        local: &Store,
        fs: &FsStore,
        name: &str,
        input: &Input,
    ) -> Result<(), BuildError> {
        let (digest, kind) = match input {
            Input::Tree(d) => (*d, Kind::Tree),
            Input::Fetch { digest, .. } => (*digest, Kind::Leaf),
            // Images come from their registry (or layout) by digest.
            Input::Path { .. } | Input::Oci { .. } => return Ok(()),
        };
        let looking_up = |e| remote_err(format!("input `{name}`: looking up {digest}"), e);
        let full = match digest.size {
            Some(size) => digest.with_size(size),
            // Written without its size: the local store's, else the remote's.
            None => match fs.lookup_sync(&digest.hash).map_err(looking_up)? {
                Some(local) => local,
                None => match self.store.blobs.lookup(&digest.hash).await {
                    Ok(Some(remote)) => remote,
                    Ok(None) => return Ok(()),
                    Err(e) => return Err(looking_up(e)),
                },
            },
        };
        if fs.has_sync(&full) {
            return Ok(());
        }
        let on_remote = self.store.blobs.has(&full).await.map_err(looking_up)?;
        if on_remote {
            copy_closure(&self.store, local, full, kind, &CopyOptions::default(), &())
                .await
                .map_err(|e| transfer_err(format!("input `{name}`: copying {full}"), e))?;
        }
        Ok(())
    }
}

/// The roots of a result's closure: the output tree and the log.
fn closure(result: &CachedResult) -> [(Digest, Kind); 2] {
    [(result.output, Kind::Tree), (result.log, Kind::Leaf)]
}

/// Whether a copy failed because the source lacks a blob of the closure.
fn is_missing(e: &TransferError) -> bool {
    matches!(
        e,
        TransferError::Missing(_)
            | TransferError::Walk {
                source: StoreError::NotFound(_),
                ..
            }
            | TransferError::Blob {
                source: StoreError::NotFound(_),
                ..
            }
            | TransferError::Store(StoreError::NotFound(_))
    )
}

fn remote_err(what: String, e: StoreError) -> BuildError {
    BuildError::store(format!("remote cache: {what}"), e)
}

fn transfer_err(what: String, e: TransferError) -> BuildError {
    BuildError::Transfer {
        what: format!("remote cache: {what}"),
        source: Box::new(e),
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use cairn_tree::{encode_directory, DirectoryBuilder};

    use super::*;

    const OUTPUT_FILE: &[u8] = b"built\n";
    const LOG: &[u8] = b"a line of log\n";
    const OTHER_OUTPUT_FILE: &[u8] = b"built differently\n";

    /// A local directory store.
    fn local(dir: &std::path::Path) -> Store {
        Store::local(FsStore::open(dir).unwrap())
    }

    fn fs(store: &Store) -> &FsStore {
        store.local.as_deref().unwrap()
    }

    /// A one-file output tree and a log in `store`, as a run leaves them.
    fn result(store: &Store, file: &[u8]) -> CachedResult {
        let fs = fs(store);
        let blob = fs.put_bytes_sync(file).unwrap();
        let mut b = DirectoryBuilder::new();
        b.file("out.txt", blob, false);
        let output = fs
            .put_bytes_sync(&encode_directory(&b.build().unwrap()))
            .unwrap();
        let log = fs.put_bytes_sync(LOG).unwrap();
        CachedResult { output, log }
    }

    async fn record(store: &Store, action: &Digest, r: &CachedResult) {
        let now = SystemTime::now();
        cache::record(&*store.refs, action, r, now, now)
            .await
            .unwrap();
    }

    fn action() -> Digest {
        Digest::of(b"an action")
    }

    #[tokio::test]
    async fn published_results_are_fetched_by_another_machine() {
        let tmp = tempfile::tempdir().unwrap();
        let remote = Remote::new(Store::memory());
        let a = local(&tmp.path().join("a"));
        let built = result(&a, OUTPUT_FILE);
        record(&a, &action(), &built).await;

        let published = remote.publish(&a, &action()).await.unwrap();
        assert_eq!(published, Some(Published::Created));
        let again = remote.publish(&a, &action()).await.unwrap();
        assert_eq!(again, Some(Published::AlreadyThere));

        let b = local(&tmp.path().join("b"));
        assert_eq!(
            cache::lookup(fs(&b), &*b.refs, &action()).await.unwrap(),
            None
        );
        let fetched = remote.fetch(&b, fs(&b), &action()).await.unwrap();
        assert_eq!(fetched, Some(built));
        // Now a local hit, blobs and entry alike.
        let hit = cache::lookup(fs(&b), &*b.refs, &action()).await.unwrap();
        assert_eq!(hit, Some(built));
    }

    #[tokio::test]
    async fn a_different_remote_entry_is_reported_and_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let remote = Remote::new(Store::memory());
        let theirs_store = local(&tmp.path().join("theirs"));
        let theirs = result(&theirs_store, OTHER_OUTPUT_FILE);
        record(&theirs_store, &action(), &theirs).await;
        remote.publish(&theirs_store, &action()).await.unwrap();

        let ours_store = local(&tmp.path().join("ours"));
        let ours = result(&ours_store, OUTPUT_FILE);
        record(&ours_store, &action(), &ours).await;
        let published = remote.publish(&ours_store, &action()).await.unwrap();
        assert_eq!(
            published,
            Some(Published::Differs {
                theirs: theirs.output
            })
        );
        let on_remote = remote.store.refs.get(&cache::ref_name(&action())).await;
        let value = on_remote.unwrap().unwrap().value;
        assert_eq!(cache::decode(&value), Some(theirs));
        let here = cache::lookup(fs(&ours_store), &*ours_store.refs, &action()).await;
        assert_eq!(here.unwrap(), Some(ours));
    }

    #[tokio::test]
    async fn an_entry_whose_outputs_the_remote_lacks_is_a_miss() {
        let tmp = tempfile::tempdir().unwrap();
        let remote = Remote::new(Store::memory());
        let a = local(&tmp.path().join("a"));
        let built = result(&a, OUTPUT_FILE);
        record(&a, &action(), &built).await;
        // The entry alone, as a broken writer or a collection might leave it.
        let entry = a.refs.get(&cache::ref_name(&action())).await.unwrap();
        remote
            .store
            .refs
            .compare_and_swap(&cache::ref_name(&action()), None, entry.unwrap().value)
            .await
            .unwrap();

        let b = local(&tmp.path().join("b"));
        assert_eq!(remote.fetch(&b, fs(&b), &action()).await.unwrap(), None);
        assert_eq!(
            cache::lookup(fs(&b), &*b.refs, &action()).await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn a_pinned_tree_missing_locally_is_pulled() {
        let tmp = tempfile::tempdir().unwrap();
        let a = local(&tmp.path().join("a"));
        let tree = result(&a, OUTPUT_FILE).output;
        let remote = Remote::new(Store::memory());
        copy_closure(
            &a,
            &remote.store,
            tree,
            Kind::Tree,
            &CopyOptions::whole_files(),
            &(),
        )
        .await
        .unwrap();

        let b = local(&tmp.path().join("b"));
        let input = Input::Tree(tree.into());
        remote
            .pull_input(&b, fs(&b), "rootfs", &input)
            .await
            .unwrap();
        let blob = Digest::of(OUTPUT_FILE);
        assert!(fs(&b).has_sync(&tree) && fs(&b).has_sync(&blob));

        // Written without its size, as cairn prints digests: the remote
        // says the size.
        let c = local(&tmp.path().join("c"));
        let sizeless = Input::Tree(cairn_digest::DigestRef {
            hash: *tree.hash(),
            size: None,
        });
        remote
            .pull_input(&c, fs(&c), "rootfs", &sizeless)
            .await
            .unwrap();
        assert!(fs(&c).has_sync(&tree) && fs(&c).has_sync(&blob));

        // Absent on the remote too: left to resolution to report.
        let absent = Input::Tree(Digest::of(b"no such tree").into());
        remote.pull_input(&b, fs(&b), "x", &absent).await.unwrap();
    }
}
