//! Refs over `/v1/refs/…`: versions travel as ETags, compare-and-swap as
//! `If-Match` / `If-None-Match: *`, and a lost race comes back as 412,
//! which becomes [`StoreError::Conflict`]. A poll's read names the version
//! it has (`If-None-Match: "<version>"`) and an unchanged ref is a 304.

use async_trait::async_trait;
use reqwest::{header, Method, Response, StatusCode};
use tracing::instrument;

use super::{is_not_found, HttpStore};
use crate::error::{Result, StoreError};
use crate::refs::{
    check_ref_size, IfChanged, RefName, RefStore, RefWatch, Version, Versioned, MAX_REF_SIZE,
};

/// One page of a list: the names, and where the next page starts.
#[derive(serde::Deserialize)]
struct RefList {
    refs: Vec<String>,
    #[serde(default)]
    next: Option<String>,
}

/// Names asked for per page (the server's most).
const PAGE: usize = 1000;

fn ref_path(name: &RefName) -> String {
    // Ref names are `[A-Za-z0-9._-/]`: nothing to escape.
    format!("/v1/refs/{name}")
}

fn quoted(version: &Version) -> String {
    format!("\"{version}\"")
}

impl HttpStore {
    fn version_of(&self, response: &Response, what: &str) -> Result<Version> {
        response
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .and_then(|t| t.strip_prefix('"')?.strip_suffix('"'))
            .map(|t| Version(t.to_string()))
            .ok_or_else(|| self.malformed(what, "no ETag".into()))
    }

    fn lost_race(name: &RefName, expected: Option<&Version>) -> StoreError {
        StoreError::Conflict {
            name: name.to_string(),
            expected: expected.map_or("absent".into(), |v| v.0.clone()),
            found: "another version".into(),
        }
    }

    /// Lists refs under `prefix`, page by page (also used by the watch
    /// after a reset).
    pub(super) async fn list_refs(&self, prefix: &str) -> Result<Vec<RefName>> {
        let mut names = Vec::new();
        let mut after: Option<RefName> = None;
        let mut bytes = 0;
        loop {
            let (page, next) = self.list_one_page(prefix, after.as_ref(), PAGE).await?;
            bytes += page.iter().map(|n| n.as_str().len()).sum::<usize>();
            if bytes > super::MAX_ANSWER {
                let what = format!("listing refs under {prefix:?}");
                let reason = format!("more than {} bytes of names", super::MAX_ANSWER);
                return Err(self.malformed(&what, reason));
            }
            names.extend(page);
            match next {
                Some(next) => after = Some(next),
                None => return Ok(names),
            }
        }
    }

    /// One page: its names, and the `after` of the next page if there may
    /// be one. A page that does not move forward (names out of order or
    /// not after `after`, a `next` before its last name or without names)
    /// is malformed, and the whole list is bounded like any answer, so a
    /// server cannot keep a client listing forever.
    async fn list_one_page(
        &self,
        prefix: &str,
        after: Option<&RefName>,
        limit: usize,
    ) -> Result<(Vec<RefName>, Option<RefName>)> {
        let what = format!("listing refs under {prefix:?}");
        let limit = limit.to_string();
        let mut query = vec![("prefix", prefix), ("limit", &limit)];
        if let Some(after) = after {
            query.push(("after", after.as_str()));
        }
        let rb = self.request(Method::GET, "/v1/refs").query(&query);
        let response = self.send(rb, &what).await?;
        if !response.status().is_success() {
            return Err(self.failure(&what, response).await);
        }
        let bytes = self.body_within(response, super::MAX_ANSWER, &what).await?;
        let list: RefList =
            serde_json::from_slice(&bytes).map_err(|e| self.malformed(&what, e.to_string()))?;
        let names = list
            .refs
            .into_iter()
            .map(RefName::new)
            .collect::<Result<Vec<_>>>()?;
        let next = list.next.map(RefName::new).transpose()?;
        let mut last = after;
        for name in &names {
            if last.is_some_and(|l| name <= l) {
                let reason = format!("a page of refs goes back to {name}");
                return Err(self.malformed(&what, reason));
            }
            last = Some(name);
        }
        let stalls = match (&next, names.last()) {
            (Some(next), Some(last)) => next < last,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if stalls {
            return Err(self.malformed(&what, "a page that does not move forward".into()));
        }
        Ok((names, next))
    }
}

impl HttpStore {
    /// Reads a ref, conditionally on it having moved from `known`.
    async fn read_ref(&self, name: &RefName, known: Option<&Version>) -> Result<IfChanged> {
        let what = format!("reading ref {name}");
        let mut rb = self.request(Method::GET, &ref_path(name));
        if let Some(known) = known {
            rb = rb.header(header::IF_NONE_MATCH, quoted(known));
        }
        let response = self.send(rb, &what).await?;
        if is_not_found(response.status()) {
            return Ok(IfChanged::Changed(None));
        }
        if known.is_some() && response.status() == StatusCode::NOT_MODIFIED {
            return Ok(IfChanged::Unchanged);
        }
        if !response.status().is_success() {
            return Err(self.failure(&what, response).await);
        }
        let version = self.version_of(&response, &what)?;
        let value = self.body_within(response, MAX_REF_SIZE, &what).await?;
        Ok(IfChanged::Changed(Some(Versioned { value, version })))
    }
}

#[async_trait]
impl RefStore for HttpStore {
    #[instrument(skip_all, fields(name = %name))]
    async fn get(&self, name: &RefName) -> Result<Option<Versioned>> {
        match self.read_ref(name, None).await? {
            IfChanged::Changed(now) => Ok(now),
            IfChanged::Unchanged => Err(self.malformed(
                &format!("reading ref {name}"),
                "the server answered 304 to a plain read".into(),
            )),
        }
    }

    /// `If-None-Match: "<version>"`: an unchanged ref is a 304, no body.
    #[instrument(skip_all, fields(name = %name))]
    async fn get_if_changed(&self, name: &RefName, known: &Version) -> Result<IfChanged> {
        self.read_ref(name, Some(known)).await
    }

    #[instrument(skip_all, fields(prefix = %prefix))]
    async fn list(&self, prefix: &str) -> Result<Vec<RefName>> {
        self.list_refs(prefix).await
    }

    #[instrument(skip_all, fields(prefix = %prefix))]
    async fn list_page(
        &self,
        prefix: &str,
        after: Option<&RefName>,
        limit: usize,
    ) -> Result<Vec<RefName>> {
        let (mut names, _) = self.list_one_page(prefix, after, limit).await?;
        names.truncate(limit);
        Ok(names)
    }

    #[instrument(skip_all, fields(name = %name))]
    async fn compare_and_swap(
        &self,
        name: &RefName,
        expected: Option<&Version>,
        value: Vec<u8>,
    ) -> Result<Version> {
        check_ref_size(name, &value)?;
        let what = format!("writing ref {name}");
        let rb = self.request(Method::PUT, &ref_path(name)).body(value);
        let rb = match expected {
            Some(v) => rb.header(header::IF_MATCH, quoted(v)),
            None => rb.header(header::IF_NONE_MATCH, "*"),
        };
        let response = self.send(rb, &what).await?;
        match response.status() {
            StatusCode::PRECONDITION_FAILED => Err(Self::lost_race(name, expected)),
            s if s.is_success() => self.version_of(&response, &what),
            _ => Err(self.failure(&what, response).await),
        }
    }

    #[instrument(skip_all, fields(name = %name))]
    async fn delete(&self, name: &RefName, expected: &Version) -> Result<()> {
        let what = format!("deleting ref {name}");
        let rb = self
            .request(Method::DELETE, &ref_path(name))
            .header(header::IF_MATCH, quoted(expected));
        let response = self.send(rb, &what).await?;
        match response.status() {
            StatusCode::PRECONDITION_FAILED => Err(Self::lost_race(name, Some(expected))),
            s if s.is_success() => Ok(()),
            _ => Err(self.failure(&what, response).await),
        }
    }

    async fn watch(&self, prefix: &str) -> Result<Option<RefWatch>> {
        super::watch::watch(self.clone(), prefix.to_string())
            .await
            .map(Some)
    }
}
