//! ICMP for IPv4 (RFC 792), the messages a host needs: echo request/reply
//! (ping), destination unreachable and time exceeded.
//!
//! ```text
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Type      |     Code      |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Identifier / unused       | Sequence Number / next-hop MTU|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Data (echo) / original IP header + first 8 data bytes     |
//! ```
//!
//! The checksum covers the whole ICMP message (no pseudo-header). An error
//! message quotes the IP header and at least the first 8 bytes of the
//! datagram that caused it (RFC 792; RFC 1812 section 4.3.2.3 allows more),
//! which is enough to find the ports of the TCP connection it concerns.

use super::checksum;
use super::ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
use super::{Field, WireError};

mod field {
    use super::Field;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQNO: Field = 6..8;
    pub const UNUSED: Field = 4..8;
    pub const MTU: Field = 6..8;
}

/// Length of the ICMP header (type, code, checksum and the 4-byte rest).
pub const HEADER_LEN: usize = 8;

/// Message types.
pub mod msg_type {
    pub const ECHO_REPLY: u8 = 0;
    pub const DST_UNREACHABLE: u8 = 3;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
}

/// Destination Unreachable codes (RFC 792, RFC 1191, RFC 1812 5.2.7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DstUnreachable {
    NetUnreachable,
    HostUnreachable,
    ProtoUnreachable,
    PortUnreachable,
    /// Code 4: "fragmentation needed and DF set", with the next-hop MTU
    /// (RFC 1191 section 4; 0 from pre-RFC 1191 routers).
    FragRequired {
        mtu: u16,
    },
    SourceRouteFailed,
    NetUnknown,
    HostUnknown,
    NetProhibited,
    HostProhibited,
    AdminProhibited,
    Other(u8),
}

impl DstUnreachable {
    pub fn code(&self) -> u8 {
        match self {
            DstUnreachable::NetUnreachable => 0,
            DstUnreachable::HostUnreachable => 1,
            DstUnreachable::ProtoUnreachable => 2,
            DstUnreachable::PortUnreachable => 3,
            DstUnreachable::FragRequired { .. } => 4,
            DstUnreachable::SourceRouteFailed => 5,
            DstUnreachable::NetUnknown => 6,
            DstUnreachable::HostUnknown => 7,
            DstUnreachable::NetProhibited => 9,
            DstUnreachable::HostProhibited => 10,
            DstUnreachable::AdminProhibited => 13,
            DstUnreachable::Other(c) => *c,
        }
    }
    fn from_code(code: u8, mtu: u16) -> DstUnreachable {
        match code {
            0 => DstUnreachable::NetUnreachable,
            1 => DstUnreachable::HostUnreachable,
            2 => DstUnreachable::ProtoUnreachable,
            3 => DstUnreachable::PortUnreachable,
            4 => DstUnreachable::FragRequired { mtu },
            5 => DstUnreachable::SourceRouteFailed,
            6 => DstUnreachable::NetUnknown,
            7 => DstUnreachable::HostUnknown,
            9 => DstUnreachable::NetProhibited,
            10 => DstUnreachable::HostProhibited,
            13 => DstUnreachable::AdminProhibited,
            c => DstUnreachable::Other(c),
        }
    }
}

/// Time Exceeded codes (RFC 792).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeExceeded {
    /// Code 0: TTL reached zero in transit.
    TtlExpired,
    /// Code 1: fragment reassembly time exceeded.
    FragReassembly,
    Other(u8),
}

impl TimeExceeded {
    pub fn code(&self) -> u8 {
        match self {
            TimeExceeded::TtlExpired => 0,
            TimeExceeded::FragReassembly => 1,
            TimeExceeded::Other(c) => *c,
        }
    }
    fn from_code(c: u8) -> TimeExceeded {
        match c {
            0 => TimeExceeded::TtlExpired,
            1 => TimeExceeded::FragReassembly,
            c => TimeExceeded::Other(c),
        }
    }
}

/// A zero-copy view of an ICMPv4 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Icmpv4Packet<T> {
        Icmpv4Packet { buffer }
    }
    /// Wrap after checking the buffer holds the 8-byte header.
    pub fn new_checked(buffer: T) -> Result<Icmpv4Packet<T>, WireError> {
        let p = Icmpv4Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }
    pub fn into_inner(self) -> T {
        self.buffer
    }
    fn u16_at(&self, f: Field) -> u16 {
        let b = &self.buffer.as_ref()[f];
        u16::from_be_bytes([b[0], b[1]])
    }
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }
    pub fn echo_ident(&self) -> u16 {
        self.u16_at(field::ECHO_IDENT)
    }
    pub fn echo_seq_no(&self) -> u16 {
        self.u16_at(field::ECHO_SEQNO)
    }
    /// Next-hop MTU of a "fragmentation needed" message (RFC 1191).
    pub fn next_hop_mtu(&self) -> u16 {
        self.u16_at(field::MTU)
    }
    /// Everything after the 8-byte header.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
    /// Does the checksum over the whole message verify?
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.buffer.as_ref()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    fn set_u16(&mut self, f: Field, v: u16) {
        self.buffer.as_mut()[f].copy_from_slice(&v.to_be_bytes());
    }
    pub fn set_msg_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::TYPE] = v;
    }
    pub fn set_msg_code(&mut self, v: u8) {
        self.buffer.as_mut()[field::CODE] = v;
    }
    pub fn set_checksum(&mut self, v: u16) {
        self.set_u16(field::CHECKSUM, v)
    }
    pub fn set_echo_ident(&mut self, v: u16) {
        self.set_u16(field::ECHO_IDENT, v)
    }
    pub fn set_echo_seq_no(&mut self, v: u16) {
        self.set_u16(field::ECHO_SEQNO, v)
    }
    pub fn set_next_hop_mtu(&mut self, v: u16) {
        self.set_u16(field::MTU, v)
    }
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
    /// Compute and store the checksum over the whole buffer.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }
}

/// The meaning of an ICMPv4 message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Icmpv4Repr<'a> {
    EchoRequest {
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
    EchoReply {
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
    /// `header`: the quoted original IP header and (at least) the first 8
    /// bytes of its payload, as they are on the wire.
    DstUnreachable {
        code: DstUnreachable,
        header: &'a [u8],
    },
    TimeExceeded {
        code: TimeExceeded,
        header: &'a [u8],
    },
    /// Any other type, or an echo with a non-zero code. Emitted as an
    /// 8-byte header with zero rest-of-header.
    Other { msg_type: u8, code: u8 },
}

impl<'a> Icmpv4Repr<'a> {
    /// Validate (length, checksum) and read a message. An error message
    /// must quote at least a 20-byte IP header and 8 payload bytes
    /// (`BadIcmp` otherwise).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &Icmpv4Packet<&'a T>,
    ) -> Result<Icmpv4Repr<'a>, WireError> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(WireError::BadChecksum);
        }
        let bytes: &'a [u8] = packet.buffer.as_ref();
        let data = &bytes[HEADER_LEN..];
        let code = packet.msg_code();
        Ok(match (packet.msg_type(), code) {
            (msg_type::ECHO_REQUEST, 0) => Icmpv4Repr::EchoRequest {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data,
            },
            (msg_type::ECHO_REPLY, 0) => Icmpv4Repr::EchoReply {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data,
            },
            (msg_type::DST_UNREACHABLE, _) => {
                check_quoted(data)?;
                let code = DstUnreachable::from_code(code, packet.next_hop_mtu());
                Icmpv4Repr::DstUnreachable { code, header: data }
            }
            (msg_type::TIME_EXCEEDED, _) => {
                check_quoted(data)?;
                Icmpv4Repr::TimeExceeded {
                    code: TimeExceeded::from_code(code),
                    header: data,
                }
            }
            (t, c) => Icmpv4Repr::Other {
                msg_type: t,
                code: c,
            },
        })
    }

    /// Bytes of the emitted message.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
            + match self {
                Icmpv4Repr::EchoRequest { data, .. } | Icmpv4Repr::EchoReply { data, .. } => {
                    data.len()
                }
                Icmpv4Repr::DstUnreachable { header, .. }
                | Icmpv4Repr::TimeExceeded { header, .. } => header.len(),
                Icmpv4Repr::Other { .. } => 0,
            }
    }

    /// Write the message (checksum filled) into the first `buffer_len()`
    /// bytes of `packet`.
    ///
    /// # Panics
    /// If the buffer is shorter than `buffer_len()`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Icmpv4Packet<T>) {
        let len = self.buffer_len();
        let b = &mut packet.buffer.as_mut()[..len];
        b[field::UNUSED].copy_from_slice(&[0; 4]);
        let (t, c, body): (u8, u8, &[u8]) = match *self {
            Icmpv4Repr::EchoRequest {
                ident,
                seq_no,
                data,
            }
            | Icmpv4Repr::EchoReply {
                ident,
                seq_no,
                data,
            } => {
                b[field::ECHO_IDENT].copy_from_slice(&ident.to_be_bytes());
                b[field::ECHO_SEQNO].copy_from_slice(&seq_no.to_be_bytes());
                let t = if matches!(self, Icmpv4Repr::EchoRequest { .. }) {
                    msg_type::ECHO_REQUEST
                } else {
                    msg_type::ECHO_REPLY
                };
                (t, 0, data)
            }
            Icmpv4Repr::DstUnreachable { code, header } => {
                if let DstUnreachable::FragRequired { mtu } = code {
                    b[field::MTU].copy_from_slice(&mtu.to_be_bytes());
                }
                (msg_type::DST_UNREACHABLE, code.code(), header)
            }
            Icmpv4Repr::TimeExceeded { code, header } => {
                (msg_type::TIME_EXCEEDED, code.code(), header)
            }
            Icmpv4Repr::Other { msg_type, code } => (msg_type, code, &[][..]),
        };
        b[field::TYPE] = t;
        b[field::CODE] = c;
        b[HEADER_LEN..].copy_from_slice(body);
        b[field::CHECKSUM].copy_from_slice(&[0, 0]);
        let sum = checksum::checksum(b);
        b[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
    }

    /// For an error message, the quoted datagram's IPv4 header and the first
    /// 8 bytes of its payload (e.g. the TCP ports and sequence number).
    pub fn quoted(&self) -> Option<(Ipv4Packet<&'a [u8]>, &'a [u8])> {
        let h = match *self {
            Icmpv4Repr::DstUnreachable { header, .. } | Icmpv4Repr::TimeExceeded { header, .. } => {
                header
            }
            _ => return None,
        };
        let p = Ipv4Packet::new_unchecked(h);
        let hl = quoted_header_len(h)?;
        Some((p, &h[hl..]))
    }
}

/// The header length of a quoted IPv4 header if it is one (version 4, IHL
/// >= 5) and at least 8 payload bytes follow it.
fn quoted_header_len(h: &[u8]) -> Option<usize> {
    let first = *h.first()?;
    let hl = usize::from(first & 0x0f) * 4;
    (first >> 4 == 4 && hl >= 20 && h.len() >= hl + 8).then_some(hl)
}

fn check_quoted(h: &[u8]) -> Result<(), WireError> {
    quoted_header_len(h).map(|_| ()).ok_or(WireError::BadIcmp)
}

/// Write a complete IPv4 + ICMP packet into `buf` (both checksums filled)
/// and return its length, `20 + icmp.buffer_len()`. Only the addresses,
/// TTL, ident and DF are taken from `ip`.
///
/// # Panics
/// If `buf` is shorter than the packet.
pub fn emit_ipv4_icmp(buf: &mut [u8], ip: &Ipv4Repr, icmp: &Icmpv4Repr) -> usize {
    let icmp_len = icmp.buffer_len();
    let total = super::ipv4::HEADER_LEN + icmp_len;
    assert!(
        buf.len() >= total,
        "emit_ipv4_icmp: buffer of {} bytes for a {}-byte packet",
        buf.len(),
        total
    );
    let ip_repr = Ipv4Repr {
        protocol: IpProtocol::Icmp,
        payload_len: icmp_len,
        ..*ip
    };
    let (ip_buf, rest) = buf[..total].split_at_mut(super::ipv4::HEADER_LEN);
    ip_repr.emit(&mut Ipv4Packet::new_unchecked(ip_buf), true);
    icmp.emit(&mut Icmpv4Packet::new_unchecked(rest));
    total
}

/// The quoted part of an ICMP error about `original` (an IPv4 packet we
/// received): its header and the first 8 payload bytes (RFC 792), bounded
/// by the buffer. Use as `header` in `DstUnreachable`/`TimeExceeded`.
pub fn quote_of(original: &[u8]) -> &[u8] {
    let hl = original.first().map_or(0, |b| usize::from(b & 0x0f) * 4);
    &original[..original.len().min(hl + 8)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// `ping -c1 -s 8 10.0.0.2` from Linux: type 8, id 0x1234, seq 1,
    /// 8 data bytes. Checksum computed by hand below.
    const ECHO: [u8; 16] = [
        0x08, 0x00, 0x54, 0x35, 0x12, 0x34, 0x00, 0x01, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67,
        0x68,
    ];

    #[test]
    fn echo_checksum_by_hand() {
        // 0800 + 1234 + 0001 + 6162 + 6364 + 6566 + 6768 = 0x1abc9;
        // fold: 0xabc9 + 0x1 = 0xabca; complement: 0x5435 (bytes 2..4).
        assert_eq!(!checksum::fold(0x1abc9), 0x5435);
        assert_eq!(checksum::checksum(&ECHO), 0);
    }

    #[test]
    fn parse_echo_request() {
        let p = Icmpv4Packet::new_checked(&ECHO[..]).unwrap();
        assert_eq!(
            Icmpv4Repr::parse(&p).unwrap(),
            Icmpv4Repr::EchoRequest {
                ident: 0x1234,
                seq_no: 1,
                data: b"abcdefgh"
            }
        );
    }

    #[test]
    fn echo_round_trip_byte_exact() {
        let r = Icmpv4Repr::EchoRequest {
            ident: 0x1234,
            seq_no: 1,
            data: b"abcdefgh",
        };
        let mut buf = [0u8; 16];
        r.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, ECHO);
        let reply = Icmpv4Repr::EchoReply {
            ident: 0x1234,
            seq_no: 1,
            data: b"abcdefgh",
        };
        reply.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf[0], 0);
        assert_eq!(
            Icmpv4Repr::parse(&Icmpv4Packet::new_checked(&buf[..]).unwrap()).unwrap(),
            reply
        );
    }

    #[test]
    fn bad_checksum_and_truncation() {
        let mut b = ECHO;
        b[9] ^= 1;
        assert_eq!(
            Icmpv4Repr::parse(&Icmpv4Packet::new_checked(&b[..]).unwrap()),
            Err(WireError::BadChecksum)
        );
        for n in 0..8 {
            assert_eq!(
                Icmpv4Packet::new_checked(&ECHO[..n]).err(),
                Some(WireError::Truncated)
            );
        }
        // Shorter prefixes of an echo fail the checksum (or length), never panic.
        for n in 0..ECHO.len() {
            assert!(
                Icmpv4Repr::parse(&Icmpv4Packet::new_unchecked(&ECHO[..n])).is_err(),
                "prefix {n}"
            );
        }
    }

    fn original() -> Vec<u8> {
        // A TCP SYN to a closed port: IP header + 8 bytes of TCP header.
        let mut v = vec![
            0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0xa8, 0xca, 0x00,
            0x51, 1, 2, 3, 4,
        ];
        v.extend_from_slice(&[0; 12]);
        v
    }

    #[test]
    fn dst_unreachable_round_trip() {
        let orig = original();
        let quoted = quote_of(&orig);
        assert_eq!(quoted.len(), 28);
        for code in [
            DstUnreachable::PortUnreachable,
            DstUnreachable::FragRequired { mtu: 1400 },
        ] {
            let r = Icmpv4Repr::DstUnreachable {
                code,
                header: quoted,
            };
            let mut buf = vec![0u8; r.buffer_len()];
            r.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..]));
            let p = Icmpv4Packet::new_checked(&buf[..]).unwrap();
            let back = Icmpv4Repr::parse(&p).unwrap();
            assert_eq!(back, r);
            let (ip, first8) = back.quoted().unwrap();
            assert_eq!(ip.dst_addr(), Ipv4Addr::new(10, 0, 0, 2));
            assert_eq!(&first8[2..4], &[0x00, 0x51]);
        }
        // Quoting less than header + 8 bytes is malformed.
        let r = Icmpv4Repr::TimeExceeded {
            code: TimeExceeded::TtlExpired,
            header: &orig[..27],
        };
        let mut buf = vec![0u8; r.buffer_len()];
        r.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..]));
        assert_eq!(
            Icmpv4Repr::parse(&Icmpv4Packet::new_checked(&buf[..]).unwrap()),
            Err(WireError::BadIcmp)
        );
    }

    #[test]
    fn emit_ipv4_icmp_packet() {
        let ip = Ipv4Repr {
            src_addr: Ipv4Addr::new(10, 0, 0, 2),
            dst_addr: Ipv4Addr::new(10, 0, 0, 1),
            protocol: IpProtocol::Tcp,
            payload_len: 0,
            ttl: 64,
            ident: 7,
            dont_frag: false,
        };
        let r = Icmpv4Repr::EchoReply {
            ident: 1,
            seq_no: 2,
            data: &[0xaa; 56],
        };
        let mut buf = [0u8; 200];
        let n = emit_ipv4_icmp(&mut buf, &ip, &r);
        assert_eq!(n, 84);
        let p = Ipv4Packet::new_checked(&buf[..n]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.protocol(), IpProtocol::Icmp);
        assert_eq!(
            Icmpv4Repr::parse(&Icmpv4Packet::new_checked(p.payload()).unwrap()).unwrap(),
            r
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            if let Ok(p) = Icmpv4Packet::new_checked(&bytes[..]) {
                let _ = (p.data(), p.verify_checksum(), p.next_hop_mtu());
            }
            if let Ok(r) = Icmpv4Repr::parse(&Icmpv4Packet::new_unchecked(&bytes[..])) {
                let _ = r.quoted();
                let _ = r.buffer_len();
            }
            let _ = quote_of(&bytes);
        }
    }
}
