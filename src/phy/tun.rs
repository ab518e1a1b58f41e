//! The Linux TUN device: raw IPv4 packets to and from the kernel.
//!
//! A TUN device is a network interface whose "wire" is a file descriptor.
//! Every IP packet the kernel routes to the interface can be `read()` from
//! the fd, and every packet `write()`n to the fd is handed to the kernel's IP
//! layer as if it had arrived on the interface. With `IFF_NO_PI` there is no
//! extra header: one `read()` is exactly one IPv4 packet.
//!
//! ## Why raw `ioctl`s instead of a crate
//! Opening a TUN device is three system calls (`open`, `ioctl(TUNSETIFF)`,
//! `fcntl(O_NONBLOCK)`) plus two `ioctl`s on a helper socket for the link
//! flags and the MTU. Writing them out keeps the dependency list short and
//! shows students exactly what a TUN device is. It also leaves the door open
//! for `IFF_VNET_HDR` + `TUNSETOFFLOAD` (TCP segmentation offload: the kernel
//! hands us and accepts 64 KB "super-packets" behind a `virtio_net_hdr`),
//! which most TUN crates do not expose. See [`Offload`] and
//! docs/architecture.md.
//!
//! This is the only module of the crate that uses `unsafe`: each block calls
//! one libc function with pointers to local, correctly sized buffers.

#![allow(unsafe_code)]

use super::{Device, DeviceCaps, RxMeta};
use crate::time::Instant;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `IFNAMSIZ` from `<net/if.h>`: interface names are at most 15 bytes + NUL.
pub const IFNAMSIZ: usize = 16;

// From <linux/if_tun.h>. `libc` has IFF_TUN/IFF_NO_PI on Linux, but spelling
// them out documents what we ask for.
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;
/// `_IOW('T', 202, int)`
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// Each packet is preceded by a `struct virtio_net_hdr`.
const IFF_VNET_HDR: libc::c_short = 0x4000;
/// `_IOW('T', 208, unsigned int)`: which offloads we can take.
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
/// `_IOW('T', 216, int)`: size of the virtio-net header.
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;

/// `struct virtio_net_hdr` (legacy, 10 bytes, native byte order).
pub const VNET_HDR_LEN: usize = 10;
/// `flags`: the checksum from `csum_start` on is partial (pseudo-header only).
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// `flags`: the kernel has verified the checksum.
pub const VIRTIO_NET_HDR_F_DATA_VALID: u8 = 2;
/// `gso_type` values.
pub const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
pub const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;

/// The largest IPv4 packet we hand the kernel for segmentation.
pub const TSO_MAX: usize = 65535;

/// Why a TUN device could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum TunError {
    #[error("opening /dev/net/tun needs root or CAP_NET_ADMIN (try: sudo, or: sudo ./netns-setup.sh run)")]
    PermissionDenied,
    #[error("/dev/net/tun does not exist (is the `tun` kernel module loaded? try: modprobe tun)")]
    NoTunDevice,
    #[error("invalid TUN device name {name:?}: {why}")]
    BadName { name: String, why: &'static str },
    #[error("TUN device {name:?}: {op}: {source}")]
    Io {
        name: String,
        op: &'static str,
        source: io::Error,
    },
}

/// Offload settings: `IFF_VNET_HDR` + `TUNSETOFFLOAD` (checksum + TSO4).
///
/// With `tso`, every packet on the fd is preceded by a 10-byte
/// `virtio_net_hdr`. The kernel hands us TCP segments of up to 64 KB (it
/// does not cut what it sends to a local peer) with a partial checksum,
/// which [`TunDevice`] completes; and it accepts segments of up to 64 KB
/// from us, which it cuts into MSS-sized pieces where it must (forwarding)
/// or delivers whole to its own TCP. One system call then moves tens of
/// segments: the main reason ustack beats one-packet-per-write stacks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offload {
    /// Ask for TCPv4 segmentation offload.
    pub tso: bool,
}

/// An open TUN device (non-blocking).
#[derive(Debug)]
pub struct TunDevice {
    fd: OwnedFd,
    name: String,
    mtu: usize,
    tso: bool,
}

/// `struct ifreq` as far as we use it: the name and a union whose first
/// members are `short ifr_flags` and `int ifr_mtu`. The union is 24 bytes
/// on 64-bit Linux (it contains a `struct ifmap`), 40 bytes in total.
#[repr(C)]
struct IfReq {
    name: [libc::c_char; IFNAMSIZ],
    data: [u8; 24],
}

impl IfReq {
    fn new(name: &str) -> IfReq {
        let mut r = IfReq {
            name: [0; IFNAMSIZ],
            data: [0; 24],
        };
        for (dst, src) in r.name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        r
    }
    fn set_short(&mut self, v: libc::c_short) {
        self.data[..2].copy_from_slice(&v.to_ne_bytes());
    }
    fn get_short(&self) -> libc::c_short {
        libc::c_short::from_ne_bytes([self.data[0], self.data[1]])
    }
    fn get_int(&self) -> libc::c_int {
        libc::c_int::from_ne_bytes([self.data[0], self.data[1], self.data[2], self.data[3]])
    }
}

/// Check a Linux interface name: 1..=15 bytes, no '/', no whitespace, not "." or "..".
pub fn validate_name(name: &str) -> Result<(), TunError> {
    let bad = |why| {
        Err(TunError::BadName {
            name: name.to_string(),
            why,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() >= IFNAMSIZ {
        return bad("longer than 15 bytes");
    }
    if name == "." || name == ".." {
        return bad("reserved name");
    }
    if name.bytes().any(|b| {
        b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0 || !b.is_ascii_graphic()
    }) {
        return bad("contains '/', ':', whitespace or non-printable characters");
    }
    Ok(())
}

impl TunDevice {
    /// Open (or create) the TUN device `name` with `IFF_TUN | IFF_NO_PI`.
    ///
    /// With a persistent device (`ip tuntap add mode tun NAME`, as
    /// netns-setup.sh makes) this attaches to it; otherwise the kernel
    /// creates a device that disappears when the fd is closed. The link is
    /// brought up if it is down.
    pub fn open(name: &str) -> Result<TunDevice, TunError> {
        TunDevice::open_with(name, Offload::default())
    }

    /// Like [`open`](Self::open) with offload settings (only `Offload::default()` works today).
    pub fn open_with(name: &str, offload: Offload) -> Result<TunDevice, TunError> {
        validate_name(name)?;
        let io_err = |op: &'static str, source: io::Error| TunError::Io {
            name: name.to_string(),
            op,
            source,
        };

        let path = CString::new("/dev/net/tun").map_err(|e| io_err("path", io::Error::other(e)))?;
        // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
        let raw = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
            )
        };
        if raw < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EACCES) | Some(libc::EPERM) => TunError::PermissionDenied,
                Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ENXIO) => {
                    TunError::NoTunDevice
                }
                _ => io_err("open /dev/net/tun", e),
            });
        }
        // SAFETY: `raw` is a freshly opened fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        let mut req = IfReq::new(name);
        let vnet = if offload.tso { IFF_VNET_HDR } else { 0 };
        req.set_short(IFF_TUN | IFF_NO_PI | vnet);
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq`; `req` is a
        // 40-byte repr(C) struct with the same layout, alive for the call.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut req as *mut IfReq) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => TunError::PermissionDenied,
                Some(libc::EINVAL) => TunError::BadName {
                    name: name.to_string(),
                    why: "the kernel refused it (is there a non-TUN interface, e.g. a TAP device, with this name?)",
                },
                Some(libc::EBUSY) => io_err("TUNSETIFF (device busy: is another ustack attached to it?)", e),
                _ => io_err("TUNSETIFF", e),
            });
        }

        if !offload.tso {
            // Offload settings outlive the fd on a persistent device: a
            // previous run with offloads would leave the kernel sending us
            // partial checksums we cannot see the header for. Reset them.
            // SAFETY: TUNSETOFFLOAD takes the flags by value.
            let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD as _, 0 as libc::c_ulong) };
            if rc < 0 {
                return Err(io_err("TUNSETOFFLOAD(0)", io::Error::last_os_error()));
            }
        }
        if offload.tso {
            let hdr_len: libc::c_int = VNET_HDR_LEN as libc::c_int;
            // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer.
            let rc = unsafe {
                libc::ioctl(
                    fd.as_raw_fd(),
                    TUNSETVNETHDRSZ as _,
                    &hdr_len as *const libc::c_int,
                )
            };
            if rc < 0 {
                return Err(io_err("TUNSETVNETHDRSZ", io::Error::last_os_error()));
            }
            // SAFETY: TUNSETOFFLOAD takes the flags by value.
            let rc = unsafe {
                libc::ioctl(
                    fd.as_raw_fd(),
                    TUNSETOFFLOAD as _,
                    (TUN_F_CSUM | TUN_F_TSO4) as libc::c_ulong,
                )
            };
            if rc < 0 {
                return Err(io_err("TUNSETOFFLOAD", io::Error::last_os_error()));
            }
        }
        let mut dev = TunDevice {
            fd,
            name: name.to_string(),
            mtu: 1500,
            tso: offload.tso,
        };
        dev.bring_up()
            .map_err(|e| io_err("bring link up (SIOCSIFFLAGS)", e))?;
        dev.mtu = dev
            .read_mtu()
            .map_err(|e| io_err("read MTU (SIOCGIFMTU)", e))?;
        Ok(dev)
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface MTU as configured in the kernel.
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// A throw-away datagram socket, needed for the `SIOC*IF*` ioctls.
    fn ctl_socket() -> io::Result<OwnedFd> {
        // SAFETY: plain socket(2) call with constant arguments.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh fd owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(raw) })
    }

    fn bring_up(&mut self) -> io::Result<()> {
        let sock = Self::ctl_socket()?;
        let mut req = IfReq::new(&self.name);
        // SAFETY: SIOCGIFFLAGS fills `ifr_flags` of a `struct ifreq`; `req` has that layout.
        if unsafe {
            libc::ioctl(
                sock.as_raw_fd(),
                libc::SIOCGIFFLAGS as _,
                &mut req as *mut IfReq,
            )
        } < 0
        {
            return Err(io::Error::last_os_error());
        }
        let flags = req.get_short();
        if flags & libc::IFF_UP as libc::c_short != 0 {
            return Ok(());
        }
        req.set_short(flags | libc::IFF_UP as libc::c_short);
        // SAFETY: SIOCSIFFLAGS reads `ifr_name` and `ifr_flags` from `req`.
        if unsafe {
            libc::ioctl(
                sock.as_raw_fd(),
                libc::SIOCSIFFLAGS as _,
                &mut req as *mut IfReq,
            )
        } < 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn read_mtu(&self) -> io::Result<usize> {
        let sock = Self::ctl_socket()?;
        let mut req = IfReq::new(&self.name);
        // SAFETY: SIOCGIFMTU fills `ifr_mtu` (an int at the start of the union).
        if unsafe {
            libc::ioctl(
                sock.as_raw_fd(),
                libc::SIOCGIFMTU as _,
                &mut req as *mut IfReq,
            )
        } < 0
        {
            return Err(io::Error::last_os_error());
        }
        let mtu = req.get_int();
        Ok(if mtu >= 68 { mtu as usize } else { 1500 })
    }
}

impl TunDevice {
    /// Whether the device runs with the virtio-net header and TSO.
    pub fn offload(&self) -> bool {
        self.tso
    }

    fn recv_vnet(&mut self, buf: &mut [u8]) -> io::Result<Option<(usize, RxMeta)>> {
        let mut hdr = [0u8; VNET_HDR_LEN];
        let iov = [
            libc::iovec {
                iov_base: hdr.as_mut_ptr().cast(),
                iov_len: hdr.len(),
            },
            libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            },
        ];
        // SAFETY: both iovecs point to live, writable buffers of the given lengths.
        let n = match retry(|| unsafe { libc::readv(self.fd.as_raw_fd(), iov.as_ptr(), 2) })? {
            Some(n) => n,
            None => return Ok(None),
        };
        let len = n.saturating_sub(VNET_HDR_LEN);
        Ok(Some((len, rx_meta(&hdr))))
    }

    fn send_vnet(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        let total = parts.iter().map(|p| p.len()).sum();
        let hdr = vnet_header_of(parts.first().copied().unwrap_or(&[]), total, self.mtu);
        self.writev(Some(&hdr), parts)
    }

    /// One `writev`: the optional virtio-net header, then `parts`.
    fn writev(&mut self, hdr: Option<&[u8; VNET_HDR_LEN]>, parts: &[&[u8]]) -> io::Result<()> {
        const MAX_PARTS: usize = 8;
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX_PARTS + 1];
        let mut n = 0;
        for p in hdr.map(|h| &h[..]).into_iter().chain(parts.iter().copied()) {
            if p.is_empty() {
                continue;
            }
            if n == iov.len() {
                // More parts than we take: join them (never happens for
                // the stack's at most three).
                let joined = parts.concat();
                return self.writev(hdr, &[&joined]);
            }
            iov[n] = libc::iovec {
                iov_base: p.as_ptr() as *mut _,
                iov_len: p.len(),
            };
            n += 1;
        }
        // SAFETY: the first `n` iovecs point to live buffers; writev only
        // reads them. A full TUN queue (EAGAIN) drops the packet, as a real
        // link would; TCP retransmits.
        retry(|| unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr(), n as libc::c_int) })
            .map(|_| ())
    }
}

/// Run a read/write-like system call: again on EINTR; `None` on EAGAIN.
fn retry(mut call: impl FnMut() -> libc::ssize_t) -> io::Result<Option<usize>> {
    loop {
        let n = call();
        if n >= 0 {
            return Ok(Some(n as usize));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => return Ok(None),
            io::ErrorKind::Interrupted => continue,
            _ => return Err(e),
        }
    }
}

/// What the kernel's virtio-net header says about a received packet's
/// checksum. `NEEDS_CSUM` (the sender's checksum is partial: the packet
/// comes from a socket on this host, `CHECKSUM_PARTIAL`) and `DATA_VALID`
/// (the kernel verified it) both mean the payload was never on a wire that
/// could corrupt it; the stack then skips its own check, like a guest
/// driver with receive checksum offload. The partial checksum stays in the
/// packet (and in a pcap of it, as on any host with offload).
pub fn rx_meta(hdr: &[u8; VNET_HDR_LEN]) -> RxMeta {
    RxMeta {
        checksum_verified: hdr[0] & (VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID)
            != 0,
    }
}

/// Complete a partial checksum the kernel left for us
/// (`VIRTIO_NET_HDR_F_NEEDS_CSUM`): sum from `csum_start` to the end
/// (the field already holds the pseudo-header sum) and store the result.
/// (Not needed by the stack, which trusts such packets: see [`rx_meta`];
/// kept for tools that want wire-valid bytes.)
pub fn complete_checksum(hdr: &[u8; VNET_HDR_LEN], pkt: &mut [u8]) {
    if hdr[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM == 0 {
        return;
    }
    let start = u16::from_ne_bytes([hdr[6], hdr[7]]) as usize;
    let off = u16::from_ne_bytes([hdr[8], hdr[9]]) as usize;
    if start >= pkt.len() || start + off + 2 > pkt.len() {
        return; // malformed: the stack's checksum check will drop it
    }
    let c = crate::wire::checksum::checksum(&pkt[start..]);
    pkt[start + off..start + off + 2].copy_from_slice(&c.to_be_bytes());
}

/// The virtio-net header for an outgoing packet in offload mode. Every TCP
/// packet carries a *partial* checksum (the stack wrote the pseudo-header
/// sum: [`DeviceCaps::tx_checksum_offload`]), so it is marked `NEEDS_CSUM`
/// (`csum_start` = the TCP header, `csum_offset` = 16); one larger than
/// the MTU also goes out as one GSO packet with `gso_size` = the MSS that
/// fits the MTU, which the kernel cuts (or delivers whole to a local
/// socket). Other packets (ICMP) carry full checksums and a zero header.
pub fn vnet_header(packet: &[u8], mtu: usize) -> [u8; VNET_HDR_LEN] {
    vnet_header_of(packet, packet.len(), mtu)
}

/// [`vnet_header`] of a packet of `total` bytes that starts with `head`
/// (its IPv4 and TCP headers, at least).
fn vnet_header_of(head: &[u8], total: usize, mtu: usize) -> [u8; VNET_HDR_LEN] {
    let mut hdr = [0u8; VNET_HDR_LEN];
    let packet = head;
    if packet.len() < 40 || packet[0] >> 4 != 4 || packet[9] != 6 {
        return hdr;
    }
    let ihl = ((packet[0] & 0x0f) as usize) * 4;
    if ihl < 20 || packet.len() < ihl + 20 {
        return hdr;
    }
    let thl = ((packet[ihl + 12] >> 4) as usize) * 4;
    let hl = ihl + thl;
    if thl < 20 || hl > packet.len() || total < packet.len() {
        return hdr;
    }
    hdr[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    hdr[2..4].copy_from_slice(&(hl as u16).to_ne_bytes());
    hdr[6..8].copy_from_slice(&(ihl as u16).to_ne_bytes());
    hdr[8..10].copy_from_slice(&16u16.to_ne_bytes());
    if total > mtu && mtu > hl {
        hdr[1] = VIRTIO_NET_HDR_GSO_TCPV4;
        hdr[4..6].copy_from_slice(&((mtu - hl) as u16).to_ne_bytes());
    }
    hdr
}

impl AsRawFd for TunDevice {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Device for TunDevice {
    fn caps(&self) -> DeviceCaps {
        DeviceCaps {
            mtu: self.mtu,
            max_tso_size: self.tso.then_some(TSO_MAX),
            tx_checksum_offload: self.tso,
        }
    }

    fn recv(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>> {
        Ok(self.recv_meta(now, buf)?.map(|(n, _)| n))
    }

    fn recv_meta(&mut self, _now: Instant, buf: &mut [u8]) -> io::Result<Option<(usize, RxMeta)>> {
        if self.tso {
            return self.recv_vnet(buf);
        }
        // SAFETY: `buf` is a valid writable buffer of `buf.len()` bytes.
        let n = retry(|| unsafe {
            libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())
        })?;
        Ok(n.map(|n| (n, RxMeta::default())))
    }

    fn send_parts(&mut self, _now: Instant, parts: &[&[u8]]) -> io::Result<()> {
        if self.tso {
            return self.send_vnet(parts);
        }
        self.writev(None, parts)
    }

    fn send(&mut self, _now: Instant, packet: &[u8]) -> io::Result<()> {
        if self.tso {
            return self.send_vnet(&[packet]);
        }
        // SAFETY: `packet` is a valid readable buffer of `packet.len()` bytes.
        // A full TUN queue (EAGAIN) drops the packet, as a real link would;
        // TCP retransmits.
        retry(|| unsafe { libc::write(self.fd.as_raw_fd(), packet.as_ptr().cast(), packet.len()) })
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("tun0").is_ok());
        assert!(validate_name("ust-1234-56").is_ok());
        assert!(matches!(validate_name(""), Err(TunError::BadName { .. })));
        assert!(matches!(
            validate_name("0123456789abcdef"),
            Err(TunError::BadName { .. })
        ));
        assert!(validate_name("0123456789abcde").is_ok());
        assert!(matches!(
            validate_name("a/b"),
            Err(TunError::BadName { .. })
        ));
        assert!(matches!(
            validate_name("a b"),
            Err(TunError::BadName { .. })
        ));
        assert!(matches!(validate_name(".."), Err(TunError::BadName { .. })));
    }

    #[test]
    fn ifreq_layout() {
        assert_eq!(core::mem::size_of::<IfReq>(), 40);
        let mut r = IfReq::new("tun0");
        r.set_short(IFF_TUN | IFF_NO_PI);
        assert_eq!(r.get_short(), 0x1001);
        assert_eq!(
            r.name[..5],
            [b't' as libc::c_char, b'u' as _, b'n' as _, b'0' as _, 0]
        );
    }

    fn tcp_packet(payload: usize, options: usize) -> Vec<u8> {
        let mut p = vec![0u8; 20 + 20 + options + payload];
        p[0] = 0x45;
        p[9] = 6;
        p[32] = (((20 + options) / 4) as u8) << 4;
        p
    }

    #[test]
    fn vnet_header_marks_every_tcp_packet_partial_and_big_ones_gso() {
        // A small TCP segment: NEEDS_CSUM at the TCP header, no GSO.
        let h = vnet_header(&tcp_packet(100, 12), 1500);
        assert_eq!(h[0], VIRTIO_NET_HDR_F_NEEDS_CSUM);
        assert_eq!(h[1], VIRTIO_NET_HDR_GSO_NONE);
        assert_eq!(u16::from_ne_bytes([h[6], h[7]]), 20, "csum_start");
        assert_eq!(u16::from_ne_bytes([h[8], h[9]]), 16, "csum_offset");
        // 64 KB with timestamps: GSO with the MSS that fits the MTU.
        let h = vnet_header(&tcp_packet(65_000, 12), 1500);
        assert_eq!(h[1], VIRTIO_NET_HDR_GSO_TCPV4);
        assert_eq!(u16::from_ne_bytes([h[2], h[3]]), 52, "hdr_len");
        assert_eq!(u16::from_ne_bytes([h[4], h[5]]), 1448, "gso_size");
        // ICMP (full checksum) and garbage: a zero header.
        let mut icmp = tcp_packet(100, 0);
        icmp[9] = 1;
        assert_eq!(vnet_header(&icmp, 1500), [0; VNET_HDR_LEN]);
        assert_eq!(vnet_header(&[0x45; 30], 1500), [0; VNET_HDR_LEN]);
        let mut bad = tcp_packet(0, 0);
        bad[32] = 0xf0; // a TCP header longer than the packet
        assert_eq!(vnet_header(&bad, 1500), [0; VNET_HDR_LEN]);
    }

    #[test]
    fn received_checksums_trusted_only_when_the_kernel_says_so() {
        let mut h = [0u8; VNET_HDR_LEN];
        assert!(!rx_meta(&h).checksum_verified);
        h[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        assert!(rx_meta(&h).checksum_verified);
        h[0] = VIRTIO_NET_HDR_F_DATA_VALID;
        assert!(rx_meta(&h).checksum_verified);
    }

    #[test]
    fn permission_message() {
        assert_eq!(
            TunError::PermissionDenied.to_string().split(" (").next(),
            Some("opening /dev/net/tun needs root or CAP_NET_ADMIN")
        );
    }
}
