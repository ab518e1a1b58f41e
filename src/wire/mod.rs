//! Packet formats: IPv4, ICMPv4, TCP (with options), checksums and TCP
//! sequence numbers. This layer has **no state**: it only reads and writes
//! bytes.
//!
//! Every protocol comes in two halves, as in smoltcp:
//!
//! * a **`Packet<T: AsRef<[u8]>>`** is a zero-copy view over a byte buffer.
//!   Each field lives at a fixed byte range (a private `field` module lists
//!   them) and is read big-endian ("network byte order", RFC 791 appendix B)
//!   on demand. `new_unchecked` wraps any buffer; `new_checked` first checks
//!   the lengths, after which **no accessor can panic**. Setters exist when
//!   the buffer is also `AsMut<[u8]>`.
//! * a **`Repr`** is a small, plain struct with the meaning of the header
//!   (addresses, ports, flags, options...). `Repr::parse` validates a packet
//!   and reads it into a `Repr`; `Repr::emit` writes a `Repr` into a buffer
//!   of `Repr::buffer_len()` bytes.
//!
//! Nothing here allocates. Every rule a packet can break has its own
//! [`WireError`] variant, so the stack can count each drop under a precise
//! reason.
//!
//! [`PrettyPacket`] prints a whole IPv4 packet on one line, tcpdump-style.

pub mod checksum;
pub mod icmpv4;
pub mod ipv4;
pub mod pretty;
pub mod seq;
pub mod tcp;

pub use checksum::{checksum, combine, fold, pseudo_header_sum};
pub use icmpv4::{emit_ipv4_icmp, DstUnreachable, Icmpv4Packet, Icmpv4Repr, TimeExceeded};
pub use ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
pub use pretty::PrettyPacket;
pub use seq::SeqNumber;
pub use tcp::{
    emit_ipv4_tcp, emit_ipv4_tcp_headers, emit_ipv4_tcp_with, TcpFlags, TcpOption, TcpOptions,
    TcpPacket, TcpRepr,
};

/// A byte range of a header field.
pub(crate) type Field = core::ops::Range<usize>;

/// Why a packet could not be parsed. One variant per broken rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer ends before the header (or the length the header claims).
    #[error("truncated packet")]
    Truncated,
    /// The IP version field is not 4.
    #[error("IP version is not 4")]
    BadVersion,
    /// The IPv4 header length (IHL) is below 5 words (20 bytes).
    #[error("bad IPv4 header length")]
    BadHeaderLen,
    /// The IPv4 total length is smaller than the header length.
    #[error("bad IPv4 total length")]
    BadTotalLen,
    /// The Internet checksum does not verify.
    #[error("bad checksum")]
    BadChecksum,
    /// The TCP data offset is below 5 words (20 bytes).
    #[error("bad TCP data offset")]
    BadTcpOffset,
    /// A TCP option has an impossible length or runs past the header.
    #[error("malformed TCP option")]
    BadOption,
    /// An ICMP message is malformed (e.g. an error message without the
    /// quoted IP header).
    #[error("malformed ICMP message")]
    BadIcmp,
}
