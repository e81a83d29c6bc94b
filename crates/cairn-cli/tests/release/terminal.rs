//! A release's words reach no terminal raw: its version label is text
//! anyone who releases chose, and anyone who may write the store can put
//! a release document (signed by any key) where `release show`, `channel
//! history` and the rest read it.

use crate::support::assert_terminal_safe;
use crate::{Pipeline, SERVICE};

/// A clipboard write (OSC 52), a screen clear, a carriage return, a fake
/// line and a C1 CSI.
const HOSTILE: &str = "1\u{1b}]52;c;cm0gLXJmIH4K\u{7}\u{1b}[2J\rok\nFAKE LINE\u{9b}1m";
/// [`HOSTILE`] as shown.
const SHOWN: &str = "1\\x1b]52;c;cm0gLXJmIH4K\\x07\\x1b[2J\\rok\\nFAKE LINE\\u{9b}1m";

#[test]
fn a_hostile_version_label_is_shown_escaped_everywhere() {
    let p = Pipeline::new();
    let release = p.release(HOSTILE);
    let shown = |args: &[&str]| {
        let out = p.run(args);
        assert_terminal_safe(&out);
        let text = String::from_utf8(out.stdout.clone()).unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !text.lines().any(|l| l.starts_with("FAKE LINE")),
            "{args:?} printed the fake line: {text}"
        );
        assert!(text.contains(SHOWN), "{args:?} shows it escaped: {text}");
        text
    };
    let text = shown(&["release", "show", &release]);
    assert!(text.contains(&format!("\nversion   {SHOWN}\n")), "{text}");
    p.ok(&["promote", &release, "--channel", "prod", "--key", "ops"]);
    shown(&["channel", "history", SERVICE, "prod"]);
    let policy = p.policy(&["ci", "ops"], 1);
    shown(&["channel", "verify", SERVICE, "prod", "--policy", &policy]);
    shown(&["verify", &release]);

    // --json keeps the label as it was written, with no raw control.
    let out = p.run(&["--json", "release", "show", &release]);
    assert_terminal_safe(&out);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["document"]["version"], HOSTILE);
}
