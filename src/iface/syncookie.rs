//! SYN cookies (RFC 4987 section 3.6): answering a SYN without keeping state.
//!
//! A SYN flood fills a listener's queue of half-open (SYN-RECEIVED)
//! connections with handshakes that will never complete. When that queue
//! is full, the listener stops allocating anything for a SYN and instead
//! *encodes* what it must remember into the sequence number of its SYN-ACK
//! (the ISS), the "cookie". A real client's ACK returns the cookie plus one
//! in its acknowledgment field; the listener checks it and only then
//! creates the connection. A spoofed SYN costs one outgoing packet and no
//! memory.
//!
//! ## The cookie (32 bits, Bernstein's layout)
//! ```text
//!   31      27 26  24 23                                0
//!  +----------+------+-----------------------------------+
//!  |  t (5)   | m (3)| hash(secret, 4-tuple, t, m, IRS) |
//!  +----------+------+-----------------------------------+
//! ```
//! * `t`: a counter that advances every 64 s (mod 32). A cookie is valid
//!   for the counter it was made in and the one after (64..128 s), so an
//!   old cookie cannot be replayed for long (RFC 4987: "t" limits reuse).
//! * `m`: an index into [`MSS_TABLE`], the largest entry not above the
//!   client's MSS: the only option the cookie itself keeps.
//! * the hash: SipHash-2-4 keyed with the stack's secret
//!   ([`IsnGenerator::hash`]) over both addresses and ports, `t`, `m` and
//!   the client's ISN, truncated to 24 bits. Forging an ACK blindly takes
//!   about 2^24 guesses per connection and 64 s.
//!
//! ## Options lost, and how timestamps save some (as Linux does)
//! The cookie has no room for window scaling or SACK. When the client
//! sent the timestamp option, the low 5 bits of the TSval of our SYN-ACK
//! carry them (bits 0..3: the client's window scale, 15 = none; bit 4:
//! SACK permitted), and the client echoes that TSval in every ACK (TSecr).
//! The TSval is rounded *down* to make room, so our timestamps never go
//! backwards (RFC 7323 PAWS at the peer). Without timestamps, a connection
//! made from a cookie has no window scaling (so at most a 64 KiB window)
//! and no SACK; its MSS is the table entry (at most 8 % below the real one).
//! These bits are not authenticated: a client can only choose options for
//! its own connection, which it could do in its SYN anyway.
//!
//! Cookies are only checked on a listener that sent some in the last
//! 128 s, so a stray ACK normally gets its RST (RFC 9293 3.10.7.2).

use crate::tcp::isn::IsnGenerator;
use crate::tcp::socket::seq_gt;
use crate::time::Instant;
use std::net::SocketAddrV4;

/// MSS values a cookie can express (3 bits). 536 is the IPv4 default
/// (RFC 9293 3.7.1); 1460 is Ethernet; 8960 is a 9000-byte jumbo frame.
pub const MSS_TABLE: [u16; 8] = [536, 1220, 1360, 1400, 1440, 1460, 4312, 8960];

/// How long one value of the counter `t` lasts (seconds).
pub const COUNTER_PERIOD_SECS: u64 = 64;

/// Counter periods a cookie stays valid (the one it was made in and the next).
pub const MAX_AGE_PERIODS: u32 = 2;

/// The 5-bit time counter at `now`.
pub fn counter(now: Instant) -> u32 {
    ((now.total_micros() / 1_000_000 / COUNTER_PERIOD_SECS) % 32) as u32
}

/// Index of the largest [`MSS_TABLE`] entry not above `mss` (0 if none is).
pub fn mss_index(mss: u16) -> usize {
    MSS_TABLE.iter().rposition(|&m| m <= mss).unwrap_or(0)
}

fn hash24(
    key: &IsnGenerator,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    t: u32,
    m: u32,
    irs: u32,
) -> u32 {
    let mut msg = [0u8; 22];
    msg[0..6].copy_from_slice(b"cookie"); // domain separation from the ISN hash
    msg[6..10].copy_from_slice(&local.ip().octets());
    msg[10..12].copy_from_slice(&local.port().to_be_bytes());
    msg[12..16].copy_from_slice(&remote.ip().octets());
    msg[16..18].copy_from_slice(&remote.port().to_be_bytes());
    msg[18] = t as u8;
    msg[19] = m as u8;
    // The IRS goes in as the last word, so a client retransmitting its SYN
    // gets the same cookie within one period.
    let mut full = [0u8; 26];
    full[..22].copy_from_slice(&msg);
    full[22..26].copy_from_slice(&irs.to_be_bytes());
    (key.hash(&full) as u32) & 0x00ff_ffff
}

/// The cookie (our ISS) for a SYN with sequence number `irs` and MSS
/// option `mss` (536 when absent), and the MSS the connection will use.
pub fn make(
    key: &IsnGenerator,
    now: Instant,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    irs: u32,
    mss: u16,
) -> (u32, u16) {
    let t = counter(now);
    let m = mss_index(mss);
    let cookie = t << 27 | (m as u32) << 24 | hash24(key, local, remote, t, m as u32, irs);
    (cookie, MSS_TABLE[m])
}

/// Check the cookie `iss` (the ACK's acknowledgment number minus one) for
/// a connection whose client ISN was `irs` (the ACK's sequence number
/// minus one). Returns the MSS it encodes, or `None` if it is forged or
/// too old.
pub fn check(
    key: &IsnGenerator,
    now: Instant,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    irs: u32,
    iss: u32,
) -> Option<u16> {
    let t = iss >> 27;
    let age = counter(now).wrapping_sub(t) % 32;
    if age >= MAX_AGE_PERIODS {
        return None;
    }
    if iss & 0x00ff_ffff != hash24(key, local, remote, t, (iss >> 24) & 7, irs) {
        return None;
    }
    Some(MSS_TABLE[((iss >> 24) & 7) as usize])
}

/// Options remembered in the TSval's low bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TsOptions {
    /// The client's window scale shift, if it offered scaling.
    pub wscale: Option<u8>,
    /// The client offered SACK.
    pub sack: bool,
}

/// Put `opts` into the low 5 bits of `tsval`, rounding it down so that it
/// is never later than the real clock value.
pub fn encode_ts(tsval: u32, opts: TsOptions) -> u32 {
    let bits = u32::from(opts.wscale.map_or(15, |w| w.min(14))) | u32::from(opts.sack) << 4;
    let v = (tsval & !0x1f) | bits;
    if seq_gt(v, tsval) {
        v.wrapping_sub(32)
    } else {
        v
    }
}

/// Read the options back from the TSecr of the client's ACK.
pub fn decode_ts(tsecr: u32) -> TsOptions {
    let w = (tsecr & 0x0f) as u8;
    TsOptions {
        wscale: (w != 15).then_some(w),
        sack: tsecr & 0x10 != 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Duration;
    use std::net::Ipv4Addr;

    fn addrs() -> (SocketAddrV4, SocketAddrV4) {
        (
            SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 80),
            SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 40000),
        )
    }

    #[test]
    fn cookie_round_trip_and_mss() {
        let key = IsnGenerator::new(1, 2);
        let (l, r) = addrs();
        let now = Instant::from_secs(1000);
        for (mss, want) in [
            (1460, 1460),
            (1400, 1400),
            (1399, 1360),
            (65495, 8960),
            (100, 536),
            (536, 536),
        ] {
            let (c, used) = make(&key, now, l, r, 12345, mss);
            assert_eq!(used, want);
            assert_eq!(check(&key, now, l, r, 12345, c), Some(want));
        }
    }

    #[test]
    fn cookie_rejects_forgery_and_other_tuples() {
        let key = IsnGenerator::new(1, 2);
        let (l, r) = addrs();
        let now = Instant::from_secs(1000);
        let (c, _) = make(&key, now, l, r, 777, 1460);
        assert_eq!(check(&key, now, l, r, 778, c), None, "other client ISN");
        let r2 = SocketAddrV4::new(*r.ip(), r.port() + 1);
        assert_eq!(check(&key, now, l, r2, 777, c), None, "other port");
        assert_eq!(check(&key, now, l, r, 777, c ^ 1), None, "flipped hash bit");
        assert_eq!(
            check(&IsnGenerator::new(3, 4), now, l, r, 777, c),
            None,
            "other secret"
        );
        assert_eq!(
            check(&key, now, l, r, 777, c ^ (1 << 24)),
            None,
            "other MSS index"
        );
    }

    #[test]
    fn cookie_expires_after_two_periods() {
        let key = IsnGenerator::new(1, 2);
        let (l, r) = addrs();
        // Start at the beginning of a period.
        let t0 = Instant::from_secs(64 * 10);
        let (c, _) = make(&key, t0, l, r, 5, 1460);
        assert!(check(&key, t0 + Duration::from_secs(127), l, r, 5, c).is_some());
        assert!(check(&key, t0 + Duration::from_secs(128), l, r, 5, c).is_none());
        // The counter wraps every 32 periods: a cookie from 33 periods ago
        // is "one period old" again, but its hash used the same t, so only
        // a forgery within those 64 s could use it; RFC 4987 accepts this.
        assert!(check(&key, t0 + Duration::from_secs(64 * 40), l, r, 5, c).is_none());
    }

    #[test]
    fn ts_options_round_trip_and_never_run_ahead() {
        for tsval in [0u32, 31, 32, 1000, 0xffff_ffff, 0x8000_0010] {
            for opts in [
                TsOptions {
                    wscale: None,
                    sack: false,
                },
                TsOptions {
                    wscale: Some(7),
                    sack: true,
                },
                TsOptions {
                    wscale: Some(14),
                    sack: false,
                },
                TsOptions {
                    wscale: Some(0),
                    sack: true,
                },
            ] {
                let v = encode_ts(tsval, opts);
                assert_eq!(decode_ts(v), opts);
                assert!(!seq_gt(v, tsval), "{v} is later than {tsval}");
                assert!(tsval.wrapping_sub(v) < 64);
            }
        }
    }
}
