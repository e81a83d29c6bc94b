//! Refs in S3: one object per ref at `refs/<name>`, versioned by ETag.
//!
//! Compare-and-swap is a conditional PUT: `If-None-Match: *` to create,
//! `If-Match: <etag>` to replace. A version is the ETag without its quotes. S3's ETag of a simple PUT is the MD5 of
//! the body, so writing A, then B, then A again would bring back A's
//! version and let a writer holding that stale version win. Each object
//! therefore starts with a 16-byte random nonce ([`NONCE_LEN`]) before the
//! value, which makes every write's ETag new.
//!
//! A ref may not be both a value and the directory of other refs (`a`
//! beside `a/b`), as in a local store. S3 has conditional writes of one
//! key but no transaction across keys, so a create checks before its
//! write (a quick refusal), writes, and checks again after it: a ref in
//! its way found then means a racing writer of the other name, and the
//! write is taken back (deleted while still the writer's own) and refused.
//! Of two racing creates, the later to be written sees the earlier one
//! (S3 reads its own and others' writes at once), so never both win;
//! both may lose, and retrying is safe. What remains: until the loser
//! takes its write back, a reader can list both, and a writer killed
//! between its write and its check leaves both.
//!
//! `delete` is *not* linearizable: S3 has no conditional DELETE on every
//! server, so it reads the current ETag, compares, then deletes. A write
//! landing between the two is lost. Callers delete only refs nobody else
//! is writing (retired fleet members, expired cache entries).
//!
//! S3 cannot push changes, so [`RefStore::watch`] returns `None` and
//! callers poll, with conditional reads ([`RefStore::get_if_changed`]):
//! an unchanged ref costs a 304 and no body.

use async_trait::async_trait;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{GetOptions, PutMode, PutOptions, UpdateVersion};

use super::S3Store;
use crate::error::{Result, StoreError};
use crate::refs::{
    check_ref_size, conflict, parent_names, path_taken, IfChanged, RefName, RefStore, Version,
    Versioned, MAX_REF_SIZE,
};

/// Random bytes before each ref's value (see the module docs).
pub const NONCE_LEN: usize = 16;

fn ref_path(name: &RefName) -> Path {
    Path::from(format!("refs/{name}"))
}

impl S3Store {
    fn malformed(&self, name: &RefName, reason: &str) -> StoreError {
        StoreError::Malformed {
            what: format!("ref {name} in {}", self.url),
            reason: reason.into(),
        }
    }

    /// Reads a ref with `options` (which may make the read conditional).
    async fn read_ref(&self, name: &RefName, options: GetOptions) -> Result<IfChanged> {
        let got = match self.objects.get_opts(&ref_path(name), options).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(IfChanged::Changed(None)),
            Err(object_store::Error::NotModified { .. }) => return Ok(IfChanged::Unchanged),
            Err(e) => return Err(self.error(format!("reading ref {name}"), e)),
        };
        let version = self.version_of(name, got.meta.e_tag.clone())?;
        // Whoever else writes the bucket may leave anything under refs/:
        // never more than a ref's limit is read into memory.
        if got.meta.size > (MAX_REF_SIZE + NONCE_LEN) as u64 {
            let reason = format!(
                "{} bytes, over the {MAX_REF_SIZE}-byte limit of a ref",
                got.meta.size
            );
            return Err(self.malformed(name, &reason));
        }
        let body = got
            .bytes()
            .await
            .map_err(|e| self.error(format!("reading ref {name}"), e))?;
        let value = body
            .get(NONCE_LEN..)
            .ok_or_else(|| self.malformed(name, "shorter than its nonce"))?
            .to_vec();
        Ok(IfChanged::Changed(Some(Versioned { value, version })))
    }

    async fn etag(&self, name: &RefName) -> Result<Option<Version>> {
        match self.objects.head(&ref_path(name)).await {
            Ok(meta) => Ok(Some(self.version_of(name, meta.e_tag)?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(format!("looking up ref {name}"), e)),
        }
    }

    /// Refuses `name` while a ref is in its way: one that would be its
    /// directory, or one below it. Checked before a create and again
    /// after it (see the module docs).
    async fn check_ref_path(&self, name: &RefName) -> Result<()> {
        for parent in parent_names(name) {
            if self.etag(&parent).await?.is_some() {
                return Err(path_taken(name, &parent));
            }
        }
        let below = Path::from(format!("refs/{name}"));
        let first = self.objects.list(Some(&below)).try_next().await;
        match first {
            Ok(None) => Ok(()),
            Ok(Some(meta)) => {
                let other = meta.location.as_ref().strip_prefix("refs/").unwrap_or("");
                let other = RefName::new(other)
                    .map_err(|_| self.malformed(name, "an object below it is not a ref"))?;
                Err(path_taken(name, &other))
            }
            Err(e) => {
                let action = format!("listing refs under {name}/");
                Err(self.list_error(&action, e).await)
            }
        }
    }

    /// The check after creating `name` at `version`: a ref now in its way
    /// was written by a racing writer, so the create is taken back while
    /// the ref is still at `version` (another writer may have replaced it
    /// since: then it is theirs and is kept) and refused.
    async fn check_after_create(&self, name: &RefName, version: &Version) -> Result<()> {
        let Err(taken) = self.check_ref_path(name).await else {
            return Ok(());
        };
        if self.etag(name).await?.as_ref() == Some(version) {
            self.objects
                .delete(&ref_path(name))
                .await
                .map_err(|e| self.error(format!("taking back ref {name}"), e))?;
        }
        Err(taken)
    }

    /// A ref's version: its ETag without the quotes S3 puts around it, so
    /// a version is a plain token (a `cairn server` over S3 sends it on in
    /// its own quoted `ETag`).
    fn version_of(&self, name: &RefName, e_tag: Option<String>) -> Result<Version> {
        e_tag
            .map(|t| Version(t.trim_matches('"').to_string()))
            .ok_or_else(|| self.malformed(name, "the server returned no ETag"))
    }
}

#[async_trait]
impl RefStore for S3Store {
    async fn get(&self, name: &RefName) -> Result<Option<Versioned>> {
        match self.read_ref(name, GetOptions::default()).await? {
            IfChanged::Changed(now) => Ok(now),
            IfChanged::Unchanged => Err(self.malformed(name, "answered 304 to a plain read")),
        }
    }

    /// A conditional GET (`If-None-Match: "<etag>"`): an unchanged ref is a
    /// 304 with no body, which is all a poller needs.
    async fn get_if_changed(&self, name: &RefName, known: &Version) -> Result<IfChanged> {
        let options = GetOptions {
            if_none_match: Some(format!("\"{}\"", known.0)),
            ..GetOptions::default()
        };
        self.read_ref(name, options).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<RefName>> {
        // Listing works on whole path segments: list the deepest complete
        // directory of the prefix and filter the rest by text.
        let dir = match prefix.rsplit_once('/') {
            Some((dir, _)) => format!("refs/{dir}"),
            None => "refs".to_string(),
        };
        let listed = self
            .objects
            .list(Some(&Path::from(dir)))
            .try_collect()
            .await;
        let metas: Vec<_> = match listed {
            Ok(metas) => metas,
            Err(e) => {
                let action = format!("listing refs under {prefix:?}");
                return Err(self.list_error(&action, e).await);
            }
        };
        let mut names: Vec<RefName> = metas
            .iter()
            .filter_map(|m| m.location.as_ref().strip_prefix("refs/"))
            .filter(|n| n.starts_with(prefix))
            .filter_map(|n| RefName::new(n).ok())
            .collect();
        names.sort();
        Ok(names)
    }

    /// A page from S3 itself: the listing starts after `after`
    /// (`start-after`) and stops once `limit` names are found, so a page
    /// costs what it returns, not what the bucket holds.
    async fn list_page(
        &self,
        prefix: &str,
        after: Option<&RefName>,
        limit: usize,
    ) -> Result<Vec<RefName>> {
        let dir = Path::from(match prefix.rsplit_once('/') {
            Some((dir, _)) => format!("refs/{dir}"),
            None => "refs".to_string(),
        });
        let mut listed = match after {
            Some(a) => self
                .objects
                .list_with_offset(Some(&dir), &Path::from(format!("refs/{a}"))),
            None => self.objects.list(Some(&dir)),
        };
        let mut names = Vec::new();
        while names.len() < limit {
            let meta = match listed.try_next().await {
                Ok(Some(meta)) => meta,
                Ok(None) => break,
                Err(e) => {
                    let action = format!("listing refs under {prefix:?}");
                    return Err(self.list_error(&action, e).await);
                }
            };
            let name = meta.location.as_ref().strip_prefix("refs/").unwrap_or("");
            if name.starts_with(prefix) {
                if let Ok(name) = RefName::new(name) {
                    names.push(name);
                }
            }
        }
        names.sort();
        Ok(names)
    }

    async fn compare_and_swap(
        &self,
        name: &RefName,
        expected: Option<&Version>,
        value: Vec<u8>,
    ) -> Result<Version> {
        check_ref_size(name, &value)?;
        if expected.is_none() {
            self.check_ref_path(name).await?;
        }
        let mut body = vec![0u8; NONCE_LEN];
        getrandom::fill(&mut body).expect("the OS random number generator");
        body.extend_from_slice(&value);
        let mode = match expected {
            None => PutMode::Create,
            Some(v) => PutMode::Update(UpdateVersion {
                e_tag: Some(format!("\"{}\"", v.0)),
                version: None,
            }),
        };
        match self
            .objects
            .put_opts(&ref_path(name), body.into(), PutOptions::from(mode))
            .await
        {
            Ok(put) if expected.is_none() => {
                let version = self.version_of(name, put.e_tag)?;
                self.check_after_create(name, &version).await?;
                Ok(version)
            }
            Ok(put) => self.version_of(name, put.e_tag),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. }
                | object_store::Error::NotFound { .. },
            ) => {
                let found = self.etag(name).await.ok().flatten();
                Err(conflict(name, expected, found.as_ref()))
            }
            Err(e) => Err(self.error(format!("writing ref {name}"), e)),
        }
    }

    async fn delete(&self, name: &RefName, expected: &Version) -> Result<()> {
        let found = self.etag(name).await?;
        if found.as_ref() != Some(expected) {
            return Err(conflict(name, Some(expected), found.as_ref()));
        }
        self.objects
            .delete(&ref_path(name))
            .await
            .map_err(|e| self.error(format!("deleting ref {name}"), e))
    }
}
