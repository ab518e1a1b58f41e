//! The fuzz targets, shared by the cargo-fuzz binaries in `fuzz_targets/`
//! (libFuzzer, nightly Rust) and the stable, coverage-less driver
//! `examples/fuzz.rs` (`cargo run --release --example fuzz -- <target>`).
//!
//! Each target takes arbitrary bytes and must neither panic nor use memory
//! beyond the limits the code under test promises. Properties that can be
//! checked cheaply are asserted (an assertion failure is a finding, like a
//! panic).
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::sync::Arc;
use ustack::http::{Context, HttpConnection, ServerConfig};
use ustack::iface::{Config, Stack};
use ustack::tcp::{ListenerHandle, SocketHandle};
use ustack::time::{Duration, Instant};
use ustack::wire::{
    self, IpProtocol, Ipv4Packet, Ipv4Repr, SeqNumber, TcpFlags, TcpPacket, TcpRepr,
};
use ustack::ws::deflate::{DeflateCodec, DeflateParams};
use ustack::ws::{WsConfig, WsConnection, WsEvent};

/// Names of all targets, for the driver.
pub const TARGETS: &[&str] = &["packet", "http", "ws", "deflate"];

/// Run `target` on one input. Unknown names return false.
pub fn run(target: &str, data: &[u8]) -> bool {
    match target {
        "packet" => packet_input(data),
        "http" => http_input(data),
        "ws" => ws_input(data),
        "deflate" => deflate_input(data),
        _ => return false,
    }
    true
}

// ------------------------------------------------------------------ packet

pub const US: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 9);

/// A TCP segment from PEER:40000 to US:80.
pub fn tcp_packet(flags: u8, seq: u32, ack: u32, payload: &[u8], syn_opts: bool) -> Vec<u8> {
    let mut tcp = TcpRepr::new(40000, 80, SeqNumber(seq), TcpFlags(flags));
    tcp.ack_number = SeqNumber(ack);
    tcp.window_len = 65535;
    tcp.payload = payload;
    if syn_opts {
        tcp.max_seg_size = Some(1460);
        tcp.window_scale = Some(7);
        tcp.sack_permitted = true;
        tcp.timestamp = Some((1, 0));
    }
    let ip = Ipv4Repr {
        src_addr: PEER,
        dst_addr: US,
        protocol: IpProtocol::Tcp,
        payload_len: 0,
        ttl: 64,
        ident: 1,
        dont_frag: true,
    };
    let mut buf = vec![0u8; 20 + tcp.buffer_len()];
    let n = wire::emit_ipv4_tcp(&mut buf, &ip, &tcp);
    buf.truncate(n);
    buf
}

/// A stack with a listener on :80 (backlog 4, so SYN floods in the input
/// reach the SYN-cookie path) and an established connection from
/// PEER:40000 with data in flight both ways. Returns the stack, our ISS,
/// the listener and the connection's handle.
pub fn established_stack() -> (Stack, u32, ListenerHandle, Option<SocketHandle>) {
    let mut st = Stack::new(Config::new(US), 1);
    let l = st.listen(80, 4).expect("listen");
    let mut buf = vec![0u8; 65536];
    let now = Instant::ZERO;
    st.handle_packet(now, &tcp_packet(0x02, 1000, 0, &[], true));
    let mut iss = 0;
    while let Some(n) = st.poll_transmit(now, &mut buf) {
        if let Ok(ip) = Ipv4Packet::new_checked(&buf[..n]) {
            if let Ok(t) = TcpPacket::new_checked(ip.payload()) {
                iss = t.seq_number().0;
            }
        }
    }
    st.handle_packet(
        now,
        &tcp_packet(0x10, 1001, iss.wrapping_add(1), b"hello", false),
    );
    let h = st.accept(l);
    if let Some(h) = h {
        let _ = st.send(h, &[7u8; 20000]);
    }
    while st.poll_transmit(now, &mut buf).is_some() {}
    (st, iss, l, h)
}

/// Recompute the IPv4 and TCP checksums of a packet (if it parses that far).
pub fn fix_checksums(p: &mut [u8]) {
    if let Ok(mut ip) = Ipv4Packet::new_checked(&mut *p) {
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        ip.fill_checksum();
        let hl = ip.header_len();
        let total = (ip.total_len() as usize).min(p.len());
        if hl <= total {
            if let Ok(mut tcp) = TcpPacket::new_checked(&mut p[hl..total]) {
                tcp.fill_checksum(src, dst);
            }
        }
    }
}

/// Packets into a stack with an established connection.
///
/// The input is a sequence of records `[mode, len_hi, len_lo, bytes...]`:
/// bit 0 of `mode` = fix the checksums up (so mutations get past them),
/// bits 1..7 = milliseconds to advance the clock before the packet; a
/// `mode` of 0xF0 or more also trims the stack's tables after the packet
/// (`Stack::trim_memory` must change nothing the stack does).
pub fn packet_input(data: &[u8]) {
    let (mut st, _, l, h) = established_stack();
    let mut now = Instant::ZERO;
    let mut rx = vec![0u8; 4096];
    let mut buf = vec![0u8; 65536];
    let mut rest = data;
    while rest.len() >= 3 {
        let mode = rest[0];
        let len = (usize::from(rest[1]) << 8 | usize::from(rest[2])).min(rest.len() - 3);
        let mut p = rest[3..3 + len].to_vec();
        rest = &rest[3 + len..];
        if mode & 1 == 1 {
            fix_checksums(&mut p);
        }
        now += Duration::from_millis(u64::from(mode >> 1));
        st.handle_packet(now, &p);
        st.handle_timeout(now);
        // The application: read what the first connection received, and
        // accept and close (gracefully) whatever else connects.
        if let Some(h) = h {
            while matches!(st.recv(h, &mut rx), Ok(n) if n > 0) {}
        }
        while let Some(c) = st.accept(l) {
            st.close(c);
        }
        while st.poll_transmit(now, &mut buf).is_some() {}
        if mode >= 0xF0 {
            st.trim_memory();
        }
    }
    if let Some(h) = h {
        st.close(h);
    }
    // Let every timer run out: every connection must end and be freed.
    for _ in 0..100_000 {
        let Some(t) = st.poll_at() else { break };
        now = t.max(now + Duration::from_millis(1));
        st.handle_timeout(now);
        while st.poll_transmit(now, &mut buf).is_some() {}
    }
    let s = st.stats();
    assert!(s.total_drops() <= s.packets_in, "more drops than packets");
    // The established connection's handle is held by nobody (accept was
    // called, the handle dropped): everything else must be gone.
    // Every connection was accepted and closed: once all timers ran out
    // nothing may be left (no leak, whatever the input).
    while let Some(c) = st.accept(l) {
        st.close(c);
    }
    let left: Vec<String> = st
        .connections()
        .iter()
        .map(|c| format!("{} {}", c.remote, c.state))
        .collect();
    assert!(
        left.is_empty(),
        "connections left after all timers ran out: {left:?} (next timer {:?}, now {now:?})",
        st.poll_at()
    );
    // With nothing left, trimming gives back (nearly) all table memory.
    st.trim_memory();
    assert!(
        st.table_bytes() <= 1024,
        "tables hold {} bytes with no connection after trim_memory",
        st.table_bytes()
    );
}

// -------------------------------------------------------------------- http

struct Ctx;

impl Context for Ctx {
    fn stats_json(&mut self) -> String {
        "{}".into()
    }
    fn websocket_route(&self, path: &str) -> bool {
        path == "/ws/echo"
    }
}

/// Bytes into one HTTP connection, in pieces: each 0xFE byte ends a piece;
/// between pieces the output is drained (in small bites when the piece's
/// first byte is odd) and the clock advances a second.
pub fn http_input(data: &[u8]) {
    let cfg = Arc::new(ServerConfig::default());
    let limit = cfg.limits.input_buffer();
    let mut now = Instant::ZERO;
    let mut hc = HttpConnection::new(now, cfg);
    let mut ctx = Ctx;
    let mut out = vec![0u8; 16 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let mut total_out = 0usize;
    for piece in data.split(|&b| b == 0xFE) {
        pending.extend_from_slice(piece);
        let n = hc.handle_input(now, &pending, &mut ctx);
        assert!(n <= pending.len(), "consumed more than given");
        pending.drain(..n);
        let bite = if piece.first().is_some_and(|b| b & 1 == 1) {
            7
        } else {
            out.len()
        };
        for _ in 0..64 {
            let k = hc.poll_output(now, &mut out[..bite], &mut ctx);
            total_out += k;
            if k == 0 {
                break;
            }
        }
        // A client that never reads output cannot make us buffer unbounded
        // input: what the codec did not take stays with the caller (TCP).
        assert!(pending.len() <= data.len());
        let _ = hc.take_upgrade();
        now += Duration::from_secs(1);
        hc.handle_timeout(now);
    }
    hc.handle_eof(now);
    for _ in 0..1024 {
        if hc.poll_output(now, &mut out, &mut ctx) == 0 {
            break;
        }
    }
    now += Duration::from_secs(120);
    hc.handle_timeout(now);
    let _ = (limit, total_out, hc.wants_close(), hc.poll_at());
}

// ---------------------------------------------------------------------- ws

/// The limits the WebSocket targets run with (small, so bombs hit them fast).
pub fn ws_config() -> WsConfig {
    WsConfig {
        max_frame: 64 * 1024,
        max_message: 256 * 1024,
        max_output_buffer: 256 * 1024,
        ..WsConfig::default()
    }
}

/// Bytes into a WebSocket connection (frame decoder, message assembler,
/// UTF-8 validation, permessage-deflate when the first byte is odd), in
/// pieces split at 0xFE 0xFE; events are drained and echoed back.
pub fn ws_input(data: &[u8]) {
    let cfg = ws_config();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let deflate = (mode & 1 == 1).then(|| DeflateParams {
        client_no_context_takeover: mode & 2 != 0,
        ..DeflateParams::default()
    });
    let mut now = Instant::ZERO;
    let mut ws = WsConnection::new(now, &cfg, deflate);
    let mut out = vec![0u8; 64 * 1024];
    let mut pieces = 0;
    let mut i = 0;
    while i <= rest.len() {
        let end = rest[i..]
            .windows(2)
            .position(|w| w == [0xFE, 0xFE])
            .map_or(rest.len(), |p| i + p);
        ws.handle_input(now, &rest[i..end]);
        pieces += 1;
        while let Some(ev) = ws.poll_event() {
            match ev {
                WsEvent::Message(m) => {
                    assert!(
                        m.len() <= cfg.max_message,
                        "message over max_message: {}",
                        m.len()
                    );
                    let _ = ws.send(m);
                }
                WsEvent::Closed { .. } => {}
                WsEvent::Error(_) | WsEvent::Pong(_) => {}
            }
        }
        while ws.poll_output(&mut out) > 0 {}
        now += Duration::from_millis(500);
        ws.handle_timeout(now);
        i = end + 2;
        if pieces > 10_000 {
            break;
        }
    }
    ws.handle_eof(now);
    now += Duration::from_secs(60);
    ws.handle_timeout(now);
    while ws.poll_event().is_some() {}
    let _ = (ws.wants_tcp_close(), ws.is_closing(), ws.poll_at());
}

/// Raw permessage-deflate inflation: arbitrary bytes as the compressed
/// payload of messages (split at 0xFE 0xFE), each finished with the
/// section 7.2.2 trailer. Output must never exceed the limit, whatever the
/// ratio (a decompression bomb hits `MessageTooLarge`, not memory).
pub fn deflate_input(data: &[u8]) {
    const MAX: usize = 256 * 1024;
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut codec = DeflateCodec::new(DeflateParams {
        client_no_context_takeover: mode & 1 == 1,
        ..DeflateParams::default()
    });
    let mut i = 0;
    while i <= rest.len() {
        let end = rest[i..]
            .windows(2)
            .position(|w| w == [0xFE, 0xFE])
            .map_or(rest.len(), |p| i + p);
        let mut out = Vec::new();
        let msg = &rest[i..end];
        // Feed in two pieces, as frames would.
        let cut = msg.len() / 2;
        let r = codec
            .decompress_chunk(&msg[..cut], &mut out, MAX)
            .and_then(|_| codec.decompress_chunk(&msg[cut..], &mut out, MAX))
            .and_then(|_| codec.finish_message(&mut out, MAX));
        assert!(out.len() <= MAX + 1, "inflated {} > limit", out.len());
        assert!(
            out.capacity() <= 2 * (MAX + 1) + 64 * 1024,
            "allocated {} for a {MAX} limit",
            out.capacity()
        );
        if r.is_err() {
            // After an error the connection is closed; a fresh codec goes on.
            codec = DeflateCodec::new(DeflateParams::default());
        }
        i = end + 2;
    }
}
