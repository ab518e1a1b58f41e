//! A tcpdump-style one-line description of an IPv4 packet, for logs and
//! traces:
//!
//! ```text
//! 10.0.0.1:5000 > 10.0.0.2:80: Flags [S], seq 123, win 64240, options [mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7], length 0
//! 10.0.0.2:80 > 10.0.0.1:5000: Flags [P.], seq 1:101, ack 2, win 502, length 100
//! 10.0.0.1 > 10.0.0.2: ICMP echo request, id 1, seq 1, length 64
//! [malformed: truncated packet]
//! ```
//!
//! Sequence numbers are absolute (tcpdump -S). A wrong checksum is shown as
//! `[bad ip cksum]` / `[bad tcp cksum]` / `[bad icmp cksum]` at the end.
//! Formatting never panics, whatever the bytes.

use super::icmpv4::{msg_type, DstUnreachable, Icmpv4Packet, Icmpv4Repr, TimeExceeded};
use super::ipv4::{IpProtocol, Ipv4Packet};
use super::tcp::{TcpOption, TcpPacket};
use core::fmt;

/// Display wrapper over the bytes of one IPv4 packet.
#[derive(Clone, Copy, Debug)]
pub struct PrettyPacket<'a>(pub &'a [u8]);

impl fmt::Display for PrettyPacket<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let ip = match Ipv4Packet::new_checked(self.0) {
            Ok(p) => p,
            Err(e) => return write!(f, "[malformed: {e}]"),
        };
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let payload = ip.payload();
        if ip.frag_offset() != 0 {
            // Not the first fragment: no transport header to show.
            write!(
                f,
                "{src} > {dst}: {} frag {}@{}{}",
                ip.protocol(),
                payload.len(),
                ip.frag_offset(),
                if ip.more_frags() { "+" } else { "" }
            )?;
        } else {
            match ip.protocol() {
                IpProtocol::Tcp => fmt_tcp(f, &ip, payload)?,
                IpProtocol::Icmp => fmt_icmp(f, &ip, payload)?,
                IpProtocol::Udp if payload.len() >= 8 => {
                    let sp = u16::from_be_bytes([payload[0], payload[1]]);
                    let dp = u16::from_be_bytes([payload[2], payload[3]]);
                    write!(
                        f,
                        "{src}:{sp} > {dst}:{dp}: UDP, length {}",
                        payload.len() - 8
                    )?
                }
                p => write!(f, "{src} > {dst}: {p} {}", payload.len())?,
            }
            if ip.more_frags() {
                write!(f, " (frag 0+)")?;
            }
        }
        if !ip.verify_checksum() {
            f.write_str(" [bad ip cksum]")?;
        }
        Ok(())
    }
}

fn fmt_tcp(f: &mut fmt::Formatter, ip: &Ipv4Packet<&[u8]>, seg: &[u8]) -> fmt::Result {
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let t = match TcpPacket::new_checked(seg) {
        Ok(t) => t,
        Err(e) => return write!(f, "{src} > {dst}: TCP [malformed: {e}]"),
    };
    let flags = t.flags();
    let len = t.payload().len();
    write!(
        f,
        "{src}:{} > {dst}:{}: Flags [{flags}], seq {}",
        t.src_port(),
        t.dst_port(),
        t.seq_number()
    )?;
    if len > 0 {
        write!(f, ":{}", t.seq_number().wrapping_add(len as u32))?;
    }
    if flags.ack() {
        write!(f, ", ack {}", t.ack_number())?;
    }
    write!(f, ", win {}", t.window_len())?;
    if flags.urg() {
        write!(f, ", urg {}", t.urgent_at())?;
    }
    if !t.options().is_empty() {
        f.write_str(", options [")?;
        for (i, opt) in t.options_iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match opt {
                Ok(TcpOption::EndOfList) => f.write_str("eol")?,
                Ok(TcpOption::NoOperation) => f.write_str("nop")?,
                Ok(TcpOption::MaxSegmentSize(m)) => write!(f, "mss {m}")?,
                Ok(TcpOption::WindowScale(s)) => write!(f, "wscale {s}")?,
                Ok(TcpOption::SackPermitted) => f.write_str("sackOK")?,
                Ok(TcpOption::SackRange(r)) => {
                    let n = r.iter().flatten().count();
                    write!(f, "sack {n}")?;
                    for (l, r) in r.iter().flatten() {
                        write!(f, " {{{l}:{r}}}")?;
                    }
                }
                Ok(TcpOption::Timestamp { tsval, tsecr }) => {
                    write!(f, "TS val {tsval} ecr {tsecr}")?
                }
                Ok(TcpOption::Unknown { kind, .. }) => write!(f, "opt-{kind}")?,
                Err(_) => f.write_str("bad opt")?,
            }
        }
        f.write_str("]")?;
    }
    write!(f, ", length {len}")?;
    if !t.verify_checksum(src, dst) {
        f.write_str(" [bad tcp cksum]")?;
    }
    Ok(())
}

fn fmt_icmp(f: &mut fmt::Formatter, ip: &Ipv4Packet<&[u8]>, msg: &[u8]) -> fmt::Result {
    write!(f, "{} > {}: ICMP ", ip.src_addr(), ip.dst_addr())?;
    let p = match Icmpv4Packet::new_checked(msg) {
        Ok(p) => p,
        Err(e) => return write!(f, "[malformed: {e}]"),
    };
    let len = msg.len();
    match Icmpv4Repr::parse(&p) {
        Ok(Icmpv4Repr::EchoRequest { ident, seq_no, .. }) => {
            write!(f, "echo request, id {ident}, seq {seq_no}, length {len}")
        }
        Ok(Icmpv4Repr::EchoReply { ident, seq_no, .. }) => {
            write!(f, "echo reply, id {ident}, seq {seq_no}, length {len}")
        }
        Ok(r @ Icmpv4Repr::DstUnreachable { code, .. }) => {
            let quoted = r.quoted();
            let target = quoted.as_ref().map(|(q, _)| q.dst_addr());
            match (code, &quoted, target) {
                (DstUnreachable::PortUnreachable, Some((q, first8)), Some(t)) => {
                    let port = u16::from_be_bytes([first8[2], first8[3]]);
                    let proto = match q.protocol() {
                        IpProtocol::Tcp => "tcp",
                        IpProtocol::Udp => "udp",
                        _ => "ip",
                    };
                    write!(f, "{t} {proto} port {port} unreachable")?
                }
                (DstUnreachable::ProtoUnreachable, Some((q, _)), Some(t)) => {
                    write!(f, "{t} protocol {} unreachable", u8::from(q.protocol()))?
                }
                (DstUnreachable::FragRequired { mtu }, _, Some(t)) => {
                    write!(f, "{t} unreachable - need to frag (mtu {mtu})")?
                }
                (c, _, Some(t)) => write!(f, "{t} unreachable, code {}", c.code())?,
                (c, _, None) => write!(f, "unreachable, code {}", c.code())?,
            }
            write!(f, ", length {len}")
        }
        Ok(Icmpv4Repr::TimeExceeded { code, .. }) => match code {
            TimeExceeded::TtlExpired => write!(f, "time exceeded in-transit, length {len}"),
            TimeExceeded::FragReassembly => write!(f, "ip reassembly time exceeded, length {len}"),
            TimeExceeded::Other(c) => write!(f, "time exceeded, code {c}, length {len}"),
        },
        Ok(Icmpv4Repr::Other { msg_type, code }) => {
            write!(f, "type {msg_type}, code {code}, length {len}")
        }
        Err(super::WireError::BadChecksum) => {
            let kind = match p.msg_type() {
                msg_type::ECHO_REQUEST => "echo request",
                msg_type::ECHO_REPLY => "echo reply",
                _ => "message",
            };
            write!(f, "{kind}, length {len} [bad icmp cksum]")
        }
        Err(e) => write!(f, "[malformed: {e}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::icmpv4::emit_ipv4_icmp;
    use crate::wire::ipv4::Ipv4Repr;
    use crate::wire::seq::SeqNumber;
    use crate::wire::tcp::{emit_ipv4_tcp, TcpFlags, TcpRepr};
    use std::net::Ipv4Addr;

    fn ip(src: [u8; 4], dst: [u8; 4]) -> Ipv4Repr {
        Ipv4Repr {
            src_addr: Ipv4Addr::from(src),
            dst_addr: Ipv4Addr::from(dst),
            protocol: IpProtocol::Tcp,
            payload_len: 0,
            ttl: 64,
            ident: 0,
            dont_frag: true,
        }
    }

    #[test]
    fn tcp_syn_line() {
        let tcp = TcpRepr {
            window_len: 64240,
            max_seg_size: Some(1460),
            sack_permitted: true,
            timestamp: Some((1, 0)),
            window_scale: Some(7),
            ..TcpRepr::new(5000, 80, SeqNumber(123), TcpFlags::SYN)
        };
        let mut buf = [0u8; 100];
        let n = emit_ipv4_tcp(&mut buf, &ip([10, 0, 0, 1], [10, 0, 0, 2]), &tcp);
        assert_eq!(
            PrettyPacket(&buf[..n]).to_string(),
            "10.0.0.1:5000 > 10.0.0.2:80: Flags [S], seq 123, win 64240, \
             options [mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7], length 0"
        );
    }

    #[test]
    fn tcp_data_line_and_bad_checksum() {
        let tcp = TcpRepr {
            ack_number: SeqNumber(2),
            window_len: 502,
            payload: &[0x41; 100],
            ..TcpRepr::new(80, 5000, SeqNumber(1), TcpFlags::PSH | TcpFlags::ACK)
        };
        let mut buf = [0u8; 200];
        let n = emit_ipv4_tcp(&mut buf, &ip([10, 0, 0, 2], [10, 0, 0, 1]), &tcp);
        let line = "10.0.0.2:80 > 10.0.0.1:5000: Flags [P.], seq 1:101, ack 2, win 502, length 100";
        assert_eq!(PrettyPacket(&buf[..n]).to_string(), line);
        buf[60] ^= 1;
        assert_eq!(
            PrettyPacket(&buf[..n]).to_string(),
            format!("{line} [bad tcp cksum]")
        );
    }

    #[test]
    fn icmp_echo_line() {
        let r = Icmpv4Repr::EchoRequest {
            ident: 1,
            seq_no: 1,
            data: &[0; 56],
        };
        let mut buf = [0u8; 100];
        let n = emit_ipv4_icmp(&mut buf, &ip([10, 0, 0, 1], [10, 0, 0, 2]), &r);
        assert_eq!(
            PrettyPacket(&buf[..n]).to_string(),
            "10.0.0.1 > 10.0.0.2: ICMP echo request, id 1, seq 1, length 64"
        );
    }

    #[test]
    fn malformed_lines() {
        assert_eq!(
            PrettyPacket(&[0x45, 0]).to_string(),
            "[malformed: truncated packet]"
        );
        assert_eq!(
            PrettyPacket(&[0x60; 40]).to_string(),
            "[malformed: IP version is not 4]"
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120)) {
            let _ = PrettyPacket(&bytes).to_string();
            // Also with a plausible IPv4 header in front of random bytes.
            let mut v = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, [1, 6, 17][bytes.first().map_or(1, |b| usize::from(*b) % 3)], 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
            v.extend_from_slice(&bytes);
            let len = v.len() as u16;
            v[2..4].copy_from_slice(&len.to_be_bytes());
            let _ = PrettyPacket(&v).to_string();
        }
    }
}
