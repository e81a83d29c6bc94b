//! The dashboard's data model, [`Summary`], and the one function that
//! builds it from the store's refs ([`build`]).
//!
//! Both views — the server-rendered page and the `GET /v1/dashboard` JSON
//! the page's script re-renders from — are made from this one value, so
//! they cannot disagree. Everything is already text here (short digests,
//! RFC 3339 times): the renderers only lay it out.
//!
//! Building is lenient: one malformed ref shows up as a row with an
//! `error` instead of failing the whole page, and fleet records (written
//! by agents, whose schema is still young) are read as plain JSON, taking
//! the fields the dashboard knows and ignoring the rest.

use std::collections::{BTreeMap, HashMap};

use cairn_digest::Digest;
use cairn_store::{RefName, Store};
use cairn_trust::{Document, Envelope, Release};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::ApiError;

/// How many releases per service the dashboard lists.
pub const RECENT_RELEASES: usize = 8;

/// Everything the dashboard shows.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    /// When this summary was built (RFC 3339).
    pub generated: String,
    /// The services, by name.
    pub services: Vec<ServiceView>,
}

/// One service: its channels, recent releases and deployment sets.
#[derive(Debug, Default, Serialize)]
pub struct ServiceView {
    /// The service name.
    pub name: String,
    /// Its channels, by name.
    pub channels: Vec<ChannelView>,
    /// Its newest releases, newest first.
    pub releases: Vec<ReleaseView>,
    /// Its deployment sets, by name.
    pub sets: Vec<SetView>,
}

/// A channel's newest statement.
#[derive(Debug, Default, Serialize)]
pub struct ChannelView {
    /// The channel name.
    pub name: String,
    /// Short form of the release digest.
    pub release: String,
    /// The release's version label, if the release is known.
    pub version: String,
    /// The statement's sequence number.
    pub sequence: u64,
    /// Key ids of the signatures on the statement (not verified here).
    pub signers: Vec<String>,
    /// When the statement expires (RFC 3339).
    pub expires: String,
    /// Whether it already has.
    pub expired: bool,
    /// Why the ref could not be read, if it could not.
    pub error: Option<String>,
}

/// A published release.
#[derive(Debug, Default, Serialize)]
pub struct ReleaseView {
    /// Short form of the release digest.
    pub digest: String,
    /// The version label.
    pub version: String,
    /// Short form of the provenance digest.
    pub provenance: String,
    /// When it was made (RFC 3339).
    pub created: String,
    /// Why the ref could not be read, if it could not.
    pub error: Option<String>,
}

/// A deployment set: its rollout and members.
#[derive(Debug, Default, Serialize)]
pub struct SetView {
    /// The set name.
    pub name: String,
    /// The rollout record, if there is one.
    pub rollout: Option<RolloutView>,
    /// The members, by agent id.
    pub members: Vec<MemberView>,
}

/// `fleet/<service>/<set>/rollout`, as far as the dashboard understands it.
#[derive(Debug, Default, Serialize)]
pub struct RolloutView {
    /// The release the rollout moves to.
    pub target: String,
    /// The strategy (compact JSON if it is not a plain name).
    pub strategy: String,
    /// The phase.
    pub phase: String,
    /// How many update slots are held.
    pub slots: usize,
    /// How many failures were recorded.
    pub failures: usize,
    /// Members already on the target release.
    pub done: usize,
    /// All members.
    pub total: usize,
}

/// `fleet/<service>/<set>/members/<agent>`, as far as the dashboard
/// understands it; absent fields are empty.
#[derive(Debug, Default, Serialize)]
pub struct MemberView {
    /// The agent id (from the ref name).
    pub agent: String,
    /// The release it runs.
    pub release: String,
    /// The channel sequence it acted on.
    pub sequence: String,
    /// Its state.
    pub state: String,
    /// Its health.
    pub health: String,
    /// Its last heartbeat.
    pub heartbeat: String,
    /// The last failure it reported (empty if none).
    pub last_error: String,
    /// Why the ref could not be read, if it could not.
    pub error: Option<String>,
}

/// The short form of a digest: its first 12 hex digits.
pub fn short(digest: &Digest) -> String {
    digest.hex()[..12].to_string()
}

/// A time to the second, in RFC 3339.
pub(super) fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// Builds the summary from every `channels/`, `releases/` and `fleet/` ref.
pub async fn build(store: &Store, now: OffsetDateTime) -> Result<Summary, ApiError> {
    let mut services: BTreeMap<String, ServiceView> = BTreeMap::new();
    let (releases, versions) = releases(store).await?;
    for (name, list) in releases {
        service(&mut services, &name).releases = list;
    }
    for (svc, channel) in channels(store, &versions, now).await? {
        service(&mut services, &svc).channels.push(channel);
    }
    for (svc, set) in super::fleet::fleet(store, &versions).await? {
        service(&mut services, &svc).sets.push(set);
    }
    Ok(Summary {
        generated: rfc3339(now),
        services: services.into_values().collect(),
    })
}

/// The service called `name`, added if new.
fn service<'a>(services: &'a mut BTreeMap<String, ServiceView>, name: &str) -> &'a mut ServiceView {
    services
        .entry(name.to_string())
        .or_insert_with(|| ServiceView {
            name: name.to_string(),
            ..ServiceView::default()
        })
}

/// The second and later `/`-separated segments of `name` below `top`.
pub(super) fn segments<'a>(name: &'a RefName, top: &str) -> Vec<&'a str> {
    name.as_str()
        .strip_prefix(top)
        .map(|rest| rest.split('/').collect())
        .unwrap_or_default()
}

type Releases = (BTreeMap<String, Vec<ReleaseView>>, HashMap<String, String>);

/// Recent releases per service, and every release's version by short digest.
async fn releases(store: &Store) -> Result<Releases, ApiError> {
    let mut by_service: BTreeMap<String, Vec<(Option<OffsetDateTime>, ReleaseView)>> =
        BTreeMap::new();
    let mut versions = HashMap::new();
    for name in store.refs.list("releases/").await? {
        let [svc, _hex] = segments(&name, "releases/")[..] else {
            continue;
        };
        let (created, view) = match read_release(store, &name).await? {
            Ok((digest, r)) => (Some(r.created), release_view(&digest, &r)),
            Err(error) => (
                None,
                ReleaseView {
                    error: Some(error),
                    ..ReleaseView::default()
                },
            ),
        };
        versions.insert(view.digest.clone(), view.version.clone());
        by_service
            .entry(svc.into())
            .or_default()
            .push((created, view));
    }
    let recent = by_service
        .into_iter()
        .map(|(svc, mut list)| {
            list.sort_by_key(|(created, _)| std::cmp::Reverse(*created));
            let list = list.into_iter().take(RECENT_RELEASES).map(|(_, v)| v);
            (svc, list.collect())
        })
        .collect();
    Ok((recent, versions))
}

fn release_view(digest: &Digest, r: &Release) -> ReleaseView {
    ReleaseView {
        digest: short(digest),
        version: r.version.clone(),
        provenance: short(&r.provenance),
        created: rfc3339(r.created),
        error: None,
    }
}

/// A release envelope ref: the store's errors fail, a bad document is text.
async fn read_release(
    store: &Store,
    name: &RefName,
) -> Result<Result<(Digest, Release), String>, ApiError> {
    let Some(stored) = store.refs.get(name).await? else {
        return Ok(Err("deleted while reading".into()));
    };
    Ok(Envelope::from_json(&stored.value)
        .map_err(|e| e.to_string())
        .and_then(|env| {
            let release = Release::from_payload(&env.payload).map_err(|e| e.to_string())?;
            Ok((env.payload_digest(), release))
        }))
}

/// Every channel's newest statement, with `(service, view)`.
async fn channels(
    store: &Store,
    versions: &HashMap<String, String>,
    now: OffsetDateTime,
) -> Result<Vec<(String, ChannelView)>, ApiError> {
    let mut out = Vec::new();
    for name in store.refs.list("channels/").await? {
        let [svc, channel] = segments(&name, "channels/")[..] else {
            continue;
        };
        let view = match cairn_release::current(store, svc, channel).await {
            Ok(Some(cur)) => ChannelView {
                name: channel.into(),
                release: short(&cur.statement.release),
                version: versions
                    .get(&short(&cur.statement.release))
                    .cloned()
                    .unwrap_or_default(),
                sequence: cur.statement.sequence,
                signers: cur
                    .envelope
                    .signatures
                    .iter()
                    .map(|s| s.keyid.clone())
                    .collect(),
                expires: rfc3339(cur.statement.expires),
                expired: cur.statement.expires <= now,
                error: None,
            },
            Ok(None) => continue,
            Err(e) => ChannelView {
                name: channel.into(),
                error: Some(e.to_string()),
                ..ChannelView::default()
            },
        };
        out.push((svc.to_string(), view));
    }
    Ok(out)
}
