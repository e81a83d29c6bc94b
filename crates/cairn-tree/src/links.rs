//! Whether a tree's symlinks stay inside it, decided by resolving each one
//! through the tree's other symlinks, as the kernel would once the tree is
//! on disk, rather than by looking at its target alone.
//!
//! Looking at a target alone is not enough: with `a/b/c/l -> ../../..`
//! (harmless: it names the root) and `up -> a/b/c/l/../../..` (lexically
//! `a`), following `up` goes through `l` to the root and then three levels
//! above it. So a [`LinkTree`] holds every symlink of a tree by path, and
//! [`LinkTree::resolve`] walks a link's target component by component,
//! replacing each symlink met on the way by its own target, and reports an
//! escape as soon as the walk would climb above the root.
//!
//! Absolute targets escape by definition (the tree may be placed
//! anywhere). A component that is not a symlink is taken as a directory,
//! whether or not it exists: a link through a missing directory is judged
//! as if someone later created it. Chains longer than the kernel follows
//! (40) can never be resolved and so do not escape.

use std::collections::{BTreeMap, VecDeque};

/// The most symlinks the kernel follows in one lookup (`MAXSYMLINKS`).
pub const MAX_SYMLINK_FOLLOWS: usize = 40;

/// How a symlink resolves within its tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// To this path, relative to the root ("" is the root itself).
    Inside(String),
    /// Above the root, or to an absolute path.
    Escapes,
    /// Through more than [`MAX_SYMLINK_FOLLOWS`] symlinks: unresolvable.
    TooManyLinks,
}

/// The symlinks of one tree: path (relative to the root, `/`-separated)
/// to target.
#[derive(Debug, Clone, Default)]
pub struct LinkTree {
    links: BTreeMap<String, String>,
}

/// A symlink that leads outside its tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscapingLink {
    /// Its path, relative to the root.
    pub path: String,
    /// Its target, as stored.
    pub target: String,
}

impl LinkTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the symlink at `path` (replacing any earlier one there).
    pub fn insert(&mut self, path: &str, target: &str) {
        self.links.insert(path.to_owned(), target.to_owned());
    }

    /// Forgets whatever symlink was at `path` (it became a file or a
    /// directory).
    pub fn remove(&mut self, path: &str) {
        self.links.remove(path);
    }

    /// Forgets the symlink at `path` and every one below it (a directory
    /// there was removed).
    pub fn remove_under(&mut self, path: &str) {
        let below = format!("{path}/");
        self.links
            .retain(|p, _| p != path && !p.starts_with(&below));
    }

    /// Whether the tree has no symlinks.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// The first symlink, by path, that resolves outside the tree.
    pub fn first_escape(&self) -> Option<EscapingLink> {
        self.links
            .iter()
            .find(|(path, _)| self.resolve(path) == Resolution::Escapes)
            .map(|(path, target)| EscapingLink {
                path: path.clone(),
                target: target.clone(),
            })
    }

    /// Resolves the symlink at `path` (which must be one of the tree's).
    pub fn resolve(&self, path: &str) -> Resolution {
        let Some(target) = self.links.get(path) else {
            return Resolution::Inside(path.to_owned());
        };
        // Start in the link's own directory.
        let mut at: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        at.pop();
        let mut todo: VecDeque<&str> = VecDeque::new();
        if !push_target(&mut todo, target) {
            return Resolution::Escapes;
        }
        let mut followed = 1;
        let mut here = String::new();
        while let Some(part) = todo.pop_front() {
            match part {
                "" | "." => {}
                ".." => {
                    if at.pop().is_none() {
                        return Resolution::Escapes;
                    }
                }
                name => {
                    join_into(&mut here, &at, name);
                    match self.links.get(here.as_str()) {
                        Some(next) => {
                            followed += 1;
                            if followed > MAX_SYMLINK_FOLLOWS {
                                return Resolution::TooManyLinks;
                            }
                            if !push_target(&mut todo, next) {
                                return Resolution::Escapes;
                            }
                        }
                        None => at.push(name),
                    }
                }
            }
        }
        Resolution::Inside(at.join("/"))
    }
}

/// Puts `target`'s components in front of `todo`; false if it is absolute
/// or empty (outside by definition).
fn push_target<'a>(todo: &mut VecDeque<&'a str>, target: &'a str) -> bool {
    if target.is_empty() || target.starts_with('/') || target.contains('\0') {
        return false;
    }
    for part in target.rsplit('/') {
        todo.push_front(part);
    }
    true
}

fn join_into(buf: &mut String, at: &[&str], name: &str) {
    buf.clear();
    for part in at {
        buf.push_str(part);
        buf.push('/');
    }
    buf.push_str(name);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(links: &[(&str, &str)]) -> LinkTree {
        let mut t = LinkTree::new();
        for (p, target) in links {
            t.insert(p, target);
        }
        t
    }

    #[test]
    fn plain_targets() {
        let t = tree(&[
            ("a", "b/c"),
            ("d/e", "../x"),
            ("d/f", "../../x"),
            ("g", "/etc/passwd"),
            ("h", ""),
            ("i", "x/../../y"),
        ]);
        assert_eq!(t.resolve("a"), Resolution::Inside("b/c".into()));
        assert_eq!(t.resolve("d/e"), Resolution::Inside("x".into()));
        assert_eq!(t.resolve("d/f"), Resolution::Escapes);
        assert_eq!(t.resolve("g"), Resolution::Escapes);
        assert_eq!(t.resolve("h"), Resolution::Escapes);
        assert_eq!(t.resolve("i"), Resolution::Escapes);
    }

    #[test]
    fn escapes_through_other_links() {
        // Each target alone stays inside; followed, `up` leaves the tree.
        let t = tree(&[("a/b/c/l", "../../.."), ("up", "a/b/c/l/../../..")]);
        assert_eq!(t.resolve("a/b/c/l"), Resolution::Inside("".into()));
        assert_eq!(t.resolve("up"), Resolution::Escapes);
        let escape = t.first_escape().unwrap();
        assert_eq!(escape.path, "up");
        // A link to a link that escapes escapes.
        let t = tree(&[("x", "y"), ("y", "../z")]);
        assert_eq!(t.resolve("x"), Resolution::Escapes);
        // A deep link used as a directory from higher up.
        let t = tree(&[("deep/er/root", "../.."), ("w", "deep/er/root/..")]);
        assert_eq!(t.resolve("w"), Resolution::Escapes);
    }

    #[test]
    fn usual_trees_stay_inside() {
        let t = tree(&[
            ("lib", "usr/lib"),
            ("usr/lib/libz.so", "libz.so.1"),
            ("usr/lib/libz.so.1", "libz.so.1.3"),
            ("bin/sh", "busybox"),
            ("usr/bin/python", "../../usr/bin/python3"),
            ("lib64", "lib"),
            ("x", "lib64/libz.so"),
        ]);
        assert_eq!(t.first_escape(), None);
        assert_eq!(
            t.resolve("x"),
            Resolution::Inside("usr/lib/libz.so.1.3".into())
        );
    }

    #[test]
    fn removing_a_directory_forgets_its_links() {
        let mut t = tree(&[("a/l", "../.."), ("a/b/m", "x"), ("ab", "x")]);
        t.remove_under("a");
        assert_eq!(t.first_escape(), None);
        assert_eq!(t.resolve("ab"), Resolution::Inside("x".into()));
    }

    #[test]
    fn loops_and_long_chains_do_not_resolve() {
        let t = tree(&[("a", "b"), ("b", "a")]);
        assert_eq!(t.resolve("a"), Resolution::TooManyLinks);
        assert_eq!(t.first_escape(), None);
    }
}
