//! The fixed-width terminal rendering of a ladder diagram.
//!
//! ```text
//!   time(ms)   10.0.0.1:40000                                 10.0.0.2:80
//!      0.000   |---- SYN seq=0 win=64240 [mss 1460,wscale 7] ------------->|
//!      0.051   |<--- SYN-ACK seq=0 ack=1 win=65535 [mss 1460,wscale 7] ----|
//! ```
//!
//! One line per segment: the time since the connection's first segment,
//! then an arrow between the client's column (left `|`) and the server's
//! (right `|`) carrying the label. Marks of the analysis follow the TCP
//! fields as `*RETRANS*`, `*DUP-ACK #2*`, ...; recognized application
//! content follows in quotes. A silence of a second or more gets its own
//! line, so long idle periods are visible.

use super::{Connection, Trace};

/// Narrowest and widest space between the two columns, in characters.
const MIN_WIDTH: usize = 56;
const MAX_WIDTH: usize = 120;
/// The time column: 10 characters and 3 spaces.
const PREFIX: usize = 13;
/// A silence this long (ns) gets an "idle" line.
const IDLE_NANOS: u128 = 1_000_000_000;

/// The full label of a segment: TCP fields, marks, application content.
pub fn label(seg: &super::Segment) -> String {
    let mut s = seg.tcp_label();
    for t in &seg.tags {
        s.push_str(&format!(" *{}*", t.label()));
    }
    for a in &seg.app {
        s.push(' ');
        s.push_str(a);
    }
    if let Some(d) = &seg.decision {
        s.push_str(&format!(" (stack: {d})"));
    }
    s
}

/// Draw connection `idx` of `trace`, at most `max` segments.
pub fn render(trace: &Trace, idx: usize, max: usize) -> String {
    let Some(c) = trace.connections.get(idx) else {
        return String::new();
    };
    render_connection(trace, c, idx, max)
}

/// Draw connection `c` of `trace` (numbered `idx` in the title), at most
/// `max` segments.
pub fn render_connection(trace: &Trace, c: &Connection, idx: usize, max: usize) -> String {
    let segs = &c.segments[..c.segments.len().min(max)];
    let labels: Vec<String> = segs.iter().map(label).collect();
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let client = c.client.to_string();
    let server = c.server.to_string();
    let w = (longest + 10)
        .max(client.len() + server.len() + 4)
        .clamp(MIN_WIDTH, MAX_WIDTH);

    let mut out =
        format!("TCP connection #{idx}: client {client} (left) <-> server {server} (right)\n\n");
    // Header: the client's address over the left column, the server's
    // right-aligned over the right column.
    let pad = (w + 2).saturating_sub(client.len() + server.len());
    out.push_str(&format!(
        "  time(ms)   {client}{}{server}\n",
        " ".repeat(pad)
    ));

    let mut prev: Option<std::time::Duration> = None;
    for (seg, lab) in segs.iter().zip(&labels) {
        if seg.skipped_before > 0 {
            out.push_str(&middle_line(w, &skipped_text(seg.skipped_before)));
        }
        if let Some(p) = prev {
            let gap = seg.time.saturating_sub(p);
            if gap.as_nanos() >= IDLE_NANOS {
                out.push_str(&middle_line(
                    w,
                    &format!("~ {:.3} s idle ~", gap.as_secs_f64()),
                ));
            }
        }
        prev = Some(seg.time);
        let ms = seg.time.as_secs_f64() * 1000.0;
        out.push_str(&format!(
            "{ms:>10.3}   |{}|\n",
            arrow(lab, w, seg.from_client)
        ));
    }
    if c.segments.len() > segs.len() || c.not_stored > 0 {
        let more = c.packets - segs.len();
        out.push_str(&middle_line(
            w,
            &format!("... {more} more segments not drawn (--max {max}) ..."),
        ));
    }
    out.push('\n');
    for l in trace.footer(c, max) {
        out.push_str(&format!("  {l}\n"));
    }
    out
}

/// The note for segments left out of a drawing.
pub fn skipped_text(n: u64) -> String {
    let s = if n == 1 { "" } else { "s" };
    format!("... {n} segment{s} not shown here ...")
}

/// `---- label ------>` or `<--- label -------`, exactly `w` characters.
fn arrow(label: &str, w: usize, rightwards: bool) -> String {
    let room = w - 10; // "---- " + " " + at least 3 dashes + ">"
    let mut lab: String = label.chars().take(room).collect();
    if label.chars().count() > room {
        lab = label.chars().take(room - 3).collect();
        lab.push_str("...");
    }
    // "---- " + label + " " + dashes + ">" (or "<--- " + label + " " + dashes).
    let dashes = w - 6 - lab.chars().count();
    if rightwards {
        format!("---- {lab} {}>", "-".repeat(dashes - 1))
    } else {
        format!("<--- {lab} {}", "-".repeat(dashes))
    }
}

fn middle_line(w: usize, msg: &str) -> String {
    let msg: String = msg.chars().take(w).collect();
    let n = msg.chars().count();
    let left = (w - n) / 2;
    format!(
        "{}|{}{msg}{}|\n",
        " ".repeat(PREFIX),
        " ".repeat(left),
        " ".repeat(w - n - left)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrows_have_exact_width() {
        for w in [MIN_WIDTH, 80, MAX_WIDTH] {
            for l in ["", "SYN seq=0", &"x".repeat(200)] {
                assert_eq!(arrow(l, w, true).chars().count(), w);
                assert_eq!(arrow(l, w, false).chars().count(), w);
            }
        }
        assert_eq!(arrow("ACK", MIN_WIDTH, true).chars().last(), Some('>'));
        assert!(arrow("ACK", MIN_WIDTH, false).starts_with("<--- ACK "));
    }
}
