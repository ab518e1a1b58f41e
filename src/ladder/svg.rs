//! The SVG rendering of a ladder diagram: a standalone file (no scripts,
//! fonts or images from elsewhere) that any browser displays.
//!
//! Layout, top to bottom: a title, the two hosts in boxes over their
//! vertical timelines (client left, server right), one arrow per segment,
//! the legend of colours, and footer notes.
//!
//! **Time axis.** A capture is taken at one point of the path, so it knows
//! when each segment passed that point, not when it left its sender or
//! reached its receiver. The arrows therefore have a *fixed* small slope
//! (they show direction and order, not transit time), and the vertical
//! distance between consecutive arrows is a fixed row height plus a term
//! growing with the logarithm of the time gap: a 1 ms gap adds a little, a
//! 1 s gap adds more, and a 10-minute idle period does not blow up the
//! picture. Gaps of a second or more are also marked "idle" on the
//! timelines. The exact time of each segment is printed in the left column.

use super::conn::Class;
use super::{Connection, Segment, Trace};
use std::fmt::Write;

const WIDTH: f64 = 980.0;
const TIME_X: f64 = 92.0;
const LEFT_X: f64 = 200.0;
const RIGHT_X: f64 = 900.0;
/// Vertical drop of every arrow.
const SLOPE: f64 = 22.0;
/// Row height of a segment with one label line; a second line adds LINE2.
const ROW: f64 = 36.0;
const LINE2: f64 = 12.0;
/// Most extra space a time gap can add.
const MAX_GAP_PX: f64 = 48.0;
const FIRST_Y: f64 = 128.0;
/// Characters of 11 px monospace that fit along an arrow.
const MAX_LABEL_CHARS: usize = 100;
const FONT: &str = "DejaVu Sans Mono, Menlo, Consolas, monospace";

/// Colour and dash pattern of each class, and its legend entry.
fn style(c: Class) -> (&'static str, &'static str, &'static str) {
    match c {
        Class::Normal => ("#222222", "", "data / ACK"),
        Class::Handshake => ("#1f5fbf", "", "SYN / FIN (open, close)"),
        Class::Rst => ("#b00020", "", "RST (reset)"),
        Class::Retransmission => ("#d62728", "7 4", "retransmission"),
        Class::OutOfOrder => ("#8c564b", "7 4", "out-of-order / gap"),
        Class::ZeroWindow => ("#7b3fb8", "", "zero window / probe"),
        Class::DupAck => ("#e67e00", "", "duplicate ACK"),
        Class::WindowUpdate => ("#138d90", "", "window update"),
        Class::KeepAlive => ("#7f7f7f", "2 3", "keepalive"),
    }
}

const CLASSES: [Class; 9] = [
    Class::Normal,
    Class::Handshake,
    Class::Retransmission,
    Class::OutOfOrder,
    Class::DupAck,
    Class::ZeroWindow,
    Class::WindowUpdate,
    Class::KeepAlive,
    Class::Rst,
];
const APP_COLOUR: &str = "#2a7f2a";
/// The stack's own decision (live recordings and traces).
const STACK_COLOUR: &str = "#4b5563";

/// The class name used for arrow markers (and by the dashboard).
pub fn class_id(c: Class) -> &'static str {
    match c {
        Class::Normal => "normal",
        Class::Handshake => "handshake",
        Class::Rst => "rst",
        Class::Retransmission => "retrans",
        Class::OutOfOrder => "ooo",
        Class::ZeroWindow => "zerowin",
        Class::DupAck => "dupack",
        Class::WindowUpdate => "winupd",
        Class::KeepAlive => "keepalive",
    }
}

/// Escape text for XML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if (c as u32) < 0x20 => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

/// Extra vertical space for a time gap: 12 px per decade of milliseconds,
/// at most [`MAX_GAP_PX`].
fn gap_px(gap_secs: f64) -> f64 {
    let ms = gap_secs * 1000.0;
    (12.0 * (1.0 + ms).log10()).clamp(0.0, MAX_GAP_PX)
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
    let mut body = String::new();
    let angle = SLOPE.atan2(RIGHT_X - LEFT_X).to_degrees();
    let mid_x = (LEFT_X + RIGHT_X) / 2.0;

    let mut y = FIRST_Y;
    let mut prev: Option<&Segment> = None;
    for seg in segs {
        if let Some(p) = prev {
            let gap = seg.time.saturating_sub(p.time).as_secs_f64();
            y += ROW
                + if p.tags.is_empty() && p.app.is_empty() && p.decision.is_none() {
                    0.0
                } else {
                    LINE2
                };
            y += gap_px(gap);
            if gap >= 1.0 {
                // An idle break: a gray note between the timelines.
                let _ = writeln!(
                    body,
                    r##"<text x="{mid_x:.1}" y="{:.1}" class="idle">idle {:.3} s</text>"##,
                    y - 8.0,
                    gap
                );
                for x in [LEFT_X, RIGHT_X] {
                    let _ = writeln!(
                        body,
                        r##"<path d="M{:.1},{:.1} l10,-4 M{:.1},{:.1} l10,-4" class="brk"/>"##,
                        x - 5.0,
                        y - 10.0,
                        x - 5.0,
                        y - 5.0
                    );
                }
                y += 16.0;
            }
        }
        if seg.skipped_before > 0 {
            if prev.is_some() {
                y += 6.0;
            }
            let _ = writeln!(
                body,
                r##"<text x="{mid_x:.1}" y="{:.1}" class="idle gap">{}</text>"##,
                y - 6.0,
                escape(&super::text::skipped_text(seg.skipped_before))
            );
            y += 14.0;
        }
        prev = Some(seg);
        draw_segment(&mut body, seg, y, angle);
    }
    let mut end_y = y + ROW + LINE2;
    if c.segments.len() > segs.len() || c.not_stored > 0 {
        let _ = writeln!(
            body,
            r##"<text x="{mid_x:.1}" y="{:.1}" class="idle">… {} more segments not drawn (--max {max})</text>"##,
            end_y,
            c.packets - segs.len()
        );
        end_y += 20.0;
    }
    // Timelines under the host boxes, to just below the last arrow.
    let mut lines = String::new();
    for x in [LEFT_X, RIGHT_X] {
        let _ = writeln!(
            lines,
            r##"<line x1="{x:.1}" y1="86.0" x2="{x:.1}" y2="{end_y:.1}" class="timeline"/>"##
        );
    }

    // Legend and footer.
    let mut y = end_y + 34.0;
    let mut legend = String::new();
    let _ = writeln!(
        legend,
        r##"<text x="40.0" y="{y:.1}" class="head">Legend</text>"##
    );
    y += 8.0;
    for (i, cl) in CLASSES.iter().enumerate() {
        let col = (i % 3) as f64;
        let row = (i / 3) as f64;
        let x = 40.0 + col * 300.0;
        let ly = y + 16.0 + row * 20.0;
        let (colour, dash, name) = style(*cl);
        let dash_attr = if dash.is_empty() {
            String::new()
        } else {
            format!(r##" stroke-dasharray="{dash}""##)
        };
        let _ = writeln!(
            legend,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="1.6"{dash_attr} marker-end="url(#ah-{})"/><text x="{:.1}" y="{:.1}" class="legend">{}</text>"##,
            ly - 4.0,
            x + 40.0,
            ly - 4.0,
            class_id(*cl),
            x + 50.0,
            ly,
            escape(name)
        );
    }
    y += 16.0 + 3.0 * 20.0;
    let _ = writeln!(
        legend,
        r##"<text x="40.0" y="{y:.1}" class="legend"><tspan fill="{APP_COLOUR}" font-style="italic">"GET / HTTP/1.1"</tspan>  application content (HTTP, WebSocket)   <tspan font-weight="bold" fill="#d62728">RETRANS</tspan>  analysis mark</text>"##
    );
    y += 22.0;
    let notes = [
        "seq/ack are relative to each side's initial sequence number; win is scaled by the negotiated window scale.".to_string(),
        "Arrows have a fixed slope (one capture point cannot see transit times); vertical gaps grow with log(time gap).".to_string(),
    ];
    for l in notes.iter().chain(trace.footer(c, max).iter()) {
        let _ = writeln!(
            legend,
            r##"<text x="40.0" y="{y:.1}" class="note">{}</text>"##,
            escape(l)
        );
        y += 16.0;
    }
    let height = y + 10.0;

    // Assemble.
    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH:.0}" height="{height:.0}" viewBox="0 0 {WIDTH:.0} {height:.0}" font-family="{FONT}">
<title>TCP connection #{idx}: {} to {}</title>
<style>
text {{ font-size: 11px; fill: #222222; }}
.title {{ font-size: 15px; font-weight: bold; text-anchor: middle; font-family: sans-serif; }}
.host {{ font-size: 13px; font-weight: bold; text-anchor: middle; font-family: sans-serif; }}
.addr {{ font-size: 12px; text-anchor: middle; }}
.head {{ font-size: 12px; font-weight: bold; font-family: sans-serif; }}
.time {{ text-anchor: end; fill: #555555; }}
.lbl {{ text-anchor: middle; }}
.idle {{ text-anchor: middle; fill: #888888; font-style: italic; }}
.legend {{ font-size: 11px; }}
.note {{ font-size: 11px; fill: #666666; font-family: sans-serif; }}
.timeline {{ stroke: #9a9a9a; stroke-width: 2; }}
.brk {{ stroke: #888888; stroke-width: 1.5; fill: none; }}
</style>"##,
        escape(&c.client.to_string()),
        escape(&c.server.to_string())
    );
    s.push_str("<defs>\n");
    for cl in CLASSES {
        let (colour, _, _) = style(cl);
        let _ = writeln!(
            s,
            r##"<marker id="ah-{}" viewBox="0 0 10 8" refX="10" refY="4" markerWidth="10" markerHeight="8" markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0 L10,4 L0,8 z" fill="{colour}"/></marker>"##,
            class_id(cl)
        );
    }
    s.push_str("</defs>\n");
    let _ = writeln!(
        s,
        r##"<rect x="0" y="0" width="{WIDTH:.0}" height="{height:.0}" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="24.0" class="title">TCP connection #{idx}</text>"##,
        WIDTH / 2.0
    );
    for (x, role, addr) in [
        (LEFT_X, "client", c.client.to_string()),
        (RIGHT_X, "server", c.server.to_string()),
    ] {
        let _ = writeln!(
            s,
            r##"<rect x="{:.1}" y="40.0" width="150.0" height="46.0" rx="5" fill="#f2f5fa" stroke="#555555" stroke-width="1.2"/><text x="{x:.1}" y="59.0" class="host">{role}</text><text x="{x:.1}" y="77.0" class="addr">{}</text>"##,
            x - 75.0,
            escape(&addr)
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="{TIME_X:.1}" y="108.0" class="time" font-weight="bold">time (ms)</text>"##
    );
    s.push_str(&lines);
    s.push_str(&body);
    s.push_str(&legend);
    s.push_str("</svg>\n");
    s
}

fn draw_segment(out: &mut String, seg: &Segment, y: f64, angle: f64) {
    let class = seg.class();
    let (colour, dash, _) = style(class);
    let (x1, x2, rot) = if seg.from_client {
        (LEFT_X, RIGHT_X, angle)
    } else {
        (RIGHT_X, LEFT_X, -angle)
    };
    let y2 = y + SLOPE;
    let (cx, cy) = ((x1 + x2) / 2.0, (y + y2) / 2.0);
    let ms = seg.time.as_secs_f64() * 1000.0;
    let dash_attr = if dash.is_empty() {
        String::new()
    } else {
        format!(r##" stroke-dasharray="{dash}""##)
    };
    let width = if class == Class::Rst { 2.2 } else { 1.4 };
    let _ = writeln!(
        out,
        r##"<g><title>frame {}</title><text x="{TIME_X:.1}" y="{:.1}" class="time">{ms:.3}</text><circle cx="{x1:.1}" cy="{y:.1}" r="2.5" fill="{colour}"/><line x1="{x1:.1}" y1="{y:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="{colour}" stroke-width="{width}"{dash_attr} marker-end="url(#ah-{})"/>"##,
        seg.frame,
        y + 4.0,
        class_id(class)
    );
    let text_colour = if class == Class::Normal {
        "#222222"
    } else {
        colour
    };
    let _ = writeln!(
        out,
        r##"<text x="{cx:.1}" y="{:.1}" class="lbl" fill="{text_colour}" style="fill:{text_colour}" transform="rotate({rot:.3} {cx:.1} {cy:.1})">{}</text>"##,
        cy - 5.0,
        escape(&cut(&seg.tcp_label(), MAX_LABEL_CHARS))
    );
    if !seg.tags.is_empty() || !seg.app.is_empty() || seg.decision.is_some() {
        let mut line2 = String::new();
        let mut used = 0;
        for t in &seg.tags {
            let l = t.label();
            used += l.chars().count() + 2;
            let (tc, _, _) = style(t.class());
            let _ = write!(
                line2,
                r##"<tspan font-weight="bold" style="fill:{tc}">{}</tspan>  "##,
                escape(&l)
            );
        }
        if let Some(d) = &seg.decision {
            let l = format!("stack: {d}");
            used += l.chars().count() + 2;
            let _ = write!(
                line2,
                r##"<tspan class="stack" style="fill:{STACK_COLOUR}">{}</tspan>  "##,
                escape(&l)
            );
        }
        let app = seg.app.join("  ");
        if !app.is_empty() {
            let _ = write!(
                line2,
                r##"<tspan font-style="italic" style="fill:{APP_COLOUR}">{}</tspan>"##,
                escape(&cut(&app, MAX_LABEL_CHARS.saturating_sub(used).max(10)))
            );
        }
        let _ = writeln!(
            out,
            r##"<text x="{cx:.1}" y="{:.1}" class="lbl" transform="rotate({rot:.3} {cx:.1} {cy:.1})">{}</text></g>"##,
            cy + 13.0,
            line2.trim_end()
        );
    } else {
        out.push_str("</g>\n");
    }
}
