//! TUN interfaces: creation (`IFF_TUN | IFF_NO_PI`, optionally multi-queue
//! and with a virtio-net header for TSO/USO offloads), packet I/O per queue,
//! and the device settings a userspace `ovpn` device needs: MTU, up/down,
//! carrier, transmit queue length (`spec/kernel-behaviour.md` §1.2, §1.3,
//! §10.6).
//!
//! The device lives as long as one of its queue descriptors is open: we never
//! make it persistent, so a crashed daemon leaves no interface behind.

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU8, Ordering};

use crate::netdev::{self, InterfaceFlags};
use crate::sys::{cvt, cvt_size, owned, retry, set_nonblocking};
use crate::{Error, Result};

/// Size of the `virtio_net_hdr` that precedes every packet on a queue opened
/// with a vnet header.
pub const VNET_HDR_LEN: usize = 10;

const TUN_PATH: &CStr = c"/dev/net/tun";

/// How to create a TUN device.
#[derive(Clone, Debug)]
pub struct TunConfig {
    name: String,
    queues: usize,
    vnet_hdr: bool,
    offload: Offload,
}

impl TunConfig {
    /// A single-queue device named `name`, without vnet header.
    ///
    /// A name containing `%d` lets the kernel pick a free number.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            queues: 1,
            vnet_hdr: false,
            offload: Offload::ALL,
        }
    }

    /// Opens `count` queues (`IFF_MULTI_QUEUE` when more than one).
    #[must_use]
    pub fn queues(mut self, count: usize) -> Self {
        self.queues = count;
        self
    }

    /// Prefixes every packet with a `virtio_net_hdr` (`IFF_VNET_HDR`), which
    /// is what makes segmentation offloads possible.
    #[must_use]
    pub fn vnet_hdr(mut self, on: bool) -> Self {
        self.vnet_hdr = on;
        self
    }

    /// The offloads to ask for when the vnet header is on; what the kernel
    /// grants is reported by [`Tun::offload`].
    #[must_use]
    pub fn offload(mut self, offload: Offload) -> Self {
        self.offload = offload;
        self
    }
}

/// Segmentation offloads of a TUN device with vnet header.
///
/// With an offload on, reads may return super-packets larger than the MTU
/// with a GSO type in the vnet header, and writes may carry them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offload {
    /// TCP segmentation offload for IPv4 and IPv6 (`TUN_F_TSO4 | TUN_F_TSO6`).
    pub tso: bool,
    /// UDP segmentation offload for IPv4 and IPv6 (`TUN_F_USO4 | TUN_F_USO6`,
    /// Linux 6.2 and later).
    pub uso: bool,
}

impl Offload {
    /// No offload: every packet is a single, fully checksummed IP packet.
    pub const NONE: Self = Self {
        tso: false,
        uso: false,
    };

    /// Everything this crate knows how to ask for.
    pub const ALL: Self = Self {
        tso: true,
        uso: true,
    };

    fn to_u8(self) -> u8 {
        u8::from(self.tso) | u8::from(self.uso) << 1
    }

    fn from_u8(bits: u8) -> Self {
        Self {
            tso: bits & 1 != 0,
            uso: bits & 2 != 0,
        }
    }

    fn bits(self) -> libc::c_uint {
        let mut bits = 0;
        if self.tso {
            bits |= libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
        }
        if self.uso {
            bits |= libc::TUN_F_USO4 | libc::TUN_F_USO6;
        }
        if bits != 0 {
            // Segmentation implies that checksums may be left partial.
            bits |= libc::TUN_F_CSUM;
        }
        bits
    }
}

/// A TUN device and its open queues.
#[derive(Debug)]
pub struct Tun {
    name: String,
    ifindex: u32,
    queues: Vec<TunQueue>,
    /// The granted offloads, as [`Offload::to_u8`]; atomic so the kill
    /// switch works while workers share the device.
    offload: AtomicU8,
}

impl Tun {
    /// Creates the device described by `config` in the calling thread's
    /// network namespace.
    ///
    /// Features the kernel lacks are dropped rather than failing: without
    /// multi-queue support a single queue is opened, without vnet header
    /// support packets come bare, and offloads are probed from the request
    /// downwards (TSO+USO, then TSO alone, then none). [`Tun::queues`],
    /// [`TunQueue::has_vnet_hdr`] and [`Tun::offload`] tell what was granted.
    ///
    /// # Errors
    ///
    /// An invalid name or a queue count of zero; `/dev/net/tun` missing or
    /// not accessible; `TUNSETIFF` failing (`EBUSY` if a non-TUN interface
    /// of that name exists, `EPERM` without `CAP_NET_ADMIN`).
    pub fn create(config: &TunConfig) -> Result<Self> {
        if !config.name.is_empty() {
            netdev::validate_name(&config.name)?;
        }
        if config.queues == 0 {
            return Err(Error::InvalidArgument {
                call: "TUNSETIFF",
                reason: "at least one queue is needed",
            });
        }

        let first = open_tun()?;
        let features = tun_features(first.as_fd())?;
        let vnet_hdr = config.vnet_hdr && features & libc::IFF_VNET_HDR != 0;
        let multi_queue = config.queues > 1 && features & libc::IFF_MULTI_QUEUE != 0;
        let queue_count = if multi_queue { config.queues } else { 1 };
        if queue_count < config.queues || vnet_hdr != config.vnet_hdr {
            tracing::info!(
                queues = queue_count,
                vnet_hdr,
                "tun: kernel lacks a requested feature, continuing without it"
            );
        }

        let mut flags = libc::IFF_TUN | libc::IFF_NO_PI;
        if vnet_hdr {
            flags |= libc::IFF_VNET_HDR;
        }
        if multi_queue {
            flags |= libc::IFF_MULTI_QUEUE;
        }

        let name = attach(first.as_fd(), &config.name, flags)?;
        let mut queues = vec![TunQueue::new(first, vnet_hdr)?];
        for _ in 1..queue_count {
            let fd = open_tun()?;
            attach(fd.as_fd(), &name, flags)?;
            queues.push(TunQueue::new(fd, vnet_hdr)?);
        }

        // A device left persistent by someone else would outlive us.
        // SAFETY: TUNSETPERSIST takes its argument by value.
        let ret = unsafe { libc::ioctl(queues[0].raw(), libc::TUNSETPERSIST, 0 as libc::c_ulong) };
        cvt("ioctl(TUNSETPERSIST)", ret)?;

        let ifindex = netdev::index(&name)?;
        let tun = Self {
            name,
            ifindex,
            queues,
            offload: AtomicU8::new(Offload::NONE.to_u8()),
        };
        if vnet_hdr {
            tun.set_offload(config.offload)?;
        }
        Ok(tun)
    }

    /// The interface name the kernel assigned.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The open queues; with multi-queue, each is meant for one worker.
    pub fn queues(&self) -> &[TunQueue] {
        &self.queues
    }

    /// Takes the queues out; the device lives until the last is dropped.
    pub fn into_queues(self) -> Vec<TunQueue> {
        self.queues
    }

    /// The offloads currently on.
    pub fn offload(&self) -> Offload {
        Offload::from_u8(self.offload.load(Ordering::Relaxed))
    }

    /// Switches offloads at run time; asking for [`Offload::NONE`] is the
    /// kill switch. Falls back like [`Tun::create`] and returns what is now
    /// on.
    ///
    /// # Errors
    ///
    /// The device has no vnet header (offloads need one), or even switching
    /// every offload off failed.
    pub fn set_offload(&self, wanted: Offload) -> Result<Offload> {
        if !self.queues[0].vnet_hdr {
            return Err(Error::InvalidArgument {
                call: "ioctl(TUNSETOFFLOAD)",
                reason: "offloads need a vnet header",
            });
        }
        let fd = self.queues[0].raw();
        let candidates = [
            wanted,
            Offload {
                uso: false,
                ..wanted
            },
            Offload::NONE,
        ];
        let mut last_err = None;
        for candidate in candidates {
            match set_offload_bits(fd, candidate.bits()) {
                Ok(()) => {
                    tracing::debug!(?candidate, ?wanted, "tun: offloads set");
                    self.offload.store(candidate.to_u8(), Ordering::Relaxed);
                    return Ok(candidate);
                }
                Err(err) => last_err = Some(err),
            }
        }
        Err(last_err.unwrap_or(Error::InvalidArgument {
            call: "ioctl(TUNSETOFFLOAD)",
            reason: "no offload setting was tried",
        }))
    }

    /// Reports carrier on or off (`TUNSETCARRIER`), as a P2P `ovpn` device
    /// does when its peer comes and goes.
    ///
    /// # Errors
    ///
    /// `TUNSETCARRIER` failing.
    pub fn set_carrier(&self, on: bool) -> Result<()> {
        self.queues[0].set_carrier(on)
    }

    /// Sets the MTU.
    ///
    /// # Errors
    ///
    /// `SIOCSIFMTU` failing (`EINVAL` outside the TUN range 68..=65535).
    pub fn set_mtu(&self, mtu: u32) -> Result<()> {
        netdev::set_mtu(&self.name, mtu)
    }

    /// The current MTU.
    ///
    /// # Errors
    ///
    /// `SIOCGIFMTU` failing.
    pub fn mtu(&self) -> Result<u32> {
        netdev::mtu(&self.name)
    }

    /// Brings the interface up or down.
    ///
    /// # Errors
    ///
    /// `SIOCSIFFLAGS` failing.
    pub fn set_up(&self, up: bool) -> Result<()> {
        netdev::set_up(&self.name, up)
    }

    /// The interface flags.
    ///
    /// # Errors
    ///
    /// `SIOCGIFFLAGS` failing.
    pub fn flags(&self) -> Result<InterfaceFlags> {
        netdev::flags(&self.name)
    }

    /// Sets the transmit queue length.
    ///
    /// # Errors
    ///
    /// `SIOCSIFTXQLEN` failing.
    pub fn set_tx_queue_len(&self, len: u32) -> Result<()> {
        netdev::set_tx_queue_len(&self.name, len)
    }
}

/// One queue of a TUN device: each read returns one packet the kernel routed
/// into the device, each write injects one packet.
///
/// With a vnet header, every packet starts with [`VNET_HDR_LEN`] bytes of
/// [`VnetHeader`].
#[derive(Debug)]
pub struct TunQueue {
    fd: OwnedFd,
    vnet_hdr: bool,
}

impl TunQueue {
    fn new(fd: OwnedFd, vnet_hdr: bool) -> Result<Self> {
        if vnet_hdr {
            let size = VNET_HDR_LEN as libc::c_int;
            // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer,
            // which points to `size` for the whole call.
            let ret =
                unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &raw const size) };
            cvt("ioctl(TUNSETVNETHDRSZ)", ret)?;
        }
        Ok(Self { fd, vnet_hdr })
    }

    /// Whether packets on this queue carry a vnet header.
    pub fn has_vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }

    /// Reads one packet into `buf` and returns its length.
    ///
    /// A packet longer than `buf` is truncated by the kernel.
    ///
    /// # Errors
    ///
    /// `read` failing; on a non-blocking queue with nothing to read,
    /// an error for which [`Error::is_would_block`] holds.
    pub fn read(&self, buf: &mut [u8]) -> Result<usize> {
        retry(|| {
            // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
            let ret = unsafe { libc::read(self.raw(), buf.as_mut_ptr().cast(), buf.len()) };
            cvt_size("read(tun)", ret)
        })
    }

    /// Writes one packet (with its vnet header if the queue has one).
    ///
    /// # Errors
    ///
    /// `write` failing, e.g. `EINVAL` for a malformed packet or vnet header.
    pub fn write(&self, packet: &[u8]) -> Result<usize> {
        retry(|| {
            // SAFETY: the kernel reads at most `packet.len()` bytes from it.
            let ret = unsafe { libc::write(self.raw(), packet.as_ptr().cast(), packet.len()) };
            cvt_size("write(tun)", ret)
        })
    }

    /// Switches `O_NONBLOCK`, for use with a poller.
    ///
    /// # Errors
    ///
    /// `fcntl` failing.
    pub fn set_nonblocking(&self, on: bool) -> Result<()> {
        set_nonblocking(self.fd.as_fd(), on)
    }

    /// Reports carrier on or off for the whole device.
    ///
    /// # Errors
    ///
    /// `TUNSETCARRIER` failing.
    pub fn set_carrier(&self, on: bool) -> Result<()> {
        let value = libc::c_int::from(on);
        // SAFETY: TUNSETCARRIER reads one int through the pointer, which
        // points to `value` for the whole call.
        let ret = unsafe { libc::ioctl(self.raw(), libc::TUNSETCARRIER, &raw const value) };
        cvt("ioctl(TUNSETCARRIER)", ret).map(drop)
    }

    fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for TunQueue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for TunQueue {
    fn as_raw_fd(&self) -> RawFd {
        self.raw()
    }
}

/// The `virtio_net_hdr` in front of each packet on a vnet-header queue, in
/// host byte order (the TUN default on little- and big-endian hosts alike).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHeader {
    /// `VIRTIO_NET_HDR_F_*` flags.
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*` type.
    pub gso_type: u8,
    /// Length of the headers to copy in front of each segment.
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where checksumming starts, with `NEEDS_CSUM`.
    pub csum_start: u16,
    /// Where the checksum is stored, relative to `csum_start`.
    pub csum_offset: u16,
}

impl VnetHeader {
    /// The checksum at `csum_start + csum_offset` still has to be completed.
    pub const F_NEEDS_CSUM: u8 = 1;
    /// The checksum has been validated.
    pub const F_DATA_VALID: u8 = 2;
    /// A single packet.
    pub const GSO_NONE: u8 = 0;
    /// An IPv4 TCP super-packet.
    pub const GSO_TCPV4: u8 = 1;
    /// An IPv6 TCP super-packet.
    pub const GSO_TCPV6: u8 = 4;
    /// A UDP super-packet (IPv4 or IPv6, segmented at the UDP layer).
    pub const GSO_UDP_L4: u8 = 5;
    /// Flag on the GSO type: the TCP ECN CWR bit is set.
    pub const GSO_ECN: u8 = 0x80;

    /// Reads the header at the start of `packet`; `None` if it is shorter.
    pub fn parse(packet: &[u8]) -> Option<Self> {
        let b = packet.get(..VNET_HDR_LEN)?;
        let u16_at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Some(Self {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }

    /// Writes the header into the first [`VNET_HDR_LEN`] bytes of `out`.
    ///
    /// # Panics
    ///
    /// If `out` is shorter than [`VNET_HDR_LEN`].
    pub fn emit(&self, out: &mut [u8]) {
        let b = &mut out[..VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
    }
}

fn open_tun() -> Result<OwnedFd> {
    // SAFETY: the path is a NUL-terminated constant.
    let ret = unsafe { libc::open(TUN_PATH.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    owned("open(/dev/net/tun)", ret)
}

fn tun_features(fd: BorrowedFd<'_>) -> Result<libc::c_int> {
    let mut features: libc::c_uint = 0;
    // SAFETY: TUNGETFEATURES writes one unsigned int through the pointer.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETFEATURES, &raw mut features) };
    cvt("ioctl(TUNGETFEATURES)", ret)?;
    Ok(features as libc::c_int)
}

/// Attaches `fd` to the device `name` (creating it if needed) and returns the
/// name the kernel used.
fn attach(fd: BorrowedFd<'_>, name: &str, flags: libc::c_int) -> Result<String> {
    let mut req = if name.is_empty() {
        // SAFETY: ifreq is plain data; all-zero is valid (and asks the
        // kernel to choose a name).
        unsafe { std::mem::zeroed::<libc::ifreq>() }
    } else {
        netdev::ifreq(name)?
    };
    req.ifr_ifru.ifru_flags = flags as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which `req` is.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &raw mut req) };
    cvt("ioctl(TUNSETIFF)", ret)?;
    Ok(netdev::name_of(&req))
}

fn set_offload_bits(fd: RawFd, bits: libc::c_uint) -> Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value.
    let ret = unsafe { libc::ioctl(fd, libc::TUNSETOFFLOAD, libc::c_ulong::from(bits)) };
    cvt("ioctl(TUNSETOFFLOAD)", ret).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vnet_header_round_trips() {
        let hdr = VnetHeader {
            flags: VnetHeader::F_NEEDS_CSUM,
            gso_type: VnetHeader::GSO_TCPV4,
            hdr_len: 54,
            gso_size: 1376,
            csum_start: 34,
            csum_offset: 16,
        };
        let mut buf = [0u8; 12];
        hdr.emit(&mut buf);
        assert_eq!(buf[0], 1);
        assert_eq!(buf[1], 1);
        assert_eq!(&buf[2..4], &54u16.to_ne_bytes());
        assert_eq!(VnetHeader::parse(&buf), Some(hdr));
        assert_eq!(VnetHeader::parse(&buf[..9]), None);
    }

    #[test]
    fn offload_bits() {
        assert_eq!(Offload::NONE.bits(), 0);
        assert_eq!(
            Offload {
                tso: true,
                uso: false
            }
            .bits(),
            libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6
        );
        assert_eq!(Offload::ALL.bits() & libc::TUN_F_USO6, libc::TUN_F_USO6);
        for o in [
            Offload::NONE,
            Offload::ALL,
            Offload {
                tso: false,
                uso: true,
            },
        ] {
            assert_eq!(Offload::from_u8(o.to_u8()), o);
        }
    }

    #[test]
    fn zero_queues_is_refused() {
        let err = Tun::create(&TunConfig::new("ovpn-t0").queues(0)).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { .. }));
    }
}
