//! The ladder diagram of a live connection, for the web service:
//! `GET /api/ladder` and the ladder pushed over `/ws/stats` to a dashboard
//! that selected a connection.
//!
//! The segments come from the stack's recording
//! ([`crate::trace::segments`]); [`crate::ladder::live`] turns them into the
//! ladder model and [`crate::ladder`]'s renderers draw them, so the drawing
//! is the one `ustack ladder --svg` makes of a capture.
//!
//! **HTTP.** `GET /api/ladder?conn=ID` (the `id` of `/api/stats`; add
//! `&remote=A.B.C.D:P` to insist on that peer) or `?port=P` (the peer's
//! port), with `&format=svg` (default), `text` or `json`, and `&max=N`
//! segments (default [`ladder::live::DEFAULT_MAX`]). Each request keeps the
//! recording armed for [`crate::trace::segments::ON_DEMAND`], so a script
//! without a dashboard can ask once, make traffic, and ask again.
//!
//! **WebSocket.** A `/ws/stats` subscriber sends `{"ladder":ID}` (or
//! `{"ladder":ID,"remote":"A.B.C.D:P"}`) to select a connection and
//! `{"ladder":null}` to stop. The selected connection gets a ring of its own
//! in the recording, and every stats document pushed to that subscriber
//! carries a `ladder` member:
//!
//! ```text
//! "ladder":{"id":3,"remote":"10.0.0.1:40000","state":"ESTABLISHED","watched":true,
//!           "records":12,"changed":true,"svg":"<?xml ...>"}
//! ```
//!
//! `changed:false` (and no `svg`) when nothing was recorded since the last
//! push, so an idle selection costs a few bytes a second; `error` instead
//! of the rest when there is no such connection. While any subscriber is
//! connected the stack records segments ([`Stack::set_segment_recording`]).

use super::stats::json_escape;
use crate::iface::{LadderTarget, Stack};
use crate::ladder;
use crate::tcp::SocketHandle;
use crate::time::Instant;
use std::collections::HashMap;
use std::fmt::Write;
use std::net::SocketAddrV4;

/// Most segments a request may ask to draw.
pub const MAX_DRAWN: usize = 2000;

/// How a ladder is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Svg,
    Text,
    Json,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Svg => "image/svg+xml",
            Format::Text => "text/plain; charset=utf-8",
            Format::Json => "application/json",
        }
    }
}

/// Which connection a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Id(u32, Option<SocketAddrV4>),
    Port(u16),
}

/// A parsed `/api/ladder` query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    pub which: Which,
    pub format: Format,
    pub max: usize,
}

/// Decode `%XX` escapes and `+` (ASCII only; anything else is refused).
fn unescape(v: &str) -> Option<String> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Parse the query string of `/api/ladder`. The error is the message of a
/// 400 answer.
pub fn parse_query(q: Option<&str>) -> Result<Query, String> {
    let (mut conn, mut remote, mut port) = (None, None, None);
    let mut format = Format::Svg;
    let mut max = ladder::live::DEFAULT_MAX;
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = unescape(v).ok_or_else(|| format!("bad escape in {k}"))?;
        match k {
            "conn" => conn = Some(v.parse::<u32>().map_err(|_| format!("bad conn {v:?}"))?),
            "remote" => {
                remote = Some(
                    v.parse::<SocketAddrV4>()
                        .map_err(|_| format!("bad remote {v:?} (want A.B.C.D:PORT)"))?,
                )
            }
            "port" => port = Some(v.parse::<u16>().map_err(|_| format!("bad port {v:?}"))?),
            "format" => {
                format = match v.as_str() {
                    "svg" => Format::Svg,
                    "text" => Format::Text,
                    "json" => Format::Json,
                    _ => return Err(format!("bad format {v:?} (svg, text or json)")),
                }
            }
            "max" => {
                max = v
                    .parse::<usize>()
                    .ok()
                    .filter(|m| (1..=MAX_DRAWN).contains(m))
                    .ok_or_else(|| format!("bad max {v:?} (1 to {MAX_DRAWN})"))?
            }
            _ => {} // unknown parameters are ignored (cache busters etc.)
        }
    }
    let which = match (conn, port) {
        (Some(id), None) => Which::Id(id, remote),
        (None, Some(p)) => Which::Port(p),
        (Some(_), Some(_)) => return Err("give conn or port, not both".into()),
        (None, None) => {
            return Err("which connection? add ?conn=ID (the id in /api/stats) or ?port=P".into())
        }
    };
    Ok(Query { which, format, max })
}

fn find(stack: &Stack, which: Which) -> Option<LadderTarget> {
    match which {
        Which::Id(id, remote) => stack.ladder_target(id, remote),
        Which::Port(p) => stack.ladder_target_by_port(p),
    }
}

/// Draw the ladder of `t` from what the stack recorded of it.
pub fn draw(stack: &Stack, t: &LadderTarget, format: Format, max: usize) -> String {
    let rec = stack.segment_log().of(t.handle, t.local, t.remote);
    let trace = ladder::live::trace(&rec, t.local, t.remote, max);
    let Some(c) = trace.connections.first() else {
        return String::new();
    };
    let number = t.handle.id() as usize;
    match format {
        Format::Svg => ladder::svg::render_connection(&trace, c, number, max),
        Format::Text => ladder::text::render_connection(&trace, c, number, max),
        Format::Json => ladder::json::render_connection(&trace, c, number, max),
    }
}

/// Answer `GET /api/ladder?...`: (status, content type, body). Keeps the
/// recording armed for a while ([`crate::trace::segments::ON_DEMAND`]).
pub fn http_response(
    stack: &Stack,
    now: Instant,
    query: Option<&str>,
) -> (u16, &'static str, String) {
    stack.segment_log().ask(now);
    let q = match parse_query(query) {
        Ok(q) => q,
        Err(why) => return (400, "text/plain; charset=utf-8", format!("{why}\n")),
    };
    match find(stack, q.which) {
        Some(t) => (
            200,
            q.format.content_type(),
            draw(stack, &t, q.format, q.max),
        ),
        None => (
            404,
            "text/plain; charset=utf-8",
            "no such connection, open or recorded (ustack records segments while a dashboard \
             is open, and for 60 s after each /api/ladder request)\n"
                .into(),
        ),
    }
}

/// A subscriber's selected connection.
#[derive(Debug, Clone)]
struct Selection {
    id: u32,
    remote: Option<SocketAddrV4>,
    /// The connection found for it, and whether it got its own ring.
    target: Option<(LadderTarget, bool)>,
    /// What the last push showed: (latest record, records, state).
    last: Option<(u64, usize, Option<&'static str>)>,
}

/// The `/ws/stats` subscribers and the connection each one selected.
#[derive(Debug, Default)]
pub struct LadderFeed {
    subscribers: HashMap<SocketHandle, Option<Selection>>,
}

impl LadderFeed {
    /// A dashboard connected: segments are recorded from now on.
    pub fn subscribe(&mut self, stack: &mut Stack, h: SocketHandle) {
        self.subscribers.insert(h, None);
        stack.set_segment_recording(true);
    }

    /// A dashboard left (idempotent). The last one switches the recording off.
    pub fn unsubscribe(&mut self, stack: &mut Stack, h: SocketHandle) {
        let Some(sel) = self.subscribers.remove(&h) else {
            return;
        };
        release(stack, sel);
        if self.subscribers.is_empty() {
            stack.set_segment_recording(false);
        }
    }

    /// Forget every subscriber (the service aborts everything).
    pub fn clear(&mut self, stack: &mut Stack) {
        for (_, sel) in self.subscribers.drain() {
            release(stack, sel);
        }
        stack.set_segment_recording(false);
    }

    /// A text message from subscriber `h`: `{"ladder":ID[,"remote":"A:P"]}`
    /// or `{"ladder":null}`. True if the selection changed (push at once).
    /// Anything else is ignored.
    pub fn message(&mut self, stack: &mut Stack, h: SocketHandle, text: &str) -> bool {
        let Some(slot) = self.subscribers.get_mut(&h) else {
            return false;
        };
        let Ok(o) = crate::trace::json::parse_line(text) else {
            return false;
        };
        let new = match o.get("ladder") {
            Some(crate::trace::json::Value::Null) => None,
            Some(crate::trace::json::Value::Int(id)) => {
                let Ok(id) = u32::try_from(*id) else {
                    return false;
                };
                let remote = o.str("remote").and_then(|r| r.parse().ok());
                Some((id, remote))
            }
            _ => return false,
        };
        if slot.as_ref().map(|s| (s.id, s.remote)) == new {
            return false;
        }
        release(stack, slot.take());
        *slot = new.map(|(id, remote)| Selection {
            id,
            remote,
            target: None,
            last: None,
        });
        if let Some(sel) = slot {
            resolve(stack, sel);
        }
        true
    }

    /// Append the `ladder` member for subscriber `h` to its stats document
    /// (a JSON object ending in `}`); nothing if it selected nothing.
    pub fn append(&mut self, stack: &mut Stack, h: SocketHandle, doc: &mut String) {
        let Some(Some(sel)) = self.subscribers.get_mut(&h) else {
            return;
        };
        if sel.target.is_none() {
            resolve(stack, sel);
        }
        if !doc.ends_with('}') {
            return;
        }
        doc.pop();
        let _ = write!(doc, ",\"ladder\":{{\"id\":{}", sel.id);
        let Some((t, watched)) = sel.target else {
            doc.push_str(",\"error\":\"no such connection, open or recorded\"}}");
            return;
        };
        // The state now (the connection may have closed since).
        let t = match stack.ladder_target(t.handle.id(), Some(t.remote)) {
            Some(now) if now.handle == t.handle => now,
            _ => LadderTarget { state: None, ..t },
        };
        let state = t.state.map(|s| s.name());
        let rec = stack.segment_log().of(t.handle, t.local, t.remote);
        let seen = (
            rec.records.last().map_or(0, |r| r.n),
            rec.records.len(),
            state,
        );
        let changed = sel.last != Some(seen);
        sel.last = Some(seen);
        let _ = write!(doc, ",\"remote\":\"{}\",\"state\":", t.remote);
        match state {
            Some(s) => {
                let _ = write!(doc, "\"{s}\"");
            }
            None => doc.push_str("null"),
        }
        let _ = write!(
            doc,
            ",\"watched\":{watched},\"records\":{},\"changed\":{changed}",
            seen.1
        );
        if changed {
            doc.push_str(",\"svg\":\"");
            json_escape(
                &draw(stack, &t, Format::Svg, ladder::live::DEFAULT_MAX),
                doc,
            );
            doc.push('"');
        }
        doc.push_str("}}");
    }
}

/// Find the connection a selection names and watch it.
fn resolve(stack: &mut Stack, sel: &mut Selection) {
    if let Some(t) = stack.ladder_target(sel.id, sel.remote) {
        let watched = stack.watch_segments(&t);
        sel.target = Some((t, watched));
    }
}

fn release(stack: &mut Stack, sel: Option<Selection>) {
    if let Some(Selection {
        target: Some((t, true)),
        ..
    }) = sel
    {
        stack.unwatch_segments(&t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iface::Config;
    use std::net::Ipv4Addr;

    /// A server stack with one connection from a client stack.
    fn pair() -> (Stack, Stack, SocketHandle, Instant) {
        let mut c = Stack::new(Config::new(Ipv4Addr::new(10, 0, 0, 1)), 1);
        let mut s = Stack::new(Config::new(Ipv4Addr::new(10, 0, 0, 2)), 2);
        let l = s.listen(80, 8).unwrap();
        let now = Instant::from_millis(5);
        c.connect(now, SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 80))
            .unwrap();
        exchange(now, &mut c, &mut s);
        let sh = s.accept(l).unwrap();
        (c, s, sh, now)
    }

    fn exchange(now: Instant, a: &mut Stack, b: &mut Stack) {
        let mut buf = vec![0u8; 2000];
        loop {
            let mut moved = false;
            while let Some(n) = a.poll_transmit(now, &mut buf) {
                b.handle_packet(now, &buf[..n]);
                moved = true;
            }
            while let Some(n) = b.poll_transmit(now, &mut buf) {
                a.handle_packet(now, &buf[..n]);
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    fn doc_for(feed: &mut LadderFeed, s: &mut Stack, dash: SocketHandle) -> String {
        let mut doc = String::from("{\"a\":1}");
        feed.append(s, dash, &mut doc);
        doc
    }

    #[test]
    fn a_subscriber_selects_a_connection_and_gets_its_ladder() {
        let mut feed = LadderFeed::default();
        let mut c = Stack::new(Config::new(Ipv4Addr::new(10, 0, 0, 1)), 1);
        let mut s = Stack::new(Config::new(Ipv4Addr::new(10, 0, 0, 2)), 2);
        let l = s.listen(80, 8).unwrap();
        let now = Instant::from_millis(5);
        let dash = SocketHandle {
            index: 99,
            generation: 0,
        };
        feed.subscribe(&mut s, dash);
        assert!(s.segment_log().armed(now), "a dashboard arms the recording");
        // The connection opens after the dashboard: its handshake is recorded.
        let ch = c
            .connect(now, SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 80))
            .unwrap();
        exchange(now, &mut c, &mut s);
        let sh = s.accept(l).unwrap();
        assert_eq!(
            doc_for(&mut feed, &mut s, dash),
            "{\"a\":1}",
            "nothing selected"
        );

        let select = format!(
            "{{\"ladder\":{},\"remote\":\"10.0.0.1:{}\"}}",
            sh.id(),
            c.connections()[0].local.port()
        );
        assert!(feed.message(&mut s, dash, &select));
        assert!(
            !feed.message(&mut s, dash, &select),
            "the same selection again"
        );
        for junk in [
            "",
            "x",
            "{\"ladder\":\"3\"}",
            "{\"ladder\":-1}",
            "{\"other\":1}",
        ] {
            assert!(!feed.message(&mut s, dash, junk), "{junk:?}");
        }
        assert!(s.segment_log().is_watched(sh));
        let d = doc_for(&mut feed, &mut s, dash);
        assert!(d.starts_with("{\"a\":1,\"ladder\":{"), "{d}");
        assert!(d.ends_with("\"}}"), "{d}");
        for want in [
            "\"state\":\"ESTABLISHED\"",
            "\"watched\":true",
            "\"records\":3",
            "\"changed\":true",
            "\"svg\":\"<?xml",
            "SYN-ACK",
        ] {
            assert!(d.contains(want), "{want} missing in {d}");
        }
        // Nothing new: no new drawing.
        let d = doc_for(&mut feed, &mut s, dash);
        assert!(d.contains("\"changed\":false") && !d.contains("svg"), "{d}");
        // Data: a new drawing with it.
        c.send(ch, b"hello").unwrap();
        exchange(now, &mut c, &mut s);
        let d = doc_for(&mut feed, &mut s, dash);
        assert!(d.contains("\"changed\":true") && d.contains("len=5"), "{d}");

        // No such connection.
        assert!(feed.message(&mut s, dash, "{\"ladder\":4242}"));
        let d = doc_for(&mut feed, &mut s, dash);
        assert!(d.contains("\"id\":4242,\"error\""), "{d}");
        assert!(feed.message(&mut s, dash, "{\"ladder\":null}"));
        assert_eq!(doc_for(&mut feed, &mut s, dash), "{\"a\":1}");

        // The last dashboard leaves: recording off, memory freed.
        feed.unsubscribe(&mut s, dash);
        feed.unsubscribe(&mut s, dash);
        assert!(!s.segment_log().armed(now));
        assert_eq!(s.segment_log().records(), 0);
    }

    #[test]
    fn http_answers_in_three_formats_and_arms_on_demand() {
        let (mut c, mut s, sh, now) = pair();
        // Opened before anything was recording: the connection is found,
        // its ladder is empty, and the request armed the recording.
        assert!(!s.segment_log().armed(now));
        let q = format!("conn={}&format=text", sh.id());
        let (code, ct, body) = http_response(&s, now, Some(&q));
        assert_eq!((code, ct), (200, "text/plain; charset=utf-8"));
        assert!(body.contains("0 segments recorded"), "{body}");
        assert!(s.segment_log().armed(now));
        let ch = c.connections()[0].handle;
        c.send(ch, b"GET / HTTP/1.1\r\n\r\n").unwrap();
        exchange(now, &mut c, &mut s);
        let (_, _, body) = http_response(&s, now, Some(&q));
        assert!(
            body.contains("\"GET / HTTP/1.1\"") && body.contains("len=18"),
            "{body}"
        );
        let port = c.connections()[0].local.port();
        let (code, ct, json) = http_response(&s, now, Some(&format!("port={port}&format=json")));
        assert_eq!((code, ct), (200, "application/json"));
        assert!(
            json.contains("\"app\":[\"\\\"GET / HTTP/1.1\\\"\"]"),
            "{json}"
        );
        let (code, ct, svg) = http_response(&s, now, Some(&format!("conn={}", sh.id())));
        assert_eq!((code, ct), (200, "image/svg+xml"));
        assert!(svg.starts_with("<?xml") && svg.ends_with("</svg>\n"));
        assert_eq!(http_response(&s, now, Some("conn=77")).0, 404);
        assert_eq!(http_response(&s, now, Some("conn=zz")).0, 400);
        // The arming expires.
        assert!(!s
            .segment_log()
            .armed(now + crate::trace::segments::ON_DEMAND));
    }

    #[test]
    fn queries() {
        assert_eq!(
            parse_query(Some("conn=3&format=text&max=10")),
            Ok(Query {
                which: Which::Id(3, None),
                format: Format::Text,
                max: 10
            })
        );
        assert_eq!(
            parse_query(Some("conn=3&remote=10.0.0.1%3A4000&_=123")),
            Ok(Query {
                which: Which::Id(3, Some("10.0.0.1:4000".parse().unwrap())),
                format: Format::Svg,
                max: ladder::live::DEFAULT_MAX
            })
        );
        assert_eq!(
            parse_query(Some("port=40000&format=json")).map(|q| q.which),
            Ok(Which::Port(40000))
        );
        for bad in [
            None,
            Some(""),
            Some("conn=x"),
            Some("conn=1&port=2"),
            Some("conn=1&format=png"),
            Some("conn=1&max=0"),
            Some("conn=1&max=99999"),
            Some("conn=1&remote=nowhere"),
            Some("conn=%zz"),
            Some("conn=%"),
        ] {
            assert!(parse_query(bad).is_err(), "{bad:?}");
        }
    }
}
