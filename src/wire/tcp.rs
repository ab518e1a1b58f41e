//! TCP segments (RFC 9293 section 3.1) and options.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Source Port          |       Destination Port        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                        Sequence Number                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Acknowledgment Number                      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Data |       |C|E|U|A|P|R|S|F|                               |
//! | Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
//! |       |       |R|E|G|K|H|T|N|N|                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           Checksum            |         Urgent Pointer        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                           [Options]                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The checksum covers a pseudo-header (addresses, protocol, TCP length),
//! the TCP header and the data (RFC 9293 section 3.1).
//!
//! Options (RFC 9293 section 3.2) are kind-length-value, except End of
//! Option List (kind 0) and No-Operation (kind 1) which are one byte:
//! MSS (kind 2, RFC 9293), Window Scale (3, RFC 7323), SACK-Permitted (4) and
//! SACK (5, RFC 2018), Timestamps (8, RFC 7323).

use super::checksum;
use super::ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
use super::seq::SeqNumber;
use super::{Field, WireError};
use core::fmt;
use core::ops::{BitAnd, BitOr, BitOrAssign, Not};
use std::net::Ipv4Addr;

/// The control bits of a TCP header (byte 13).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: TcpFlags = TcpFlags(0x01);
    pub const SYN: TcpFlags = TcpFlags(0x02);
    pub const RST: TcpFlags = TcpFlags(0x04);
    pub const PSH: TcpFlags = TcpFlags(0x08);
    pub const ACK: TcpFlags = TcpFlags(0x10);
    pub const URG: TcpFlags = TcpFlags(0x20);
    pub const ECE: TcpFlags = TcpFlags(0x40);
    pub const CWR: TcpFlags = TcpFlags(0x80);

    pub const fn empty() -> TcpFlags {
        TcpFlags(0)
    }
    pub const fn bits(self) -> u8 {
        self.0
    }
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// Are all bits of `other` set in `self`?
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// Is any bit of `other` set in `self`?
    pub const fn intersects(self, other: TcpFlags) -> bool {
        self.0 & other.0 != 0
    }
    pub fn insert(&mut self, other: TcpFlags) {
        self.0 |= other.0;
    }
    pub fn remove(&mut self, other: TcpFlags) {
        self.0 &= !other.0;
    }
    pub fn set(&mut self, other: TcpFlags, on: bool) {
        if on {
            self.insert(other)
        } else {
            self.remove(other)
        }
    }
    pub const fn fin(self) -> bool {
        self.0 & 0x01 != 0
    }
    pub const fn syn(self) -> bool {
        self.0 & 0x02 != 0
    }
    pub const fn rst(self) -> bool {
        self.0 & 0x04 != 0
    }
    pub const fn psh(self) -> bool {
        self.0 & 0x08 != 0
    }
    pub const fn ack(self) -> bool {
        self.0 & 0x10 != 0
    }
    pub const fn urg(self) -> bool {
        self.0 & 0x20 != 0
    }
    pub const fn ece(self) -> bool {
        self.0 & 0x40 != 0
    }
    pub const fn cwr(self) -> bool {
        self.0 & 0x80 != 0
    }
}

impl BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, o: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | o.0)
    }
}
impl BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, o: TcpFlags) {
        self.0 |= o.0;
    }
}
impl BitAnd for TcpFlags {
    type Output = TcpFlags;
    fn bitand(self, o: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 & o.0)
    }
}
impl Not for TcpFlags {
    type Output = TcpFlags;
    fn not(self) -> TcpFlags {
        TcpFlags(!self.0)
    }
}

/// tcpdump's notation, in tcpdump's order: `F S R P . U E W` (`.` is ACK),
/// `none` when no flag is set. A SYN-ACK is `S.`, a FIN-ACK `F.`.
impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        const NAMES: [(u8, &str); 8] = [
            (0x01, "F"),
            (0x02, "S"),
            (0x04, "R"),
            (0x08, "P"),
            (0x10, "."),
            (0x20, "U"),
            (0x40, "E"),
            (0x80, "W"),
        ];
        for (bit, name) in NAMES {
            if self.0 & bit != 0 {
                f.write_str(name)?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "[{self}]")
    }
}

mod field {
    use super::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ_NUM: Field = 4..8;
    pub const ACK_NUM: Field = 8..12;
    pub const OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WIN_SIZE: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;
/// Longest header (data offset 15).
pub const MAX_HEADER_LEN: usize = 60;
/// Most option bytes a header can carry.
pub const MAX_OPTIONS_LEN: usize = MAX_HEADER_LEN - HEADER_LEN;

/// A zero-copy view of a TCP segment (header + data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    pub const fn new_unchecked(buffer: T) -> TcpPacket<T> {
        TcpPacket { buffer }
    }

    /// Wrap after checking: at least 20 bytes, data offset >= 5, header
    /// length <= buffer length. Then no accessor panics.
    pub fn new_checked(buffer: T) -> Result<TcpPacket<T>, WireError> {
        let p = TcpPacket::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// The checks of [`TcpPacket::new_checked`].
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let hl = self.header_len();
        if hl < HEADER_LEN {
            return Err(WireError::BadTcpOffset);
        }
        if hl > len {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn u16_at(&self, f: Field) -> u16 {
        let b = &self.buffer.as_ref()[f];
        u16::from_be_bytes([b[0], b[1]])
    }
    fn u32_at(&self, f: Field) -> u32 {
        let b = &self.buffer.as_ref()[f];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT)
    }
    pub fn dst_port(&self) -> u16 {
        self.u16_at(field::DST_PORT)
    }
    pub fn seq_number(&self) -> SeqNumber {
        SeqNumber(self.u32_at(field::SEQ_NUM))
    }
    pub fn ack_number(&self) -> SeqNumber {
        SeqNumber(self.u32_at(field::ACK_NUM))
    }
    /// Header length in bytes (data offset * 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::OFFSET] >> 4) * 4
    }
    /// The four reserved bits after the data offset (must be zero; the
    /// lowest was the experimental NS bit of RFC 3540, now historic).
    pub fn reserved(&self) -> u8 {
        self.buffer.as_ref()[field::OFFSET] & 0x0f
    }
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS])
    }
    /// The raw (unscaled) window field.
    pub fn window_len(&self) -> u16 {
        self.u16_at(field::WIN_SIZE)
    }
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }
    pub fn urgent_at(&self) -> u16 {
        self.u16_at(field::URGENT)
    }
    /// The raw option bytes.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }
    /// The options, parsed one by one.
    pub fn options_iter(&self) -> TcpOptions<'_> {
        TcpOptions::new(self.options())
    }
    /// The data after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
    /// Segment length in sequence space: data plus one for SYN and for FIN.
    pub fn segment_len(&self) -> usize {
        self.payload().len() + usize::from(self.flags().syn()) + usize::from(self.flags().fin())
    }
    /// Does the checksum (pseudo-header + whole segment) verify?
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let data = self.buffer.as_ref();
        let ph = checksum::pseudo_header_sum(src, dst, IpProtocol::TCP, data.len() as u32);
        checksum::fold(u64::from(ph) + checksum::sum(data)) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    fn set_u16(&mut self, f: Field, v: u16) {
        self.buffer.as_mut()[f].copy_from_slice(&v.to_be_bytes());
    }
    fn set_u32(&mut self, f: Field, v: u32) {
        self.buffer.as_mut()[f].copy_from_slice(&v.to_be_bytes());
    }
    pub fn set_src_port(&mut self, v: u16) {
        self.set_u16(field::SRC_PORT, v)
    }
    pub fn set_dst_port(&mut self, v: u16) {
        self.set_u16(field::DST_PORT, v)
    }
    pub fn set_seq_number(&mut self, v: SeqNumber) {
        self.set_u32(field::SEQ_NUM, v.0)
    }
    pub fn set_ack_number(&mut self, v: SeqNumber) {
        self.set_u32(field::ACK_NUM, v.0)
    }
    /// Set the header length in bytes (a multiple of 4, 20..=60); clears the
    /// reserved bits.
    pub fn set_header_len(&mut self, len: usize) {
        self.buffer.as_mut()[field::OFFSET] = ((len / 4) as u8) << 4;
    }
    pub fn set_flags(&mut self, f: TcpFlags) {
        self.buffer.as_mut()[field::FLAGS] = f.0;
    }
    pub fn set_window_len(&mut self, v: u16) {
        self.set_u16(field::WIN_SIZE, v)
    }
    pub fn set_checksum(&mut self, v: u16) {
        self.set_u16(field::CHECKSUM, v)
    }
    pub fn set_urgent_at(&mut self, v: u16) {
        self.set_u16(field::URGENT, v)
    }
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[HEADER_LEN..hl]
    }
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[hl..]
    }
    /// Compute and store the checksum over the pseudo-header and the whole
    /// buffer (header + data).
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let ph = checksum::pseudo_header_sum(src, dst, IpProtocol::TCP, data.len() as u32);
        let c = !checksum::fold(u64::from(ph) + checksum::sum(data));
        self.set_checksum(c);
    }
}

/// Option kinds.
mod kind {
    pub const END: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WS: u8 = 3;
    pub const SACK_PERM: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TS: u8 = 8;
}

/// One TCP option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpOption<'a> {
    /// Kind 0: the end of the option list; the rest is padding.
    EndOfList,
    /// Kind 1: padding between options.
    NoOperation,
    /// Kind 2, length 4: the largest segment the sender can receive.
    MaxSegmentSize(u16),
    /// Kind 3, length 3: the window shift count (RFC 7323 section 2). The
    /// raw value is kept; RFC 7323 says to use 14 if it is larger.
    WindowScale(u8),
    /// Kind 4, length 2 (RFC 2018).
    SackPermitted,
    /// Kind 5, length 2 + 8n, n = 1..=4 (RFC 2018): (left, right) edges.
    SackRange([Option<(u32, u32)>; 4]),
    /// Kind 8, length 10 (RFC 7323 section 3).
    Timestamp { tsval: u32, tsecr: u32 },
    /// Any other kind, with its data (without kind and length bytes).
    Unknown { kind: u8, data: &'a [u8] },
}

impl<'a> TcpOption<'a> {
    /// Parse the option at the start of `buf`; return the bytes after it and
    /// the option. Lengths are checked against the option's kind and
    /// against the end of `buf` (the end of the header).
    pub fn parse(buf: &'a [u8]) -> Result<(&'a [u8], TcpOption<'a>), WireError> {
        let (&k, _) = buf.split_first().ok_or(WireError::Truncated)?;
        match k {
            kind::END => return Ok((&buf[1..], TcpOption::EndOfList)),
            kind::NOP => return Ok((&buf[1..], TcpOption::NoOperation)),
            _ => {}
        }
        let len = usize::from(*buf.get(1).ok_or(WireError::BadOption)?);
        if len < 2 || len > buf.len() {
            return Err(WireError::BadOption);
        }
        let data = &buf[2..len];
        let rest = &buf[len..];
        let be32 = |d: &[u8]| u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
        let opt = match k {
            kind::MSS if len == 4 => {
                TcpOption::MaxSegmentSize(u16::from_be_bytes([data[0], data[1]]))
            }
            kind::WS if len == 3 => TcpOption::WindowScale(data[0]),
            kind::SACK_PERM if len == 2 => TcpOption::SackPermitted,
            kind::SACK if data.len().is_multiple_of(8) && (1..=4).contains(&(data.len() / 8)) => {
                let mut ranges = [None; 4];
                for (slot, block) in ranges.iter_mut().zip(data.chunks_exact(8)) {
                    *slot = Some((be32(&block[0..4]), be32(&block[4..8])));
                }
                TcpOption::SackRange(ranges)
            }
            kind::TS if len == 10 => TcpOption::Timestamp {
                tsval: be32(&data[0..4]),
                tsecr: be32(&data[4..8]),
            },
            kind::MSS | kind::WS | kind::SACK_PERM | kind::SACK | kind::TS => {
                return Err(WireError::BadOption)
            }
            _ => TcpOption::Unknown { kind: k, data },
        };
        Ok((rest, opt))
    }

    /// Bytes this option takes on the wire.
    pub fn buffer_len(&self) -> usize {
        match self {
            TcpOption::EndOfList | TcpOption::NoOperation => 1,
            TcpOption::MaxSegmentSize(_) => 4,
            TcpOption::WindowScale(_) => 3,
            TcpOption::SackPermitted => 2,
            TcpOption::SackRange(r) => 2 + 8 * r.iter().flatten().count(),
            TcpOption::Timestamp { .. } => 10,
            TcpOption::Unknown { data, .. } => 2 + data.len(),
        }
    }

    /// Write the option at the start of `buf` and return the bytes after it.
    /// Panics if `buf` is shorter than [`TcpOption::buffer_len`].
    pub fn emit<'b>(&self, buf: &'b mut [u8]) -> &'b mut [u8] {
        let len = self.buffer_len();
        let (b, rest) = buf.split_at_mut(len);
        match *self {
            TcpOption::EndOfList => b[0] = kind::END,
            TcpOption::NoOperation => b[0] = kind::NOP,
            TcpOption::MaxSegmentSize(m) => {
                b[..2].copy_from_slice(&[kind::MSS, 4]);
                b[2..4].copy_from_slice(&m.to_be_bytes());
            }
            TcpOption::WindowScale(s) => b.copy_from_slice(&[kind::WS, 3, s]),
            TcpOption::SackPermitted => b.copy_from_slice(&[kind::SACK_PERM, 2]),
            TcpOption::SackRange(r) => {
                b[..2].copy_from_slice(&[kind::SACK, len as u8]);
                for (chunk, (l, r)) in b[2..].chunks_exact_mut(8).zip(r.iter().flatten()) {
                    chunk[..4].copy_from_slice(&l.to_be_bytes());
                    chunk[4..].copy_from_slice(&r.to_be_bytes());
                }
            }
            TcpOption::Timestamp { tsval, tsecr } => {
                b[..2].copy_from_slice(&[kind::TS, 10]);
                b[2..6].copy_from_slice(&tsval.to_be_bytes());
                b[6..10].copy_from_slice(&tsecr.to_be_bytes());
            }
            TcpOption::Unknown { kind, data } => {
                b[0] = kind;
                b[1] = len as u8;
                b[2..].copy_from_slice(data);
            }
        }
        rest
    }
}

/// An iterator over the options of a header. It yields `Err` once on a
/// malformed option and then stops; it stops at End of Option List.
#[derive(Clone, Debug)]
pub struct TcpOptions<'a> {
    rest: &'a [u8],
}

impl<'a> TcpOptions<'a> {
    pub fn new(options: &'a [u8]) -> Self {
        TcpOptions { rest: options }
    }
}

impl<'a> Iterator for TcpOptions<'a> {
    type Item = Result<TcpOption<'a>, WireError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match TcpOption::parse(self.rest) {
            Ok((rest, opt)) => {
                self.rest = if opt == TcpOption::EndOfList {
                    &[]
                } else {
                    rest
                };
                Some(Ok(opt))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

/// The meaning of a TCP segment.
///
/// The repr holds exactly what is on the wire: the option fields are filled
/// from whatever segment carries them, and it is the state machine's job to
/// honour MSS / window scale / SACK-permitted only on SYNs (RFC 9293 3.7.1,
/// RFC 7323 2.2, RFC 2018 section 2).
///
/// Parsing keeps the first 3 SACK blocks of a SACK option (a segment may
/// carry 4 when it has no timestamps; RFC 2018 says the first block is the
/// most recent, so dropping the last loses the least). Unknown options are
/// skipped; malformed ones make the whole segment `BadOption`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TcpRepr<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    /// Exactly the flag bits on the wire.
    pub flags: TcpFlags,
    pub seq_number: SeqNumber,
    /// Meaningful when `flags` has ACK (emit writes it regardless).
    pub ack_number: SeqNumber,
    /// The raw 16-bit window field (unscaled).
    pub window_len: u16,
    pub urgent_at: u16,
    pub max_seg_size: Option<u16>,
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    /// (left, right) edges of SACK blocks, first = most recent.
    pub sack_ranges: [Option<(u32, u32)>; 3],
    /// (TSval, TSecr).
    pub timestamp: Option<(u32, u32)>,
    pub payload: &'a [u8],
}

impl<'a> TcpRepr<'a> {
    /// A segment with the given ports, sequence number and flags, and
    /// everything else zero, `None` or empty.
    pub fn new(
        src_port: u16,
        dst_port: u16,
        seq_number: SeqNumber,
        flags: TcpFlags,
    ) -> TcpRepr<'a> {
        TcpRepr {
            src_port,
            dst_port,
            seq_number,
            flags,
            ..TcpRepr::default()
        }
    }

    /// Validate a segment and read it. With `verify_checksum`, a wrong
    /// checksum gives `BadChecksum`.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &TcpPacket<&'a T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        verify_checksum: bool,
    ) -> Result<TcpRepr<'a>, WireError> {
        packet.check_len()?;
        if verify_checksum && !packet.verify_checksum(src, dst) {
            return Err(WireError::BadChecksum);
        }
        // Re-borrow with lifetime 'a so the payload outlives `packet`.
        let bytes: &'a [u8] = packet.buffer.as_ref();
        let hl = packet.header_len();
        let mut repr = TcpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            flags: packet.flags(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            window_len: packet.window_len(),
            urgent_at: packet.urgent_at(),
            payload: &bytes[hl..],
            ..TcpRepr::default()
        };
        for opt in TcpOptions::new(&bytes[HEADER_LEN..hl]) {
            match opt? {
                TcpOption::MaxSegmentSize(m) => repr.max_seg_size = Some(m),
                TcpOption::WindowScale(s) => repr.window_scale = Some(s),
                TcpOption::SackPermitted => repr.sack_permitted = true,
                TcpOption::SackRange(r) => repr.sack_ranges = [r[0], r[1], r[2]],
                TcpOption::Timestamp { tsval, tsecr } => repr.timestamp = Some((tsval, tsecr)),
                TcpOption::EndOfList | TcpOption::NoOperation | TcpOption::Unknown { .. } => {}
            }
        }
        Ok(repr)
    }

    /// Option bytes other than SACK blocks, in the Linux layout (each group
    /// 4-byte aligned with NOPs): MSS (4); SACK-permitted+TS (12) or
    /// NOP,NOP,TS (12); NOP,NOP,SACK-permitted (4); NOP,WS (4).
    fn fixed_options_len(&self) -> usize {
        let mut n = 0;
        if self.max_seg_size.is_some() {
            n += 4;
        }
        if self.timestamp.is_some() {
            n += 12;
        } else if self.sack_permitted {
            n += 4;
        }
        if self.window_scale.is_some() {
            n += 4;
        }
        n
    }

    /// How many SACK blocks `emit` writes: as many of `sack_ranges` as fit in
    /// the 40 option bytes after the other options (NOP,NOP,SACK header 4 +
    /// 8 per block). Blocks are kept from the front (the most recent).
    pub fn sack_blocks_emitted(&self) -> usize {
        let room = MAX_OPTIONS_LEN - self.fixed_options_len();
        let fit = room.saturating_sub(4) / 8;
        self.sack_ranges.iter().flatten().count().min(fit)
    }

    /// The emitted header length: 20 plus options padded to a multiple of 4.
    /// At most 60.
    pub fn header_len(&self) -> usize {
        let sacks = self.sack_blocks_emitted();
        HEADER_LEN + self.fixed_options_len() + if sacks > 0 { 4 + 8 * sacks } else { 0 }
    }

    /// Header plus payload.
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// Length in sequence space: payload + 1 for SYN + 1 for FIN.
    pub fn segment_len(&self) -> usize {
        self.payload.len() + usize::from(self.flags.syn()) + usize::from(self.flags.fin())
    }

    /// Write header, options and payload. The packet buffer must be exactly
    /// [`TcpRepr::buffer_len`] bytes long when `fill_checksum` (the checksum
    /// covers the whole buffer), and at least that long otherwise.
    /// Without `fill_checksum` the checksum field is zero (for offload).
    ///
    /// # Panics
    /// If the buffer is shorter than `buffer_len()` (a bug in the caller).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut TcpPacket<T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        fill_checksum: bool,
    ) {
        let hl = self.emit_header(packet.buffer.as_mut());
        packet.buffer.as_mut()[hl..hl + self.payload.len()].copy_from_slice(self.payload);
        if fill_checksum {
            packet.fill_checksum(src, dst);
        }
    }

    /// Write the header and options (checksum zero) into `b`; return the
    /// header length.
    fn emit_header(&self, b: &mut [u8]) -> usize {
        let hl = self.header_len();
        let b = &mut b[..hl];
        b[field::SRC_PORT].copy_from_slice(&self.src_port.to_be_bytes());
        b[field::DST_PORT].copy_from_slice(&self.dst_port.to_be_bytes());
        b[field::SEQ_NUM].copy_from_slice(&self.seq_number.0.to_be_bytes());
        b[field::ACK_NUM].copy_from_slice(&self.ack_number.0.to_be_bytes());
        b[field::OFFSET] = ((hl / 4) as u8) << 4;
        b[field::FLAGS] = self.flags.0;
        b[field::WIN_SIZE].copy_from_slice(&self.window_len.to_be_bytes());
        b[field::CHECKSUM].copy_from_slice(&[0, 0]);
        b[field::URGENT].copy_from_slice(&self.urgent_at.to_be_bytes());
        let mut o = &mut b[HEADER_LEN..];
        if let Some(mss) = self.max_seg_size {
            o = TcpOption::MaxSegmentSize(mss).emit(o);
        }
        if let Some((tsval, tsecr)) = self.timestamp {
            if self.sack_permitted {
                o = TcpOption::SackPermitted.emit(o);
            } else {
                o = TcpOption::NoOperation.emit(o);
                o = TcpOption::NoOperation.emit(o);
            }
            o = TcpOption::Timestamp { tsval, tsecr }.emit(o);
        } else if self.sack_permitted {
            o = TcpOption::NoOperation.emit(o);
            o = TcpOption::NoOperation.emit(o);
            o = TcpOption::SackPermitted.emit(o);
        }
        if let Some(ws) = self.window_scale {
            o = TcpOption::NoOperation.emit(o);
            o = TcpOption::WindowScale(ws).emit(o);
        }
        let n = self.sack_blocks_emitted();
        if n > 0 {
            let mut blocks = [None; 4];
            for (slot, r) in blocks
                .iter_mut()
                .zip(self.sack_ranges.iter().flatten())
                .take(n)
            {
                *slot = Some(*r);
            }
            o = TcpOption::NoOperation.emit(o);
            o = TcpOption::NoOperation.emit(o);
            o = TcpOption::SackRange(blocks).emit(o);
        }
        debug_assert!(o.is_empty());
        hl
    }
}

/// Write a complete IPv4 + TCP packet (both checksums filled) into `buf` and
/// return its length, `20 + tcp.buffer_len()`.
///
/// Only `src_addr`, `dst_addr`, `ttl`, `ident` and `dont_frag` are taken from
/// `ip`; the protocol is TCP and the payload length is the segment's. The
/// TCP checksum is computed once, as the header and payload sums are added
/// (the payload is summed from the caller's slice, then copied).
///
/// # Panics
/// If `buf` is shorter than the packet (a bug in the caller: the output
/// buffer is at least the MTU and segments are cut to fit it).
pub fn emit_ipv4_tcp(buf: &mut [u8], ip: &Ipv4Repr, tcp: &TcpRepr) -> usize {
    emit_ipv4_tcp_with(buf, ip, tcp, false)
}

/// The IPv4 and TCP headers of a segment whose payload is `payload[0]`
/// followed by `payload[1]` (for example straight from a send ring buffer,
/// so the payload is never copied into the packet: the device writes the
/// parts with one `writev`). `tcp.payload` is ignored. Returns the header
/// length; the checksum covers the payload parts (or is partial, see
/// [`emit_ipv4_tcp_with`]).
pub fn emit_ipv4_tcp_headers(
    buf: &mut [u8],
    ip: &Ipv4Repr,
    tcp: &TcpRepr,
    payload: [&[u8]; 2],
    partial_checksum: bool,
) -> usize {
    let payload_len = payload[0].len() + payload[1].len();
    let hl = tcp.header_len();
    let tcp_len = hl + payload_len;
    let total = super::ipv4::HEADER_LEN + hl;
    assert!(
        buf.len() >= total,
        "emit_ipv4_tcp_headers: buffer of {} bytes for {} bytes of headers",
        buf.len(),
        total
    );
    let ip_repr = Ipv4Repr {
        protocol: IpProtocol::Tcp,
        payload_len: tcp_len,
        ..*ip
    };
    let (ip_buf, rest) = buf[..total].split_at_mut(super::ipv4::HEADER_LEN);
    ip_repr.emit(&mut Ipv4Packet::new_unchecked(&mut *ip_buf), true);
    tcp.emit_header(rest);
    let ph = checksum::pseudo_header_sum(ip.src_addr, ip.dst_addr, IpProtocol::TCP, tcp_len as u32);
    let c = if partial_checksum {
        checksum::fold(u64::from(ph))
    } else {
        // The header length is a multiple of 4, so the payload's words line up.
        let sum = u64::from(ph)
            + checksum::sum(&rest[..hl])
            + checksum::sum_parts(payload[0], payload[1]);
        !checksum::fold(sum)
    };
    rest[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
    total
}

/// [`emit_ipv4_tcp`], with `partial_checksum` for a device with checksum
/// offload: the checksum field then holds only the folded pseudo-header
/// sum (not complemented, as Linux's `CHECKSUM_PARTIAL` expects) and the
/// payload is copied without being summed: the device computes the rest.
pub fn emit_ipv4_tcp_with(
    buf: &mut [u8],
    ip: &Ipv4Repr,
    tcp: &TcpRepr,
    partial_checksum: bool,
) -> usize {
    let tcp_len = tcp.buffer_len();
    let total = super::ipv4::HEADER_LEN + tcp_len;
    assert!(
        buf.len() >= total,
        "emit_ipv4_tcp: buffer of {} bytes for a {}-byte packet",
        buf.len(),
        total
    );
    let ip_repr = Ipv4Repr {
        protocol: IpProtocol::Tcp,
        payload_len: tcp_len,
        ..*ip
    };
    let (ip_buf, rest) = buf[..total].split_at_mut(super::ipv4::HEADER_LEN);
    ip_repr.emit(&mut Ipv4Packet::new_unchecked(&mut *ip_buf), true);
    let hl = tcp.emit_header(rest);
    rest[hl..].copy_from_slice(tcp.payload);
    let ph = checksum::pseudo_header_sum(ip.src_addr, ip.dst_addr, IpProtocol::TCP, tcp_len as u32);
    let c = if partial_checksum {
        checksum::fold(u64::from(ph))
    } else {
        // The header length is a multiple of 4, so the payload's words line up.
        let sum = u64::from(ph) + checksum::sum(&rest[..hl]) + checksum::sum(tcp.payload);
        !checksum::fold(sum)
    };
    rest[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    /// A Linux SYN (constructed from a Linux 6.x capture's layout):
    /// 10.0.0.1:43210 > 10.0.0.2:80, seq 0x01020304, win 64240,
    /// options [mss 1460, sackOK, TS val 0x11223344 ecr 0, nop, wscale 7].
    const SYN: [u8; 40] = [
        0xa8, 0xca, 0x00, 0x50, // ports 43210 -> 80
        0x01, 0x02, 0x03, 0x04, // seq
        0x00, 0x00, 0x00, 0x00, // ack
        0xa0, 0x02, 0xfa, 0xf0, // offset 10 (40 bytes), SYN, win 64240
        0x47, 0x86, 0x00, 0x00, // checksum (computed independently in Python), urgent
        0x02, 0x04, 0x05, 0xb4, // MSS 1460
        0x04, 0x02, 0x08, 0x0a, // SACK-permitted, TS kind/len
        0x11, 0x22, 0x33, 0x44, // TSval
        0x00, 0x00, 0x00, 0x00, // TSecr
        0x01, 0x03, 0x03, 0x07, // NOP, WS 7
    ];

    fn syn_repr() -> TcpRepr<'static> {
        TcpRepr {
            window_len: 64240,
            max_seg_size: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            timestamp: Some((0x11223344, 0)),
            ..TcpRepr::new(43210, 80, SeqNumber(0x01020304), TcpFlags::SYN)
        }
    }

    fn emit(repr: &TcpRepr) -> Vec<u8> {
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), SRC, DST, true);
        buf
    }

    #[test]
    fn syn_checksum_is_correct() {
        // Independent check: sum pseudo-header + segment with the naive loop.
        let mut v = vec![10, 0, 0, 1, 10, 0, 0, 2, 0, 6, 0, 40];
        v.extend_from_slice(&SYN);
        assert_eq!(checksum::checksum(&v), 0);
        assert!(TcpPacket::new_checked(&SYN[..])
            .unwrap()
            .verify_checksum(SRC, DST));
    }

    #[test]
    fn parse_linux_syn() {
        let p = TcpPacket::new_checked(&SYN[..]).unwrap();
        assert_eq!(p.header_len(), 40);
        assert_eq!(p.flags(), TcpFlags::SYN);
        assert_eq!(p.segment_len(), 1);
        let r = TcpRepr::parse(&p, SRC, DST, true).unwrap();
        assert_eq!(r, syn_repr());
        assert_eq!(r.segment_len(), 1);
    }

    #[test]
    fn emit_linux_syn_byte_exact() {
        assert_eq!(syn_repr().header_len(), 40);
        assert_eq!(emit(&syn_repr()), SYN.to_vec());
    }

    #[test]
    fn syn_ack_round_trip() {
        let r = TcpRepr {
            ack_number: SeqNumber(0x01020305),
            window_len: 65160,
            max_seg_size: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            timestamp: Some((7, 0x11223344)),
            ..TcpRepr::new(
                80,
                43210,
                SeqNumber(0xfffffff0),
                TcpFlags::SYN | TcpFlags::ACK,
            )
        };
        let bytes = emit(&r);
        assert_eq!(&bytes[12..14], &[0xa0, 0x12]);
        let p = TcpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(TcpRepr::parse(&p, SRC, DST, true).unwrap(), r);
        assert_eq!(format!("{}", r.flags), "S.");
    }

    #[test]
    fn data_segment_round_trip_and_byte_layout() {
        let payload = b"GET / HTTP/1.1\r\n\r\n";
        let r = TcpRepr {
            ack_number: SeqNumber(1000),
            window_len: 502,
            timestamp: Some((100, 200)),
            payload,
            ..TcpRepr::new(43210, 80, SeqNumber(1), TcpFlags::PSH | TcpFlags::ACK)
        };
        assert_eq!(r.header_len(), 32);
        let bytes = emit(&r);
        assert_eq!(&bytes[20..24], &[1, 1, 8, 10]); // NOP NOP TS
        assert_eq!(&bytes[32..], payload);
        let p = TcpPacket::new_checked(&bytes[..]).unwrap();
        let back = TcpRepr::parse(&p, SRC, DST, true).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.segment_len(), payload.len());
    }

    #[test]
    fn sack_blocks_fit_in_options() {
        let mut r = TcpRepr::new(1, 2, SeqNumber(3), TcpFlags::ACK);
        r.sack_ranges = [Some((10, 20)), Some((30, 40)), Some((50, 60))];
        assert_eq!(r.header_len(), 20 + 4 + 24);
        r.timestamp = Some((1, 2));
        assert_eq!(r.header_len(), 60);
        let bytes = emit(&r);
        assert_eq!(&bytes[32..36], &[1, 1, 5, 26]);
        let back =
            TcpRepr::parse(&TcpPacket::new_checked(&bytes[..]).unwrap(), SRC, DST, true).unwrap();
        assert_eq!(back, r);
        // With MSS and WS as well only two blocks fit; the first two are kept.
        r.max_seg_size = Some(536);
        r.window_scale = Some(0);
        assert_eq!(r.sack_blocks_emitted(), 2);
        assert_eq!(r.header_len(), 60);
        let bytes = emit(&r);
        let back =
            TcpRepr::parse(&TcpPacket::new_checked(&bytes[..]).unwrap(), SRC, DST, true).unwrap();
        assert_eq!(back.sack_ranges, [Some((10, 20)), Some((30, 40)), None]);
    }

    #[test]
    fn four_sack_blocks_parse_keeps_three() {
        let mut opts = vec![5u8, 34];
        for i in 0..8u32 {
            opts.extend_from_slice(&(i * 100).to_be_bytes());
        }
        opts.extend_from_slice(&[1, 1]);
        let mut seg = vec![0u8; 20];
        seg.extend_from_slice(&opts);
        let mut p = TcpPacket::new_unchecked(&mut seg[..]);
        p.set_header_len(56);
        let r =
            TcpRepr::parse(&TcpPacket::new_checked(&seg[..]).unwrap(), SRC, DST, false).unwrap();
        assert_eq!(
            r.sack_ranges,
            [Some((0, 100)), Some((200, 300)), Some((400, 500))]
        );
    }

    #[test]
    fn every_truncated_prefix_is_an_error() {
        for n in 0..SYN.len() {
            let e = TcpPacket::new_checked(&SYN[..n]).err();
            assert_eq!(e, Some(WireError::Truncated), "prefix {n}");
        }
    }

    #[test]
    fn bad_checksum_detected() {
        let mut b = SYN;
        b[30] ^= 0x40;
        let p = TcpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(
            TcpRepr::parse(&p, SRC, DST, true),
            Err(WireError::BadChecksum)
        );
        // Wrong pseudo-header (other address) is also a bad checksum.
        let p = TcpPacket::new_checked(&SYN[..]).unwrap();
        assert_eq!(
            TcpRepr::parse(&p, SRC, Ipv4Addr::new(10, 0, 0, 3), true),
            Err(WireError::BadChecksum)
        );
    }

    #[test]
    fn bad_data_offset() {
        let mut b = SYN;
        b[12] = 0x40;
        assert_eq!(
            TcpPacket::new_checked(&b[..]).err(),
            Some(WireError::BadTcpOffset)
        );
        b[12] = 0xf0; // 60 bytes > 40
        assert_eq!(
            TcpPacket::new_checked(&b[..]).err(),
            Some(WireError::Truncated)
        );
    }

    fn options_result(opts: &[u8]) -> Result<(), WireError> {
        let mut seg = vec![0u8; 20];
        seg.extend_from_slice(opts);
        while !seg.len().is_multiple_of(4) {
            seg.push(0);
        }
        let hl = seg.len();
        TcpPacket::new_unchecked(&mut seg[..]).set_header_len(hl);
        let p = TcpPacket::new_checked(&seg[..])?;
        TcpRepr::parse(&p, SRC, DST, false).map(|_| ())
    }

    #[test]
    fn bad_option_lengths() {
        let bad: &[&[u8]] = &[
            &[2, 3, 5],                   // MSS length 3
            &[2, 5, 5, 180, 0],           // MSS length 5
            &[3, 2],                      // WS length 2
            &[3, 4, 7, 0],                // WS length 4
            &[4, 3, 0],                   // SACK-permitted length 3
            &[5, 2],                      // SACK with no block
            &[5, 9, 0, 0, 0, 0, 0, 0, 0], // SACK 2+7
            &[8, 9, 0, 0, 0, 0, 0, 0, 0], // TS length 9
            &[8, 10, 0, 0, 0, 0, 0, 0],   // TS runs past the header
            &[30, 1],                     // unknown kind, length 1
            &[30, 0],                     // length 0
            &[30, 9, 0, 0],               // unknown kind past the header
            &[1, 1, 1, 2],                // a kind byte with no length byte
        ];
        for opts in bad {
            assert_eq!(options_result(opts), Err(WireError::BadOption), "{opts:?}");
        }
        // SACK with 5 blocks (42 bytes) cannot even fit: header would be 64.
        let good: &[&[u8]] = &[&[30, 2], &[30, 4, 1, 2], &[0, 2, 3], &[1, 1, 1, 1], &[]];
        for opts in good {
            assert_eq!(options_result(opts), Ok(()), "{opts:?}");
        }
    }

    #[test]
    fn option_parse_rest_and_iterator() {
        let opts = [2, 4, 5, 0xb4, 1, 3, 3, 7, 0, 0xff];
        let items: Vec<_> = TcpOptions::new(&opts).collect();
        assert_eq!(
            items,
            vec![
                Ok(TcpOption::MaxSegmentSize(1460)),
                Ok(TcpOption::NoOperation),
                Ok(TcpOption::WindowScale(7)),
                Ok(TcpOption::EndOfList)
            ]
        );
        let (rest, o) = TcpOption::parse(&opts).unwrap();
        assert_eq!(o, TcpOption::MaxSegmentSize(1460));
        assert_eq!(rest, &opts[4..]);
        let mut buf = [0u8; 10];
        let o = TcpOption::Unknown {
            kind: 30,
            data: &[9, 9],
        };
        let rest_len = o.emit(&mut buf).len();
        assert_eq!(rest_len, 6);
        assert_eq!(&buf[..4], &[30, 4, 9, 9]);
    }

    #[test]
    fn flags_display_like_tcpdump() {
        let f = |x: TcpFlags| format!("{x}");
        assert_eq!(f(TcpFlags::SYN), "S");
        assert_eq!(f(TcpFlags::SYN | TcpFlags::ACK), "S.");
        assert_eq!(f(TcpFlags::FIN | TcpFlags::ACK), "F.");
        assert_eq!(f(TcpFlags::RST), "R");
        assert_eq!(f(TcpFlags::PSH | TcpFlags::ACK), "P.");
        assert_eq!(f(TcpFlags::FIN | TcpFlags::PSH | TcpFlags::ACK), "FP.");
        assert_eq!(f(TcpFlags::empty()), "none");
        let mut x = TcpFlags::SYN;
        x |= TcpFlags::ACK;
        assert!(x.contains(TcpFlags::SYN | TcpFlags::ACK) && x.syn() && x.ack() && !x.fin());
        x.remove(TcpFlags::SYN);
        assert_eq!(x, TcpFlags::ACK);
    }

    #[test]
    fn headers_plus_payload_parts_equal_the_whole_packet() {
        let payload: Vec<u8> = (0..1001u32).map(|i| (i * 13) as u8).collect();
        let tcp = TcpRepr {
            ack_number: SeqNumber(7),
            window_len: 512,
            timestamp: Some((3, 4)),
            payload: &payload,
            ..TcpRepr::new(80, 40000, SeqNumber(9), TcpFlags(0x18))
        };
        let ip = Ipv4Repr {
            src_addr: DST,
            dst_addr: SRC,
            protocol: IpProtocol::Tcp,
            payload_len: 0,
            ttl: 64,
            ident: 3,
            dont_frag: true,
        };
        let mut whole = vec![0u8; 1600];
        let n = emit_ipv4_tcp(&mut whole, &ip, &tcp);
        for cut in [0, 1, 2, 333, 1000, 1001] {
            for partial in [false, true] {
                let (a, b) = payload.split_at(cut);
                let mut head = [0u8; 120];
                let hl = emit_ipv4_tcp_headers(&mut head, &ip, &tcp, [a, b], partial);
                let mut joined = head[..hl].to_vec();
                joined.extend_from_slice(a);
                joined.extend_from_slice(b);
                let mut expect = vec![0u8; 1600];
                let m = emit_ipv4_tcp_with(&mut expect, &ip, &tcp, partial);
                assert_eq!(m, n);
                assert_eq!(joined, expect[..m], "cut {cut} partial {partial}");
            }
        }
    }

    #[test]
    fn partial_checksum_completes_to_the_full_one() {
        // What a device with checksum offload does: sum from the TCP header
        // on (the field holding the pseudo-header sum) and store the
        // complement; the result must equal the software checksum.
        let payload: Vec<u8> = (0..1001u32).map(|i| (i * 7) as u8).collect();
        let tcp = TcpRepr {
            ack_number: SeqNumber(99),
            window_len: 1000,
            timestamp: Some((1, 2)),
            payload: &payload,
            ..TcpRepr::new(80, 40000, SeqNumber(5), TcpFlags(0x18))
        };
        let ip = Ipv4Repr {
            src_addr: DST,
            dst_addr: SRC,
            protocol: IpProtocol::Tcp,
            payload_len: 0,
            ttl: 64,
            ident: 1,
            dont_frag: true,
        };
        let mut full = vec![0u8; 1600];
        let mut part = vec![0u8; 1600];
        let n = emit_ipv4_tcp(&mut full, &ip, &tcp);
        assert_eq!(emit_ipv4_tcp_with(&mut part, &ip, &tcp, true), n);
        assert_ne!(full[36..38], part[36..38]);
        let c = !checksum::fold(checksum::sum(&part[20..n]));
        part[36..38].copy_from_slice(&c.to_be_bytes());
        assert_eq!(full[..n], part[..n]);
    }

    #[test]
    fn emit_ipv4_tcp_matches_separate_emits() {
        let payload: Vec<u8> = (0..1001u32).map(|i| i as u8).collect();
        let tcp = TcpRepr {
            ack_number: SeqNumber(77),
            window_len: 1000,
            timestamp: Some((5, 6)),
            payload: &payload,
            ..TcpRepr::new(
                80,
                5000,
                SeqNumber(u32::MAX - 3),
                TcpFlags::ACK | TcpFlags::PSH,
            )
        };
        let ip = Ipv4Repr {
            src_addr: SRC,
            dst_addr: DST,
            protocol: IpProtocol::Udp, // overridden
            payload_len: 0,            // overridden
            ttl: 64,
            ident: 42,
            dont_frag: true,
        };
        let mut buf = vec![0u8; 2000];
        let n = emit_ipv4_tcp(&mut buf, &ip, &tcp);
        assert_eq!(n, 20 + 32 + 1001);
        let ipp = Ipv4Packet::new_checked(&buf[..n]).unwrap();
        assert!(ipp.verify_checksum());
        let ipr = Ipv4Repr::parse(&ipp, true).unwrap();
        assert_eq!(ipr.protocol, IpProtocol::Tcp);
        assert_eq!(ipr.payload_len, 32 + 1001);
        let tp = TcpPacket::new_checked(ipp.payload()).unwrap();
        assert_eq!(TcpRepr::parse(&tp, SRC, DST, true).unwrap(), tcp);
        assert_eq!(&buf[20..n], &emit(&tcp)[..]);
    }

    #[test]
    fn interop_with_smoltcp() {
        use smoltcp::phy::ChecksumCapabilities;
        use smoltcp::wire as sm;
        let caps = ChecksumCapabilities::default();
        let (sa, da) = (sm::IpAddress::Ipv4(SRC), sm::IpAddress::Ipv4(DST));

        // Ours -> smoltcp: our SYN parses the same in smoltcp.
        let bytes = emit(&syn_repr());
        let theirs = sm::TcpRepr::parse(
            &sm::TcpPacket::new_checked(&bytes[..]).unwrap(),
            &sa,
            &da,
            &caps,
        )
        .unwrap();
        assert_eq!(theirs.control, sm::TcpControl::Syn);
        assert_eq!(theirs.seq_number, sm::TcpSeqNumber(0x01020304));
        assert_eq!(theirs.max_seg_size, Some(1460));
        assert_eq!(theirs.window_scale, Some(7));
        assert!(theirs.sack_permitted);
        assert_eq!(
            theirs.timestamp,
            Some(sm::TcpTimestampRepr::new(0x11223344, 0))
        );

        // smoltcp -> ours: a data segment with a SACK block and timestamps.
        let theirs = sm::TcpRepr {
            src_port: 80,
            dst_port: 43210,
            control: sm::TcpControl::Psh,
            seq_number: sm::TcpSeqNumber(5),
            ack_number: Some(sm::TcpSeqNumber(9)),
            window_len: 1000,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [Some((100, 200)), None, None],
            timestamp: Some(sm::TcpTimestampRepr::new(3, 4)),
            payload: b"hello",
        };
        let mut buf = vec![0u8; theirs.buffer_len()];
        theirs.emit(
            &mut sm::TcpPacket::new_unchecked(&mut buf[..]),
            &sa,
            &da,
            &caps,
        );
        let ours =
            TcpRepr::parse(&TcpPacket::new_checked(&buf[..]).unwrap(), SRC, DST, true).unwrap();
        assert_eq!(ours.flags, TcpFlags::PSH | TcpFlags::ACK);
        assert_eq!(
            (ours.seq_number, ours.ack_number),
            (SeqNumber(5), SeqNumber(9))
        );
        assert_eq!(ours.window_len, 1000);
        assert_eq!(ours.sack_ranges, [Some((100, 200)), None, None]);
        assert_eq!(ours.timestamp, Some((3, 4)));
        assert_eq!(ours.payload, b"hello");
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(p) = TcpPacket::new_checked(&bytes[..]) {
                let _ = (p.options(), p.payload(), p.segment_len(), p.verify_checksum(SRC, DST));
                let _ = p.options_iter().count();
            }
            let _ = TcpRepr::parse(&TcpPacket::new_unchecked(&bytes[..]), SRC, DST, true);
            let _ = TcpRepr::parse(&TcpPacket::new_unchecked(&bytes[..]), SRC, DST, false);
            let _ = TcpOptions::new(&bytes).count();
        }

        #[test]
        fn emit_parse_round_trip(
            payload in proptest::collection::vec(any::<u8>(), 0..40),
            hdr in (any::<u16>(), any::<u16>(), any::<u8>(), any::<u32>(), any::<u32>(), any::<u16>(), any::<u16>()),
            mss in proptest::option::of(any::<u16>()),
            ws in proptest::option::of(any::<u8>()),
            sack_ok in any::<bool>(),
            sacks in proptest::collection::vec((any::<u32>(), any::<u32>()), 0..=3),
            ts in proptest::option::of((any::<u32>(), any::<u32>())),
        ) {
            let (sp, dp, fl, seq, ack, win, urg) = hdr;
            let mut sack_ranges = [None; 3];
            for (slot, r) in sack_ranges.iter_mut().zip(sacks.iter()) {
                *slot = Some(*r);
            }
            let repr = TcpRepr {
                src_port: sp,
                dst_port: dp,
                flags: TcpFlags(fl),
                seq_number: SeqNumber(seq),
                ack_number: SeqNumber(ack),
                window_len: win,
                urgent_at: urg,
                max_seg_size: mss,
                window_scale: ws,
                sack_permitted: sack_ok,
                sack_ranges,
                timestamp: ts,
                payload: &payload,
            };
            let bytes = emit(&repr);
            prop_assert!(repr.header_len() <= 60 && repr.header_len().is_multiple_of(4));
            prop_assert_eq!(bytes.len(), repr.buffer_len());
            let back = TcpRepr::parse(&TcpPacket::new_checked(&bytes[..]).unwrap(), SRC, DST, true).unwrap();
            let mut expected = repr;
            for slot in expected.sack_ranges.iter_mut().skip(repr.sack_blocks_emitted()) {
                *slot = None;
            }
            prop_assert_eq!(back, expected);
        }
    }
}
