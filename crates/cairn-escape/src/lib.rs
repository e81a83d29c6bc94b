//! Untrusted bytes made safe to print on a terminal.
//!
//! What a build step prints and what a tree's names contain come from
//! outside: an escape sequence in either could rewrite the user's screen,
//! set the window title, plant a hyperlink (OSC), move the cursor (CSI)
//! or, through a lone carriage return, make a line say something else.
//! So everything cairn shows of them goes through one of these functions,
//! which keep printable text as it is and make the rest visible:
//!
//! * C0 controls, DEL and the C1 controls (U+0080–U+009F, which some
//!   terminals read as ESC-sequences) become `\x1b`, `\r`, `\u{9b}`…;
//! * bidirectional overrides and isolates (U+202A–U+202E,
//!   U+2066–U+2069), which reorder what is shown, become `\u{202e}`…;
//! * bytes that are not UTF-8 become `\xff`.
//!
//! [`text`] keeps tabs and backslashes (log lines stay readable);
//! [`name`] also escapes those, so a name shown is never ambiguous
//! (`a\nb` is the five characters, a newline is `\n`); [`lines`] is
//! [`text`] that keeps newlines, for many lines printed at once (a log
//! file, a whole report) where a line break is meant. Files keep their
//! raw bytes: only what is printed is escaped.

use std::borrow::Cow;
use std::fmt::Write;

/// A log line (or any text) safe for a terminal; tabs and `\` are kept.
pub fn text(bytes: &[u8]) -> Cow<'_, str> {
    escape(bytes, Mode::Text)
}

/// Lines of text safe for a terminal: as [`text`], but newlines are kept.
/// A carriage return is still escaped, so no line can overwrite another.
pub fn lines(bytes: &[u8]) -> Cow<'_, str> {
    escape(bytes, Mode::Lines)
}

/// A file name or path safe for a terminal and unambiguous: every control
/// character, `\` included, is escaped.
pub fn name(bytes: &[u8]) -> Cow<'_, str> {
    escape(bytes, Mode::Name)
}

/// [`name`] of a `str`.
pub fn name_str(s: &str) -> Cow<'_, str> {
    escape(s.as_bytes(), Mode::Name)
}

/// JSON text (as `serde_json` writes it) safe for a terminal, decoding to
/// the same value: JSON escapes C0 controls itself but leaves DEL, the C1
/// controls and the bidirectional controls raw; they become `\u009b`….
/// Outside strings JSON has only ASCII punctuation, so only strings change.
pub fn json(serialized: &str) -> Cow<'_, str> {
    let raw = |c: char| c != '\n' && c != '\t' && needs_escape(c, Mode::Lines);
    if !serialized.chars().any(raw) {
        return Cow::Borrowed(serialized);
    }
    let mut out = String::with_capacity(serialized.len() + 16);
    for c in serialized.chars() {
        if raw(c) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// What is kept as it is besides printable text.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Tabs and backslashes.
    Text,
    /// Tabs, backslashes and newlines.
    Lines,
    /// Nothing.
    Name,
}

fn needs_escape(c: char, mode: Mode) -> bool {
    match c {
        '\t' | '\\' => mode == Mode::Name,
        '\n' => mode != Mode::Lines,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => true,
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => true,
        _ => false,
    }
}

fn escape(bytes: &[u8], mode: Mode) -> Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(bytes) {
        if !s.chars().any(|c| needs_escape(c, mode)) {
            return Cow::Borrowed(s);
        }
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_char(&mut out, c, mode);
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    Cow::Owned(out)
}

fn push_char(out: &mut String, c: char, mode: Mode) {
    if !needs_escape(c, mode) {
        out.push(c);
        return;
    }
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\\' => out.push_str("\\\\"),
        c if (c as u32) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(text(b"hello\tworld \\o/"), Cow::Borrowed(_)));
        assert!(matches!(name(b"dir/file.txt"), Cow::Borrowed(_)));
    }

    #[test]
    fn escape_sequences_are_made_visible() {
        // OSC 0 (window title), CSI (clear screen), a lone CR.
        let hostile = b"\x1b]0;pwned\x07\x1b[2J\rok";
        let shown = text(hostile);
        assert_eq!(shown, "\\x1b]0;pwned\\x07\\x1b[2J\\rok");
        assert!(!shown.bytes().any(|b| b < 0x20 || b == 0x7f));
        // C1 CSI, bidi override, invalid UTF-8.
        assert_eq!(text("a\u{9b}2Jb".as_bytes()), "a\\u{9b}2Jb");
        assert_eq!(text("x\u{202e}y".as_bytes()), "x\\u{202e}y");
        assert_eq!(text(b"bad\xff\xfe"), "bad\\xff\\xfe");
    }

    #[test]
    fn names_are_unambiguous() {
        assert_eq!(name(b"a\nb"), "a\\nb");
        assert_eq!(name(b"a\\nb"), "a\\\\nb");
        assert_eq!(name(b"tab\there"), "tab\\there");
        assert_eq!(text(b"tab\there"), "tab\there");
        assert_eq!(name_str("caf\u{e9}"), "caf\u{e9}");
    }

    #[test]
    fn lines_keep_newlines_and_escape_the_rest() {
        assert!(matches!(lines(b"a\tb\nc \\ d\n"), Cow::Borrowed(_)));
        assert_eq!(
            lines(b"one\r\x1b]52;c;aGk=\x07\ntwo\xff\n"),
            "one\\r\\x1b]52;c;aGk=\\x07\ntwo\\xff\n"
        );
        assert_eq!(text(b"a\nb"), "a\\nb");
    }

    #[test]
    fn json_keeps_its_value_and_escapes_what_it_left_raw() {
        assert!(matches!(json("{\"a\": \"\\u001b\"}\n"), Cow::Borrowed(_)));
        let value = "x\u{9b}2J\u{7f}\u{202e}y\u{1b}";
        let written = format!("{{\"v\":\"{value}\"}}");
        let shown = json(&written);
        assert_eq!(shown, "{\"v\":\"x\\u009b2J\\u007f\\u202ey\\u001b\"}");
        // Decoded by hand: the escapes stand for the same characters.
        let decoded = shown
            .replace("\\u009b", "\u{9b}")
            .replace("\\u007f", "\u{7f}")
            .replace("\\u202e", "\u{202e}")
            .replace("\\u001b", "\u{1b}");
        assert_eq!(decoded, written);
    }
}
