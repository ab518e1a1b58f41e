//! Devices: where packets enter and leave the stack.
//!
//! A [`Device`] moves whole IPv4 packets. The Linux TUN device ([`tun`]) is
//! the real one; [`sim`] is an in-memory link for tests. Observability and
//! impairment are *wrappers* around another device ([`pcap::PcapWriter`],
//! [`fault::FaultInjector`]), so the stack never knows it is watched or
//! impaired.
//!
//! Devices take the current time as an argument like the rest of the core:
//! only the runtime reads a clock.

use crate::time::Instant;
use std::io;

pub mod fault;
pub mod pcap;
pub mod sim;
pub mod tun;

/// What a device can do; the stack sizes its segments from this.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceCaps {
    /// Largest IPv4 packet (header included) the link carries.
    pub mtu: usize,
    /// Largest TCP packet the device accepts for segmentation offload (TSO),
    /// if it segments for us; `None` means every packet must fit `mtu`.
    pub max_tso_size: Option<usize>,
    /// The device completes TCP checksums of outgoing packets (the stack
    /// writes only the pseudo-header sum into the checksum field, as for a
    /// NIC with checksum offload: Linux's `CHECKSUM_PARTIAL`).
    pub tx_checksum_offload: bool,
}

impl Default for DeviceCaps {
    fn default() -> Self {
        DeviceCaps {
            mtu: 1500,
            max_tso_size: None,
            tx_checksum_offload: false,
        }
    }
}

/// What a device knows about a packet it received.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxMeta {
    /// The transport checksum need not be verified: the packet never left
    /// the host (the kernel marked it `CHECKSUM_PARTIAL` or
    /// `CHECKSUM_UNNECESSARY`), so the stack skips summing the payload.
    pub checksum_verified: bool,
}

/// A link that carries raw IPv4 packets.
pub trait Device {
    /// What the device can carry.
    fn caps(&self) -> DeviceCaps;

    /// Read one received packet into `buf` and return its length, or
    /// `Ok(None)` when no packet is ready now. `buf` is at least 65535 bytes.
    fn recv(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>>;

    /// [`Device::recv`] with what the device knows about the packet. The
    /// default knows nothing (the stack verifies everything).
    fn recv_meta(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<Option<(usize, RxMeta)>> {
        Ok(self.recv(now, buf)?.map(|n| (n, RxMeta::default())))
    }

    /// Send one IPv4 packet.
    fn send(&mut self, now: Instant, packet: &[u8]) -> io::Result<()>;

    /// Send one IPv4 packet given in parts (headers, then payload slices
    /// straight from a send buffer). The default joins them and calls
    /// [`Device::send`]; the TUN device writes them with one `writev`.
    fn send_parts(&mut self, now: Instant, parts: &[&[u8]]) -> io::Result<()> {
        match parts {
            [one] => self.send(now, one),
            _ => self.send(now, &parts.concat()),
        }
    }

    /// When a wrapper that holds packets back (delay, rate limit) next has
    /// something to deliver or send. `None`: nothing held.
    fn poll_at(&self) -> Option<Instant> {
        None
    }

    /// Write out anything buffered (pcap files). Called before exit.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<D: Device + ?Sized> Device for Box<D> {
    fn caps(&self) -> DeviceCaps {
        (**self).caps()
    }
    fn recv(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>> {
        (**self).recv(now, buf)
    }
    fn recv_meta(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<Option<(usize, RxMeta)>> {
        (**self).recv_meta(now, buf)
    }
    fn send(&mut self, now: Instant, packet: &[u8]) -> io::Result<()> {
        (**self).send(now, packet)
    }
    fn send_parts(&mut self, now: Instant, parts: &[&[u8]]) -> io::Result<()> {
        (**self).send_parts(now, parts)
    }
    fn poll_at(&self) -> Option<Instant> {
        (**self).poll_at()
    }
    fn flush(&mut self) -> io::Result<()> {
        (**self).flush()
    }
}
