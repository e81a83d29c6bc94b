//! An S3-compatible bucket as a store: `s3://bucket/prefix?endpoint=…&region=…`.
//!
//! Layout under the prefix: `blobs/<hex>` for blobs and `refs/<name>` for
//! refs. Blobs need nothing from the server beyond plain objects; refs need
//! *conditional writes* (`If-None-Match: *` to create, `If-Match: <etag>` to
//! update), which AWS S3 and most compatible servers now support. Because a
//! store whose compare-and-swap silently degrades to last-writer-wins would
//! corrupt channels and fleet records without anyone noticing,
//! [`S3Store::probe`] checks for conditional writes before a store is
//! written to, and refuses a bucket that ignores them.
//!
//! Settings (credentials, region, endpoint...) are given by their usual
//! AWS environment names (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT`...) in
//! [`OpenOptions::aws`](crate::OpenOptions::aws); the command line passes
//! its environment's `AWS_*` variables. The URL's `endpoint` and `region`
//! parameters override them. Query values are taken verbatim (no
//! percent-decoding). Without credentials of any kind the store is refused
//! at once, unless an instance metadata service (an EC2 instance role)
//! answers (`credentials.rs`).

mod blobs;
pub(crate) mod credentials;
pub mod error;
mod refs;

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ClientConfigKey, ObjectStore, PutMode, PutOptions, RetryConfig};

use crate::error::{ErrorKind, RemoteError, Result, StoreError};
use crate::http::PROBE_TIMEOUT;
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
        crate::url::refuse_credentials(url)?;
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

    /// A client builder: the `AWS_*` settings in `aws` (unknown names are
    /// ignored, as the AWS tools do), then this URL's bucket, endpoint and
    /// region.
    pub fn builder(&self, aws: &BTreeMap<String, String>) -> AmazonS3Builder {
        let mut b = AmazonS3Builder::new();
        for (name, value) in aws {
            if let Ok(key) = name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
                b = b.with_config(key, value);
            }
        }
        b = b
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
    /// The same bucket without retries and with each request limited to
    /// [`PROBE_TIMEOUT`], so that the checks made when a store is opened
    /// fail at once rather than after minutes.
    probing: Arc<dyn ObjectStore>,
    url: String,
    bucket: String,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store").field("url", &self.url).finish()
    }
}

impl S3Store {
    /// Builds a client for `url` with the `AWS_*` settings in `aws`,
    /// without contacting the server; [`crate::connect`] also checks the
    /// credentials and [probes](Self::probe) the bucket.
    pub fn new(url: &str, aws: &BTreeMap<String, String>) -> Result<Self> {
        let parsed = S3Url::parse(url)?;
        Self::with_builder(&parsed, parsed.builder(aws))
    }

    /// Builds a client from an explicit builder (for custom credentials).
    pub fn with_builder(url: &S3Url, builder: AmazonS3Builder) -> Result<Self> {
        let quick = RetryConfig {
            max_retries: 0,
            retry_timeout: PROBE_TIMEOUT,
            ..RetryConfig::default()
        };
        let timeout = format!("{}s", PROBE_TIMEOUT.as_secs());
        let objects = Self::client(url, builder.clone())?;
        let probing = builder
            .with_retry(quick)
            .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), timeout);
        let probing = Self::client(url, probing)?;
        Ok(Self {
            objects,
            probing,
            url: url.url.clone(),
            bucket: url.bucket.clone(),
        })
    }

    fn client(url: &S3Url, builder: AmazonS3Builder) -> Result<Arc<dyn ObjectStore>> {
        let s3 = builder.build().map_err(|e| StoreError::BadUrl {
            url: url.url.clone(),
            reason: e.to_string(),
        })?;
        Ok(if url.prefix.is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(PrefixStore::new(s3, url.prefix.as_str()))
        })
    }

    /// Checks that the bucket answers and lets these credentials list it;
    /// with `write`, also that they may write and that the server refuses
    /// a second `If-None-Match: *` create of the same key (without that,
    /// compare-and-swap on refs would be a lie).
    pub async fn probe(&self, write: bool) -> Result<()> {
        let listed = self
            .probing
            .list_with_delimiter(Some(&Path::from("refs")))
            .await;
        if let Err(e) = listed {
            return Err(self.list_error("listing the bucket", e).await);
        }
        if write {
            self.probe_conditional_writes().await?;
        }
        Ok(())
    }

    async fn probe_conditional_writes(&self) -> Result<()> {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).expect("the OS random number generator");
        let key = Path::from(format!("probe/{}", hex::encode(nonce)));
        let create = || PutOptions::from(PutMode::Create);
        let first = self
            .probing
            .put_opts(&key, b"probe".to_vec().into(), create())
            .await;
        first.map_err(|e| self.error("writing a probe object", e))?;
        let second = self
            .probing
            .put_opts(&key, b"probe".to_vec().into(), create())
            .await;
        let _ = self.probing.delete(&key).await;
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
            Err(e) => Err(self.error("probing conditional writes", e)),
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

    /// A failed LIST as a [`StoreError::Remote`] of its kind.
    ///
    /// The S3 client reports every failed LIST as `Generic`, without its
    /// status, so an answer (not a transport failure) is told apart by a
    /// GET of a key that does not exist, whose status the client does
    /// sort: refused (401, 403) means the credentials; "not found" while
    /// the LIST failed means the bucket is not there (with credentials
    /// that may list, S3 answers 404 for an absent key only); anything else
    /// leaves it [`ErrorKind::Unavailable`].
    async fn list_error(&self, action: &str, e: object_store::Error) -> StoreError {
        if crate::transport::find::<reqwest::Error>(&e).is_some() {
            return self.error(action, e);
        }
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).expect("the OS random number generator");
        let absent = Path::from(format!("probe/absent-{}", hex::encode(nonce)));
        let kind = match self.probing.get(&absent).await {
            Err(object_store::Error::NotFound { .. }) => ErrorKind::NotFound,
            Err(other) => match error::kind(&other) {
                kind @ (ErrorKind::Unauthorized | ErrorKind::Forbidden) => kind,
                _ => ErrorKind::Unavailable,
            },
            Ok(_) => ErrorKind::Unavailable,
        };
        let what = match kind {
            ErrorKind::NotFound => format!("bucket {:?} not found", self.bucket),
            ErrorKind::Unauthorized => "not authenticated".into(),
            ErrorKind::Forbidden => "access denied".into(),
            _ => "the server refused or failed the request".into(),
        };
        RemoteError {
            kind,
            store: self.url.clone(),
            action: action.into(),
            detail: error::with_server_says(&what, &e),
            source: Some(Box::new(error::S3Failure(e))),
        }
        .into()
    }

    /// A failed request as a [`StoreError::Remote`] of its kind.
    fn error(&self, action: impl Into<String>, e: object_store::Error) -> StoreError {
        StoreError::from(RemoteError {
            kind: error::kind(&e),
            store: self.url.clone(),
            action: action.into(),
            detail: error::describe(&e),
            source: Some(Box::new(error::S3Failure(e))),
        })
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
