//! A minimal `text/event-stream` parser: enough of the WHATWG grammar for
//! what `cairn server` sends (`id`, `event`, `data` fields, comments,
//! blank-line dispatch, `\n` or `\r\n` line ends). A line or an event
//! longer than [`MAX_EVENT`] is refused ([`Overlong`]): a server that
//! never ends a line cannot fill the client's memory.

/// The longest line, and the most data one event may carry (what
/// `cairn server` sends are ref names, at most 512 bytes).
pub const MAX_EVENT: usize = 64 << 10;

/// A line or event over [`MAX_EVENT`].
#[derive(Debug, PartialEq, Eq)]
pub struct Overlong;

/// One dispatched event.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// `id:`, if the event had one.
    pub id: Option<String>,
    /// `event:` (`message` if absent).
    pub event: String,
    /// `data:` lines joined by `\n`.
    pub data: String,
}

/// Accumulates bytes and yields complete events.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    current: SseEvent,
    has_fields: bool,
}

impl SseParser {
    /// Feeds bytes; returns the events they complete, or [`Overlong`]
    /// (the stream is then of no further use).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, Overlong> {
        let mut out = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                if self.line.len() >= MAX_EVENT {
                    return Err(Overlong);
                }
                self.line.push(b);
                continue;
            }
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            let line = std::mem::take(&mut self.line);
            if let Some(event) = self.line_done(&line) {
                out.push(event);
            }
            if self.current.data.len() > MAX_EVENT {
                return Err(Overlong);
            }
        }
        Ok(out)
    }

    fn line_done(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            if !std::mem::take(&mut self.has_fields) {
                return None;
            }
            let mut event = std::mem::take(&mut self.current);
            if event.event.is_empty() {
                event.event = "message".into();
            }
            return Some(event);
        }
        if line[0] == b':' {
            return None; // a comment (keep-alive)
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (&*line, ""),
        };
        self.has_fields = true;
        match field {
            "id" => self.current.id = Some(value.to_string()),
            "event" => self.current.event = value.to_string(),
            "data" if self.current.data.is_empty() => self.current.data = value.to_string(),
            "data" => {
                self.current.data.push('\n');
                self.current.data.push_str(value);
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_split_events() {
        let mut p = SseParser::default();
        assert!(p
            .feed(b": keep-alive\n\nid: 7\r\nevent: ref\nda")
            .unwrap()
            .is_empty());
        let events = p.feed(b"ta: a/b\n\ndata:x\ndata: y\n\n").unwrap();
        assert_eq!(
            events,
            [
                SseEvent {
                    id: Some("7".into()),
                    event: "ref".into(),
                    data: "a/b".into()
                },
                SseEvent {
                    id: None,
                    event: "message".into(),
                    data: "x\ny".into()
                }
            ]
        );
    }

    #[test]
    fn endless_lines_and_events_are_refused() {
        let chunk = vec![b'a'; 4096];
        let mut p = SseParser::default();
        let fed = (0..64).map(|_| p.feed(&chunk)).find(Result::is_err);
        assert_eq!(fed, Some(Err(Overlong)), "a line without end");
        let mut p = SseParser::default();
        let line = [b"data: ".as_slice(), &chunk, b"\n"].concat();
        let fed = (0..64).map(|_| p.feed(&line)).find(Result::is_err);
        assert_eq!(fed, Some(Err(Overlong)), "an event without end");
    }
}
