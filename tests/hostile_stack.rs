//! The listener's defences and the resource limits, driven packet by
//! packet (no TUN, no root): SYN cookies (RFC 4987), the half-open and
//! memory limits, the retransmission limit.

use std::net::Ipv4Addr;
use ustack::iface::{Config, DropReason, Stack};
use ustack::tcp::{Readiness, TcpError};
use ustack::time::{Duration, Instant};
use ustack::wire::{
    self, IpProtocol, Ipv4Packet, Ipv4Repr, SeqNumber, TcpFlags, TcpPacket, TcpRepr,
};

const US: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const RST: u8 = 0x04;

struct Seg {
    sport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    window: u16,
    opts: bool,
    ts: Option<(u32, u32)>,
    payload: Vec<u8>,
}

impl Seg {
    fn new(sport: u16, flags: u8, seq: u32, ack: u32) -> Seg {
        Seg {
            sport,
            flags,
            seq,
            ack,
            window: 65535,
            opts: false,
            ts: None,
            payload: Vec::new(),
        }
    }
    fn bytes(&self) -> Vec<u8> {
        let mut tcp = TcpRepr::new(self.sport, 80, SeqNumber(self.seq), TcpFlags(self.flags));
        tcp.ack_number = SeqNumber(self.ack);
        tcp.window_len = self.window;
        tcp.payload = &self.payload;
        if self.opts {
            tcp.max_seg_size = Some(1460);
            tcp.window_scale = Some(7);
            tcp.sack_permitted = true;
        }
        tcp.timestamp = self.ts;
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
}

/// What came out: (flags, seq, ack, window, mss, wscale, sack, ts).
#[derive(Debug, Clone)]
struct Out {
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    window: u16,
    mss: Option<u16>,
    wscale: Option<u8>,
    sack: bool,
    ts: Option<(u32, u32)>,
}

fn drain(st: &mut Stack, now: Instant) -> Vec<Out> {
    let mut buf = vec![0u8; 65536];
    let mut out = Vec::new();
    while let Some(n) = st.poll_transmit(now, &mut buf) {
        let ip = Ipv4Packet::new_checked(&buf[..n]).unwrap();
        let t = TcpPacket::new_checked(ip.payload()).unwrap();
        let r = TcpRepr::parse(&t, ip.src_addr(), ip.dst_addr(), true).unwrap();
        out.push(Out {
            dport: r.dst_port,
            flags: r.flags.0,
            seq: r.seq_number.0,
            ack: r.ack_number.0,
            window: r.window_len,
            mss: r.max_seg_size,
            wscale: r.window_scale,
            sack: r.sack_permitted,
            ts: r.timestamp,
        });
    }
    out
}

fn stack(backlog: usize, f: impl FnOnce(&mut Config)) -> (Stack, ustack::tcp::ListenerHandle) {
    let mut c = Config::new(US);
    f(&mut c);
    let mut st = Stack::new(c, 7);
    let l = st.listen(80, backlog).unwrap();
    (st, l)
}

#[test]
fn full_half_open_queue_answers_with_cookies_that_complete_the_handshake() {
    let (mut st, l) = stack(2, |_| {});
    let now = Instant::from_secs(100);
    for p in 0..10u16 {
        let mut s = Seg::new(1000 + p, SYN, 5000 + p as u32 * 1000, 0);
        s.opts = true;
        s.ts = Some((777, 0));
        st.handle_packet(now, &s.bytes());
    }
    let out = drain(&mut st, now);
    assert_eq!(out.len(), 10, "every SYN is answered: {out:?}");
    assert_eq!(st.stats().tcp_syn_cookies_sent, 8);
    assert_eq!(st.half_open_count(), 2);
    assert_eq!(st.connection_count(), 2, "no state for the cookie SYNs");
    // The client on port 1009 completes with the cookie (+ data).
    let synack = out.iter().find(|o| o.dport == 1009).unwrap().clone();
    assert_eq!(synack.flags, SYN | ACK);
    assert_eq!(synack.ack, 5000 + 9 * 1000 + 1);
    assert_eq!(synack.mss, Some(1460));
    assert!(
        synack.wscale.is_some(),
        "window scaling kept via the timestamp"
    );
    assert!(synack.sack);
    let (tsval, tsecr) = synack.ts.expect("timestamp");
    assert_eq!(tsecr, 777);
    let later = now + Duration::from_millis(30);
    let mut ack = Seg::new(1009, ACK, 5000 + 9 * 1000 + 1, synack.seq.wrapping_add(1));
    ack.ts = Some((800, tsval));
    ack.window = 1000; // scaled by 7: 128000 bytes
    ack.payload = b"GET".to_vec();
    st.handle_packet(later, &ack.bytes());
    assert_eq!(st.stats().tcp_syn_cookies_accepted, 1);
    let h = st
        .accept(l)
        .expect("the cookie connection is in the accept queue");
    let mut buf = [0u8; 10];
    assert_eq!(st.recv(h, &mut buf), Ok(3));
    assert_eq!(&buf[..3], b"GET");
    let info = st.info(h).unwrap();
    assert_eq!(info.mss, 1460, "MSS from the cookie");
    assert_eq!(
        info.send_window,
        1000 << 7,
        "window scale restored from the TSecr"
    );
    // Our next timestamps do not go back (the peer's PAWS).
    st.send(h, b"hello").unwrap();
    let out = drain(&mut st, later);
    let data = out.iter().find(|o| o.dport == 1009).unwrap();
    let (our_ts, _) = data.ts.unwrap();
    assert!(
        our_ts.wrapping_sub(tsval) < 1 << 31,
        "TSval went back: {our_ts} < {tsval}"
    );
}

#[test]
fn forged_or_stale_cookie_gets_rst_and_no_connection() {
    let (mut st, l) = stack(1, |_| {});
    let now = Instant::from_secs(100);
    st.handle_packet(now, &Seg::new(1000, SYN, 1, 0).bytes());
    st.handle_packet(now, &Seg::new(1001, SYN, 100, 0).bytes());
    let out = drain(&mut st, now);
    let cookie = out.iter().find(|o| o.dport == 1001).unwrap().seq;
    assert_eq!(st.stats().tcp_syn_cookies_sent, 1);
    // Wrong cookie: RST.
    st.handle_packet(
        now,
        &Seg::new(1001, ACK, 101, cookie.wrapping_add(2)).bytes(),
    );
    // Right cookie, wrong client ISN.
    st.handle_packet(
        now,
        &Seg::new(1001, ACK, 102, cookie.wrapping_add(1)).bytes(),
    );
    // Right cookie, too late (more than two 64 s periods).
    st.handle_packet(
        now + Duration::from_secs(200),
        &Seg::new(1001, ACK, 101, cookie.wrapping_add(1)).bytes(),
    );
    let out = drain(&mut st, now);
    assert_eq!(
        out.iter().filter(|o| o.flags & RST != 0).count(),
        3,
        "{out:?}"
    );
    assert_eq!(st.stats().tcp_syn_cookies_accepted, 0);
    assert!(st.accept(l).is_none());
    // Without timestamps: no window scaling, no SACK; the MSS is rounded down.
    let mut s = Seg::new(1002, SYN, 500, 0);
    s.opts = true;
    st.handle_packet(now, &s.bytes());
    let o = drain(&mut st, now).pop().unwrap();
    assert_eq!((o.wscale, o.sack, o.ts), (None, false, None));
    st.handle_packet(
        now,
        &Seg::new(1002, ACK, 501, o.seq.wrapping_add(1)).bytes(),
    );
    let h = st.accept(l).expect("cookie without timestamps");
    assert_eq!(st.info(h).unwrap().mss, 1460);
}

#[test]
fn without_cookies_a_full_half_open_queue_drops_and_counts() {
    let (mut st, _) = stack(2, |c| c.syn_cookies = false);
    let now = Instant::from_secs(1);
    for p in 0..5 {
        st.handle_packet(now, &Seg::new(2000 + p, SYN, 1, 0).bytes());
    }
    assert_eq!(drain(&mut st, now).len(), 2);
    assert_eq!(st.stats().drops(DropReason::TcpHalfOpenFull), 3);
}

#[test]
fn global_half_open_limit_applies_across_listeners() {
    let (mut st, _) = stack(100, |c| c.max_half_open = 3);
    let now = Instant::from_secs(1);
    for p in 0..6 {
        st.handle_packet(now, &Seg::new(3000 + p, SYN, 1, 0).bytes());
    }
    assert_eq!(st.half_open_count(), 3);
    assert_eq!(st.stats().tcp_syn_cookies_sent, 3);
}

/// Over the buffer budget: new connections are refused (and counted),
/// existing ones keep working, and the window never moves its right edge left.
#[test]
fn memory_budget_refuses_new_connections_and_keeps_old_ones() {
    let (mut st, l) = stack(16, |c| {
        c.max_buffer_memory = 64 * 1024;
        c.tcp.recv_buffer = 256 * 1024;
    });
    let now = Instant::from_secs(1);
    st.handle_packet(now, &Seg::new(4000, SYN, 10, 0).bytes());
    let synack = drain(&mut st, now).pop().unwrap();
    let iss1 = synack.seq.wrapping_add(1);
    st.handle_packet(now, &Seg::new(4000, ACK, 11, iss1).bytes());
    let h = st.accept(l).unwrap();
    // Fill 100 kB of receive buffer (the app does not read).
    let mut seq = 11u32;
    let mut last_edge = 0u32;
    for _ in 0..100 {
        let mut s = Seg::new(4000, ACK, seq, iss1);
        s.payload = vec![b'a'; 1000];
        st.handle_packet(now, &s.bytes());
        seq += 1000;
        // The right edge we advertise (no window scaling here) never
        // moves left, even when the budget makes the window shrink.
        for o in drain(&mut st, now) {
            let edge = o.ack.wrapping_add(o.window as u32);
            assert!(
                last_edge == 0 || edge.wrapping_sub(last_edge) < 1 << 31,
                "right edge moved left"
            );
            last_edge = edge;
        }
    }
    assert!(
        st.buffer_memory() >= 64 * 1024,
        "buffer memory {}",
        st.buffer_memory()
    );
    // Under pressure the window offers only allocated space: far less than
    // the 156 kB the buffer's capacity would allow.
    let offered = last_edge.wrapping_sub(seq);
    assert!(
        offered <= 64 * 1024,
        "window {offered} under memory pressure"
    );
    // A new connection is refused now.
    st.handle_packet(now, &Seg::new(4001, SYN, 10, 0).bytes());
    assert!(drain(&mut st, now).is_empty());
    assert_eq!(st.stats().drops(DropReason::TcpMemoryBudget), 1);
    // The old one still works: reading frees memory, and it goes on.
    let mut buf = vec![0u8; 200_000];
    let n = st.recv(h, &mut buf).unwrap();
    assert_eq!(n, 100_000);
    assert!(st.buffer_memory() < 64 * 1024);
    st.handle_packet(now, &Seg::new(4001, SYN, 10, 0).bytes());
    // The output also holds the old connection's window update (reading
    // 100 kB opened its window); the new SYN must get exactly one SYN-ACK.
    let out = drain(&mut st, now);
    let syn_acks = out
        .iter()
        .filter(|o| o.dport == 4001 && o.flags & SYN != 0)
        .count();
    assert_eq!(syn_acks, 1, "accepted again once under budget: {out:?}");
    assert_eq!(st.stats().drops(DropReason::TcpMemoryBudget), 1);
}

/// With max_retries = 2, a peer that never answers gets the connection
/// aborted with TimedOut after 3 transmissions of the segment.
#[test]
fn retransmission_limit_times_out() {
    let (mut st, l) = stack(16, |c| c.tcp.max_retries = 2);
    let mut now = Instant::from_secs(1);
    st.handle_packet(now, &Seg::new(5000, SYN, 10, 0).bytes());
    let synack = drain(&mut st, now).pop().unwrap();
    st.handle_packet(
        now,
        &Seg::new(5000, ACK, 11, synack.seq.wrapping_add(1)).bytes(),
    );
    let h = st.accept(l).unwrap();
    st.send(h, b"nobody listens").unwrap();
    let mut sent = drain(&mut st, now).len();
    for _ in 0..100 {
        let Some(t) = st.poll_at() else { break };
        now = t;
        st.handle_timeout(now);
        sent += drain(&mut st, now).len();
    }
    let r: Readiness = st.readiness(h);
    assert!(r.closed);
    assert_eq!(r.error, Some(TcpError::TimedOut));
    assert_eq!(
        sent,
        1 + 2 + 1,
        "original, 2 retransmissions, then the RST: {sent}"
    );
    st.close(h);
    assert_eq!(st.connection_count(), 0);
}
