//! The failures a JUnit XML report names, for the message of a failed test
//! step.
//!
//! Test tools write JUnit XML in many dialects (pytest, `go-junit-report`,
//! cargo2junit, Maven's surefire); all of them put each test in a
//! `<testcase name=… classname=…>` element and mark a failed one with a
//! `<failure message=…>` or `<error message=…>` child. That is all that is
//! read here: a scan of the elements, not a validating parser, so a report
//! cut short by a crash still yields the failures written before the cut.
//! The report is the step's own output and shown as text (escaped by the
//! caller), never interpreted further.

/// At most this many failures are listed.
pub const MAX_FAILURES: usize = 20;

/// `classname.name: message` for each failed or erroring test case, in
/// report order (at most [`MAX_FAILURES`], then a line saying how many
/// more).
pub fn failures(xml: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut current: Option<String> = None;
    let mut rest = xml;
    while let Some(at) = rest.find('<') {
        rest = &rest[at + 1..];
        let end = rest.find('>').unwrap_or(rest.len());
        let tag = &rest[..end];
        rest = &rest[end.min(rest.len())..];
        let (name, attrs) = tag.split_once(char::is_whitespace).unwrap_or((tag, ""));
        let name = name.trim_end_matches('/');
        match name {
            // A self-closing test case has no failure inside.
            "testcase" => current = (!tag.ends_with('/')).then(|| case_name(attrs)),
            "/testcase" => current = None,
            "failure" | "error" => {
                let case = current.clone().unwrap_or_else(|| "(no test case)".into());
                let message = attribute(attrs, "message").unwrap_or_else(|| name.to_owned());
                found.push(format!("{case}: {}", first_line(&message)));
            }
            _ => {}
        }
    }
    if found.len() > MAX_FAILURES {
        let more = found.len() - MAX_FAILURES;
        found.truncate(MAX_FAILURES);
        found.push(format!("… and {more} more"));
    }
    found
}

fn case_name(attrs: &str) -> String {
    let name = attribute(attrs, "name").unwrap_or_else(|| "(unnamed)".into());
    match attribute(attrs, "classname") {
        Some(class) if !class.is_empty() => format!("{class}.{name}"),
        _ => name,
    }
}

/// The value of `key="…"` or `key='…'` in an element's attributes, with
/// the five predefined entities decoded.
fn attribute(attrs: &str, key: &str) -> Option<String> {
    let mut rest = attrs;
    loop {
        let eq = rest.find('=')?;
        let name = rest[..eq].trim();
        let after = rest[eq + 1..].trim_start();
        let quote = after.chars().next()?;
        if quote != '"' && quote != '\'' {
            return None;
        }
        let close = after[1..].find(quote)?;
        let value = &after[1..1 + close];
        if name == key {
            return Some(unescape(value));
        }
        rest = &after[close + 2..];
    }
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#10;", "\n")
        .replace("&amp;", "&")
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("").trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_and_errors_are_named_with_their_class_and_message() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites><testsuite name="unit" tests="4" failures="1" errors="1">
  <testcase classname="math" name="adds" time="0.01"/>
  <testcase classname="math" name="divides"><failure message="expected 2 &amp; got 3&#10;more" type="assert">trace</failure></testcase>
  <testcase name='opens'><error message='no such file'/></testcase>
  <testcase classname="io" name="reads"><system-out>ok</system-out></testcase>
</testsuite></testsuites>"#;
        assert_eq!(
            failures(xml),
            ["math.divides: expected 2 & got 3", "opens: no such file"]
        );
    }

    #[test]
    fn a_passing_or_truncated_report_lists_what_it_holds() {
        assert!(failures(r#"<testsuite><testcase name="a"/></testsuite>"#).is_empty());
        assert_eq!(
            failures(r#"<testsuite><testcase name="a"><failure message="boom">"#),
            ["a: boom"]
        );
        assert_eq!(failures("<failure>"), ["(no test case): failure"]);
        assert!(failures("not xml at all").is_empty());
    }

    #[test]
    fn a_long_list_is_cut() {
        let case = r#"<testcase name="t"><failure message="x"/></testcase>"#;
        let list = failures(&case.repeat(MAX_FAILURES + 5));
        assert_eq!(list.len(), MAX_FAILURES + 1);
        assert_eq!(list.last().unwrap(), "… and 5 more");
    }
}
