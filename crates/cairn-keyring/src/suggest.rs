//! "Did you mean …?" for a key name that is not in the keys directory:
//! the closest name by edit distance when one is close, else the list.

/// The end of a "no key named …" message: the closest known name, or the
/// names there are, or how to make one.
pub(crate) fn hint(name: &str, known: &[String]) -> String {
    let mut known = known.to_vec();
    known.sort();
    if known.is_empty() {
        return "; it has no keys (make one with `cairn key generate NAME`)".into();
    }
    let closest = known
        .iter()
        .map(|k| (distance(name, k), k))
        .min()
        .filter(|(d, k)| *d <= (k.len().max(name.len()) / 3).max(1));
    match closest {
        Some((_, k)) => format!("; did you mean {k:?}? (keys: {})", known.join(", ")),
        None => format!(" (keys: {})", known.join(", ")),
    }
}

/// Levenshtein distance over chars.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_closest_name_or_lists_them() {
        let known = vec!["ci".to_string(), "ops".to_string(), "release-bot".into()];
        assert_eq!(
            hint("cj", &known),
            "; did you mean \"ci\"? (keys: ci, ops, release-bot)"
        );
        assert_eq!(
            hint("relase-bot", &known),
            "; did you mean \"release-bot\"? (keys: ci, ops, release-bot)"
        );
        assert_eq!(hint("production", &known), " (keys: ci, ops, release-bot)");
        assert!(hint("x", &[]).contains("cairn key generate"));
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
