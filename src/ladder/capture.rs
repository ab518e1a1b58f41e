//! Reading capture files for the ladder diagram: classic pcap in both byte
//! orders, microsecond and nanosecond timestamps, and the link types that
//! `ustack serve --pcap`, `tcpdump` and `tshark` write for IPv4.
//!
//! This reader is separate from [`crate::phy::pcap::Reader`] because it
//! accepts more link-layer framings and streams the file record by record
//! (a capture can be large; only one record is held in memory at a time).
//!
//! | link type | number | what precedes the IPv4 header |
//! |---|---|---|
//! | `LINKTYPE_NULL` | 0 | 4-byte address family in host order (BSD/macOS `lo0`) |
//! | `LINKTYPE_ETHERNET` | 1 | 14-byte Ethernet II header (+4 per 802.1Q VLAN tag) |
//! | `LINKTYPE_RAW` | 101 | nothing (a TUN device, `ustack serve --pcap`) |
//! | `LINKTYPE_LOOP` | 108 | 4-byte address family in network order (OpenBSD) |
//! | `LINKTYPE_LINUX_SLL` | 113 | 16-byte "cooked" header (`tcpdump -i any`) |
//! | `LINKTYPE_IPV4` | 228 | nothing |
//! | `LINKTYPE_LINUX_SLL2` | 276 | 20-byte cooked header v2 (newer `tcpdump -i any`) |
//!
//! References: <https://www.tcpdump.org/linktypes.html> and
//! draft-ietf-opsawg-pcap (the pcap file format).

use super::LadderError;
use std::io::Read;

/// Magic number of a microsecond pcap, as read in the writer's byte order.
pub const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
/// Magic number of a nanosecond pcap.
pub const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
/// The first four bytes of a pcapng file (its Section Header Block type).
pub const PCAPNG_MAGIC: u32 = 0x0a0d_0d0a;

pub const LINKTYPE_NULL: u32 = 0;
pub const LINKTYPE_ETHERNET: u32 = 1;
pub const LINKTYPE_RAW: u32 = 101;
pub const LINKTYPE_LOOP: u32 = 108;
pub const LINKTYPE_LINUX_SLL: u32 = 113;
pub const LINKTYPE_IPV4: u32 = 228;
pub const LINKTYPE_LINUX_SLL2: u32 = 276;

/// The largest record we accept, whatever the file's snaplen claims
/// (tcpdump's default snaplen). Bounds the memory one record can take.
pub const MAX_RECORD_LEN: u32 = 262_144;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;

/// One record of a capture, with the link-layer header already removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// An IPv4 packet (possibly cut short by the snaplen).
    Ipv4(&'a [u8]),
    /// Something else (ARP, IPv6, ...): not drawn, only counted.
    NotIpv4,
    /// The link-layer header itself is cut short: counted as malformed.
    Malformed,
}

/// A streaming reader of classic pcap files.
#[derive(Debug)]
pub struct PcapStream<R: Read> {
    input: R,
    big_endian: bool,
    nanos: bool,
    link_type: u32,
    /// Number of records read so far.
    index: usize,
    /// Byte offset of the next record header.
    offset: u64,
    buf: Vec<u8>,
}

/// One record as returned by [`PcapStream::next_record`].
#[derive(Debug)]
pub struct RawRecord<'a> {
    /// 0-based record number in the file.
    pub index: usize,
    /// Timestamp in nanoseconds since the UNIX epoch.
    pub ts_nanos: u64,
    /// Captured bytes, link-layer header included.
    pub data: &'a [u8],
    /// The length on the wire (>= `data.len()` when the snaplen cut it).
    pub orig_len: u32,
}

/// Read as many bytes as possible into `buf`; returns how many (short only
/// at end of file).
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl<R: Read> PcapStream<R> {
    /// Read and check the 24-byte global header.
    pub fn new(mut input: R) -> Result<Self, LadderError> {
        let mut hdr = [0u8; 24];
        let n = read_full(&mut input, &mut hdr).map_err(LadderError::Read)?;
        if n >= 4 {
            let m = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
            if m == PCAPNG_MAGIC {
                return Err(LadderError::Pcapng);
            }
            if n < 24 && is_pcap_magic(m) {
                return Err(LadderError::TruncatedHeader);
            }
            if !is_pcap_magic(m) {
                return Err(LadderError::NotPcap(m));
            }
        } else {
            return Err(if n == 0 {
                LadderError::Empty
            } else {
                LadderError::TruncatedHeader
            });
        }
        let magic_le = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let (big_endian, nanos) = match magic_le {
            MAGIC_MICROS => (false, false),
            MAGIC_NANOS => (false, true),
            m if m.swap_bytes() == MAGIC_MICROS => (true, false),
            _ => (true, true),
        };
        let mut s = PcapStream {
            input,
            big_endian,
            nanos,
            link_type: 0,
            index: 0,
            offset: 24,
            buf: Vec::new(),
        };
        // The upper 4 bits of the link-type field may carry FCS information
        // (draft-ietf-opsawg-pcap section 4); the type is the low 16 bits.
        let lt = s.u32_at(&hdr, 20) & 0xffff;
        match lt {
            LINKTYPE_NULL | LINKTYPE_ETHERNET | LINKTYPE_RAW | LINKTYPE_LOOP
            | LINKTYPE_LINUX_SLL | LINKTYPE_IPV4 | LINKTYPE_LINUX_SLL2 => {}
            other => return Err(LadderError::UnsupportedLinkType(other)),
        }
        s.link_type = lt;
        Ok(s)
    }

    /// The file's link type.
    pub fn link_type(&self) -> u32 {
        self.link_type
    }

    fn u32_at(&self, b: &[u8], i: usize) -> u32 {
        let a = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if self.big_endian {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    }

    /// The next record, `Ok(None)` at a clean end of file.
    pub fn next_record(&mut self) -> Result<Option<RawRecord<'_>>, LadderError> {
        let mut rh = [0u8; 16];
        let n = read_full(&mut self.input, &mut rh).map_err(LadderError::Read)?;
        if n == 0 {
            return Ok(None);
        }
        let index = self.index;
        let offset = self.offset;
        if n < 16 {
            return Err(LadderError::TruncatedRecord { index, offset });
        }
        let secs = u64::from(self.u32_at(&rh, 0));
        let frac = u64::from(self.u32_at(&rh, 4));
        let caplen = self.u32_at(&rh, 8);
        let orig_len = self.u32_at(&rh, 12);
        if caplen > MAX_RECORD_LEN {
            return Err(LadderError::RecordTooLong {
                index,
                offset,
                len: caplen,
            });
        }
        self.buf.resize(caplen as usize, 0);
        let got = read_full(&mut self.input, &mut self.buf).map_err(LadderError::Read)?;
        if got < caplen as usize {
            return Err(LadderError::TruncatedRecord { index, offset });
        }
        self.index += 1;
        self.offset += 16 + u64::from(caplen);
        let frac_nanos = if self.nanos {
            frac.min(999_999_999)
        } else {
            frac.min(999_999) * 1000
        };
        Ok(Some(RawRecord {
            index,
            ts_nanos: secs * 1_000_000_000 + frac_nanos,
            data: &self.buf,
            orig_len,
        }))
    }
}

fn is_pcap_magic(m: u32) -> bool {
    m == MAGIC_MICROS
        || m == MAGIC_NANOS
        || m.swap_bytes() == MAGIC_MICROS
        || m.swap_bytes() == MAGIC_NANOS
}

/// Remove the link-layer header of one record.
pub fn strip_link_layer(link_type: u32, data: &[u8]) -> Frame<'_> {
    match link_type {
        LINKTYPE_RAW | LINKTYPE_IPV4 => ip_if_v4(data),
        LINKTYPE_NULL | LINKTYPE_LOOP => {
            let Some(h) = data.get(..4) else {
                return Frame::Malformed;
            };
            // AF_INET is 2 on every system; NULL stores it in the capturing
            // host's byte order, LOOP in network order.
            let le = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
            let be = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
            if le == 2 || be == 2 {
                ip_if_v4(&data[4..])
            } else {
                Frame::NotIpv4
            }
        }
        LINKTYPE_ETHERNET => {
            // dst MAC (6), src MAC (6), EtherType (2); 802.1Q / 802.1ad tags
            // insert 4 bytes (TPID + TCI) before the real EtherType.
            let mut off = 12;
            loop {
                let Some(t) = data.get(off..off + 2) else {
                    return Frame::Malformed;
                };
                let ethertype = u16::from_be_bytes([t[0], t[1]]);
                match ethertype {
                    ETHERTYPE_VLAN | ETHERTYPE_QINQ if off < 12 + 8 => off += 4,
                    ETHERTYPE_IPV4 => return ip_if_v4(&data[off + 2..]),
                    _ => return Frame::NotIpv4,
                }
            }
        }
        LINKTYPE_LINUX_SLL => {
            // packet type (2), ARPHRD type (2), address length (2),
            // address (8), protocol (2).
            let Some(h) = data.get(..16) else {
                return Frame::Malformed;
            };
            if u16::from_be_bytes([h[14], h[15]]) == ETHERTYPE_IPV4 {
                ip_if_v4(&data[16..])
            } else {
                Frame::NotIpv4
            }
        }
        LINKTYPE_LINUX_SLL2 => {
            // protocol (2), reserved (2), interface index (4), ARPHRD (2),
            // packet type (1), address length (1), address (8).
            let Some(h) = data.get(..20) else {
                return Frame::Malformed;
            };
            if u16::from_be_bytes([h[0], h[1]]) == ETHERTYPE_IPV4 {
                ip_if_v4(&data[20..])
            } else {
                Frame::NotIpv4
            }
        }
        _ => Frame::NotIpv4,
    }
}

fn ip_if_v4(data: &[u8]) -> Frame<'_> {
    match data.first() {
        None => Frame::Malformed,
        Some(b) if b >> 4 == 4 => Frame::Ipv4(data),
        Some(_) => Frame::NotIpv4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: [u8; 4] = [0x45, 0, 0, 20];

    #[test]
    fn ethernet_plain_and_vlan() {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&IP);
        assert_eq!(strip_link_layer(LINKTYPE_ETHERNET, &f), Frame::Ipv4(&IP));
        let mut v = vec![0u8; 12];
        v.extend_from_slice(&[0x81, 0x00, 0x00, 0x05, 0x08, 0x00]);
        v.extend_from_slice(&IP);
        assert_eq!(strip_link_layer(LINKTYPE_ETHERNET, &v), Frame::Ipv4(&IP));
        let mut arp = vec![0u8; 12];
        arp.extend_from_slice(&[0x08, 0x06, 0, 1]);
        assert_eq!(strip_link_layer(LINKTYPE_ETHERNET, &arp), Frame::NotIpv4);
        // IPv6 ethertype, and an Ethernet header cut short.
        let mut v6 = vec![0u8; 12];
        v6.extend_from_slice(&[0x86, 0xdd, 0x60]);
        assert_eq!(strip_link_layer(LINKTYPE_ETHERNET, &v6), Frame::NotIpv4);
        for cut in 0..14 {
            assert_eq!(
                strip_link_layer(LINKTYPE_ETHERNET, &f[..cut]),
                Frame::Malformed
            );
        }
        // Ethertype IPv4 but version 6 inside; and nothing after the header.
        let mut bad = f[..14].to_vec();
        bad.push(0x60);
        assert_eq!(strip_link_layer(LINKTYPE_ETHERNET, &bad), Frame::NotIpv4);
        assert_eq!(
            strip_link_layer(LINKTYPE_ETHERNET, &f[..14]),
            Frame::Malformed
        );
    }

    #[test]
    fn null_loop_sll_sll2() {
        let mut n = 2u32.to_le_bytes().to_vec();
        n.extend_from_slice(&IP);
        assert_eq!(strip_link_layer(LINKTYPE_NULL, &n), Frame::Ipv4(&IP));
        let mut l = 2u32.to_be_bytes().to_vec();
        l.extend_from_slice(&IP);
        assert_eq!(strip_link_layer(LINKTYPE_LOOP, &l), Frame::Ipv4(&IP));
        let mut n6 = 30u32.to_le_bytes().to_vec();
        n6.extend_from_slice(&IP);
        assert_eq!(strip_link_layer(LINKTYPE_NULL, &n6), Frame::NotIpv4);

        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&[0x08, 0x00]);
        sll.extend_from_slice(&IP);
        assert_eq!(strip_link_layer(LINKTYPE_LINUX_SLL, &sll), Frame::Ipv4(&IP));
        assert_eq!(
            strip_link_layer(LINKTYPE_LINUX_SLL, &sll[..15]),
            Frame::Malformed
        );
        let mut sll2 = vec![0x08, 0x00];
        sll2.extend_from_slice(&[0u8; 18]);
        sll2.extend_from_slice(&IP);
        assert_eq!(
            strip_link_layer(LINKTYPE_LINUX_SLL2, &sll2),
            Frame::Ipv4(&IP)
        );
        sll2[1] = 0x06;
        assert_eq!(strip_link_layer(LINKTYPE_LINUX_SLL2, &sll2), Frame::NotIpv4);
        assert_eq!(
            strip_link_layer(LINKTYPE_LINUX_SLL2, &sll2[..19]),
            Frame::Malformed
        );
        assert_eq!(strip_link_layer(LINKTYPE_RAW, &[]), Frame::Malformed);
        assert_eq!(strip_link_layer(LINKTYPE_RAW, &[0x60]), Frame::NotIpv4);
    }

    #[test]
    fn header_byte_orders_and_link_type_fcs_bits() {
        for (magic, be) in [
            (MAGIC_MICROS, false),
            (MAGIC_NANOS, false),
            (MAGIC_MICROS, true),
            (MAGIC_NANOS, true),
        ] {
            let w = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
            let mut h = w(magic).to_vec();
            h.extend_from_slice(&[0u8; 12]);
            h.extend_from_slice(&w(65535));
            // FCS bits set in the upper nibble: still Ethernet.
            h.extend_from_slice(&w(0x1000_0001));
            let s = PcapStream::new(&h[..]).unwrap();
            assert_eq!(s.link_type(), LINKTYPE_ETHERNET);
        }
    }
}
