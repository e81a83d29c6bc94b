//! A client for the OCI distribution API, over `reqwest`.
//!
//! One [`Registry`] talks to one repository of one registry: blobs
//! (`HEAD`, `GET`, monolithic `POST`+`PUT` or chunked `PATCH` uploads),
//! manifests (`GET`, `PUT`), and the referrers API with its tag-schema
//! fallback ([`referrers`]). Authentication answers the registry's
//! `WWW-Authenticate` challenge ([`auth`]) once and reuses the result.
//! Every blob read is verified against its digest before it is used.
//!
//! Plain HTTP is used only for loopback registries and hosts the caller
//! allows explicitly ([`RegistryConfig::plain_http`]); everything else is
//! HTTPS (rustls, as the rest of cairn).
//!
//! Where a registry may send the client (redirects, a token realm, an
//! upload's `Location`) is decided by the same policy as a fetch's
//! ([`cairn_fetch::Reach`]), the registry being the origin: a public
//! registry never gets a request onto loopback or the local networks, by
//! address or by a name resolving there. Answers are bounded: a request
//! fails after [`CONNECT_TIMEOUT`] without a connection or
//! [`READ_TIMEOUT`] without a byte, a manifest is read up to
//! [`MAX_MANIFEST`], a token answer up to [`MAX_TOKEN_ANSWER`] and an
//! error's body up to [`MAX_ERROR_BODY`].

pub mod auth;
mod blobs;
pub mod referrers;

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use cairn_fetch::{Reach, Refusal};

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};

pub use auth::Credentials;
use auth::{parse_challenge, token_from_json, Challenge};

use crate::reference::Reference;

/// How to reach registries, resolved once by the caller.
#[derive(Clone, Debug, Default)]
pub struct RegistryConfig {
    /// Registry hosts (`host:port`) reached over plain HTTP besides
    /// loopback ones.
    pub plain_http: Vec<String>,
    /// Credentials, used when a registry asks.
    pub credentials: Option<Credentials>,
    /// Uploads larger than this go in chunks of this size (`PATCH`); smaller
    /// ones in one `PUT`.
    pub chunk_size: Option<u64>,
}

/// The default chunk size of uploads.
pub const DEFAULT_CHUNK: u64 = 32 << 20;

/// Longest wait for a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest silence in an answer (before its head or between its bytes).
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest manifest or index read (the distribution spec asks
/// registries to accept at least 4 MiB).
pub const MAX_MANIFEST: usize = 4 << 20;
/// The largest token endpoint answer read.
pub const MAX_TOKEN_ANSWER: usize = 1 << 20;
/// How much of an error's body is read (of which 300 characters are shown).
pub const MAX_ERROR_BODY: usize = 64 << 10;

/// Why a registry request failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No connection, TLS failure, or a broken response.
    #[error("{reference}: {what}: {source}")]
    Http {
        /// The repository.
        reference: String,
        /// The request.
        what: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// The registry sent the client where it may not go (a redirect, a
    /// token realm or an upload location), see [`cairn_fetch::reach`].
    #[error("{reference}: {what}: {source}")]
    Refused {
        /// The repository.
        reference: String,
        /// The request.
        what: String,
        /// Where it pointed and why it was refused.
        #[source]
        source: Refusal,
    },
    /// An answer longer than cairn reads for its kind.
    #[error("{reference}: {what}: the answer is over the {limit}-byte limit")]
    TooLarge {
        /// The repository.
        reference: String,
        /// The request.
        what: String,
        /// The limit.
        limit: usize,
    },
    /// The registry refused the credentials (or there were none).
    #[error("{reference}: the registry refused authentication ({reason})")]
    Auth {
        /// The repository.
        reference: String,
        /// Why.
        reason: String,
    },
    /// An unexpected status.
    #[error("{reference}: {what}: HTTP {status}{}", body_note(.body))]
    Status {
        /// The repository.
        reference: String,
        /// The request.
        what: String,
        /// The status.
        status: StatusCode,
        /// The start of the body (registries explain errors in JSON).
        body: String,
    },
    /// Bytes that do not match their digest.
    #[error("{reference}: {what} has digest {got} instead of {expected}")]
    Mismatch {
        /// The repository.
        reference: String,
        /// The blob or manifest.
        what: String,
        /// The digest asked for.
        expected: String,
        /// What arrived.
        got: String,
    },
    /// Writing a downloaded blob failed.
    #[error("{reference}: {what}: {source}")]
    Io {
        /// The repository.
        reference: String,
        /// What was being written.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

fn body_note(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(" ({})", body.trim())
    }
}

/// One repository of one registry.
#[derive(Debug)]
pub struct Registry {
    http: reqwest::Client,
    reach: Reach,
    base: String,
    reference: Reference,
    config: RegistryConfig,
    push: bool,
    authorization: Mutex<Option<HeaderValue>>,
}

impl Registry {
    /// A client for `reference`'s repository; `push` asks for push access
    /// when a token is needed.
    pub fn new(reference: &Reference, config: &RegistryConfig, push: bool) -> Self {
        let scheme = if plain_http_allowed(&reference.registry, &config.plain_http) {
            "http"
        } else {
            "https"
        };
        let host = match reference.registry.as_str() {
            "docker.io" => "registry-1.docker.io",
            other => other,
        };
        let base = format!("{scheme}://{host}");
        let reach = match reqwest::Url::parse(&base) {
            Ok(url) => Reach::new(&url),
            // A registry name that is no URL host fails at its first
            // request; until then it is judged as public.
            Err(_) => Reach::new(&reqwest::Url::parse("https://registry.invalid").expect("a URL")),
        };
        Self {
            http: reach
                .client_builder()
                .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(READ_TIMEOUT)
                .build()
                .expect("a reqwest client with a resolver builds"),
            reach,
            base,
            reference: reference.clone(),
            config: config.clone(),
            push,
            authorization: Mutex::new(None),
        }
    }

    /// `registry/repository`, for messages.
    pub fn name(&self) -> String {
        self.reference.name()
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.reference.repository)
    }

    /// An absolute URL for a `Location` header (which may be relative).
    fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else {
            format!("{}{location}", self.base)
        }
    }

    fn http_err(&self, what: &str) -> impl FnOnce(reqwest::Error) -> RegistryError {
        let (reference, what) = (self.name(), what.to_owned());
        move |source| match Refusal::of(&source) {
            Some(refusal) => RegistryError::Refused {
                reference,
                what,
                source: refusal,
            },
            None => RegistryError::Http {
                reference,
                what,
                source,
            },
        }
    }

    /// Checks a URL the registry named outside a redirect (a token realm,
    /// an upload's `Location`) as one redirect hop from the registry.
    pub(crate) fn check_followed(&self, what: &str, to: &str) -> Result<(), RegistryError> {
        let refused = |source: Refusal| RegistryError::Refused {
            reference: self.name(),
            what: what.to_owned(),
            source,
        };
        let (Ok(from), Ok(to_url)) = (reqwest::Url::parse(&self.base), reqwest::Url::parse(to))
        else {
            return Err(refused(Refusal::Redirect(
                cairn_fetch::redirect::RedirectRefused {
                    to: to.to_owned(),
                    reason: "not an absolute http or https URL",
                },
            )));
        };
        self.reach
            .check_followed(&from, &to_url)
            .map_err(|e| refused(e.into()))
    }

    /// The body of `response`, up to `limit` bytes (else an error).
    pub(crate) async fn read_limited(
        &self,
        what: &str,
        mut response: Response,
        limit: usize,
    ) -> Result<Vec<u8>, RegistryError> {
        let too_large = || RegistryError::TooLarge {
            reference: self.name(),
            what: what.to_owned(),
            limit,
        };
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(self.http_err(what))? {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    pub(crate) async fn status_err(&self, what: &str, mut response: Response) -> RegistryError {
        let status = response.status();
        let mut body = Vec::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            let room = MAX_ERROR_BODY - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() == MAX_ERROR_BODY {
                break;
            }
        }
        RegistryError::Status {
            reference: self.name(),
            what: what.to_owned(),
            status,
            body: String::from_utf8_lossy(&body).chars().take(300).collect(),
        }
    }

    /// Sends the request `build` makes, answering one authentication
    /// challenge if the registry sends one (then sending it again).
    pub(crate) async fn send(
        &self,
        what: &str,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let response = self
            .with_auth(build(&self.http))
            .send()
            .await
            .map_err(self.http_err(what))?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge);
        self.authenticate(challenge).await?;
        let retry = self
            .with_auth(build(&self.http))
            .send()
            .await
            .map_err(self.http_err(what))?;
        if retry.status() == StatusCode::UNAUTHORIZED || retry.status() == StatusCode::FORBIDDEN {
            return Err(RegistryError::Auth {
                reference: self.name(),
                reason: format!("{what}: HTTP {} with the credentials given", retry.status()),
            });
        }
        Ok(retry)
    }

    fn with_auth(&self, request: RequestBuilder) -> RequestBuilder {
        match self.authorization.lock().expect("not poisoned").clone() {
            Some(value) => request.header(AUTHORIZATION, value),
            None => request,
        }
    }

    async fn authenticate(&self, challenge: Option<Challenge>) -> Result<(), RegistryError> {
        let refused = |reason: &str| RegistryError::Auth {
            reference: self.name(),
            reason: reason.to_owned(),
        };
        let value = match challenge {
            None => return Err(refused("HTTP 401 without a challenge cairn understands")),
            Some(Challenge::Basic) => {
                let creds = self.config.credentials.as_ref().ok_or_else(|| {
                    refused("it asks for a user name and password; set CAIRN_REGISTRY_USER and CAIRN_REGISTRY_PASSWORD")
                })?;
                creds.basic()
            }
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                format!("Bearer {}", self.token(&realm, service, scope).await?)
            }
        };
        let value = HeaderValue::from_str(&value)
            .map_err(|_| refused("the token is not a valid header value"))?;
        *self.authorization.lock().expect("not poisoned") = Some(value);
        Ok(())
    }

    async fn token(
        &self,
        realm: &str,
        service: Option<String>,
        scope: Option<String>,
    ) -> Result<String, RegistryError> {
        let actions = if self.push { "pull,push" } else { "pull" };
        let scope =
            scope.unwrap_or_else(|| format!("repository:{}:{actions}", self.reference.repository));
        let mut query = vec![("scope", scope)];
        if let Some(s) = service {
            query.push(("service", s));
        }
        let what = format!("token from {realm}");
        self.check_followed(&what, realm)?;
        let mut request = self.http.get(realm).query(&query);
        if let Some(c) = &self.config.credentials {
            request = request.basic_auth(&c.username, Some(&c.password));
        }
        let response = request.send().await.map_err(self.http_err(&what))?;
        if !response.status().is_success() {
            return Err(RegistryError::Auth {
                reference: self.name(),
                reason: format!("{what}: HTTP {}", response.status()),
            });
        }
        let body = self.read_limited(&what, response, MAX_TOKEN_ANSWER).await?;
        token_from_json(&body).ok_or_else(|| RegistryError::Auth {
            reference: self.name(),
            reason: format!("{what}: no token in the answer"),
        })
    }

    /// Checks the registry answers the API at all (and authenticates).
    pub async fn ping(&self) -> Result<(), RegistryError> {
        let url = format!("{}/v2/", self.base);
        let response = self.send("GET /v2/", |c| c.get(&url)).await?;
        if !response.status().is_success() {
            return Err(self.status_err("GET /v2/", response).await);
        }
        Ok(())
    }

    /// A manifest's bytes and media type, by tag or digest.
    pub async fn get_manifest(
        &self,
        reference: &str,
    ) -> Result<Option<(Vec<u8>, String)>, RegistryError> {
        let url = self.url(&format!("manifests/{reference}"));
        let what = format!("manifest {reference}");
        let response = self
            .send(&what, |c| {
                c.get(&url).header("Accept", crate::media::MANIFEST_ACCEPT)
            })
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(self.status_err(&what, response).await);
        }
        let media_type = content_type(response.headers());
        let bytes = self.read_limited(&what, response, MAX_MANIFEST).await?;
        Ok(Some((bytes, media_type)))
    }

    /// Stores a manifest under `reference` (a tag or its digest); returns
    /// whether the registry said it recorded its `subject` (`OCI-Subject`).
    pub async fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<bool, RegistryError> {
        let url = self.url(&format!("manifests/{reference}"));
        let what = format!("PUT manifest {reference}");
        let response = self
            .send(&what, |c| {
                c.request(Method::PUT, &url)
                    .header("Content-Type", media_type)
                    .body(bytes.to_vec())
            })
            .await?;
        if !response.status().is_success() {
            return Err(self.status_err(&what, response).await);
        }
        Ok(response.headers().contains_key("OCI-Subject"))
    }
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get("Content-Type")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned())
        .unwrap_or_default()
}

/// Whether `registry` (`host[:port]`) may be reached over plain HTTP.
pub fn plain_http_allowed(registry: &str, allowed: &[String]) -> bool {
    if allowed.iter().any(|a| a == registry) {
        return true;
    }
    let host = match registry.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => registry,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_for_loopback_and_allowed_hosts() {
        assert!(plain_http_allowed("127.0.0.1:5000", &[]));
        assert!(plain_http_allowed("localhost:5000", &[]));
        assert!(plain_http_allowed("[::1]:5000", &[]));
        assert!(!plain_http_allowed("registry.example:5000", &[]));
        assert!(plain_http_allowed(
            "registry.example:5000",
            &["registry.example:5000".into()]
        ));
        assert!(!plain_http_allowed("10.0.0.1:5000", &[]));
    }
}
