//! `agent.toml` as written: serde types with spans, unknown keys refused.
//! [`super::convert`] turns them into the validated [`super::AgentConfig`].

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgentWire {
    pub store: Spanned<String>,
    pub token: Option<Spanned<String>>,
    pub token_file: Option<Spanned<String>>,
    pub service: Spanned<String>,
    pub channel: Spanned<String>,
    pub set: Spanned<String>,
    pub id: Option<Spanned<String>>,
    pub state_dir: Option<Spanned<String>>,
    pub poll_interval: Option<Spanned<String>>,
    pub fetch_silence: Option<Spanned<String>>,
    pub fetch_min_rate: Option<Spanned<toml::Value>>,
    pub fetch_rate_window: Option<Spanned<String>>,
    pub generations: Option<Spanned<u32>>,
    pub user: Option<Spanned<String>>,
    pub group: Option<Spanned<String>>,
    pub status_listen: Option<Spanned<String>>,
    pub keys_dir: Option<Spanned<String>>,
    pub trust: Spanned<TrustWire>,
    #[serde(default)]
    pub sockets: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    pub env: BTreeMap<Spanned<String>, String>,
    pub hooks: Option<HooksWire>,
    pub logs: Option<LogsWire>,
    pub fleet: Option<FleetWire>,
    pub deploy: Option<Spanned<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TrustWire {
    pub keys: Vec<Spanned<String>>,
    pub threshold: Spanned<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HooksWire {
    pub pre_swap: Option<Spanned<Vec<String>>>,
    pub post_swap: Option<Spanned<Vec<String>>>,
    pub on_rollback: Option<Spanned<Vec<String>>>,
    pub timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogsWire {
    pub max_size: Option<Spanned<toml::Value>>,
    pub keep: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FleetWire {
    pub poll: Option<Spanned<String>>,
    pub idle_poll: Option<Spanned<String>>,
    pub heartbeat: Option<Spanned<String>>,
    pub member_timeout: Option<Spanned<String>>,
    pub steward_lease: Option<Spanned<String>>,
    pub max_skew: Option<Spanned<String>>,
    pub check_retry: Option<Spanned<String>>,
}
