//! An S3-compatible bucket as a store: `s3://bucket/prefix?endpoint=…&region=…`.
//!
//! Layout under the prefix: `blobs/<hex>` for blobs and `refs/<name>` for
//! refs. Blobs need nothing from the server beyond plain objects; refs need
//! *conditional writes* (`If-None-Match: *` to create, `If-Match: <etag>` to
//! update), which AWS S3 and most compatible servers now support. Because a
//! store whose compare-and-swap silently degrades to last-writer-wins would
//! corrupt channels and fleet records without anyone noticing,
//! [`S3Store::connect`] probes for conditional writes once and refuses to
//! open a bucket that ignores them.
//!
//! Credentials come from the usual AWS environment variables
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! `AWS_REGION`, `AWS_ENDPOINT`...); the URL's `endpoint` and `region`
//! parameters override the environment. Query values are taken verbatim (no
//! percent-decoding).

mod blobs;
mod refs;

use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, PutMode, PutOptions};

use crate::error::{Result, StoreError};
use crate::Store;

/// A parsed `s3://bucket/prefix?endpoint=…&region=…` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Url {
    /// The bucket.
    pub bucket: String,
    /// The key prefix inside the bucket (no leading or trailing `/`).
    pub prefix: String,
    /// A custom endpoint (`http://127.0.0.1:9000`), for non-AWS servers.
    pub endpoint: Option<String>,
    /// The region.
    pub region: Option<String>,
    /// The URL as given, for error messages.
    pub url: String,
}

impl S3Url {
    /// Parses an `s3://` URL.
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |reason: &str| StoreError::BadUrl {
            url: url.into(),
            reason: reason.into(),
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("not an s3:// URL"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket name"));
        }
        let mut parsed = Self {
            bucket: bucket.into(),
            prefix: prefix.trim_matches('/').into(),
            endpoint: None,
            region: None,
            url: url.into(),
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("endpoint", v)) => parsed.endpoint = Some(v.into()),
                Some(("region", v)) => parsed.region = Some(v.into()),
                _ => {
                    return Err(bad(&format!(
                        "unknown parameter {pair:?} (use endpoint, region)"
                    )))
                }
            }
        }
        Ok(parsed)
    }

    /// A client builder: credentials from the environment, then this URL's
    /// bucket, endpoint and region. Tests add credentials to it directly.
    pub fn builder(&self) -> AmazonS3Builder {
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&self.bucket)
            .with_conditional_put(S3ConditionalPut::ETagMatch);
        if let Some(endpoint) = &self.endpoint {
            b = b
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(region) = &self.region {
            b = b.with_region(region);
        }
        b
    }
}

/// Blobs and refs in an S3-compatible bucket.
#[derive(Clone)]
pub struct S3Store {
    objects: Arc<dyn ObjectStore>,
    url: String,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store").field("url", &self.url).finish()
    }
}

impl S3Store {
    /// Builds a client for `url` without contacting the server. Prefer
    /// [`S3Store::connect`], which also checks that refs will be safe.
    pub fn new(url: &str) -> Result<Self> {
        let parsed = S3Url::parse(url)?;
        Self::with_builder(&parsed, parsed.builder())
    }

    /// Builds a client from an explicit builder (for custom credentials).
    pub fn with_builder(url: &S3Url, builder: AmazonS3Builder) -> Result<Self> {
        let s3 = builder.build().map_err(|e| StoreError::BadUrl {
            url: url.url.clone(),
            reason: e.to_string(),
        })?;
        let objects: Arc<dyn ObjectStore> = if url.prefix.is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(PrefixStore::new(s3, url.prefix.as_str()))
        };
        Ok(Self {
            objects,
            url: url.url.clone(),
        })
    }

    /// Opens `url` and probes the server for conditional writes.
    pub async fn connect(url: &str) -> Result<Self> {
        let store = Self::new(url)?;
        store.probe().await?;
        Ok(store)
    }

    /// Fails unless the server refuses a second `If-None-Match: *` create of
    /// the same key: without that, compare-and-swap on refs would be a lie.
    pub async fn probe(&self) -> Result<()> {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|e| self.backend(format!("random: {e}")))?;
        let key = Path::from(format!("probe/{}", hex::encode(nonce)));
        let create = || PutOptions::from(PutMode::Create);
        let first = self
            .objects
            .put_opts(&key, b"probe".to_vec().into(), create())
            .await;
        first.map_err(|e| self.backend(format!("cannot write a probe object: {e}")))?;
        let second = self
            .objects
            .put_opts(&key, b"probe".to_vec().into(), create())
            .await;
        let _ = self.objects.delete(&key).await;
        match second {
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(()),
            Ok(_) => Err(StoreError::BadUrl {
                url: self.url.clone(),
                reason: "the server ignores conditional writes (If-None-Match), so refs \
                         could not be updated safely; use a server that supports them"
                    .into(),
            }),
            Err(e) => Err(self.backend(format!("probing conditional writes: {e}"))),
        }
    }

    /// This store as a [`Store`].
    pub fn into_store(self) -> Store {
        let s = Arc::new(self);
        Store {
            blobs: s.clone(),
            refs: s,
            local: None,
        }
    }

    fn backend(&self, message: String) -> StoreError {
        StoreError::Backend {
            backend: "s3",
            message: format!("{}: {message}", self.url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u =
            S3Url::parse("s3://b/some/prefix/?endpoint=http://127.0.0.1:9000&region=r").unwrap();
        assert_eq!(u.bucket, "b");
        assert_eq!(u.prefix, "some/prefix");
        assert_eq!(u.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(u.region.as_deref(), Some("r"));
        assert_eq!(S3Url::parse("s3://b").unwrap().prefix, "");
        assert!(S3Url::parse("s3:///p").is_err());
        assert!(S3Url::parse("s3://b?x=1").is_err());
    }
}
