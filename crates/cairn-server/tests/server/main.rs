//! `cairn server` end to end: the real server on 127.0.0.1:0 over a local
//! store, driven by the `http://` store backend and by raw HTTP (including
//! hand-written requests for what a well-behaved client never sends).

mod access;
mod assemble;
mod batch;
mod bazel;
mod connect;
mod dashboard_cost;
mod faults;
mod harness;
mod store;
mod watch;
