//! No input makes the stack panic, and every packet it refuses is counted
//! under a drop reason.
//!
//! The target: a stack with a listener on :80 and two established
//! connections (one idle, one with data in flight both ways). Inputs:
//! arbitrary bytes, and mutations of valid segments for those connections
//! (bit flips, truncation, field changes with the checksums fixed up so the
//! mutation reaches TCP).

mod common_sim;
use common_sim::script::*;
use proptest::prelude::*;
use ustack::wire::{Ipv4Packet, TcpPacket};

/// A stack with a listener and two established connections, and valid
/// segments for them.
fn target() -> (Script, Vec<Vec<u8>>) {
    let mut s = Script::passive(script_config());
    let h = s.accept_with(0, seg("S").seq(0).mss(1460).ws(7).sackp().ts(10, 0));
    s.stack.send(h, &[9u8; 5000]).unwrap();
    s.run_to(1);
    s.out.clear();
    let valid = vec![
        s.packet(&seg(".").seq(1).ack(1).ts(20, 0).len(100)),
        s.packet(&seg("P.").seq(101).ack(1461).ts(21, 0).len(1000)),
        s.packet(&seg("F.").seq(1101).ack(1).ts(22, 0)),
        s.packet(&seg("R").seq(1)),
        s.packet(&seg("S").seq(0).mss(536)),
        s.packet(&seg(".").seq(1).ack(1).sack(&[(1461, 2921)]).ts(23, 0)),
        s.packet(
            &seg("S")
                .seq(0)
                .sport(40001)
                .mss(1460)
                .ws(14)
                .sackp()
                .ts(1, 0),
        ),
    ];
    (s, valid)
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

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    SetByte(usize, u8),
    Extend(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        // Bias towards header fields: IP header 0..20, TCP header 20..60.
        (0usize..60, any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Mutation::Extend),
    ]
}

fn apply(p: &mut Vec<u8>, m: &Mutation) {
    match m {
        Mutation::Flip(i, b) if !p.is_empty() => {
            let i = i % p.len();
            p[i] ^= b;
        }
        Mutation::Truncate(n) if !p.is_empty() => p.truncate(n % p.len()),
        Mutation::SetByte(i, b) if *i < p.len() => p[*i] = *b,
        Mutation::Extend(v) => p.extend_from_slice(v),
        _ => {}
    }
}

/// Feed the inputs; check every input is either accepted or counted as a drop.
fn feed(s: &mut Script, inputs: &[(u64, Vec<u8>)]) {
    for (dt, p) in inputs {
        let before = s.stack.stats().packets_in;
        s.inject_raw(s.now.total_millis() + dt, p);
        assert_eq!(s.stack.stats().packets_in, before + 1);
        s.out.clear();
    }
    // Let every timer run out: the stack must wind down without panicking.
    let t = s.now.total_millis();
    s.run_to(t + 600_000);
    let st = s.stack.stats();
    assert!(st.total_drops() <= st.packets_in, "{st:?}");
    let counted: u64 = st.drop_table().map(|(_, n)| n).sum();
    assert_eq!(counted, st.total_drops());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(inputs in proptest::collection::vec((0u64..50, proptest::collection::vec(any::<u8>(), 0..120)), 1..20)) {
        let (mut s, _) = target();
        feed(&mut s, &inputs);
    }

    #[test]
    fn mutated_segments_never_panic(
        picks in proptest::collection::vec((0usize..7, proptest::collection::vec(mutation(), 1..4), any::<bool>(), 0u64..300), 1..30)
    ) {
        let (mut s, valid) = target();
        let inputs: Vec<(u64, Vec<u8>)> = picks
            .iter()
            .map(|(i, ms, fix, dt)| {
                let mut p = valid[*i].clone();
                for m in ms {
                    apply(&mut p, m);
                }
                if *fix {
                    fix_checksums(&mut p);
                }
                (*dt, p)
            })
            .collect();
        feed(&mut s, &inputs);
    }
}

#[test]
fn every_truncated_prefix_is_dropped_as_truncated_or_bad() {
    let (mut s, valid) = target();
    for p in &valid {
        for n in 0..p.len() {
            let before = s.stack.stats().total_drops();
            s.inject_raw(s.now.total_millis(), &p[..n]);
            assert_eq!(
                s.stack.stats().total_drops(),
                before + 1,
                "prefix of {n} bytes not counted as a drop"
            );
        }
    }
}
