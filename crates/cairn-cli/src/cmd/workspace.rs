//! Where a command's files live.
//!
//! With a local `--store` the store itself is the workspace. With a remote
//! one (`s3://…`, `http(s)://…`) commands work in a local cache store, the
//! way git works in a local repository: what a command reads is first
//! copied from the remote into the cache ([`Workspace::pull`]), what it
//! makes is copied from the cache to the remote ([`Workspace::push`],
//! [`Workspace::push_ref`]), each time moving only what the other side
//! lacks. Builds work the same way, with the remote as their remote cache
//! ([`Workspace::builder`]). The cache is `$CAIRN_CACHE`, else
//! `$XDG_CACHE_HOME/cairn/store`, else `~/.cache/cairn/store`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use cairn_build::Builder;
use cairn_digest::Digest;
use cairn_store::{FsStore, RefName, Store, StoreError, StoreUrl};
use cairn_transfer::{copy_closure, CopyOptions, Kind};

use super::Access;
use crate::cli::Global;
use crate::reporter::Transfer;

/// The store `--store` names and the local store in front of it.
pub struct Workspace {
    /// The store `--store` names, local or remote.
    pub store: Store,
    /// Where files live: `store` itself when it is local, else the cache.
    pub cache: Store,
    /// The directory behind `cache`.
    pub fs: Arc<FsStore>,
    /// `--store` as given, for messages.
    url: String,
}

/// The cache directory for remote stores.
pub fn cache_location() -> PathBuf {
    if let Some(dir) = std::env::var_os("CAIRN_CACHE").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/".into());
            PathBuf::from(home).join(".cache")
        });
    cache.join("cairn/store")
}

impl Workspace {
    /// Opens and checks `--store` and, when it is remote, the local cache
    /// (created if absent: it is a cache).
    pub async fn open(global: &Global, access: Access) -> Result<Self> {
        let url = super::store_url(global);
        let store = super::connect(&url, global, access).await?;
        if let Some(fs) = store.local.clone() {
            let cache = store.clone();
            return Ok(Self {
                store,
                cache,
                fs,
                url,
            });
        }
        let dir = cache_location();
        let fs = FsStore::open(&dir)
            .with_context(|| format!("opening the local cache {}", dir.display()))?;
        let cache = Store::local(fs);
        let fs = cache.local.clone().expect("a local store has a directory");
        Ok(Self {
            store,
            cache,
            fs,
            url,
        })
    }

    /// Whether `--store` is remote (so the cache is a separate store).
    pub fn is_remote(&self) -> bool {
        self.store.local.is_none()
    }

    /// A builder for the recipe in `file`, running in the cache; with a
    /// remote store, that store backs the cache as a remote action cache
    /// (lookups, fetched outputs, published results, pinned inputs).
    pub fn builder(&self, file: &Path) -> Result<Builder> {
        let builder = Builder::from_file(self.cache.clone(), file)?
            .with_registry(super::image::registry_from_env()?);
        if self.is_remote() {
            return Ok(builder.with_remote(self.store.clone()));
        }
        Ok(builder)
    }

    /// Copies what `root` reaches from the remote into the cache.
    pub async fn pull(&self, root: Digest, kind: Kind) -> Result<()> {
        if self.is_remote() {
            let progress = Transfer::new(&format!("fetching {root} from {}", self.url));
            let copied = copy_closure(
                &self.store,
                &self.cache,
                root,
                kind,
                &CopyOptions::default(),
                &progress,
            )
            .await;
            progress.finish();
            copied.with_context(|| format!("copying {root} from {} to the cache", self.url))?;
        }
        Ok(())
    }

    /// Copies what `root` reaches from the cache to the remote.
    pub async fn push(&self, root: Digest, kind: Kind) -> Result<()> {
        if self.is_remote() {
            let progress = Transfer::new(&format!("uploading {root} to {}", self.url));
            let copied = copy_closure(
                &self.cache,
                &self.store,
                root,
                kind,
                &CopyOptions::whole_files(),
                &progress,
            )
            .await;
            progress.finish();
            copied.with_context(|| format!("copying {root} to {}", self.url))?;
        }
        Ok(())
    }

    /// Creates the ref `name` on the remote with its value in the cache; a
    /// remote ref that already holds the same bytes is fine.
    pub async fn push_ref(&self, name: &RefName) -> Result<()> {
        if !self.is_remote() {
            return Ok(());
        }
        let Some(ours) = self.cache.refs.get(name).await? else {
            bail!("ref {name} is not in the local cache");
        };
        match self
            .store
            .refs
            .compare_and_swap(name, None, ours.value.clone())
            .await
        {
            Ok(_) => Ok(()),
            Err(StoreError::Conflict { .. }) => {
                let theirs = self.store.refs.get(name).await?.map(|v| v.value);
                if theirs.as_deref() == Some(&ours.value[..]) {
                    return Ok(());
                }
                bail!("ref {name} on {} already holds a different value", self.url)
            }
            Err(e) => Err(e).with_context(|| format!("writing ref {name} to {}", self.url)),
        }
    }

    /// Resolves a digest argument (see [`super::resolve`]): a bare
    /// `sha256:<hex>` gets its size from the cache or the store.
    pub async fn digest(&self, text: &str) -> Result<Digest> {
        super::resolve::resolve(&self.cache, &self.store, self.url_for_messages(), text).await
    }

    /// `--store` as given, or what the default store is, for messages.
    pub fn url_for_messages(&self) -> &str {
        if self.url.is_empty() {
            "(the default store)"
        } else {
            &self.url
        }
    }

    /// Refuses a maintenance command on a remote store, naming where it runs.
    pub fn local_only(&self, command: &str) -> Result<()> {
        let backend = match StoreUrl::parse(&self.url) {
            _ if !self.is_remote() => return Ok(()),
            Ok(StoreUrl::Http(_)) => {
                "on the server, with --store set to the server's own directory"
            }
            _ => "only on a local directory store; an S3 bucket has no cairn-side equivalent yet",
        };
        bail!("`cairn {command}` is maintenance of the store's backend and runs where the store is: {backend} ({} is remote)", self.url)
    }
}

#[cfg(test)]
mod tests {
    use cairn_store::BlobStoreExt;

    use super::*;

    /// A workspace whose "remote" is held in memory.
    fn workspace(dir: &std::path::Path) -> Workspace {
        let cache = Store::local(FsStore::open(dir).unwrap());
        Workspace {
            store: Store::memory(),
            fs: cache.local.clone().unwrap(),
            cache,
            url: "mem://remote".into(),
        }
    }

    #[tokio::test]
    async fn push_ref_creates_accepts_identical_and_refuses_different() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = workspace(tmp.path());
        let name = RefName::new("releases/svc/abc").unwrap();
        ws.cache
            .refs
            .compare_and_swap(&name, None, b"one".to_vec())
            .await
            .unwrap();
        ws.push_ref(&name).await.unwrap();
        ws.push_ref(&name).await.unwrap();
        let on_remote = ws.store.refs.get(&name).await.unwrap().unwrap();
        assert_eq!(on_remote.value, b"one");

        let other = RefName::new("releases/svc/def").unwrap();
        ws.store
            .refs
            .compare_and_swap(&other, None, b"theirs".to_vec())
            .await
            .unwrap();
        ws.cache
            .refs
            .compare_and_swap(&other, None, b"ours".to_vec())
            .await
            .unwrap();
        let err = ws.push_ref(&other).await.unwrap_err().to_string();
        assert!(err.contains("already holds a different value"), "{err}");
    }

    #[tokio::test]
    async fn push_then_pull_moves_blobs_both_ways() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = workspace(&tmp.path().join("a"));
        let digest = ws.cache.blobs.put_bytes(b"x".repeat(10)).await.unwrap();
        ws.push(digest, Kind::Leaf).await.unwrap();
        assert_eq!(
            ws.store.blobs.get_bytes(&digest).await.unwrap(),
            b"x".repeat(10)
        );

        let fresh = Workspace {
            store: ws.store.clone(),
            ..workspace(&tmp.path().join("b"))
        };
        // The remote says the size of a digest printed without it.
        assert_eq!(fresh.digest(&digest.to_string()).await.unwrap(), digest);
        fresh.pull(digest, Kind::Leaf).await.unwrap();
        assert_eq!(fresh.digest(&digest.to_string()).await.unwrap(), digest);
        let absent = Digest::of(b"absent").to_string();
        let err = fresh.digest(&absent).await.unwrap_err().to_string();
        assert!(err.contains("is not in the store mem://remote"), "{err}");
    }

    #[test]
    fn maintenance_is_refused_on_remote_stores_only() {
        let tmp = tempfile::tempdir().unwrap();
        let mut ws = workspace(tmp.path());
        ws.url = "http://h:1".into();
        let err = ws.local_only("store gc").unwrap_err().to_string();
        assert!(err.contains("on the server"), "{err}");
        ws.url = "s3://b/p".into();
        let err = ws.local_only("store gc").unwrap_err().to_string();
        assert!(err.contains("S3"), "{err}");
        ws.store = ws.cache.clone();
        ws.local_only("store gc").unwrap();
    }
}
