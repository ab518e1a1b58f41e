//! Building small capture files segment by segment, for tests and lab
//! exercises: "what does a zero-window probe look like?" without needing a
//! network that produces one.
//!
//! Segments are given with *relative* sequence and acknowledgment numbers
//! (as the diagram shows them); [`Synth`] adds each side's ISN, builds the
//! IPv4 + TCP packet with [`crate::wire::emit_ipv4_tcp`] (valid checksums)
//! and writes it, by default with [`crate::phy::pcap::Writer`]
//! (LINKTYPE_RAW). Other framings ([`Framing`]) exist to test the reader.
//!
//! ```
//! use ustack::ladder::synth::{Synth, C2S, S2C};
//! use ustack::wire::TcpFlags;
//! let mut s = Synth::new("10.0.0.1:40000".parse().unwrap(), "10.0.0.2:80".parse().unwrap());
//! s.send(0, C2S, Synth::syn(64240));
//! s.send(50, S2C, Synth::syn(65535).with_ack(1));
//! s.send(70, C2S, Synth::seg(TcpFlags::ACK, 1, 1, 502));
//! let pcap: Vec<u8> = s.finish();
//! assert_eq!(ustack::ladder::load(&pcap[..]).unwrap().connections.len(), 1);
//! ```

use crate::phy::pcap;
use crate::wire::{emit_ipv4_tcp, IpProtocol, Ipv4Repr, SeqNumber, TcpFlags, TcpRepr};
use std::net::SocketAddrV4;
use std::time::Duration;

/// Direction: client to server.
pub const C2S: bool = true;
/// Direction: server to client.
pub const S2C: bool = false;

/// How records are framed in the generated file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// LINKTYPE_RAW, little-endian, microseconds (written by `pcap::Writer`).
    Raw,
    /// LINKTYPE_ETHERNET with made-up MAC addresses.
    Ethernet,
    /// LINKTYPE_LINUX_SLL (`tcpdump -i any`, older libpcap).
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2 (`tcpdump -i any`, libpcap >= 1.10).
    LinuxSll2,
    /// LINKTYPE_RAW, big-endian, nanosecond timestamps.
    RawBigEndianNanos,
}

/// One segment to write: a [`TcpRepr`] whose `seq_number`, `ack_number`
/// and SACK edges are relative, plus the payload it owns.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    pub repr: TcpRepr<'static>,
    pub payload: Vec<u8>,
}

impl Spec {
    /// Set ACK and the relative acknowledgment number.
    pub fn with_ack(mut self, ack: u32) -> Spec {
        self.repr.flags |= TcpFlags::ACK;
        self.repr.ack_number = SeqNumber(ack);
        self
    }
    /// Handshake options: MSS 1460, SACK permitted, timestamps, wscale.
    pub fn with_syn_options(mut self, wscale: u8) -> Spec {
        self.repr.max_seg_size = Some(1460);
        self.repr.sack_permitted = true;
        self.repr.timestamp = Some((1000, 0));
        self.repr.window_scale = Some(wscale);
        self
    }
    /// A payload (the PSH flag is set too).
    pub fn with_payload(mut self, p: &[u8]) -> Spec {
        self.payload = p.to_vec();
        self.repr.flags |= TcpFlags::PSH;
        self
    }
    /// Add a SACK block (relative edges).
    pub fn with_sack(mut self, left: u32, right: u32) -> Spec {
        if let Some(slot) = self.repr.sack_ranges.iter_mut().find(|s| s.is_none()) {
            *slot = Some((left, right));
        }
        self
    }
}

/// Writes one connection's segments into an in-memory pcap file.
#[derive(Debug)]
pub struct Synth {
    client: SocketAddrV4,
    server: SocketAddrV4,
    client_isn: u32,
    server_isn: u32,
    start: Duration,
    framing: Framing,
    records: Vec<(Duration, Vec<u8>)>,
    ident: u16,
}

impl Synth {
    /// A connection between `client` and `server`, ISNs 1000000 and
    /// 3000000000 (so wrap-around is nearby for the server), starting at
    /// 2023-11-14 22:13:20 UTC.
    pub fn new(client: SocketAddrV4, server: SocketAddrV4) -> Synth {
        Synth {
            client,
            server,
            client_isn: 1_000_000,
            server_isn: 3_000_000_000,
            start: Duration::from_secs(1_700_000_000),
            framing: Framing::Raw,
            records: Vec::new(),
            ident: 1,
        }
    }

    /// Use another link framing.
    pub fn framing(mut self, f: Framing) -> Synth {
        self.framing = f;
        self
    }

    /// A segment with `flags`, relative `seq` and `ack` (ACK is set when
    /// `flags` has it) and raw window `win`.
    pub fn seg(flags: TcpFlags, seq: u32, ack: u32, win: u16) -> Spec {
        let mut repr = TcpRepr::new(0, 0, SeqNumber(seq), flags);
        repr.ack_number = SeqNumber(ack);
        repr.window_len = win;
        Spec {
            repr,
            payload: Vec::new(),
        }
    }

    /// A SYN with sequence number 0 (the ISN) and window `win`.
    pub fn syn(win: u16) -> Spec {
        Synth::seg(TcpFlags::SYN, 0, 0, win)
    }

    /// Write `spec` at `at_micros` after the start, in direction `c2s`.
    pub fn send(&mut self, at_micros: u64, c2s: bool, spec: Spec) {
        let (src, dst, base_s, base_d) = if c2s {
            (self.client, self.server, self.client_isn, self.server_isn)
        } else {
            (self.server, self.client, self.server_isn, self.client_isn)
        };
        let mut tcp = spec.repr;
        tcp.src_port = src.port();
        tcp.dst_port = dst.port();
        tcp.seq_number = SeqNumber(tcp.seq_number.0.wrapping_add(base_s));
        tcp.ack_number = if tcp.flags.ack() {
            SeqNumber(tcp.ack_number.0.wrapping_add(base_d))
        } else {
            SeqNumber(0)
        };
        for r in tcp.sack_ranges.iter_mut().flatten() {
            *r = (r.0.wrapping_add(base_d), r.1.wrapping_add(base_d));
        }
        tcp.payload = &spec.payload;
        let ip = Ipv4Repr {
            src_addr: *src.ip(),
            dst_addr: *dst.ip(),
            protocol: IpProtocol::Tcp,
            payload_len: 0,
            ttl: 64,
            ident: self.ident,
            dont_frag: true,
        };
        self.ident = self.ident.wrapping_add(1);
        let mut buf = vec![0u8; 20 + tcp.buffer_len()];
        let n = emit_ipv4_tcp(&mut buf, &ip, &tcp);
        buf.truncate(n);
        self.records
            .push((self.start + Duration::from_micros(at_micros), buf));
    }

    /// Add an arbitrary record (e.g. a malformed packet) at `at_micros`.
    pub fn raw(&mut self, at_micros: u64, packet: &[u8]) {
        self.records.push((
            self.start + Duration::from_micros(at_micros),
            packet.to_vec(),
        ));
    }

    /// The pcap file.
    pub fn finish(self) -> Vec<u8> {
        match self.framing {
            Framing::Raw => {
                // Writing to a Vec cannot fail.
                let mut w = match pcap::Writer::new(Vec::new()) {
                    Ok(w) => w,
                    Err(_) => return Vec::new(),
                };
                for (ts, p) in &self.records {
                    let _ = w.write_packet(*ts, p);
                }
                w.into_inner()
            }
            f => write_framed(f, &self.records),
        }
    }
}

fn write_framed(f: Framing, records: &[(Duration, Vec<u8>)]) -> Vec<u8> {
    let be = f == Framing::RawBigEndianNanos;
    let u32b = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let u16b = |v: u16| if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let (magic, link) = match f {
        Framing::Raw => (super::capture::MAGIC_MICROS, super::capture::LINKTYPE_RAW),
        Framing::RawBigEndianNanos => (super::capture::MAGIC_NANOS, super::capture::LINKTYPE_RAW),
        Framing::Ethernet => (
            super::capture::MAGIC_MICROS,
            super::capture::LINKTYPE_ETHERNET,
        ),
        Framing::LinuxSll => (
            super::capture::MAGIC_MICROS,
            super::capture::LINKTYPE_LINUX_SLL,
        ),
        Framing::LinuxSll2 => (
            super::capture::MAGIC_MICROS,
            super::capture::LINKTYPE_LINUX_SLL2,
        ),
    };
    let mut out = Vec::new();
    out.extend_from_slice(&u32b(magic));
    out.extend_from_slice(&u16b(2));
    out.extend_from_slice(&u16b(4));
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&u32b(262_144));
    out.extend_from_slice(&u32b(link));
    for (ts, p) in records {
        let mut frame = match f {
            Framing::Ethernet => {
                let mut h = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
                h.extend_from_slice(&0x0800u16.to_be_bytes());
                h
            }
            Framing::LinuxSll => {
                let mut h = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0];
                h.extend_from_slice(&0x0800u16.to_be_bytes());
                h
            }
            Framing::LinuxSll2 => {
                let mut h = 0x0800u16.to_be_bytes().to_vec();
                h.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
                h
            }
            _ => Vec::new(),
        };
        frame.extend_from_slice(p);
        let frac = if be {
            ts.subsec_nanos()
        } else {
            ts.subsec_micros()
        };
        out.extend_from_slice(&u32b(ts.as_secs() as u32));
        out.extend_from_slice(&u32b(frac));
        out.extend_from_slice(&u32b(frame.len() as u32));
        out.extend_from_slice(&u32b(frame.len() as u32));
        out.extend_from_slice(&frame);
    }
    out
}

/// A WebSocket frame (RFC 6455 section 5.2) with FIN set, for building
/// examples. `mask`: the client-to-server masking key.
pub fn ws_frame(opcode: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | (opcode & 0x0f)];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => f.push(m | n as u8),
        n if n <= 0xffff => {
            f.push(m | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(m | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(k) => {
            f.extend_from_slice(&k);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => f.extend_from_slice(payload),
    }
    f
}
