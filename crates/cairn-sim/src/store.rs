//! The simulated store: refs with versions, changed only by
//! compare-and-swap, as `cairn_store`'s memory backend behaves, holding
//! typed records (their JSON size is kept for the byte counts).
//!
//! Every operation is counted, by kind, for the per-agent figures.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use cairn_rollout::{MemberRecord, RolloutRecord, Version};

/// A stored value.
#[derive(Clone, Debug)]
pub enum Value {
    /// A member record.
    Member(Box<MemberRecord>),
    /// The rollout record (shared: readers get a pointer, not a copy).
    Rollout(Arc<RolloutRecord>),
}

#[derive(Clone, Debug)]
struct Entry {
    version: u64,
    value: Value,
    bytes: usize,
}

/// Operations counted, for the whole set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Reads of the rollout record.
    pub rollout_reads: u64,
    /// Successful writes of the rollout record.
    pub rollout_writes: u64,
    /// Writes of the rollout record that found another version.
    pub rollout_conflicts: u64,
    /// Reads of member records (own and others').
    pub member_reads: u64,
    /// Writes of member records.
    pub member_writes: u64,
    /// Member lists.
    pub lists: u64,
    /// List pages, at 1,000 names a page (what an S3 `ListObjectsV2` costs).
    pub list_pages: u64,
    /// Reads of another set's state (fleet gates).
    pub fleet_reads: u64,
    /// Operations refused because the store was down, or lost.
    pub failed: u64,
    /// Bytes of record read.
    pub bytes_read: u64,
    /// Bytes of record written.
    pub bytes_written: u64,
}

impl Counts {
    /// Every request made, counting a list as its pages.
    pub fn requests(&self) -> u64 {
        self.rollout_reads
            + self.rollout_writes
            + self.rollout_conflicts
            + self.member_reads
            + self.member_writes
            + self.list_pages
            + self.fleet_reads
            + self.failed
    }

    /// `self - earlier`, field by field.
    pub fn since(&self, earlier: &Counts) -> Counts {
        Counts {
            rollout_reads: self.rollout_reads - earlier.rollout_reads,
            rollout_writes: self.rollout_writes - earlier.rollout_writes,
            rollout_conflicts: self.rollout_conflicts - earlier.rollout_conflicts,
            member_reads: self.member_reads - earlier.member_reads,
            member_writes: self.member_writes - earlier.member_writes,
            lists: self.lists - earlier.lists,
            list_pages: self.list_pages - earlier.list_pages,
            fleet_reads: self.fleet_reads - earlier.fleet_reads,
            failed: self.failed - earlier.failed,
            bytes_read: self.bytes_read - earlier.bytes_read,
            bytes_written: self.bytes_written - earlier.bytes_written,
        }
    }
}

/// The refs of one deployment set.
#[derive(Debug, Default)]
pub struct Store {
    refs: HashMap<String, Entry>,
    members: BTreeMap<String, ()>,
    listing: Option<Arc<Vec<String>>>,
    next_version: u64,
    /// What was done to it.
    pub counts: Counts,
}

/// A compare-and-swap that found another version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conflict;

/// The rollout ref's name in the simulation.
pub const ROLLOUT: &str = "rollout";

impl Store {
    /// Reads a ref.
    pub fn get(&mut self, name: &str) -> Option<(Version, Value)> {
        let entry = self.refs.get(name);
        let bytes = entry.map_or(0, |e| e.bytes) as u64;
        self.counts.bytes_read += bytes;
        if name == ROLLOUT {
            self.counts.rollout_reads += 1;
        } else {
            self.counts.member_reads += 1;
        }
        entry.map(|e| (Version(e.version.to_string()), e.value.clone()))
    }

    /// The current rollout record, without counting a read (for checks).
    pub fn peek_rollout(&self) -> Option<(u64, &Arc<RolloutRecord>)> {
        match self.refs.get(ROLLOUT) {
            Some(Entry {
                version,
                value: Value::Rollout(r),
                ..
            }) => Some((*version, r)),
            _ => None,
        }
    }

    /// A member record, without counting a read (for checks).
    pub fn peek_member(&self, id: &str) -> Option<&MemberRecord> {
        match self.refs.get(id) {
            Some(Entry {
                value: Value::Member(m),
                ..
            }) => Some(m),
            _ => None,
        }
    }

    /// Lists the member ids.
    pub fn list_members(&mut self) -> Arc<Vec<String>> {
        let n = self.members.len() as u64;
        self.counts.lists += 1;
        self.counts.list_pages += n.div_ceil(1000).max(1);
        let members = &self.members;
        let listing = self
            .listing
            .get_or_insert_with(|| Arc::new(members.keys().cloned().collect()))
            .clone();
        self.counts.bytes_read += listing.iter().map(|k| k.len() as u64 + 1).sum::<u64>();
        listing
    }

    /// Writes `value` if the ref is at `expected`.
    pub fn compare_and_swap(
        &mut self,
        name: &str,
        expected: Option<&Version>,
        value: Value,
    ) -> Result<Version, Conflict> {
        let found = self.refs.get(name).map(|e| e.version.to_string());
        if found.as_deref() != expected.map(|v| v.0.as_str()) {
            if name == ROLLOUT {
                self.counts.rollout_conflicts += 1;
            } else {
                self.counts.member_writes += 1;
            }
            return Err(Conflict);
        }
        let bytes = match &value {
            Value::Member(m) => json_len(m),
            Value::Rollout(r) => json_len(&**r),
        };
        self.counts.bytes_written += bytes as u64;
        if name == ROLLOUT {
            self.counts.rollout_writes += 1;
        } else {
            self.counts.member_writes += 1;
            if self.members.insert(name.to_string(), ()).is_none() {
                self.listing = None;
            }
        }
        self.next_version += 1;
        let version = self.next_version;
        self.refs.insert(
            name.to_string(),
            Entry {
                version,
                value,
                bytes,
            },
        );
        Ok(Version(version.to_string()))
    }
}

/// The length of `value` as JSON, without building the text.
fn json_len<T: serde::Serialize>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    serde_json::to_writer(&mut c, value).expect("records serialize");
    c.0
}
