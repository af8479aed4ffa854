//! Incremental server-sent-events parsing for relaying and translating streams.

/// One event: its `event:` name (if any) and its `data:` lines joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// Cuts a byte stream into events. The unparsed tail is bounded: an upstream that sends an event
/// larger than `max_event` is an error, not unbounded memory.
pub struct SseParser {
    buf: Vec<u8>,
    max_event: usize,
}

impl SseParser {
    pub fn new(max_event: usize) -> Self {
        Self {
            buf: Vec::new(),
            max_event,
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, String> {
        self.buf.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some((end, sep)) = find_boundary(&self.buf) {
            let raw: Vec<u8> = self.buf.drain(..end + sep).collect();
            if let Some(ev) = parse_event(&raw[..end]) {
                events.push(ev);
            }
        }
        if self.buf.len() > self.max_event {
            return Err(format!(
                "upstream sent a stream event larger than {} bytes",
                self.max_event
            ));
        }
        Ok(events)
    }

    /// Whatever is left when the stream ends (a last event without its blank line).
    pub fn finish(&mut self) -> Option<SseEvent> {
        let rest = std::mem::take(&mut self.buf);
        parse_event(&rest)
    }
}

fn find_boundary(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn parse_event(raw: &[u8]) -> Option<SseEvent> {
    let text = String::from_utf8_lossy(raw);
    let mut event = None;
    let mut data: Vec<&str> = Vec::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("data:") {
            data.push(v.strip_prefix(' ').unwrap_or(v));
        } else if let Some(v) = line.strip_prefix("event:") {
            event = Some(v.trim().to_string());
        }
    }
    if data.is_empty() && event.is_none() {
        return None;
    }
    Some(SseEvent {
        event,
        data: data.join("\n"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_events_across_chunk_boundaries() {
        let mut p = SseParser::new(1024);
        assert!(p
            .feed(b"event: message_start\ndata: {\"a\"")
            .unwrap()
            .is_empty());
        let ev = p.feed(b":1}\n\ndata: [DONE]\r\n\r\n").unwrap();
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].event.as_deref(), Some("message_start"));
        assert_eq!(ev[0].data, "{\"a\":1}");
        assert_eq!(ev[1].data, "[DONE]");
        assert!(p.feed(&[b'x'; 2000]).is_err());
    }
}
