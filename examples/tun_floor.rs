//! The floor of a TUN server: how many requests per second the kernel, the
//! TUN device and the client leave for *any* user-space server on this
//! machine, measured instead of estimated.
//!
//! ```text
//! sudo ip netns exec NS cargo run --release --example tun_floor -- --tun TUN --addr 10.231.5.2
//! ```
//!
//! It is not a TCP stack. It keeps **no state at all** and answers each
//! packet with at most one packet, built by rewriting the headers of the one
//! it got:
//!
//! | in | out |
//! |---|---|
//! | SYN | SYN-ACK (ISS from the ports, MSS 1460, no other options) |
//! | a segment with data (taken to be one whole request) | the canned answer to `GET /bytes/N` (N <= 1024) at SEQ = the segment's ACK; with `FIN` when the request is HTTP/1.0 |
//! | FIN without data | ACK |
//! | anything else (pure ACKs, RSTs, not TCP, not to us) | nothing |
//!
//! One blocking `read` and at most one `write` per packet, no timers, no
//! buffers, no parser beyond the request line: the least work per packet a
//! server on a plain TUN device can do, and it is correct only on a lossless,
//! in-order path such as a TUN device inside one host. `scripts/bench.sh`
//! runs it as the `floor` system for the `wrk` and `ab` workloads: a target
//! such as "keep-alive requests/s >= 1.2x smoltcp" that this program cannot
//! reach is bounded by the kernel and the client, not by the server.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use ustack::phy::tun::TunDevice;
use ustack::wire::checksum;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// Counters, printed to stderr every 2^20 packets (SIGTERM ends the process).
#[derive(Default)]
struct Counts {
    packets: u64,
    answers: u64,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("tun_floor: {e}");
        std::process::exit(1);
    }
}

/// The command line: (TUN name, our address, busy-poll microseconds).
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<(String, Ipv4Addr, u64), String> {
    let mut tun = None;
    let mut addr: Option<Ipv4Addr> = None;
    // --busy USEC: after a packet, spin on `read` for up to USEC before sleeping.
    let mut busy_us: u64 = 0;
    let mut args = args.into_iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--tun" => tun = Some(args.next().ok_or("--tun needs a value")?),
            "--busy" => {
                let v = args.next().ok_or("--busy needs a value (microseconds)")?;
                busy_us = v
                    .parse()
                    .map_err(|_| format!("--busy: not a number of microseconds: {v}"))?;
            }
            "--addr" => {
                let v = args.next().ok_or("--addr needs a value")?;
                let v = v.split('/').next().unwrap_or("");
                addr = Some(
                    v.parse()
                        .map_err(|_| format!("--addr: not an IPv4 address: {v}"))?,
                );
            }
            other => {
                return Err(format!(
                    "unknown argument '{other}' (usage: --tun NAME --addr A.B.C.D [--busy USEC])"
                ))
            }
        }
    }
    match (tun, addr) {
        (Some(t), Some(a)) => Ok((t, a, busy_us)),
        _ => Err("usage: tun_floor --tun NAME --addr A.B.C.D [--busy USEC]".into()),
    }
}

fn run() -> Result<(), String> {
    let (tun, addr, busy_us) = parse_args(std::env::args().skip(1))?;
    let dev = TunDevice::open(&tun).map_err(|e| e.to_string())?;
    let fd = dev.as_raw_fd();
    // Without --busy: blocking reads, one system call per packet and no
    // poll. With --busy USEC: non-blocking reads, and after each packet the
    // loop spins on `read` for up to USEC before it sleeps in poll(2) (no
    // wake-up cost under load; a whole core while it spins).
    if busy_us == 0 {
        // SAFETY: F_GETFL/F_SETFL on an fd we own.
        unsafe {
            let fl = libc::fcntl(fd, libc::F_GETFL);
            libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK);
        }
    }
    let spin = std::time::Duration::from_micros(busy_us);
    let mut last_packet = std::time::Instant::now();
    eprintln!("tun_floor: stateless answers on {tun} for {addr} (busy polling: {busy_us} us)");

    let mut inb = vec![0u8; 65536];
    let mut out = [0u8; 1600];
    let mut counts = Counts::default();
    loop {
        // SAFETY: `inb` is a writable buffer of its length.
        let n = unsafe { libc::read(fd, inb.as_mut_ptr().cast(), inb.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock && last_packet.elapsed() >= spin {
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut pfd, 1, -1) };
                continue;
            }
            if e.kind() == io::ErrorKind::Interrupted || e.kind() == io::ErrorKind::WouldBlock {
                continue;
            }
            return Err(format!("read {tun}: {e}"));
        }
        counts.packets += 1;
        if busy_us > 0 {
            last_packet = std::time::Instant::now();
        }
        if let Some(len) = answer(&inb[..n as usize], addr, &mut out) {
            counts.answers += 1;
            // SAFETY: `out[..len]` is a readable buffer.
            let w = unsafe { libc::write(fd, out.as_ptr().cast(), len) };
            if w < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted && e.kind() != io::ErrorKind::WouldBlock {
                    return Err(format!("write {tun}: {e}"));
                }
            }
        }
        if counts.packets & ((1 << 20) - 1) == 0 {
            eprintln!(
                "tun_floor: {} packets in, {} out",
                counts.packets, counts.answers
            );
        }
    }
}

fn be16(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}
fn be32(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// The one packet (if any) that answers `pkt`, written to `out`; its length.
fn answer(pkt: &[u8], me: Ipv4Addr, out: &mut [u8; 1600]) -> Option<usize> {
    if pkt.len() < 40 || pkt[0] >> 4 != 4 || pkt[9] != 6 {
        return None;
    }
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    let total = usize::from(be16(pkt, 2)).min(pkt.len());
    if ihl < 20 || total < ihl + 20 || pkt[16..20] != me.octets() {
        return None;
    }
    let tcp = &pkt[ihl..total];
    let doff = usize::from(tcp[12] >> 4) * 4;
    if doff < 20 || doff > tcp.len() {
        return None;
    }
    let flags = tcp[13];
    let seq = be32(tcp, 4);
    let ack = be32(tcp, 8);
    let data = &tcp[doff..];
    let (sport, dport) = (be16(tcp, 0), be16(tcp, 2));
    if flags & RST != 0 {
        return None;
    }

    // What to send: flags, SEQ, ACK, TCP options, payload.
    let mut opts: &[u8] = &[];
    let mss_opt = [2u8, 4, 0x05, 0xb4]; // MSS 1460
    let (oflags, oseq, oack, body_len, close);
    if flags & SYN != 0 {
        if flags & ACK != 0 {
            return None;
        }
        oflags = SYN | ACK;
        // A fixed ISS per 4-tuple (no secret: this is a benchmark floor).
        oseq = (u32::from(sport) << 16 | u32::from(dport)).wrapping_mul(2_654_435_761);
        oack = seq.wrapping_add(1);
        opts = &mss_opt;
        body_len = None;
        close = false;
    } else if !data.is_empty() {
        let (n, http10) = request(data)?;
        close = http10;
        oflags = if close { ACK | PSH | FIN } else { ACK | PSH };
        oseq = ack;
        oack = seq
            .wrapping_add(data.len() as u32)
            .wrapping_add(u32::from(flags & FIN));
        body_len = Some(n);
    } else if flags & FIN != 0 {
        // Their FIN: ACK it. Without state we cannot tell whether our FIN
        // went out already (HTTP/1.0 answers carry one, and ab's FIN
        // acknowledges it) or not (a keep-alive client closing: it then
        // waits in FIN-WAIT-2 until the kernel's tcp_fin_timeout; only the
        // last connections of a wrk run, or curl's readiness checks).
        oflags = ACK;
        oseq = ack;
        oack = seq.wrapping_add(1);
        body_len = None;
        close = false;
    } else {
        return None;
    }

    // IPv4 header.
    let tcp_off = 20;
    let data_off = tcp_off + 20 + opts.len();
    let mut dlen = 0;
    if let Some(n) = body_len {
        dlen = response(n, close, &mut out[data_off..]);
    }
    let tot = data_off + dlen;
    out[..20].copy_from_slice(&[
        0x45,
        0,
        (tot >> 8) as u8,
        tot as u8,
        0,
        0,
        0x40,
        0,
        64,
        6,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ]);
    out[12..16].copy_from_slice(&pkt[16..20]);
    out[16..20].copy_from_slice(&pkt[12..16]);
    let ipc = checksum::checksum(&out[..20]);
    out[10..12].copy_from_slice(&ipc.to_be_bytes());

    // TCP header.
    let t = &mut out[tcp_off..tot];
    t[0..2].copy_from_slice(&dport.to_be_bytes());
    t[2..4].copy_from_slice(&sport.to_be_bytes());
    t[4..8].copy_from_slice(&oseq.to_be_bytes());
    t[8..12].copy_from_slice(&oack.to_be_bytes());
    t[12] = (((20 + opts.len()) / 4) << 4) as u8;
    t[13] = oflags;
    t[14..16].copy_from_slice(&65535u16.to_be_bytes());
    t[16..18].copy_from_slice(&[0, 0]);
    t[18..20].copy_from_slice(&[0, 0]);
    t[20..20 + opts.len()].copy_from_slice(opts);
    let ph = checksum::pseudo_header_sum(
        me,
        Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]),
        6,
        t.len() as u32,
    );
    let c = !checksum::fold(checksum::sum(t) + u64::from(ph));
    t[16..18].copy_from_slice(&c.to_be_bytes());
    Some(tot)
}

/// `GET /bytes/N` with N <= 1024: (N, whether the request is HTTP/1.0
/// without keep-alive). Anything else: no answer.
fn request(data: &[u8]) -> Option<(usize, bool)> {
    let rest = data.strip_prefix(b"GET /bytes/")?;
    let mut n = 0usize;
    let mut i = 0;
    while i < rest.len() && rest[i].is_ascii_digit() {
        n = n * 10 + usize::from(rest[i] - b'0');
        i += 1;
        if n > 1024 {
            return None;
        }
    }
    let http10 = rest[i..].starts_with(b" HTTP/1.0")
        && !data
            .windows(10)
            .any(|w| w.eq_ignore_ascii_case(b"keep-alive"));
    Some((n, http10))
}

/// The response head and body (zeros) for `GET /bytes/N`, into `out`.
fn response(n: usize, close: bool, out: &mut [u8]) -> usize {
    use std::io::Write;
    let mut w = &mut out[..];
    let before = w.len();
    let _ = write!(
        w,
        "HTTP/1.1 200 OK\r\nServer: floor\r\nContent-Type: application/octet-stream\r\nContent-Length: {n}\r\n{}\r\n",
        if close { "Connection: close\r\n" } else { "" }
    );
    let head = before - w.len();
    out[head..head + n].fill(b'0');
    head + n
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

    /// An IPv4/TCP packet from PEER:40000 to ME:80 (checksums left zero:
    /// the floor does not verify them, the kernel already has).
    fn pkt(flags: u8, seq: u32, ack: u32, data: &[u8]) -> Vec<u8> {
        let tot = 40 + data.len();
        let mut p = vec![
            0x45,
            0,
            (tot >> 8) as u8,
            tot as u8,
            0,
            0,
            0x40,
            0,
            64,
            6,
            0,
            0,
        ];
        p.extend_from_slice(&PEER.octets());
        p.extend_from_slice(&ME.octets());
        p.extend_from_slice(&40000u16.to_be_bytes());
        p.extend_from_slice(&80u16.to_be_bytes());
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ack.to_be_bytes());
        p.extend_from_slice(&[5 << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
        p.extend_from_slice(data);
        p
    }

    struct Out {
        flags: u8,
        seq: u32,
        ack: u32,
        data: Vec<u8>,
    }

    /// The answer, with both checksums and the addresses checked.
    fn answer_to(p: &[u8]) -> Option<Out> {
        let mut out = [0u8; 1600];
        let n = answer(p, ME, &mut out)?;
        let o = &out[..n];
        assert_eq!(usize::from(be16(o, 2)), n);
        assert_eq!(checksum::checksum(&o[..20]), 0, "IPv4 header checksum");
        assert_eq!(o[12..16], ME.octets());
        assert_eq!(o[16..20], PEER.octets());
        let t = &o[20..];
        let ph = checksum::pseudo_header_sum(ME, PEER, 6, t.len() as u32);
        assert_eq!(
            checksum::fold(checksum::sum(t) + u64::from(ph)),
            0xffff,
            "TCP checksum"
        );
        assert_eq!((be16(t, 0), be16(t, 2)), (80, 40000));
        let doff = usize::from(t[12] >> 4) * 4;
        Some(Out {
            flags: t[13],
            seq: be32(t, 4),
            ack: be32(t, 8),
            data: t[doff..].to_vec(),
        })
    }

    #[test]
    fn bad_command_lines_get_clear_errors() {
        let p = |v: &[&str]| parse_args(v.iter().map(|s| s.to_string()));
        assert_eq!(
            p(&["--tun", "t0", "--addr", "10.0.0.2/24", "--busy", "50"]),
            Ok(("t0".into(), ME, 50))
        );
        assert!(p(&["--tun", "t0"]).unwrap_err().starts_with("usage:"));
        assert!(p(&["--tun"]).unwrap_err().contains("--tun needs a value"));
        assert!(p(&["--addr", "10.0.0.300"])
            .unwrap_err()
            .contains("not an IPv4 address"));
        assert!(p(&["--busy", "x"]).unwrap_err().contains("not a number"));
        assert!(p(&["--bogus"])
            .unwrap_err()
            .contains("unknown argument '--bogus'"));
    }

    #[test]
    fn syn_gets_a_syn_ack_for_the_next_byte() {
        let a = answer_to(&pkt(SYN, 1000, 0, b"")).unwrap();
        assert_eq!(a.flags, SYN | ACK);
        assert_eq!(a.ack, 1001);
        // The same 4-tuple gets the same ISS (there is no state to keep it).
        assert_eq!(answer_to(&pkt(SYN, 5, 0, b"")).unwrap().seq, a.seq);
    }

    #[test]
    fn a_request_gets_its_answer_at_the_acknowledged_sequence_number() {
        let req = b"GET /bytes/100 HTTP/1.1\r\nHost: x\r\n\r\n";
        let a = answer_to(&pkt(ACK | PSH, 1001, 77, req)).unwrap();
        assert_eq!(a.flags, ACK | PSH);
        assert_eq!((a.seq, a.ack), (77, 1001 + req.len() as u32));
        let s = String::from_utf8(a.data).unwrap();
        let (head, body) = s.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 200 OK\r\n") && head.contains("Content-Length: 100"),
            "{head}"
        );
        assert!(!head.contains("Connection: close"));
        assert_eq!(body.len(), 100);
    }

    #[test]
    fn an_http_1_0_request_gets_its_answer_and_a_fin() {
        let req = b"GET /bytes/3 HTTP/1.0\r\nHost: x\r\n\r\n";
        let a = answer_to(&pkt(ACK | PSH, 9, 1, req)).unwrap();
        assert_eq!(a.flags, ACK | PSH | FIN);
        assert!(String::from_utf8(a.data)
            .unwrap()
            .contains("Connection: close\r\n"));
        // HTTP/1.0 with keep-alive: no FIN.
        let req = b"GET /bytes/3 HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
        assert_eq!(
            answer_to(&pkt(ACK | PSH, 9, 1, req)).unwrap().flags,
            ACK | PSH
        );
    }

    #[test]
    fn a_fin_is_acknowledged() {
        let a = answer_to(&pkt(ACK | FIN, 500, 42, b"")).unwrap();
        assert_eq!((a.flags, a.seq, a.ack), (ACK, 42, 501));
        assert!(a.data.is_empty());
    }

    #[test]
    fn acks_resets_other_requests_and_bad_packets_get_nothing() {
        let mut out = [0u8; 1600];
        assert!(answer(&pkt(ACK, 1, 1, b""), ME, &mut out).is_none());
        assert!(answer(&pkt(RST | ACK, 1, 1, b""), ME, &mut out).is_none());
        assert!(answer(&pkt(SYN | ACK, 1, 1, b""), ME, &mut out).is_none());
        assert!(answer(
            &pkt(ACK, 1, 1, b"GET /bytes/2000 HTTP/1.1\r\n\r\n"),
            ME,
            &mut out
        )
        .is_none());
        assert!(answer(
            &pkt(ACK, 1, 1, b"POST /sha256 HTTP/1.1\r\n\r\n"),
            ME,
            &mut out
        )
        .is_none());
        assert!(answer(&pkt(SYN, 1, 0, b"")[..39], ME, &mut out).is_none());
        assert!(answer(&pkt(SYN, 1, 0, b""), Ipv4Addr::new(10, 0, 0, 3), &mut out).is_none());
        let mut bad = pkt(SYN, 1, 0, b"");
        bad[32] = 0xf0; // data offset 60 > what is there
        assert!(answer(&bad, ME, &mut out).is_none());
        let mut bad = pkt(SYN, 1, 0, b"");
        bad[2..4].copy_from_slice(&[0, 30]); // total length shorter than the headers
        assert!(answer(&bad, ME, &mut out).is_none());
    }
}
