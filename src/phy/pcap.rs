//! pcap capture files: a [`Writer`], a minimal [`Reader`], and the
//! [`PcapWriter`] device wrapper that records every packet crossing a device.
//!
//! The format is classic libpcap (not pcapng): a 24-byte global header
//! (magic `0xa1b2c3d4` = microsecond timestamps, version 2.4, snaplen,
//! link type) followed by one 16-byte record header (seconds, microseconds,
//! captured length, original length) before each packet. All fields are in
//! the writer's byte order; we write little-endian like every x86/ARM tool.
//! The link type is `LINKTYPE_RAW` (101): each record is a bare IPv4 packet,
//! exactly what a TUN device carries. Wireshark, tshark and tcpdump read it.

use super::{Device, DeviceCaps, RxMeta};
use crate::time::{Duration, Instant};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// Magic number for microsecond-resolution pcap.
pub const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
/// Magic number for nanosecond-resolution pcap (read only).
pub const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
/// Raw IP packets, no link-layer header.
pub const LINKTYPE_RAW: u32 = 101;
/// Raw IPv4 packets (the alternative the reader also accepts).
pub const LINKTYPE_IPV4: u32 = 228;
/// Largest packet we record (what tcpdump uses by default).
pub const SNAPLEN: u32 = 262_144;

/// Writes pcap records to any `Write` (a file, or a `Vec<u8>` in tests).
#[derive(Debug)]
pub struct Writer<W: Write> {
    out: W,
}

impl<W: Write> Writer<W> {
    /// Write the global header.
    pub fn new(mut out: W) -> io::Result<Writer<W>> {
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&MAGIC_MICROS.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes()); // version major
        h[6..8].copy_from_slice(&4u16.to_le_bytes()); // version minor
                                                      // 8..12 thiszone = 0 (UTC), 12..16 sigfigs = 0
        h[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
        h[20..24].copy_from_slice(&LINKTYPE_RAW.to_le_bytes());
        out.write_all(&h)?;
        Ok(Writer { out })
    }

    /// Write one packet captured at `ts` (time since the UNIX epoch).
    pub fn write_packet(&mut self, ts: Duration, packet: &[u8]) -> io::Result<()> {
        self.write_packet_parts(ts, &[packet])
    }

    /// One packet given as consecutive parts (no copy to join them).
    pub fn write_packet_parts(&mut self, ts: Duration, parts: &[&[u8]]) -> io::Result<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let caplen = len.min(SNAPLEN as usize);
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&(ts.as_secs() as u32).to_le_bytes());
        h[4..8].copy_from_slice(&ts.subsec_micros().to_le_bytes());
        h[8..12].copy_from_slice(&(caplen as u32).to_le_bytes());
        h[12..16].copy_from_slice(&(len as u32).to_le_bytes());
        self.out.write_all(&h)?;
        let mut left = caplen;
        for p in parts {
            let k = p.len().min(left);
            self.out.write_all(&p[..k])?;
            left -= k;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn get_ref(&self) -> &W {
        &self.out
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Why a pcap file could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PcapError {
    #[error("file too short for the 24-byte pcap header")]
    TruncatedHeader,
    #[error("not a classic pcap file (magic {0:#010x}; pcapng is not supported)")]
    BadMagic(u32),
    #[error("unsupported link type {0} (expected 101 LINKTYPE_RAW or 228 LINKTYPE_IPV4)")]
    UnsupportedLinkType(u32),
    #[error("record {index} at byte {offset} is truncated")]
    TruncatedRecord { index: usize, offset: usize },
    #[error("record {index} claims {len} bytes, more than the snaplen {snaplen}")]
    RecordTooLong {
        index: usize,
        len: u32,
        snaplen: u32,
    },
}

/// One record of a pcap file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Capture time since the UNIX epoch.
    pub ts: Duration,
    /// The captured bytes (an IPv4 packet for our link types).
    pub data: Vec<u8>,
    /// The packet's length on the wire (>= `data.len()` if truncated by the snaplen).
    pub orig_len: u32,
}

/// A minimal pcap reader: whole file in memory, both byte orders, µs and ns
/// timestamps, link types RAW and IPV4.
#[derive(Debug)]
pub struct Reader {
    pub link_type: u32,
    pub snaplen: u32,
    pub records: Vec<Record>,
}

impl Reader {
    /// Parse a whole pcap file.
    pub fn parse(bytes: &[u8]) -> Result<Reader, PcapError> {
        let hdr = bytes.get(..24).ok_or(PcapError::TruncatedHeader)?;
        let magic_le = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let (big_endian, nanos) = match magic_le {
            MAGIC_MICROS => (false, false),
            MAGIC_NANOS => (false, true),
            m if m.swap_bytes() == MAGIC_MICROS => (true, false),
            m if m.swap_bytes() == MAGIC_NANOS => (true, true),
            m => return Err(PcapError::BadMagic(m)),
        };
        let u32_at = |b: &[u8], i: usize| {
            let a = [b[i], b[i + 1], b[i + 2], b[i + 3]];
            if big_endian {
                u32::from_be_bytes(a)
            } else {
                u32::from_le_bytes(a)
            }
        };
        let snaplen = u32_at(hdr, 16);
        let link_type = u32_at(hdr, 20) & 0x0fff_ffff; // upper bits: FCS info
        if link_type != LINKTYPE_RAW && link_type != LINKTYPE_IPV4 {
            return Err(PcapError::UnsupportedLinkType(link_type));
        }
        let mut records = Vec::new();
        let mut off = 24;
        while off < bytes.len() {
            let index = records.len();
            let rh = bytes
                .get(off..off + 16)
                .ok_or(PcapError::TruncatedRecord { index, offset: off })?;
            let secs = u32_at(rh, 0) as u64;
            let frac = u32_at(rh, 4) as u64;
            let caplen = u32_at(rh, 8);
            let orig_len = u32_at(rh, 12);
            if caplen > snaplen.max(SNAPLEN) {
                return Err(PcapError::RecordTooLong {
                    index,
                    len: caplen,
                    snaplen,
                });
            }
            let start = off + 16;
            let data = bytes
                .get(start..start + caplen as usize)
                .ok_or(PcapError::TruncatedRecord { index, offset: off })?;
            let ts = Duration::from_secs(secs)
                + if nanos {
                    Duration::from_nanos(frac)
                } else {
                    Duration::from_micros(frac)
                };
            records.push(Record {
                ts,
                data: data.to_vec(),
                orig_len,
            });
            off = start + caplen as usize;
        }
        Ok(Reader {
            link_type,
            snaplen,
            records,
        })
    }

    /// Read and parse a pcap file from disk.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Reader> {
        let bytes = std::fs::read(path)?;
        Reader::parse(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// A device wrapper that writes every packet received from and sent to the
/// inner device into a pcap file.
///
/// Timestamps: the wrapper is given the wall-clock time (since the UNIX
/// epoch) that corresponds to `Instant::ZERO`; a packet handled at `now` is
/// stamped `epoch_base + now`. So the core's virtual time stays the only time
/// it sees, and the capture still shows real dates.
pub struct PcapWriter<D: Device, W: Write = BufWriter<File>> {
    inner: D,
    writer: Writer<W>,
    epoch_base: Duration,
    /// Set after the first write error; capture stops, traffic goes on.
    failed: bool,
}

impl<D: Device> PcapWriter<D, BufWriter<File>> {
    /// Create (truncate) `path` and capture into it.
    pub fn create(inner: D, path: impl AsRef<Path>, epoch_base: Duration) -> io::Result<Self> {
        let file = File::create(path)?;
        PcapWriter::new(
            inner,
            BufWriter::with_capacity(256 * 1024, file),
            epoch_base,
        )
    }
}

impl<D: Device, W: Write> PcapWriter<D, W> {
    /// Capture into any writer (e.g. a `Vec<u8>` in tests).
    pub fn new(inner: D, out: W, epoch_base: Duration) -> io::Result<Self> {
        Ok(PcapWriter {
            inner,
            writer: Writer::new(out)?,
            epoch_base,
            failed: false,
        })
    }

    pub fn inner(&self) -> &D {
        &self.inner
    }
    pub fn inner_mut(&mut self) -> &mut D {
        &mut self.inner
    }
    pub fn writer(&self) -> &Writer<W> {
        &self.writer
    }

    fn record(&mut self, now: Instant, packet: &[u8]) {
        self.record_parts(now, &[packet])
    }

    fn record_parts(&mut self, now: Instant, parts: &[&[u8]]) {
        if self.failed {
            return;
        }
        let ts = self.epoch_base + Duration::from_micros(now.total_micros());
        if let Err(e) = self.writer.write_packet_parts(ts, parts) {
            log::error!("pcap write failed, capture stopped: {e}");
            self.failed = true;
        }
    }
}

impl<D: Device, W: Write> Device for PcapWriter<D, W> {
    fn caps(&self) -> DeviceCaps {
        self.inner.caps()
    }
    fn recv(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>> {
        Ok(self.recv_meta(now, buf)?.map(|(n, _)| n))
    }
    fn recv_meta(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<Option<(usize, RxMeta)>> {
        let r = self.inner.recv_meta(now, buf)?;
        if let Some((n, _)) = r {
            let n = n.min(buf.len());
            self.record(now, &buf[..n]);
        }
        Ok(r)
    }
    fn send(&mut self, now: Instant, packet: &[u8]) -> io::Result<()> {
        self.record(now, packet);
        self.inner.send(now, packet)
    }
    fn send_parts(&mut self, now: Instant, parts: &[&[u8]]) -> io::Result<()> {
        self.record_parts(now, parts);
        self.inner.send_parts(now, parts)
    }
    fn poll_at(&self) -> Option<Instant> {
        self.inner.poll_at()
    }
    fn flush(&mut self) -> io::Result<()> {
        let a = self.writer.flush();
        let b = self.inner.flush();
        a.and(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_header_bytes() {
        let w = Writer::new(Vec::new()).unwrap();
        assert_eq!(
            w.get_ref().as_slice(),
            &[
                0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x00, 0x04, 0x00,
                101, 0, 0, 0
            ]
        );
    }

    #[test]
    fn write_two_read_back() {
        let mut w = Writer::new(Vec::new()).unwrap();
        let p1 = [0x45u8, 0, 0, 20, 1, 2, 3, 4];
        let p2 = vec![0xabu8; 1500];
        w.write_packet(Duration::new(1_700_000_000, 123_456_000), &p1)
            .unwrap();
        w.write_packet(Duration::new(1_700_000_001, 999_999_000), &p2)
            .unwrap();
        let bytes = w.into_inner();
        assert_eq!(bytes.len(), 24 + 16 + 8 + 16 + 1500);
        // first record header
        assert_eq!(
            &bytes[24..40],
            &[0x00, 0xf1, 0x53, 0x65, 0x40, 0xe2, 0x01, 0, 8, 0, 0, 0, 8, 0, 0, 0]
        );
        let r = Reader::parse(&bytes).unwrap();
        assert_eq!(r.link_type, LINKTYPE_RAW);
        assert_eq!(r.records.len(), 2);
        assert_eq!(r.records[0].ts, Duration::new(1_700_000_000, 123_456_000));
        assert_eq!(r.records[0].data, p1);
        assert_eq!(r.records[1].data, p2);
        assert_eq!(r.records[1].orig_len, 1500);
    }

    #[test]
    fn reader_errors_on_every_truncation() {
        let mut w = Writer::new(Vec::new()).unwrap();
        w.write_packet(Duration::from_secs(1), &[1, 2, 3]).unwrap();
        let bytes = w.into_inner();
        for cut in 0..bytes.len() {
            let r = Reader::parse(&bytes[..cut]);
            match cut {
                0..=23 => assert_eq!(r.unwrap_err(), PcapError::TruncatedHeader),
                24 => assert_eq!(r.unwrap().records.len(), 0),
                _ => assert_eq!(
                    r.unwrap_err(),
                    PcapError::TruncatedRecord {
                        index: 0,
                        offset: 24
                    }
                ),
            }
        }
        let mut bad = bytes.clone();
        bad[0] = 0;
        assert!(matches!(Reader::parse(&bad), Err(PcapError::BadMagic(_))));
        let mut eth = bytes.clone();
        eth[20] = 1;
        assert_eq!(
            Reader::parse(&eth).unwrap_err(),
            PcapError::UnsupportedLinkType(1)
        );
    }

    #[test]
    fn reader_big_endian_nanos() {
        let mut f = Vec::new();
        f.extend_from_slice(&MAGIC_NANOS.to_be_bytes());
        f.extend_from_slice(&[0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0]);
        f.extend_from_slice(&65535u32.to_be_bytes());
        f.extend_from_slice(&228u32.to_be_bytes());
        f.extend_from_slice(&5u32.to_be_bytes());
        f.extend_from_slice(&7u32.to_be_bytes());
        f.extend_from_slice(&2u32.to_be_bytes());
        f.extend_from_slice(&2u32.to_be_bytes());
        f.extend_from_slice(&[9, 9]);
        let r = Reader::parse(&f).unwrap();
        assert_eq!(r.records[0].ts, Duration::new(5, 7));
        assert_eq!(r.records[0].data, vec![9, 9]);
    }

    struct Loop(Vec<Vec<u8>>);
    impl Device for Loop {
        fn caps(&self) -> DeviceCaps {
            DeviceCaps::default()
        }
        fn recv(&mut self, _now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>> {
            Ok(self.0.pop().map(|p| {
                buf[..p.len()].copy_from_slice(&p);
                p.len()
            }))
        }
        fn send(&mut self, _now: Instant, packet: &[u8]) -> io::Result<()> {
            self.0.push(packet.to_vec());
            Ok(())
        }
    }

    #[test]
    fn wrapper_records_both_directions_with_wall_clock() {
        let base = Duration::from_secs(1_700_000_000);
        let mut d = PcapWriter::new(Loop(Vec::new()), Vec::new(), base).unwrap();
        d.send(Instant::from_millis(1500), &[1, 2, 3]).unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(d.recv(Instant::from_secs(2), &mut buf).unwrap(), Some(3));
        assert_eq!(d.recv(Instant::from_secs(3), &mut buf).unwrap(), None);
        let r = Reader::parse(d.writer().get_ref()).unwrap();
        assert_eq!(r.records.len(), 2);
        assert_eq!(r.records[0].ts, base + Duration::from_millis(1500));
        assert_eq!(r.records[1].ts, base + Duration::from_secs(2));
        assert_eq!(r.records[1].data, vec![1, 2, 3]);
    }
}
