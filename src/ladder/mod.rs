//! Time-sequence ("ladder") diagrams of TCP connections from a capture file.
//!
//! The classic textbook figure of a TCP exchange: the client's timeline on
//! the left, the server's on the right, time flowing down, and one sloped
//! arrow per segment from its sender to its receiver, labelled with the
//! flags, relative sequence and acknowledgment numbers, window and length.
//! `ustack ladder FILE.pcap` draws it from any IPv4 capture, as text for the
//! terminal or as a standalone SVG:
//!
//! ```text
//!   time(ms)   10.0.0.1:40000                                       10.0.0.2:80
//!      0.000   |---- SYN seq=0 win=64240 [mss 1460,sackOK,TS,wscale 7] ------->|
//!      0.051   |<--- SYN-ACK seq=0 ack=1 win=65535 [mss 1460,wscale 7] --------|
//! ```
//!
//! The pipeline, one module per step:
//!
//! 1. [`capture`] reads the pcap file record by record and removes the
//!    link-layer header (raw IP, Ethernet, Linux cooked, BSD loopback);
//! 2. [`load`] parses IPv4 and TCP with [`crate::wire`] and groups the
//!    segments into [`Connection`]s by 4-tuple;
//! 3. [`conn`] follows each connection: relative sequence numbers (like
//!    Wireshark, relative to each side's ISN), window scaling, and the marks
//!    of [`Tag`] (retransmission, duplicate ACK, zero window, ...);
//!    [`app`] recognizes HTTP heads and WebSocket frames in the payloads;
//! 4. [`text`] and [`svg`] draw the diagram.
//!
//! [`synth`] builds small capture files segment by segment, for tests and
//! lab exercises. [`live`] builds the same model from the segments the
//! running stack recorded ([`crate::trace::segments`]), for the dashboard's
//! ladder of a live connection; [`json`] writes it for the browser.
//!
//! Nothing here panics on any input: a bad file is a [`LadderError`], a
//! malformed packet inside a good file is skipped and counted in
//! [`Skipped`], which the diagrams print in their footer.

pub mod app;
pub mod capture;
pub mod conn;
pub mod json;
pub mod jsonl;
pub mod live;
pub mod svg;
pub mod synth;
pub mod text;

pub use conn::{Class, Connection, Segment, Tag};

use crate::wire::{IpProtocol, Ipv4Packet, TcpPacket, TcpRepr};
use capture::{strip_link_layer, Frame, PcapStream};
use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};

/// Connections kept per capture; segments of later ones are counted in
/// [`Skipped::too_many_connections`].
pub const MAX_CONNECTIONS: usize = 100_000;
/// Default of `--max`: segments drawn before the diagram is cut.
pub const DEFAULT_MAX_SEGMENTS: usize = 200;

/// Why a capture could not be drawn. Each message fits on one line.
#[derive(Debug, thiserror::Error)]
pub enum LadderError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("read error: {0}")]
    Read(std::io::Error),
    #[error("the file is empty, not a pcap capture")]
    Empty,
    #[error("not a pcap file (first bytes {0:#010x})")]
    NotPcap(u32),
    #[error("this is a pcapng file; convert it to classic pcap first: tshark -F pcap -r IN.pcapng -w OUT.pcap")]
    Pcapng,
    #[error("file too short for the 24-byte pcap header")]
    TruncatedHeader,
    #[error("unsupported link type {0} (supported: 0 NULL, 1 ETHERNET, 101 RAW, 108 LOOP, 113 LINUX_SLL, 228 IPV4, 276 LINUX_SLL2)")]
    UnsupportedLinkType(u32),
    #[error("pcap record {index} at byte {offset} is truncated (the capture file was cut short)")]
    TruncatedRecord { index: usize, offset: u64 },
    #[error(
        "pcap record {index} at byte {offset} claims {len} bytes, more than the 262144-byte limit"
    )]
    RecordTooLong { index: usize, offset: u64, len: u32 },
    #[error("no TCP connection found in the capture ({0})")]
    NoTcp(String),
    #[error("--conn {index} is out of range: the capture has {count} connection(s), numbered 0 to {last}", last = count.saturating_sub(1))]
    ConnOutOfRange { index: usize, count: usize },
    #[error("no TCP connection uses port {0}")]
    NoSuchPort(u16),
    #[error("trace file line {line}: {why}")]
    BadTrace { line: usize, why: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Records of a capture that are not drawn, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Not IPv4 (ARP, IPv6, ...).
    pub not_ipv4: usize,
    /// IPv4 but not TCP (ICMP, UDP, ...).
    pub not_tcp: usize,
    /// IP fragments (not reassembled here).
    pub fragments: usize,
    /// A broken link-layer, IPv4 or TCP header.
    pub malformed: usize,
    /// Segments of connections beyond [`MAX_CONNECTIONS`].
    pub too_many_connections: usize,
}

impl Skipped {
    /// One line for a footer, or `None` if nothing was skipped.
    pub fn summary(&self) -> Option<String> {
        let mut parts = Vec::new();
        for (n, what) in [
            (self.malformed, "malformed packets"),
            (self.not_ipv4, "non-IPv4 frames"),
            (self.not_tcp, "non-TCP packets"),
            (self.fragments, "IP fragments"),
            (
                self.too_many_connections,
                "segments of connections over the limit",
            ),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        (!parts.is_empty()).then(|| format!("skipped: {}", parts.join(", ")))
    }
}

/// All TCP connections of a capture.
#[derive(Debug, Clone)]
pub struct Trace {
    pub link_type: u32,
    /// Records in the file.
    pub records: usize,
    /// In order of their first segment.
    pub connections: Vec<Connection>,
    pub skipped: Skipped,
    /// Capture time of the first record (ns since the UNIX epoch).
    pub start_nanos: u64,
    /// Drawn from a live recording ([`live`]), not from a file: the
    /// footer speaks of recorded segments, not of `--max`.
    pub live: bool,
}

/// Which connection to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Select {
    /// The first one.
    #[default]
    First,
    /// By index in [`Trace::connections`].
    Index(usize),
    /// The first connection with this port on either side.
    Port(u16),
}

/// Read a capture (pcap) or a `ustack serve --trace` file (JSON lines,
/// see [`jsonl`]); the format is recognized by the file's first bytes.
pub fn load_file(path: &Path) -> Result<Trace, LadderError> {
    use std::io::BufRead;
    let f = std::fs::File::open(path).map_err(|source| LadderError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let mut r = std::io::BufReader::with_capacity(1 << 16, f);
    let head = r.fill_buf().map_err(LadderError::Read)?;
    if jsonl::looks_like_trace(head) {
        return jsonl::load(r);
    }
    load(r)
}

/// Read a capture and group its TCP segments into connections.
pub fn load<R: Read>(input: R) -> Result<Trace, LadderError> {
    let mut stream = PcapStream::new(input)?;
    let link_type = stream.link_type();
    let mut trace = Trace {
        link_type,
        records: 0,
        connections: Vec::new(),
        skipped: Skipped::default(),
        start_nanos: 0,
        live: false,
    };
    // Key: the two endpoints, smaller first. Value: the current connection.
    let mut by_pair: HashMap<(SocketAddrV4, SocketAddrV4), usize> = HashMap::new();
    while let Some(rec) = stream.next_record()? {
        if trace.records == 0 {
            trace.start_nanos = rec.ts_nanos;
        }
        trace.records += 1;
        let ip = match strip_link_layer(link_type, rec.data) {
            Frame::Ipv4(ip) => ip,
            Frame::NotIpv4 => {
                trace.skipped.not_ipv4 += 1;
                continue;
            }
            Frame::Malformed => {
                trace.skipped.malformed += 1;
                continue;
            }
        };
        let snap_cut = rec.orig_len as usize > rec.data.len();
        let (src, dst, tcp_bytes, wire_payload) = match split_ipv4(ip, snap_cut) {
            Ok(x) => x,
            Err(why) => {
                match why {
                    Why::NotTcp => trace.skipped.not_tcp += 1,
                    Why::Fragment => trace.skipped.fragments += 1,
                    Why::Malformed => trace.skipped.malformed += 1,
                }
                continue;
            }
        };
        let Ok(pkt) = TcpPacket::new_checked(tcp_bytes) else {
            trace.skipped.malformed += 1;
            continue;
        };
        // Checksums are not verified: captures on the sending host carry
        // partial checksums when the NIC computes them (checksum offload).
        let Ok(tcp) = TcpRepr::parse(&pkt, *src.ip(), *dst.ip(), false) else {
            trace.skipped.malformed += 1;
            continue;
        };
        let src = SocketAddrV4::new(*src.ip(), tcp.src_port);
        let dst = SocketAddrV4::new(*dst.ip(), tcp.dst_port);
        let wire_len = wire_payload.saturating_sub(pkt.header_len());
        let key = if src <= dst { (src, dst) } else { (dst, src) };
        let new_syn = tcp.flags.syn() && !tcp.flags.ack();
        let idx = match by_pair.get(&key) {
            Some(&i) if !(new_syn && trace.connections[i].closed) => i,
            _ => {
                if trace.connections.len() >= MAX_CONNECTIONS {
                    trace.skipped.too_many_connections += 1;
                    continue;
                }
                // The client sent the SYN; a SYN-ACK comes from the server.
                // Without a handshake, guess like Wireshark: the server has
                // the lower (well-known) port.
                let f = tcp.flags;
                let (client, server) = if f.syn() && !f.ack() {
                    (src, dst)
                } else if f.syn() || src.port() < dst.port() {
                    (dst, src)
                } else {
                    (src, dst)
                };
                trace
                    .connections
                    .push(Connection::new(client, server, rec.ts_nanos));
                by_pair.insert(key, trace.connections.len() - 1);
                trace.connections.len() - 1
            }
        };
        let c = &mut trace.connections[idx];
        let from_client = src == c.client;
        c.push(rec.index, rec.ts_nanos, from_client, &tcp, wire_len);
    }
    Ok(trace)
}

enum Why {
    NotTcp,
    Fragment,
    Malformed,
}

/// Check an IPv4 header and return (src, dst, captured TCP bytes, TCP length
/// per the IP header). A packet cut by the capture's snaplen (`snap_cut`) is
/// accepted as long as the TCP header is there; otherwise the IP total
/// length must fit in the captured bytes.
fn split_ipv4(
    ip: &[u8],
    snap_cut: bool,
) -> Result<(SocketAddrV4, SocketAddrV4, &[u8], usize), Why> {
    if ip.len() < crate::wire::ipv4::HEADER_LEN {
        return Err(Why::Malformed);
    }
    // The fixed 20-byte header is present, so the accessors cannot panic.
    let p = Ipv4Packet::new_unchecked(ip);
    let hl = p.header_len();
    let total = usize::from(p.total_len());
    if p.version() != 4 || hl < 20 || hl > ip.len() || total < hl || (total > ip.len() && !snap_cut)
    {
        return Err(Why::Malformed);
    }
    if p.more_frags() || p.frag_offset() != 0 {
        return Err(Why::Fragment);
    }
    if p.protocol() != IpProtocol::Tcp {
        return Err(Why::NotTcp);
    }
    let end = total.min(ip.len());
    let src = SocketAddrV4::new(p.src_addr(), 0);
    let dst = SocketAddrV4::new(p.dst_addr(), 0);
    Ok((src, dst, &ip[hl..end], total - hl))
}

impl Trace {
    /// The index of the connection to draw.
    pub fn select(&self, sel: Select) -> Result<usize, LadderError> {
        if self.connections.is_empty() {
            let mut what = format!("{} records", self.records);
            if let Some(s) = self.skipped.summary() {
                what.push_str("; ");
                what.push_str(&s);
            }
            return Err(LadderError::NoTcp(what));
        }
        match sel {
            Select::First => Ok(0),
            Select::Index(i) if i < self.connections.len() => Ok(i),
            Select::Index(index) => Err(LadderError::ConnOutOfRange {
                index,
                count: self.connections.len(),
            }),
            Select::Port(p) => self
                .connections
                .iter()
                .position(|c| c.client.port() == p || c.server.port() == p)
                .ok_or(LadderError::NoSuchPort(p)),
        }
    }

    /// The table of connections: index, endpoints, packets, bytes, start.
    pub fn list(&self) -> String {
        let mut s = format!("{} TCP connections:\n", self.connections.len());
        for (i, c) in self.connections.iter().enumerate() {
            let first = c.start_nanos.saturating_sub(self.start_nanos) as f64 / 1e9;
            s.push_str(&format!(
                "  #{i:<3} {:>21} -> {:<21} {:>6} packets {:>10} bytes  first at {first:.3} s\n",
                c.client.to_string(),
                c.server.to_string(),
                c.packets,
                c.bytes
            ));
        }
        s
    }

    /// The footer lines shared by both renderings: what was not drawn.
    pub fn footer(&self, conn: &Connection, max: usize) -> Vec<String> {
        let mut lines = Vec::new();
        if self.live {
            let left_out: u64 = conn.segments.iter().map(|s| s.skipped_before).sum();
            let mut l = format!(
                "{} segments recorded by ustack ({} payload bytes)",
                conn.packets, conn.bytes
            );
            if left_out > 0 {
                l.push_str(&format!("; {left_out} older ones not shown"));
            }
            lines.push(l);
            return lines;
        }
        let shown = conn.segments.len().min(max);
        let mut l = format!("{} segments, {} payload bytes", conn.packets, conn.bytes);
        if shown < conn.packets {
            l.push_str(&format!(
                "; {} drawn, {} more not drawn (raise --max)",
                shown,
                conn.packets - shown
            ));
        }
        lines.push(l);
        if let Some(s) = self.skipped.summary() {
            lines.push(s);
        }
        lines
    }
}

/// Command-line arguments of `ustack ladder`.
#[derive(clap::Args, Debug, Clone)]
pub struct LadderArgs {
    /// Capture file (classic pcap; IPv4 over raw IP, Ethernet or Linux cooked),
    /// or a `ustack serve --trace` file (JSON lines).
    pub file: PathBuf,
    /// Draw the N-th connection (see the list printed when there are several).
    #[arg(long, value_name = "N", conflicts_with = "port")]
    pub conn: Option<usize>,
    /// Draw the first connection with this port.
    #[arg(long, value_name = "P")]
    pub port: Option<u16>,
    /// Write an SVG drawing to this file.
    #[arg(long, value_name = "OUT.svg")]
    pub svg: Option<PathBuf>,
    /// Print the text drawing (the default without --svg, or when stdout is a terminal).
    #[arg(long)]
    pub text: bool,
    /// Draw at most this many segments.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_SEGMENTS)]
    pub max: usize,
}

/// `ustack ladder`: load, select, draw. The connection list goes to stderr
/// when there are several connections.
pub fn run(a: &LadderArgs) -> Result<(), LadderError> {
    use std::io::Write;
    let trace = load_file(&a.file)?;
    let sel = match (a.conn, a.port) {
        (Some(i), _) => Select::Index(i),
        (None, Some(p)) => Select::Port(p),
        (None, None) => Select::First,
    };
    let idx = trace.select(sel)?;
    if trace.connections.len() > 1 {
        eprint!("{}", trace.list());
        eprintln!("drawing connection #{idx} (choose with --conn N or --port P)");
    }
    let max = a.max.max(1);
    if let Some(path) = &a.svg {
        let svg = svg::render(&trace, idx, max);
        std::fs::write(path, svg).map_err(|source| LadderError::Write {
            path: path.clone(),
            source,
        })?;
        eprintln!("wrote {}", path.display());
    }
    // Text is the default, and is also printed next to an SVG when stdout
    // is a terminal (someone is looking).
    if a.text || a.svg.is_none() || std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        let out = text::render(&trace, idx, max);
        let mut so = std::io::stdout().lock();
        // A closed pipe (`| head`) is not an error worth reporting.
        let _ = so.write_all(out.as_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::synth::{Synth, C2S, S2C};
    use super::*;
    use crate::wire::TcpFlags;

    const A: TcpFlags = TcpFlags::ACK;

    fn trace(f: impl FnOnce(&mut Synth)) -> Trace {
        let mut s = Synth::new(
            "10.0.0.1:40000".parse().unwrap(),
            "10.0.0.2:80".parse().unwrap(),
        );
        f(&mut s);
        load(&s.finish()[..]).unwrap()
    }

    fn tags(t: &Trace) -> Vec<Vec<Tag>> {
        t.connections[0]
            .segments
            .iter()
            .map(|s| s.tags.clone())
            .collect()
    }

    #[test]
    fn keepalive_out_of_order_gap_and_window_update() {
        let t = trace(|s| {
            s.send(0, C2S, Synth::seg(A, 1, 1, 100).with_payload(&[1; 10]));
            // 11..21 is delayed: 21..31 arrives first.
            s.send(1, C2S, Synth::seg(A, 21, 1, 100).with_payload(&[1; 10]));
            s.send(2, C2S, Synth::seg(A, 11, 1, 100).with_payload(&[1; 10]));
            s.send(3, S2C, Synth::seg(A, 1, 31, 100));
            s.send(4, S2C, Synth::seg(A, 1, 31, 200));
            // Keepalive: one byte before snd.nxt, empty.
            s.send(5, C2S, Synth::seg(A, 30, 1, 100));
            s.send(6, S2C, Synth::seg(A, 1, 31, 200));
        });
        assert_eq!(
            tags(&t),
            vec![
                vec![],
                vec![Tag::PrevNotCaptured],
                vec![Tag::OutOfOrder],
                vec![],
                vec![Tag::WindowUpdate],
                vec![Tag::KeepAlive],
                vec![],
            ]
        );
        // No SYN captured: relative numbers start at the first seen.
        assert_eq!(t.connections[0].segments[0].seq, 0);
        assert_eq!(t.connections[0].segments[3].ack, Some(30));
        // No window scale negotiated: windows are raw.
        assert_eq!(t.connections[0].segments[4].window, 200);
    }

    #[test]
    fn wscale_only_when_both_sides_offer_it() {
        let t = trace(|s| {
            s.send(0, C2S, Synth::syn(1000).with_syn_options(7));
            s.send(1, S2C, Synth::syn(1000).with_ack(1)); // no options
            s.send(2, C2S, Synth::seg(A, 1, 1, 10));
        });
        assert_eq!(t.connections[0].segments[2].window, 10);
        assert_eq!(
            t.connections[0].segments[0].options,
            vec!["mss 1460", "sackOK", "TS", "wscale 7"]
        );
    }

    #[test]
    fn several_connections_listed_and_selected() {
        let t = trace(|s| {
            s.send(0, C2S, Synth::syn(1000));
            s.send(1, S2C, Synth::seg(TcpFlags::RST | A, 0, 1, 0));
            // The same 4-tuple again after the RST: a new connection.
            s.send(1_500_000, C2S, Synth::syn(1000));
        });
        assert_eq!(t.connections.len(), 2);
        assert_eq!(t.select(Select::Index(1)).unwrap(), 1);
        assert_eq!(
            t.list(),
            "2 TCP connections:\n  \
             #0          10.0.0.1:40000 -> 10.0.0.2:80                2 packets          0 bytes  first at 0.000 s\n  \
             #1          10.0.0.1:40000 -> 10.0.0.2:80                1 packets          0 bytes  first at 1.500 s\n"
        );
        assert_eq!(t.connections[0].segments[1].tags, vec![Tag::Rst]);
        assert_eq!(t.connections[0].segments[1].class(), Class::Rst);
    }

    #[test]
    fn sequence_numbers_wrap() {
        // The server's ISN is 3e9: 1.3e9 bytes later its numbers wrap.
        let t = trace(|s| {
            s.send(0, S2C, Synth::syn(1000).with_ack(1));
            s.send(
                1,
                S2C,
                Synth::seg(A, 1_300_000_001, 1, 9).with_payload(&[0; 5]),
            );
        });
        assert_eq!(t.connections[0].segments[1].seq, 1_300_000_001);
    }
}
