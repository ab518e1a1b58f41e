//! The ladder model as JSON, for the browser (`/api/ladder?format=json`)
//! and for tests: the segments in order with their fields, the drawing
//! class and marks, and the label the text and SVG renderings print.
//!
//! ```text
//! {"number":3,"client":"10.0.0.1:40000","server":"10.0.0.2:80","packets":12,"bytes":310,
//!  "live":true,"footer":["12 segments recorded by ustack (310 payload bytes)"],
//!  "segments":[{"frame":1,"t_us":0,"from_client":true,"flags":"SYN","seq":0,"ack":null,
//!   "win":64240,"len":0,"options":["mss 1460","sackOK","TS","wscale 7"],"sack":[],
//!   "tags":[],"class":"handshake","app":[],"decision":null,"skipped_before":0,
//!   "label":"SYN seq=0 win=64240 [mss 1460,sackOK,TS,wscale 7]"}, ...]}
//! ```

use super::{Connection, Trace};
use crate::trace::json::write_str;
use std::fmt::Write;

fn str_list(o: &mut String, items: impl IntoIterator<Item = String>) {
    o.push('[');
    for (i, s) in items.into_iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        write_str(o, &s);
    }
    o.push(']');
}

/// Connection `c` of `trace` (numbered `number`), at most `max` segments.
pub fn render_connection(trace: &Trace, c: &Connection, number: usize, max: usize) -> String {
    let mut o = String::with_capacity(256 + 300 * c.segments.len().min(max));
    let _ = write!(
        o,
        "{{\"number\":{number},\"client\":\"{}\",\"server\":\"{}\",\"packets\":{},\"bytes\":{},\"live\":{},\"footer\":",
        c.client, c.server, c.packets, c.bytes, trace.live
    );
    str_list(&mut o, trace.footer(c, max));
    o.push_str(",\"segments\":[");
    for (i, s) in c.segments.iter().take(max).enumerate() {
        if i > 0 {
            o.push(',');
        }
        let _ = write!(
            o,
            "{{\"frame\":{},\"t_us\":{},\"from_client\":{},\"flags\":",
            s.frame,
            s.time.as_micros(),
            s.from_client
        );
        write_str(&mut o, &s.flag_name());
        let _ = write!(o, ",\"seq\":{},\"ack\":", s.seq);
        match s.ack {
            Some(a) => {
                let _ = write!(o, "{a}");
            }
            None => o.push_str("null"),
        }
        let _ = write!(o, ",\"win\":{},\"len\":{},\"options\":", s.window, s.len);
        str_list(&mut o, s.options.iter().cloned());
        o.push_str(",\"sack\":[");
        for (j, (l, r)) in s.sack.iter().enumerate() {
            if j > 0 {
                o.push(',');
            }
            let _ = write!(o, "[{l},{r}]");
        }
        o.push_str("],\"tags\":");
        str_list(&mut o, s.tags.iter().map(|t| t.label()));
        let _ = write!(
            o,
            ",\"class\":\"{}\",\"app\":",
            super::svg::class_id(s.class())
        );
        str_list(&mut o, s.app.iter().cloned());
        o.push_str(",\"decision\":");
        match &s.decision {
            Some(d) => write_str(&mut o, d),
            None => o.push_str("null"),
        }
        let _ = write!(o, ",\"skipped_before\":{},\"label\":", s.skipped_before);
        write_str(&mut o, &s.tcp_label());
        o.push('}');
    }
    o.push_str("]}");
    o
}
