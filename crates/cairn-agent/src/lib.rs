//! `cairn agent`: on one machine, turn a promoted release into a running,
//! healthy service, and swap to the next one without dropping a request.
//!
//! The agent follows one channel of one service ([`config`]). Each
//! statement goes through the one acceptance chain
//! (`cairn_release::accept`); an accepted release is copied from the store
//! into the agent's own local store ([`fetch`]), materialized read-only as
//! a generation beside the previous ones ([`generation`]), and, when the
//! [`gate`] allows (with [`fleet`], the deployment set's rollout
//! protocol: slots, waves, canaries, halts), swapped in: the new process starts on the same
//! listening sockets the agent holds ([`sockets`]), is health-checked on a
//! private twin socket ([`health`]), and the old one is stopped gracefully.
//! A release that fails its health check is rolled back and not retried
//! until a newer statement arrives. Between updates the agent supervises
//! the service (restarts with backoff), and it reports a member record to
//! the store and a status endpoint ([`status`]).
//!
//! The service outlives the agent: it runs in its own session, writes its
//! output to its own log pump ([`logs`]), and holds the sockets itself.
//! A restarted agent adopts it from `state.json` ([`state`]), identified
//! by pid *and* start time ([`process`]), and takes the sockets back from
//! it. [`Agent`] ties these together; the module docs of [`agent`] walk
//! through the loop, and `docs/ARCHITECTURE.md` through the crash cases.
//!
//! The crate takes the store it follows through the store traits, so it
//! runs the same against a local directory, S3 or a `cairn server`.

pub mod agent;
pub mod config;
pub mod fetch;
pub mod fetch_rate;
pub mod fleet;
pub mod gate;
pub mod generation;
pub mod health;
pub mod hooks;
pub mod logs;
pub mod notify;
pub mod phase;
pub mod process;
pub mod sockets;
pub mod state;
pub mod status;
pub mod users;

pub use agent::{Agent, AgentError, CrashPoint, PumpCommand, Settings, ShutdownMode};
pub use config::AgentConfig;
pub use fleet::Fleet;
pub use gate::{Command, Decision, GateContext, Immediately, Outcome, UpdateGate, UpdateRequest};
pub use phase::Phase;
