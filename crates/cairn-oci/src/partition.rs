//! Splitting an artifact into layers, deterministically.
//!
//! One layer per artifact means a one-file change re-sends the whole
//! artifact to every registry and every node that pulls it. Instead the
//! entries (in layer order) are cut into runs at *content-defined*
//! boundaries: a cut follows an entry whose path hashes to 0 modulo a
//! divisor, so a boundary depends only on the path at it. Changing a
//! file's bytes changes exactly the one layer holding it; adding or
//! removing a file changes one layer (or splits/merges two). The divisor
//! is a power of two chosen from the entry count (about [`TARGET_LAYERS`]
//! layers, at least [`MIN_DIVISOR`] entries per layer on average), so it
//! stays the same while an artifact grows or shrinks within a factor of
//! two. The count is capped at [`MAX_LAYERS`] (overlay file systems and
//! some runtimes limit the depth of an image).
//!
//! The cost: more, smaller layers (a tar header and a gzip stream each,
//! one registry round trip each). See `bench/RESULTS.md` for what it saves.

use sha2::{Digest as _, Sha256};

use crate::entries::{Entry, EntryKind};

/// About how many layers an artifact is cut into.
pub const TARGET_LAYERS: usize = 16;
/// The smallest divisor: small artifacts are not cut into tiny layers.
pub const MIN_DIVISOR: u32 = 8;
/// Never more layers than this for one artifact.
pub const MAX_LAYERS: usize = 48;

/// The entries of each layer, as ranges into `entries`; together they
/// cover all of it, in order. An empty tree gives one empty layer.
pub fn partition(entries: &[Entry]) -> Vec<std::ops::Range<usize>> {
    let divisor = (entries.len() / TARGET_LAYERS)
        .next_power_of_two()
        .max(MIN_DIVISOR as usize) as u32;
    let mut ranges = Vec::new();
    let mut start = 0;
    for (i, e) in entries.iter().enumerate() {
        if i + 1 < entries.len() && is_boundary(e, divisor) {
            ranges.push(start..i + 1);
            start = i + 1;
        }
    }
    ranges.push(start..entries.len());
    if ranges.len() > MAX_LAYERS {
        let tail = ranges[MAX_LAYERS - 1].start..entries.len();
        ranges.truncate(MAX_LAYERS - 1);
        ranges.push(tail);
    }
    ranges
}

/// Whether a layer ends after `entry`. Directories never end a layer, so
/// a layer holds something besides the directories leading to it.
fn is_boundary(entry: &Entry, divisor: u32) -> bool {
    if entry.kind == EntryKind::Dir {
        return false;
    }
    let hash = Sha256::digest(entry.path.as_bytes());
    u32::from_be_bytes([hash[0], hash[1], hash[2], hash[3]]) % divisor == 0
}

#[cfg(test)]
mod tests {
    use cairn_digest::Digest;

    use super::*;

    fn files(n: usize) -> Vec<Entry> {
        (0..n)
            .map(|i| Entry {
                path: format!("f{i:04}"),
                kind: EntryKind::File {
                    digest: Digest::of(format!("{i}").as_bytes()),
                    executable: false,
                },
            })
            .collect()
    }

    #[test]
    fn ranges_cover_everything_in_order() {
        for n in [0, 1, 5, 100, 1000, 20_000] {
            let r = partition(&files(n));
            assert_eq!(r.first().unwrap().start, 0);
            assert_eq!(r.last().unwrap().end, n);
            assert!(r.windows(2).all(|w| w[0].end == w[1].start), "{n}");
            assert!(r.len() <= MAX_LAYERS, "{n}: {}", r.len());
        }
    }

    #[test]
    fn a_hundred_files_make_several_layers_and_few_files_one_or_two() {
        let hundred = partition(&files(100)).len();
        assert!((4..=40).contains(&hundred), "{hundred}");
        assert!(partition(&files(3)).len() <= 3);
    }

    #[test]
    fn a_changed_file_changes_only_its_layer() {
        let before = files(100);
        let mut after = before.clone();
        after[42].kind = EntryKind::File {
            digest: Digest::of(b"changed"),
            executable: false,
        };
        assert_eq!(partition(&before), partition(&after));
    }

    #[test]
    fn an_added_file_moves_at_most_one_boundary() {
        let before = files(100);
        let mut after = before.clone();
        after.insert(
            50,
            Entry {
                path: "f0049a".into(),
                kind: EntryKind::Dir,
            },
        );
        let (b, a) = (partition(&before), partition(&after));
        let shifted: Vec<_> = a
            .iter()
            .map(|r| {
                if r.start > 50 {
                    r.start - 1..r.end - 1
                } else {
                    r.clone()
                }
            })
            .collect();
        let differing = b.iter().filter(|r| !shifted.contains(r)).count();
        assert!(differing <= 1, "{b:?} vs {a:?}");
    }
}
