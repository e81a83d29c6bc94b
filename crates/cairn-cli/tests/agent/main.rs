//! `cairn agent` end to end: the real binary follows a channel in a real
//! store and runs `examples/http-hello` (built in the real sandbox) on real
//! loopback sockets, swaps it under load, rolls it back, survives kill -9
//! at every step of a swap, a store outage, a corrupt blob, a full disk
//! and refused statements.
//!
//! Each test promotes on a channel of its own and runs its own agent, so
//! tests run in parallel against one shared store of releases
//! ([`fixture`]).

mod fixture;
mod harness;
mod load;
mod trickle;

mod crash;
mod faults;
mod fleet;
mod fleet_abort;
mod fleet_gates;
mod fleet_status;
mod hostile;
mod local;
mod refusals;
mod store_writer;
mod swap;
