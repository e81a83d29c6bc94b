//! What a failed network request means, for both remote backends: the
//! [`ErrorKind`] and a short description of a `reqwest` error, found
//! anywhere in an error's chain of causes.

use std::error::Error;

use crate::error::ErrorKind;

/// The first error of type `T` in `e`'s chain of causes. An `io::Error`
/// hides the error it wraps from `source()`, so it is looked into with
/// `get_ref()` instead.
pub fn find<'a, T: Error + 'static>(e: &'a (dyn Error + 'static)) -> Option<&'a T> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        next = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as _),
            None => err.source(),
        };
    }
    None
}

/// The kind of a request that got no answer, and what to tell the user.
/// (A TLS client that gets something other than TLS back was most likely
/// sent to a plain HTTP server.)
pub fn classify(e: &reqwest::Error) -> (ErrorKind, String) {
    match find::<rustls::Error>(e) {
        Some(rustls::Error::InvalidCertificate(_)) => (
            ErrorKind::InvalidRequest,
            format!(
                "the server's certificate is not trusted (to trust a private CA or a \
                 self-signed server, give its PEM file in {})",
                crate::http::CA_CERT_ENV
            ),
        ),
        Some(rustls::Error::InvalidMessage(_)) => (
            ErrorKind::InvalidRequest,
            "the server does not speak TLS; if it serves plain HTTP, use http:// instead \
             of https://"
                .into(),
        ),
        Some(_) => (ErrorKind::InvalidRequest, "the TLS handshake failed".into()),
        None if e.is_timeout() => (ErrorKind::Unavailable, "no answer in time".into()),
        None if e.is_connect() => (ErrorKind::Unavailable, "cannot connect".into()),
        None if e.is_builder() => (ErrorKind::InvalidRequest, "a bad request".into()),
        None => (ErrorKind::Unavailable, "the connection failed".into()),
    }
}
