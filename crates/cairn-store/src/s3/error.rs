//! What an S3 failure means: the [`ErrorKind`] of an `object_store` error,
//! and a one-line description of it without the server's XML.
//!
//! `object_store` sorts the statuses that matter into its variants (404
//! `NotFound`, 409 `AlreadyExists`, 412 `Precondition`, 403
//! `PermissionDenied`, 401 `Unauthenticated`); everything else is
//! `Generic`, whose cause is either a transport failure (a `reqwest`
//! error: connect, timeout, TLS, ...) or an answer the client gave up on
//! after its retries (5xx). The error itself is kept as
//! the cause ([`S3Failure`]); messages show the server's `Code` and
//! `Message`, never its XML.

use std::fmt;

use crate::error::ErrorKind;
use crate::transport;

/// The kind of failure an S3 client error stands for.
pub fn kind(e: &object_store::Error) -> ErrorKind {
    use object_store::Error as E;
    match e {
        E::NotFound { .. } => ErrorKind::NotFound,
        E::AlreadyExists { .. } | E::Precondition { .. } => ErrorKind::Conflict,
        E::PermissionDenied { .. } => ErrorKind::Forbidden,
        E::Unauthenticated { .. } => ErrorKind::Unauthorized,
        E::NotSupported { .. }
        | E::NotImplemented
        | E::InvalidPath { .. }
        | E::UnknownConfigurationKey { .. }
        | E::NotModified { .. } => ErrorKind::InvalidRequest,
        E::Generic { .. } => match transport::find::<reqwest::Error>(e) {
            Some(r) => transport::classify(r).0,
            None => ErrorKind::Unavailable,
        },
        _ => ErrorKind::Unavailable,
    }
}

/// A short description of what happened, for [`StoreError::Remote`]'s
/// detail.
///
/// [`StoreError::Remote`]: crate::StoreError::Remote
pub fn describe(e: &object_store::Error) -> String {
    use object_store::Error as E;
    let what = match e {
        E::NotFound { .. } => "not found (404)".into(),
        E::AlreadyExists { .. } => "already exists (409)".into(),
        E::Precondition { .. } => "precondition failed (412)".into(),
        E::PermissionDenied { .. } => "access denied (403)".into(),
        E::Unauthenticated { .. } => "not authenticated (401)".into(),
        E::Generic { .. } => match transport::find::<reqwest::Error>(e) {
            Some(r) => transport::classify(r).1,
            None => "the server refused or failed the request".into(),
        },
        _ => "the request failed".to_string(),
    };
    with_server_says(&what, e)
}

/// `what`, then the server's `Code: Message` if its answer had them.
pub fn with_server_says(what: &str, e: &object_store::Error) -> String {
    match server_says(&e.to_string()) {
        Some(says) => format!("{what}: {says}"),
        None => what.to_string(),
    }
}

/// `Code: Message` from an S3 XML error body quoted in `text`.
fn server_says(text: &str) -> Option<String> {
    let field = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = start + text[start..].find(&format!("</{name}>"))?;
        Some(text[start..end].trim().to_string())
    };
    match (field("Code"), field("Message")) {
        (Some(code), Some(message)) => Some(format!("{code}: {message}")),
        (Some(code), None) => Some(code),
        (None, Some(message)) => Some(message),
        (None, None) => None,
    }
}

/// An S3 client error kept as a cause. Its text is [`describe`]'s (the
/// client's own text quotes the server's XML); its source is the transport
/// error, if any; [`S3Failure::inner`] has the whole error.
pub struct S3Failure(pub object_store::Error);

impl S3Failure {
    /// The client's error.
    pub fn inner(&self) -> &object_store::Error {
        &self.0
    }
}

impl fmt::Display for S3Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&describe(&self.0))
    }
}

impl fmt::Debug for S3Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("S3Failure").field(&self.0).finish()
    }
}

impl std::error::Error for S3Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        transport::find::<reqwest::Error>(&self.0).map(|r| r as _)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "Server returned non-2xx status code: 403 Forbidden: <?xml version=\"1.0\" \
        encoding=\"UTF-8\"?><Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access Key \
        Id you provided does not exist in our records.</Message><RequestId>1</RequestId></Error>";

    #[test]
    fn xml_is_replaced_by_code_and_message() {
        let e = object_store::Error::PermissionDenied {
            path: "probe/x".into(),
            source: BODY.into(),
        };
        assert_eq!(kind(&e), ErrorKind::Forbidden);
        let described = describe(&e);
        assert_eq!(
            described,
            "access denied (403): InvalidAccessKeyId: The AWS Access Key Id you provided \
             does not exist in our records."
        );
        assert_eq!(S3Failure(e).to_string(), described);
    }

    #[test]
    fn statuses_have_their_kinds() {
        let source = || "x".into();
        let path = String::new;
        use object_store::Error as E;
        assert_eq!(
            kind(&E::NotFound {
                path: path(),
                source: source()
            }),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind(&E::Precondition {
                path: path(),
                source: source()
            }),
            ErrorKind::Conflict
        );
        assert_eq!(
            kind(&E::Unauthenticated {
                path: path(),
                source: source()
            }),
            ErrorKind::Unauthorized
        );
        assert_eq!(
            kind(&E::Generic {
                store: "S3",
                source: source()
            }),
            ErrorKind::Unavailable
        );
    }
}
