//! A tree flattened into the entries of a layer: every directory, file and
//! symlink with its full path, in one deterministic order (each directory
//! before its contents, siblings sorted by name), which is the order the
//! tar is written in.

use cairn_digest::Digest;
use cairn_tree::proto::Directory;

use crate::error::ExportError;
use crate::source::TreeSource;

/// What an entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file.
    File {
        /// Its content.
        digest: Digest,
        /// Whether it is executable (mode 0755 rather than 0644).
        executable: bool,
    },
    /// A symbolic link.
    Symlink(String),
}

/// One entry of a tree, with its path relative to the tree's root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `a/b/c`, never empty, never with a leading `/`.
    pub path: String,
    /// What it is.
    pub kind: EntryKind,
}

/// Every entry below the tree `root`, in layer order.
pub fn walk(source: &dyn TreeSource, root: &Digest) -> Result<Vec<Entry>, ExportError> {
    let mut out = Vec::new();
    let dir = source.directory(root)?;
    walk_dir(source, &dir, "", &mut out)?;
    Ok(out)
}

fn walk_dir(
    source: &dyn TreeSource,
    dir: &Directory,
    prefix: &str,
    out: &mut Vec<Entry>,
) -> Result<(), ExportError> {
    enum Child<'a> {
        File(&'a cairn_tree::proto::FileNode),
        Dir(&'a cairn_tree::proto::DirectoryNode),
        Link(&'a cairn_tree::proto::SymlinkNode),
    }
    let mut children: Vec<(&str, Child<'_>)> = Vec::new();
    children.extend(dir.files.iter().map(|f| (f.name.as_str(), Child::File(f))));
    children.extend(
        dir.directories
            .iter()
            .map(|d| (d.name.as_str(), Child::Dir(d))),
    );
    children.extend(
        dir.symlinks
            .iter()
            .map(|s| (s.name.as_str(), Child::Link(s))),
    );
    children.sort_by(|a, b| a.0.cmp(b.0));
    for (name, child) in children {
        let path = format!("{prefix}{name}");
        match child {
            Child::File(f) => {
                let digest = node_digest(f.digest.as_ref())?;
                out.push(Entry {
                    path,
                    kind: EntryKind::File {
                        digest,
                        executable: f.is_executable,
                    },
                });
            }
            Child::Link(s) => out.push(Entry {
                path,
                kind: EntryKind::Symlink(s.target.clone()),
            }),
            Child::Dir(d) => {
                let digest = node_digest(d.digest.as_ref())?;
                let sub = source.directory(&digest)?;
                out.push(Entry {
                    path: path.clone(),
                    kind: EntryKind::Dir,
                });
                walk_dir(source, &sub, &format!("{path}/"), out)?;
            }
        }
    }
    Ok(())
}

fn node_digest(d: Option<&cairn_tree::proto::Digest>) -> Result<Digest, ExportError> {
    // Directories were validated on decode: every node has a valid digest.
    let d = d.expect("validated directories have digests");
    Ok(Digest::try_from(d).expect("validated directories have valid digests"))
}
