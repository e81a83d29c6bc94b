//! One page of a local store's refs, walked in name order from a cursor.
//!
//! Refs are files under `refs/`, one directory per `/` of their names, and
//! a page is "the first `limit` names after `after` that start with
//! `prefix`, sorted as text". Names sort as text, not as a tree: `b.x`
//! comes before `b/c`, which comes before `b0`. So every entry of a
//! directory is ordered by its name, with a `/` after a directory's
//! (everything below it starts so); a directory wholly before the cursor
//! or outside the prefix is never opened, and the walk stops once the
//! page is full. Within a directory only the smallest entries still wanted
//! are sorted (in batches the size of what the page still needs), so a
//! flat directory of many refs costs one read of it and a partial sort,
//! not a sort of everything.

use std::io;
use std::path::Path;

use crate::error::{Result, StoreError};
use crate::refs::RefName;

/// The refs after `after` (all when `None`) whose names start with
/// `prefix`, at most `limit`, sorted.
pub(super) fn page(
    refs_root: &Path,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<RefName>> {
    let start = match prefix.rfind('/') {
        Some(i) => &prefix[..=i],
        None => "",
    };
    let mut walk = Walk {
        prefix,
        after,
        limit,
        out: Vec::new(),
    };
    if limit > 0 {
        walk.directory(&refs_root.join(start), start)?;
    }
    Ok(walk.out)
}

struct Walk<'a> {
    prefix: &'a str,
    after: Option<&'a str>,
    limit: usize,
    out: Vec<RefName>,
}

/// An entry of a directory: its path from `refs/`, with a final `/` for a
/// directory, which is also its place in the order.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    key: String,
    is_dir: bool,
}

impl Walk<'_> {
    /// Whether anything below `key` may be on the page.
    fn wanted(&self, key: &str, is_dir: bool) -> bool {
        let in_prefix = key.starts_with(self.prefix) || (is_dir && self.prefix.starts_with(key));
        // A directory the cursor is inside of holds names on both sides.
        let past_cursor = self
            .after
            .is_none_or(|a| key > a || (is_dir && a.starts_with(key)));
        in_prefix && past_cursor
    }

    fn full(&self) -> bool {
        self.out.len() >= self.limit
    }

    /// Adds the wanted refs of `dir` (whose path from `refs/` is `rel`).
    fn directory(&mut self, dir: &Path, rel: &str) -> Result<()> {
        let mut entries = self.entries(dir, rel)?;
        let mut batch = self.limit - self.out.len();
        while !entries.is_empty() && !self.full() {
            let take = batch.min(entries.len());
            if take < entries.len() {
                entries.select_nth_unstable(take);
            }
            let mut first: Vec<Entry> = entries.drain(..take).collect();
            first.sort_unstable();
            for entry in first {
                if self.full() {
                    break;
                }
                if entry.is_dir {
                    let name = entry.key.trim_end_matches('/');
                    self.directory(&dir.join(&name[rel.len()..]), &entry.key)?;
                } else if let Ok(name) = RefName::new(&entry.key) {
                    // Lock files (`<name>.lock`) are not refs.
                    self.out.push(name);
                }
            }
            batch = batch.saturating_mul(2);
        }
        Ok(())
    }

    /// The wanted entries of `dir`, unsorted.
    fn entries(&self, dir: &Path, rel: &str) -> Result<Vec<Entry>> {
        let listing = match std::fs::read_dir(dir) {
            Ok(listing) => listing,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(Vec::new())
            }
            Err(e) => return Err(StoreError::io("listing", dir, e)),
        };
        let mut entries = Vec::new();
        for entry in listing {
            let entry = entry.map_err(|e| StoreError::io("listing", dir, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue; // not UTF-8: no ref's file
            };
            let is_dir = entry
                .file_type()
                .map_err(|e| StoreError::io("reading", entry.path(), e))?
                .is_dir();
            let key = match is_dir {
                true => format!("{rel}{name}/"),
                false => format!("{rel}{name}"),
            };
            if self.wanted(&key, is_dir) {
                entries.push(Entry { key, is_dir });
            }
        }
        Ok(entries)
    }
}
