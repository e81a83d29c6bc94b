//! Where the requests of one client may connect, by the addresses they
//! actually reach: the one policy of every HTTP client that follows a
//! server's directions (fixed-output fetches, registry pulls and pushes).
//!
//! [`crate::redirect`] judges a redirect by its URL; a host given by name
//! is judged here, when it is resolved for a connection, by every address
//! it resolves to. So a public name that resolves to 127.0.0.1, or one
//! whose DNS answers a public address first and a loopback one on the next
//! lookup (DNS rebinding), never gets a public origin's request onto the
//! machine itself or its local networks.
//!
//! The origin is what the caller named (the recipe's URL, the image's
//! registry). It is internal when it is a loopback, private or link-local
//! address, or `localhost`, as written, or a name all of whose addresses
//! are such at its first lookup: a mirror on the local network, which may
//! send requests anywhere. Any other origin is public, and from then on
//! every lookup (the origin's own again included) keeps only public
//! addresses; a name left with none is refused. What a public origin's
//! name first resolves to is not questioned: the caller chose that host,
//! and could as well have written its address.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

use crate::redirect::{self, RedirectRefused};

/// A connection refused because of the addresses its host resolves to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused to connect to {host} ({}): {reason}", list(.addresses))]
pub struct AddressRefused {
    /// The host name looked up.
    pub host: String,
    /// What it resolved to.
    pub addresses: Vec<IpAddr>,
    /// Why none of them may be used.
    pub reason: &'static str,
}

fn list(addresses: &[IpAddr]) -> String {
    let text: Vec<String> = addresses.iter().map(IpAddr::to_string).collect();
    text.join(", ")
}

/// Why a request did not go where a server sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A redirect (or a URL a server named) refused by its URL.
    #[error(transparent)]
    Redirect(#[from] RedirectRefused),
    /// A host refused by the addresses it resolves to.
    #[error(transparent)]
    Address(#[from] AddressRefused),
}

impl Refusal {
    /// The refusal behind a request's error, if that is why it failed.
    pub fn of(error: &reqwest::Error) -> Option<Self> {
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(e) = next {
            if let Some(r) = e.downcast_ref::<RedirectRefused>() {
                return Some(r.clone().into());
            }
            if let Some(r) = e.downcast_ref::<AddressRefused>() {
                return Some(r.clone().into());
            }
            next = e.source();
        }
        None
    }
}

/// The policy of one client, for requests starting at one origin.
#[derive(Clone)]
pub struct Reach(Arc<Origin>);

struct Origin {
    /// The origin's host, lowercased, without brackets or a final dot.
    host: String,
    /// Whether the origin is internal, once known (see the module docs).
    internal: OnceLock<bool>,
}

impl fmt::Debug for Reach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reach")
            .field("origin", &self.0.host)
            .field("internal", &self.0.internal.get())
            .finish()
    }
}

impl Reach {
    /// The policy for requests starting at `origin`.
    pub fn new(origin: &Url) -> Self {
        let host = host_of(origin);
        let internal = OnceLock::new();
        if host.parse::<IpAddr>().is_ok() || redirect::is_local_name(&host) {
            let _ = internal.set(redirect::is_internal(origin));
        }
        Self(Arc::new(Origin { host, internal }))
    }

    /// Whether the origin is internal (a public origin until its name has
    /// been looked up).
    pub fn origin_internal(&self) -> bool {
        self.0.internal.get().copied().unwrap_or(false)
    }

    /// A client builder with this policy: redirects as [`redirect::check`]
    /// allows, and every host name looked up through [`Reach::admit`].
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        let reach = self.clone();
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            match redirect::check(attempt.previous(), attempt.url(), reach.origin_internal()) {
                Ok(()) => attempt.follow(),
                Err(refused) => attempt.error(refused),
            }
        });
        reqwest::Client::builder()
            .redirect(policy)
            .dns_resolver(Arc::new(self.clone()))
    }

    /// Checks a URL a server named outside a redirect (a token realm, an
    /// upload's `Location`), reached from `from`, as one redirect hop.
    pub fn check_followed(&self, from: &Url, to: &Url) -> Result<(), RedirectRefused> {
        redirect::check(std::slice::from_ref(from), to, self.origin_internal())
    }

    /// The addresses of `host` a request may connect to, out of those it
    /// resolved to (see the module docs).
    pub fn admit(
        &self,
        host: &str,
        addresses: Vec<SocketAddr>,
    ) -> Result<Vec<SocketAddr>, AddressRefused> {
        let host = normal_host(host);
        let all_internal =
            !addresses.is_empty() && addresses.iter().all(|a| redirect::internal_ip(a.ip()));
        let internal = match self.0.internal.get() {
            Some(known) => *known,
            None if host == self.0.host => *self.0.internal.get_or_init(|| all_internal),
            None => false,
        };
        if internal {
            return Ok(addresses);
        }
        let public: Vec<SocketAddr> = addresses
            .iter()
            .copied()
            .filter(|a| !redirect::internal_ip(a.ip()))
            .collect();
        if public.is_empty() {
            return Err(AddressRefused {
                host,
                addresses: addresses.iter().map(SocketAddr::ip).collect(),
                reason: "a public origin may not reach a loopback, private or link-local address",
            });
        }
        Ok(public)
    }
}

impl Resolve for Reach {
    fn resolve(&self, name: Name) -> Resolving {
        let reach = self.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let admitted = reach.admit(&host, found)?;
            Ok(Box::new(admitted.into_iter()) as Addrs)
        })
    }
}

fn host_of(url: &Url) -> String {
    normal_host(url.host_str().unwrap_or(""))
}

fn normal_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter()
            .map(|a| SocketAddr::new(a.parse().unwrap(), 0))
            .collect()
    }

    #[test]
    fn a_public_origin_keeps_public_addresses_only() {
        let reach = Reach::new(&Url::parse("https://example.org/a").unwrap());
        let mixed = reach.admit("example.org", addrs(&["93.184.216.34", "127.0.0.1"]));
        assert_eq!(mixed.unwrap(), addrs(&["93.184.216.34"]));
        assert!(!reach.origin_internal());
        // Rebound: the same name, now loopback only.
        let rebound = reach
            .admit("example.org", addrs(&["127.0.0.1"]))
            .unwrap_err();
        assert_eq!(
            rebound.to_string(),
            "refused to connect to example.org (127.0.0.1): a public origin may not reach \
             a loopback, private or link-local address"
        );
        let other = reach.admit("Evil.Example.", addrs(&["10.0.0.1", "::1"]));
        assert!(other.is_err_and(|e| e.host == "evil.example"));
    }

    #[test]
    fn an_origin_named_internal_or_resolving_so_may_reach_anything() {
        let literal = Reach::new(&Url::parse("http://10.0.0.5:8080/a").unwrap());
        assert!(literal.origin_internal());
        assert!(literal.admit("x.example", addrs(&["127.0.0.1"])).is_ok());
        let mirror = Reach::new(&Url::parse("http://Mirror.Lan/a").unwrap());
        assert!(!mirror.origin_internal(), "undecided until looked up");
        // Another name first does not decide the origin.
        assert!(mirror.admit("other.lan", addrs(&["10.0.0.6"])).is_err());
        assert!(mirror.admit("mirror.lan", addrs(&["10.0.0.5"])).is_ok());
        assert!(mirror.origin_internal());
        assert!(mirror.admit("other.lan", addrs(&["10.0.0.6"])).is_ok());
        let public_literal = Reach::new(&Url::parse("http://203.0.113.1/a").unwrap());
        assert!(public_literal
            .admit("203.0.113.1", addrs(&["127.0.0.1"]))
            .is_err());
    }
}
