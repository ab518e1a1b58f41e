//! Fuzz target: packets into a Stack that has a listener and an established
//! connection with data in flight both ways.
//!
//! The input is split into packets at each 0xFF 0x00 marker pair; each
//! packet is fed to `handle_packet`, then timers run. When a packet parses
//! as IPv4 the checksums are left as they are (the fuzzer learns them
//! from the seed corpus); to reach TCP more often, the first byte of each
//! chunk chooses whether to fix the checksums up.
//!
//! Run: `cargo +nightly fuzz run packet_input` from the crate root
//! (needs `cargo install cargo-fuzz`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::{Ipv4Addr, SocketAddrV4};
use ustack::iface::{Config, Stack};
use ustack::time::{Duration, Instant};
use ustack::wire::{self, Ipv4Packet, Ipv4Repr, IpProtocol, SeqNumber, TcpFlags, TcpPacket, TcpRepr};

const US: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 9);

fn packet(flags: u8, seq: u32, ack: u32, payload: &[u8], syn_opts: bool) -> Vec<u8> {
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
    let ip = Ipv4Repr { src_addr: PEER, dst_addr: US, protocol: IpProtocol::Tcp, payload_len: 0, ttl: 64, ident: 1, dont_frag: true };
    let mut buf = vec![0u8; 20 + tcp.buffer_len()];
    let n = wire::emit_ipv4_tcp(&mut buf, &ip, &tcp);
    buf.truncate(n);
    buf
}

/// A stack with a listener on :80 and an established connection from
/// PEER:40000, built by scripted packets.
fn setup() -> (Stack, Instant) {
    let mut st = Stack::new(Config::new(US), 1);
    let l = st.listen(80, 16).unwrap();
    let mut buf = vec![0u8; 65536];
    let now = Instant::ZERO;
    st.handle_packet(now, &packet(0x02, 1000, 0, &[], true));
    let mut iss = 0;
    while let Some(n) = st.poll_transmit(now, &mut buf) {
        if let Ok(ip) = Ipv4Packet::new_checked(&buf[..n]) {
            if let Ok(t) = TcpPacket::new_checked(ip.payload()) {
                iss = t.seq_number().0;
            }
        }
    }
    st.handle_packet(now, &packet(0x10, 1001, iss.wrapping_add(1), b"hello", false));
    if let Some(h) = st.accept(l) {
        let _ = st.send(h, &[7u8; 20000]);
    }
    while st.poll_transmit(now, &mut buf).is_some() {}
    let _ = SocketAddrV4::new(PEER, 40000);
    (st, now)
}

fn fix_checksums(p: &mut [u8]) {
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

fuzz_target!(|data: &[u8]| {
    let (mut st, mut now) = setup();
    let mut buf = vec![0u8; 65536];
    for chunk in data.split(|&b| b == 0xFF) {
        let Some((&mode, rest)) = chunk.split_first() else { continue };
        let mut p = rest.to_vec();
        if mode & 1 == 1 {
            fix_checksums(&mut p);
        }
        now += Duration::from_millis(u64::from(mode >> 1));
        st.handle_packet(now, &p);
        st.handle_timeout(now);
        while st.poll_transmit(now, &mut buf).is_some() {}
    }
    // Let every timer run out.
    for _ in 0..10_000 {
        let Some(t) = st.poll_at() else { break };
        now = t.max(now);
        st.handle_timeout(now);
        while st.poll_transmit(now, &mut buf).is_some() {}
    }
    let s = st.stats();
    assert!(s.total_drops() <= s.packets_in);
});
