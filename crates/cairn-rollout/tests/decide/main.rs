//! The protocol's rules, one at a time, through [`decide`]. The
//! simulator (`cairn-sim`) checks them together, under faults and at
//! scale; these pin each rule down.

mod fixtures;
mod gates;
mod hostile;
mod member;
mod props;
mod steward;
mod store_writer;
