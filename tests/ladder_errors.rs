//! Every way `ustack ladder` input can be wrong gives a one-line error (and
//! a non-zero exit from the CLI), never a panic; malformed packets inside a
//! good capture are skipped and counted.

use proptest::prelude::*;
use std::path::PathBuf;
use std::process::Command;
use ustack::ladder::synth::{Synth, C2S, S2C};
use ustack::ladder::{self, LadderError, Select};
use ustack::wire::TcpFlags;

fn small_pcap() -> Vec<u8> {
    let mut s = Synth::new(
        "10.0.0.1:40000".parse().unwrap(),
        "10.0.0.2:80".parse().unwrap(),
    );
    s.send(0, C2S, Synth::syn(64240).with_syn_options(7));
    s.send(50, S2C, Synth::syn(65535).with_syn_options(7).with_ack(1));
    s.send(70, C2S, Synth::seg(TcpFlags::ACK, 1, 1, 502));
    s.finish()
}

fn load(b: &[u8]) -> Result<ladder::Trace, LadderError> {
    ladder::load(b)
}

#[test]
fn empty_file() {
    assert!(matches!(load(b""), Err(LadderError::Empty)));
}

#[test]
fn not_a_pcap() {
    let e = load(b"<html>hello</html> and more bytes...").unwrap_err();
    assert!(matches!(e, LadderError::NotPcap(0x6d74683c)), "{e:?}");
    assert_eq!(e.to_string(), "not a pcap file (first bytes 0x6d74683c)");
}

#[test]
fn pcapng_suggests_tshark() {
    let mut ng = vec![
        0x0a, 0x0d, 0x0d, 0x0a, 0x1c, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a,
    ];
    ng.resize(28, 0);
    let e = load(&ng).unwrap_err();
    assert!(matches!(e, LadderError::Pcapng));
    assert!(e.to_string().contains("tshark -F pcap"));
}

#[test]
fn every_truncated_prefix_is_an_error_or_fewer_records() {
    let full = small_pcap();
    // Record boundaries: 24, then each record is 16 + packet length.
    let mut bounds = vec![24usize];
    let t = load(&full).unwrap();
    assert_eq!(t.records, 3);
    let mut off = 24;
    while off < full.len() {
        let caplen = u32::from_le_bytes(full[off + 8..off + 12].try_into().unwrap()) as usize;
        off += 16 + caplen;
        bounds.push(off);
    }
    for cut in 0..full.len() {
        let r = load(&full[..cut]);
        match cut {
            0 => assert!(matches!(r, Err(LadderError::Empty))),
            1..=23 => assert!(matches!(r, Err(LadderError::TruncatedHeader)), "cut {cut}"),
            c if bounds.contains(&c) => {
                let n = bounds.iter().position(|&b| b == c).unwrap();
                assert_eq!(r.unwrap().records, n, "cut {cut}");
            }
            _ => {
                let e = r.unwrap_err();
                assert!(
                    matches!(e, LadderError::TruncatedRecord { .. }),
                    "cut {cut}: {e:?}"
                );
                assert!(!e.to_string().contains('\n'));
            }
        }
    }
}

#[test]
fn unsupported_link_type() {
    let mut b = small_pcap();
    b[20] = 105; // IEEE 802.11
    let e = load(&b).unwrap_err();
    assert!(matches!(e, LadderError::UnsupportedLinkType(105)));
}

#[test]
fn record_longer_than_limit() {
    let mut b = small_pcap();
    b[24 + 8..24 + 12].copy_from_slice(&1_000_000u32.to_le_bytes());
    let e = load(&b).unwrap_err();
    assert!(
        matches!(
            e,
            LadderError::RecordTooLong {
                index: 0,
                offset: 24,
                len: 1_000_000
            }
        ),
        "{e:?}"
    );
}

#[test]
fn no_tcp_connection() {
    // Only garbage and an ICMP packet.
    let mut s = Synth::new("10.0.0.1:1".parse().unwrap(), "10.0.0.2:2".parse().unwrap());
    s.raw(0, &[0x45, 0, 0, 5]);
    let mut icmp = vec![
        0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    icmp.extend_from_slice(&[8, 0, 0, 0, 0, 0, 0, 0]);
    s.raw(1, &icmp);
    let t = load(&s.finish()).unwrap();
    let e = t.select(Select::First).unwrap_err();
    assert_eq!(
        e.to_string(),
        "no TCP connection found in the capture (2 records; skipped: 1 malformed packets, 1 non-TCP packets)"
    );
    let t =
        load(&Synth::new("10.0.0.1:1".parse().unwrap(), "10.0.0.2:2".parse().unwrap()).finish())
            .unwrap();
    assert!(matches!(
        t.select(Select::First),
        Err(LadderError::NoTcp(_))
    ));
}

#[test]
fn conn_out_of_range_and_unknown_port() {
    let t = load(&small_pcap()).unwrap();
    assert_eq!(t.select(Select::Index(0)).unwrap(), 0);
    assert_eq!(t.select(Select::Port(80)).unwrap(), 0);
    assert_eq!(t.select(Select::Port(40000)).unwrap(), 0);
    let e = t.select(Select::Index(1)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "--conn 1 is out of range: the capture has 1 connection(s), numbered 0 to 0"
    );
    assert!(matches!(
        t.select(Select::Port(443)),
        Err(LadderError::NoSuchPort(443))
    ));
}

#[test]
fn malformed_packets_inside_are_skipped_and_counted() {
    let mut s = Synth::new(
        "10.0.0.1:40000".parse().unwrap(),
        "10.0.0.2:80".parse().unwrap(),
    );
    s.send(0, C2S, Synth::syn(64240));
    // IP total length beyond the captured bytes, short IP header, IHL < 5, TCP data offset < 5, a TCP
    // option running past the header, an IPv6 packet, an IP fragment.
    let mut long = vec![
        0x45, 0, 0x03, 0xe8, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    long.resize(40, 0);
    s.raw(10, &long);
    s.raw(11, &[0x45, 0, 0]);
    let mut p = vec![
        0x44, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    p.resize(40, 0);
    s.raw(12, &p);
    let mut tcp_bad = vec![
        0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    tcp_bad.extend_from_slice(&[
        0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x20, 2, 0, 0, 0, 0, 0, 0,
    ]);
    s.raw(13, &tcp_bad);
    let mut opt_bad = vec![
        0x45, 0, 0, 44, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    opt_bad.extend_from_slice(&[
        0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x60, 2, 0, 0, 0, 0, 0, 0,
    ]);
    opt_bad.extend_from_slice(&[2, 9, 0, 0]);
    s.raw(14, &opt_bad);
    s.raw(15, &[0x60, 0, 0, 0, 0, 0, 6, 64]);
    let mut frag = vec![
        0x45, 0, 0, 28, 0, 0, 0x20, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    frag.resize(28, 0);
    s.raw(16, &frag);
    s.send(50, S2C, Synth::syn(65535).with_ack(1));
    let t = load(&s.finish()).unwrap();
    assert_eq!(t.connections.len(), 1);
    assert_eq!(t.connections[0].segments.len(), 2);
    assert_eq!(t.skipped.malformed, 5);
    assert_eq!(t.skipped.not_ipv4, 1);
    assert_eq!(t.skipped.fragments, 1);
    let text = ladder::text::render(&t, 0, 200);
    assert!(
        text.contains("skipped: 5 malformed packets, 1 non-IPv4 frames, 1 IP fragments"),
        "{text}"
    );
    assert!(ladder::svg::render(&t, 0, 200).contains("skipped: 5 malformed packets"));
}

#[test]
fn snaplen_cut_packets_keep_their_wire_length() {
    let mut s = Synth::new(
        "10.0.0.1:40000".parse().unwrap(),
        "10.0.0.2:80".parse().unwrap(),
    );
    s.send(
        0,
        C2S,
        Synth::seg(TcpFlags::ACK, 1, 1, 502).with_payload(&[7u8; 500]),
    );
    let mut b = s.finish();
    // Cut the record to 96 bytes of 540 (tcpdump -s 96), keep orig_len.
    b[24 + 8..24 + 12].copy_from_slice(&96u32.to_le_bytes());
    b.truncate(24 + 16 + 96);
    let t = load(&b).unwrap();
    assert_eq!(t.connections[0].segments[0].len, 500);
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ustack"))
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ladder-err-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Run `ustack ladder ARGS`, expect failure with one line on stderr
/// containing `want`.
fn cli_fails(args: &[&str], want: &str) {
    let out = bin().arg("ladder").args(args).output().unwrap();
    assert!(!out.status.success(), "{args:?} succeeded");
    assert_eq!(out.status.code(), Some(1), "{args:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    assert!(
        err.starts_with("ustack ladder: error: ") && err.contains(want),
        "{args:?}: {err}"
    );
}

#[test]
fn cli_errors_are_one_line_and_exit_1() {
    let d = tmpdir("cli");
    let write = |name: &str, b: &[u8]| {
        let p = d.join(name);
        std::fs::write(&p, b).unwrap();
        p.to_str().unwrap().to_string()
    };
    cli_fails(&[d.join("missing.pcap").to_str().unwrap()], "cannot open");
    cli_fails(&[&write("empty.pcap", b"")], "empty");
    cli_fails(
        &[&write("text.pcap", b"hello, this is not a capture")],
        "not a pcap file",
    );
    let good = small_pcap();
    cli_fails(
        &[&write("trunc.pcap", &good[..good.len() - 3])],
        "record 2 at byte",
    );
    cli_fails(&[&write("hdr.pcap", &good[..10])], "24-byte pcap header");
    let good_path = write("good.pcap", &good);
    cli_fails(&[&good_path, "--conn", "3"], "--conn 3 is out of range");
    cli_fails(
        &[&good_path, "--port", "443"],
        "no TCP connection uses port 443",
    );
    cli_fails(
        &[
            &good_path,
            "--svg",
            d.join("no/such/dir/x.svg").to_str().unwrap(),
        ],
        "cannot write",
    );
    let empty_capture =
        Synth::new("10.0.0.1:1".parse().unwrap(), "10.0.0.2:2".parse().unwrap()).finish();
    cli_fails(
        &[&write("none.pcap", &empty_capture)],
        "no TCP connection found",
    );
    let _ = std::fs::remove_dir_all(&d);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary bytes after a valid header never panic, and whatever
    /// loads renders.
    #[test]
    fn random_records_never_panic(link in prop::sample::select(vec![0u32, 1, 101, 108, 113, 228, 276]),
                                  body in prop::collection::vec(any::<u8>(), 0..600)) {
        let mut b = small_pcap()[..24].to_vec();
        b[20..24].copy_from_slice(&link.to_le_bytes());
        b.extend_from_slice(&body);
        if let Ok(t) = ladder::load(&b[..]) {
            if let Ok(i) = t.select(Select::First) {
                let _ = ladder::text::render(&t, i, 50);
                let _ = ladder::svg::render(&t, i, 50);
            }
        }
    }

    /// Flipping bytes of a valid capture never panics.
    #[test]
    fn mutated_capture_never_panics(flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut b = small_pcap();
        let n = b.len();
        for (i, v) in flips {
            b[i.index(n)] = v;
        }
        if let Ok(t) = ladder::load(&b[..]) {
            for i in 0..t.connections.len() {
                let _ = ladder::text::render(&t, i, 50);
                let _ = ladder::svg::render(&t, i, 50);
            }
        }
    }

    /// Arbitrary TCP segments (random flags, numbers, windows, payloads)
    /// through the analysis and both renderers.
    #[test]
    fn random_segments_never_panic(segs in prop::collection::vec(
        (any::<bool>(), any::<u8>(), any::<u32>(), any::<u32>(), any::<u16>(), prop::collection::vec(any::<u8>(), 0..40)), 1..30)) {
        let mut s = Synth::new("10.0.0.1:40000".parse().unwrap(), "10.0.0.2:80".parse().unwrap());
        for (i, (dir, flags, seq, ack, win, payload)) in segs.iter().enumerate() {
            let mut spec = Synth::seg(TcpFlags(*flags), *seq, *ack, *win);
            spec.payload = payload.clone();
            s.send(i as u64 * 1000, *dir, spec);
        }
        let t = ladder::load(&s.finish()[..]).unwrap();
        for i in 0..t.connections.len() {
            let _ = ladder::text::render(&t, i, 50);
            let _ = ladder::svg::render(&t, i, 50);
        }
    }
}
