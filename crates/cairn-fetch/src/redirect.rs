//! Which HTTP redirects a fetch follows.
//!
//! A fetch's URL is written by whoever wrote the recipe, and the server
//! it names may send the fetch anywhere with a redirect, including to
//! services that only the machine running the build can reach (a
//! loopback admin port, a cloud metadata address). The digest keeps the
//! bytes honest, but not the request itself. So a fetch follows, as
//! curl, Nix and Bazel users expect of a download:
//!
//! * at most [`MAX_REDIRECTS`] redirects;
//! * to `http` or `https` only, and never from `https` back to `http`
//!   (once a hop was encrypted, every later one is);
//! * from a public origin, only to public hosts: never to a loopback,
//!   private, link-local, shared or unspecified address, nor to
//!   `localhost`. An origin that is itself such a host (a mirror on the
//!   local network) may redirect within it.
//!
//! A host given by name is judged here by its name alone; what it
//! resolves to is judged when it is looked up for a connection, by
//! [`crate::reach`], which also decides whether an origin given by name
//! is internal.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use reqwest::Url;

/// The most redirects one fetch follows.
pub const MAX_REDIRECTS: usize = 10;

/// A redirect the fetch refused to follow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused a redirect to {to}: {reason}")]
pub struct RedirectRefused {
    /// Where the redirect pointed.
    pub to: String,
    /// Why it was not followed.
    pub reason: &'static str,
}

/// Whether the redirect to `next` may be followed after `previous` (the
/// fetch's own URL first), for an origin that is internal or not
/// ([`crate::reach::Reach::origin_internal`]).
pub fn check(previous: &[Url], next: &Url, origin_internal: bool) -> Result<(), RedirectRefused> {
    let refuse = |reason| {
        Err(RedirectRefused {
            to: next.to_string(),
            reason,
        })
    };
    // `previous` holds the fetch's URL and every redirect followed so far.
    if previous.len() > MAX_REDIRECTS {
        return refuse("more than 10 redirects");
    }
    if !matches!(next.scheme(), "http" | "https") {
        return refuse("a fetch follows redirects to http and https only");
    }
    if next.scheme() == "http" && previous.iter().any(|u| u.scheme() == "https") {
        return refuse("a redirect from https may not go back to http");
    }
    if !origin_internal && is_internal(next) {
        return refuse(
            "a public origin may not redirect to a loopback, private or link-local address",
        );
    }
    Ok(())
}

/// Whether `url` names the machine itself or its local networks, as
/// written (an address, or `localhost`).
pub fn is_internal(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return true;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(ip) => internal_ip(ip),
        Err(_) => is_local_name(host),
    }
}

/// Whether a host name is `localhost` or below it.
pub fn is_local_name(host: &str) -> bool {
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// Whether an address is loopback, private, link-local, shared or
/// unspecified.
pub fn internal_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => internal_v4(ip),
        IpAddr::V6(ip) => internal_v6(ip),
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space
}

fn internal_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return internal_v4(v4);
    }
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(list: &[&str]) -> Vec<Url> {
        list.iter().map(|u| Url::parse(u).unwrap()).collect()
    }

    #[test]
    fn public_origins_stay_public() {
        let from = urls(&["https://example.org/a"]);
        for to in [
            "https://127.0.0.1/x",
            "https://10.1.2.3/x",
            "https://192.168.0.1/x",
            "https://172.16.0.1/x",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/x",
            "https://0.0.0.0/x",
            "https://[::1]/x",
            "https://[fe80::1]/x",
            "https://[fd00::1]/x",
            "https://[::ffff:127.0.0.1]/x",
            "https://localhost/x",
            "https://a.localhost./x",
        ] {
            let refused = check(&from, &Url::parse(to).unwrap(), false);
            assert!(
                refused.is_err_and(|e| e.reason.contains("public origin")),
                "{to}"
            );
        }
        assert!(check(
            &from,
            &Url::parse("https://mirror.example.com/x").unwrap(),
            false
        )
        .is_ok());
        assert!(check(
            &from,
            &Url::parse("https://93.184.216.34/x").unwrap(),
            false
        )
        .is_ok());
    }

    #[test]
    fn internal_origins_may_redirect_anywhere_over_http_s() {
        let from = urls(&["http://10.0.0.5/a"]);
        let internal = is_internal(&from[0]);
        assert!(check(&from, &Url::parse("http://127.0.0.1/x").unwrap(), internal).is_ok());
        assert!(check(
            &from,
            &Url::parse("https://example.org/x").unwrap(),
            internal
        )
        .is_ok());
        let ftp = check(&from, &Url::parse("ftp://10.0.0.5/x").unwrap(), internal);
        assert!(ftp.is_err_and(|e| e.reason.contains("http and https only")));
        let file = check(&from, &Url::parse("file:///etc/passwd").unwrap(), internal);
        assert!(file.is_err());
    }

    #[test]
    fn no_downgrade_and_a_bounded_chain() {
        let from = urls(&["http://example.org/a", "https://example.org/b"]);
        let down = check(&from, &Url::parse("http://example.org/c").unwrap(), false);
        assert!(down.is_err_and(|e| e.reason.contains("from https")));
        let tenth = urls(&["https://example.org/a"; MAX_REDIRECTS]);
        assert!(check(&tenth, &Url::parse("https://example.org/z").unwrap(), false).is_ok());
        let long = urls(&["https://example.org/a"; MAX_REDIRECTS + 1]);
        let too_many = check(&long, &Url::parse("https://example.org/z").unwrap(), false);
        assert!(too_many.is_err_and(|e| e.reason.contains("more than 10")));
    }
}
