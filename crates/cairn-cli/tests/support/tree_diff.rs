//! The first difference between two checked-out trees, said the way a
//! reader chasing a reproducibility leak wants it (as diffoscope would
//! start): which file, which entry kind or mode, and for contents the
//! first differing offset with both sides' bytes around it in hex and
//! text.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What a tree holds at a path.
#[derive(PartialEq, Eq)]
enum Entry {
    File { mode: u32, bytes: Vec<u8> },
    Dir { mode: u32 },
    Link(PathBuf),
}

impl Entry {
    fn kind(&self) -> String {
        match self {
            Entry::File { mode, bytes } => format!("a file, mode {mode:o}, {} bytes", bytes.len()),
            Entry::Dir { mode } => format!("a directory, mode {mode:o}"),
            Entry::Link(to) => format!("a symlink to {}", to.display()),
        }
    }
}

/// Every entry under `root`, by path relative to it.
fn entries(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut all = BTreeMap::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        for entry in std::fs::read_dir(root.join(&rel)).unwrap() {
            let entry = entry.unwrap();
            let path = rel.join(entry.file_name());
            let meta = std::fs::symlink_metadata(entry.path()).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let found = if meta.file_type().is_symlink() {
                Entry::Link(std::fs::read_link(entry.path()).unwrap())
            } else if meta.is_dir() {
                pending.push(path.clone());
                Entry::Dir { mode }
            } else {
                Entry::File {
                    mode,
                    bytes: std::fs::read(entry.path()).unwrap(),
                }
            };
            all.insert(path, found);
        }
    }
    all
}

/// `bytes[from..from + 32]` as a hex dump line with its text.
fn dump(bytes: &[u8], from: usize) -> String {
    let window = &bytes[from.min(bytes.len())..(from + 32).min(bytes.len())];
    let mut hex = String::new();
    for b in window {
        write!(hex, "{b:02x} ").unwrap();
    }
    let text: String = window
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        })
        .collect();
    format!("{hex}|{text}|")
}

/// Where two contents first differ, with both sides' bytes around it.
fn bytes_difference(a: &[u8], b: &[u8]) -> String {
    let at = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    let from = at - at % 16;
    format!(
        "first differing byte at offset {at} (0x{at:x}) of {} and {} bytes\n  first: {from:#08x}: {}\n  second: {from:#08x}: {}",
        a.len(),
        b.len(),
        dump(a, from),
        dump(b, from)
    )
}

/// The first path (in path order) where the trees `a` and `b` differ,
/// and how; `None` when they are the same.
pub fn first_difference(a: &Path, b: &Path) -> Option<String> {
    let (a, b) = (entries(a), entries(b));
    let paths: std::collections::BTreeSet<&PathBuf> = a.keys().chain(b.keys()).collect();
    for path in paths {
        let shown = path.display();
        match (a.get(path), b.get(path)) {
            (Some(x), Some(y)) if x == y => {}
            (Some(Entry::File { mode: m, bytes: x }), Some(Entry::File { mode: n, bytes: y }))
                if m == n =>
            {
                return Some(format!("{shown}: {}", bytes_difference(x, y)));
            }
            (Some(x), Some(y)) => {
                return Some(format!(
                    "{shown}: {} in the first, {} in the second",
                    x.kind(),
                    y.kind()
                ));
            }
            (Some(x), None) => return Some(format!("{shown}: {} only in the first", x.kind())),
            (None, Some(y)) => return Some(format!("{shown}: {} only in the second", y.kind())),
            (None, None) => unreachable!(),
        }
    }
    None
}
