//! Comparing two trees file by file, for `--check`.
//!
//! Both trees are walked in full and every path is compared by what the
//! tree records for it: the file digest and executable bit, or the symlink
//! target. Directories themselves are not listed; their contents are.

use std::collections::BTreeMap;
use std::fmt;

use cairn_digest::Digest;
use cairn_snapshot::load_tree;
use cairn_store::FsStore;

use crate::error::BuildError;

/// What a tree records at one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A file: its content digest and executable bit.
    File(Digest, bool),
    /// A symlink and its target.
    Symlink(String),
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::File(d, false) => write!(f, "{d:#}"),
            Entry::File(d, true) => write!(f, "{d:#} (executable)"),
            Entry::Symlink(t) => write!(f, "symlink -> {}", cairn_escape::name_str(t)),
        }
    }
}

/// One path whose bytes differ between two trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// Relative to the tree root.
    pub path: String,
    /// In the first (cached) tree; `None` if absent there.
    pub before: Option<Entry>,
    /// In the second (rebuilt) tree; `None` if absent there.
    pub after: Option<Entry>,
}

/// Every path whose entry differs between trees `a` and `b`, sorted.
pub fn differences(fs: &FsStore, a: &Digest, b: &Digest) -> Result<Vec<Difference>, BuildError> {
    if a == b {
        return Ok(Vec::new());
    }
    let (a, b) = (entries(fs, a)?, entries(fs, b)?);
    let mut paths: Vec<&String> = a.keys().chain(b.keys()).collect();
    paths.sort();
    paths.dedup();
    Ok(paths
        .into_iter()
        .filter(|p| a.get(*p) != b.get(*p))
        .map(|p| Difference {
            path: p.clone(),
            before: a.get(p).cloned(),
            after: b.get(p).cloned(),
        })
        .collect())
}

fn entries(fs: &FsStore, root: &Digest) -> Result<BTreeMap<String, Entry>, BuildError> {
    let tree = load_tree(fs, root).map_err(|source| BuildError::Snapshot {
        what: format!("reading tree {root}"),
        source,
    })?;
    let mut out = BTreeMap::new();
    tree.walk(|dir_path, _, dir| {
        let path = |name: &str| match dir_path {
            "" => name.to_owned(),
            p => format!("{p}/{name}"),
        };
        for f in &dir.files {
            if let Some(d) = f.digest.as_ref().and_then(|d| Digest::try_from(d).ok()) {
                out.insert(path(&f.name), Entry::File(d, f.is_executable));
            }
        }
        for s in &dir.symlinks {
            out.insert(path(&s.name), Entry::Symlink(s.target.clone()));
        }
    });
    Ok(out)
}
