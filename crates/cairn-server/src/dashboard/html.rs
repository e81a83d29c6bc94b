//! The dashboard page: a [`Summary`] rendered to HTML with `write!`.
//!
//! Every string from the store passes through [`escape`] on its way into
//! the markup; nothing else is interpolated. The page's script
//! (`page.js`) renders the same layout from the JSON summary when refs
//! change, so the two must keep the same structure: one `<section>` per
//! service with a channels, a releases and a fleet table.

use std::fmt::Write;

use super::summary::{ChannelView, MemberView, ReleaseView, ServiceView, SetView, Summary};

/// The page's inline style sheet.
pub const STYLE: &str = include_str!("page.css");
/// The page's inline script.
pub const SCRIPT: &str = include_str!("page.js");

/// `text` with the five HTML-special characters replaced by entities, safe
/// in element content and in quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The whole page, with the summary rendered in place.
pub fn page(summary: &Summary) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>cairn</title><style>{STYLE}</style></head>\n<body>\
         <header><h1>cairn</h1><span id=\"live\" class=\"off\">connecting…</span>\
         <span id=\"generated\">{}</span></header>\n<main id=\"summary\">{}</main>\
         \n<script>{SCRIPT}</script></body></html>\n",
        escape(&summary.generated),
        services(summary)
    )
}

/// The contents of `<main>`: one section per service.
pub fn services(summary: &Summary) -> String {
    if summary.services.is_empty() {
        return "<p class=\"empty\">No services yet: publish a release.</p>".into();
    }
    summary.services.iter().map(service).collect()
}

fn service(s: &ServiceView) -> String {
    let mut out = format!("<section><h2>{}</h2>", escape(&s.name));
    out += &table(
        "Channels",
        &[
            "channel",
            "release",
            "version",
            "seq",
            "signed by",
            "expires",
        ],
        s.channels.iter().map(channel_row),
    );
    out += &table(
        "Recent releases",
        &["release", "version", "provenance", "created"],
        s.releases.iter().map(release_row),
    );
    for set in &s.sets {
        out += &fleet(set);
    }
    out + "</section>"
}

fn table(title: &str, heads: &[&str], rows: impl Iterator<Item = String>) -> String {
    let mut out = format!("<h3>{}</h3><table><thead><tr>", escape(title));
    for h in heads {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out += "</tr></thead><tbody>";
    let before = out.len();
    rows.for_each(|r| out += &r);
    if out.len() == before {
        let _ = write!(
            out,
            "<tr><td colspan=\"{}\" class=\"empty\">none</td></tr>",
            heads.len()
        );
    }
    out + "</tbody></table>"
}

/// A row of cells, each `(class, text)`.
fn row(cells: &[(&str, &str)]) -> String {
    let mut out = String::from("<tr>");
    for (class, text) in cells {
        let _ = write!(out, "<td class=\"{}\">{}</td>", escape(class), escape(text));
    }
    out + "</tr>"
}

fn error_row(name: &str, error: &str, span: usize) -> String {
    format!(
        "<tr class=\"bad\"><td>{}</td><td colspan=\"{}\">{}</td></tr>",
        escape(name),
        span - 1,
        escape(error)
    )
}

fn channel_row(c: &ChannelView) -> String {
    if let Some(e) = &c.error {
        return error_row(&c.name, e, 6);
    }
    let expiry = if c.expired { "bad" } else { "" };
    row(&[
        ("name", &c.name),
        ("digest", &c.release),
        ("version", &c.version),
        ("num", &c.sequence.to_string()),
        ("digest", &c.signers.join(", ")),
        (expiry, &c.expires),
    ])
}

fn release_row(r: &ReleaseView) -> String {
    if let Some(e) = &r.error {
        return error_row("?", e, 4);
    }
    row(&[
        ("digest", &r.digest),
        ("version", &r.version),
        ("digest", &r.provenance),
        ("", &r.created),
    ])
}

fn fleet(set: &SetView) -> String {
    let mut out = String::new();
    if let Some(r) = &set.rollout {
        let pct = (r.done * 100).checked_div(r.total).unwrap_or(0);
        let _ = write!(
            out,
            "<div class=\"rollout\">rollout to <span class=\"digest\">{}</span> · {} · \
             phase {} · slots {} · failures {} · {}/{} on target \
             <progress max=\"100\" value=\"{pct}\"></progress></div>",
            escape(&r.target),
            escape(&r.strategy),
            escape(&r.phase),
            r.slots,
            r.failures,
            r.done,
            r.total
        );
    }
    let title = format!("Fleet {}", set.name);
    let heads = [
        "agent",
        "release",
        "seq",
        "state",
        "health",
        "heartbeat",
        "last error",
    ];
    table(&title, &heads, set.members.iter().map(member_row)) + &out
}

fn member_row(m: &MemberView) -> String {
    if let Some(e) = &m.error {
        return error_row(&m.agent, e, 7);
    }
    let health = if m.health.is_empty() || m.health == "healthy" {
        ""
    } else {
        "bad"
    };
    row(&[
        ("name", &m.agent),
        ("digest", &m.release),
        ("num", &m.sequence),
        ("", &m.state),
        (health, &m.health),
        ("", &m.heartbeat),
        (
            if m.last_error.is_empty() { "" } else { "bad" },
            &m.last_error,
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(escape("plain é"), "plain é");
    }

    #[test]
    fn store_text_is_escaped_in_the_page() {
        let summary = Summary {
            generated: "now".into(),
            services: vec![ServiceView {
                name: "<script>".into(),
                ..ServiceView::default()
            }],
        };
        let html = page(&summary);
        assert!(html.contains("<h2>&lt;script&gt;</h2>"));
        assert!(!html.contains("<h2><script>"));
    }
}
