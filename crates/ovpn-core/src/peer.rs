//! Peers and the tables that find them (kernel-behaviour.md §2.1–§2.3, §2.8).
//!
//! A peer is shared (`Arc`) between the device's lookup tables and packets in
//! flight. Its identity (id, transport) never changes; what the control plane
//! or the data path may change (remote endpoint, VPN addresses, keepalive,
//! tx id, keys) sits behind atomics, an `ArcSwap` or a mutex that only the
//! control plane takes.
//!
//! The tables themselves live in `peer/table.rs`: one peer for a P2P device, four
//! maps for an MP device.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use arc_swap::ArcSwapOption;

use crate::keepalive::KeepaliveState;
use crate::keys::KeySlots;
use crate::stats::{PeerStats, PeerStatsSnapshot};

pub(crate) mod table;

/// The daemon's name for a transport socket. The device never looks inside;
/// it hands the id back with every packet to send and with every removed
/// peer, so the daemon knows which socket to use or release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransportId(pub u64);

/// The protocol of a transport socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// UDP: shared by any number of peers of one device; packets carry a
    /// remote endpoint.
    Udp,
    /// TCP: owned by exactly one peer; packets are framed on the stream.
    Tcp,
}

/// A transport socket attached to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Transport {
    /// The daemon's id of the socket.
    pub id: TransportId,
    /// UDP or TCP.
    pub kind: TransportKind,
    /// The socket's bound local port (PEER_GET `local-port`).
    pub local_port: u16,
}

/// Where a UDP peer's packets go (§2.1 "bind"): the remote endpoint, and the
/// local source address to send from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bind {
    /// The remote endpoint. IPv4 peers are always `V4` (v4-mapped addresses
    /// are converted); an IPv6 remote carries its scope id.
    pub remote: SocketAddr,
    /// The local address to send from; unspecified (`0.0.0.0` / `::`) until
    /// configured or learned from a received packet (§2.6).
    pub local: IpAddr,
}

impl Bind {
    /// The local address, if one is set.
    pub fn local(&self) -> Option<IpAddr> {
        (!self.local.is_unspecified()).then_some(self.local)
    }
}

/// Why a peer was removed (`del-reason`, §2.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DelReason {
    /// Device deleted, or a P2P peer replaced by PEER_NEW.
    Teardown = 0,
    /// PEER_DEL.
    Userspace = 1,
    /// Keepalive timeout.
    Expired = 2,
    /// TCP framing error or send failure.
    TransportError = 3,
    /// The control plane closed the transport socket.
    TransportDisconnect = 4,
}

impl DelReason {
    /// The spec's number for this reason.
    pub fn to_u32(self) -> u32 {
        self as u32
    }

    /// The spec's name (`teardown`, `userspace`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Teardown => "teardown",
            Self::Userspace => "userspace",
            Self::Expired => "expired",
            Self::TransportError => "transport-error",
            Self::TransportDisconnect => "transport-disconnect",
        }
    }

    fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0 => Self::Teardown,
            1 => Self::Userspace,
            2 => Self::Expired,
            3 => Self::TransportError,
            4 => Self::TransportDisconnect,
            _ => return None,
        })
    }
}

/// Everything PEER_GET reports about a peer (§7.7), as plain values for the
/// daemon to serialize.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Peer id (the id expected in received packets).
    pub id: u32,
    /// The id written into transmitted packets (later kernels' `tx-id`;
    /// equal to `id` unless configured).
    pub tx_id: u32,
    /// VPN IPv4 address, if set and non-zero.
    pub vpn_ipv4: Option<Ipv4Addr>,
    /// VPN IPv6 address, if set and not `::`.
    pub vpn_ipv6: Option<Ipv6Addr>,
    /// Keepalive interval in seconds (0 when unset).
    pub keepalive_interval: u32,
    /// Keepalive timeout in seconds (0 when unset).
    pub keepalive_timeout: u32,
    /// Remote endpoint and local address (UDP peers only).
    pub bind: Option<Bind>,
    /// The transport: its id (for `socket-netnsid`), kind and local port.
    pub transport: Transport,
    /// The `vpn-*` and `link-*` counters.
    pub stats: PeerStatsSnapshot,
}

/// A peer's VPN addresses; unspecified means unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VpnAddrs {
    pub(crate) ipv4: Ipv4Addr,
    pub(crate) ipv6: Ipv6Addr,
}

impl Default for VpnAddrs {
    fn default() -> Self {
        Self {
            ipv4: Ipv4Addr::UNSPECIFIED,
            ipv6: Ipv6Addr::UNSPECIFIED,
        }
    }
}

const ALIVE: u8 = u8::MAX;

/// One peer of a device.
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) id: u32,
    tx_id: AtomicU32,
    pub(crate) transport: Transport,
    pub(crate) keys: KeySlots,
    pub(crate) stats: PeerStats,
    pub(crate) keepalive: KeepaliveState,
    /// `None` for TCP peers. Replaced (never edited in place) so that the
    /// data path reads it without a lock.
    bind: ArcSwapOption<Bind>,
    /// Serializes read-modify-write of `bind` (float, local address
    /// learning, PEER_SET); readers do not take it.
    bind_update: Mutex<()>,
    /// Written by the control plane only, under the device's table lock.
    vpn: Mutex<VpnAddrs>,
    delete_reason: AtomicU8,
}

impl Peer {
    pub(crate) fn new(id: u32, transport: Transport) -> Self {
        Self {
            id,
            tx_id: AtomicU32::new(id),
            transport,
            keys: KeySlots::new(),
            stats: PeerStats::default(),
            keepalive: KeepaliveState::default(),
            bind: ArcSwapOption::empty(),
            bind_update: Mutex::new(()),
            vpn: Mutex::new(VpnAddrs::default()),
            delete_reason: AtomicU8::new(ALIVE),
        }
    }

    pub(crate) fn tx_id(&self) -> u32 {
        self.tx_id.load(Ordering::Relaxed)
    }

    pub(crate) fn set_tx_id(&self, tx_id: u32) {
        self.tx_id.store(tx_id, Ordering::Relaxed);
    }

    /// The current bind (a copy; the data path keeps no reference).
    pub(crate) fn bind(&self) -> Option<Bind> {
        self.bind.load().as_deref().copied()
    }

    /// Replaces the bind (PEER_NEW / PEER_SET with a remote address).
    pub(crate) fn set_bind(&self, bind: Bind) {
        let _guard = lock(&self.bind_update);
        self.bind.store(Some(std::sync::Arc::new(bind)));
    }

    /// Applies §2.6 to an authenticated packet from `remote` to `local`.
    pub(crate) fn update_endpoints(&self, remote: SocketAddr, local: IpAddr) -> EndpointChange {
        let remote = canonical_socket_addr(remote);
        let local = local.to_canonical();
        let _guard = lock(&self.bind_update);
        let Some(bind) = self.bind() else {
            return EndpointChange::None;
        };
        if EndpointKey::of(&bind.remote) != EndpointKey::of(&remote) {
            self.bind
                .store(Some(std::sync::Arc::new(Bind { remote, local })));
            return EndpointChange::Floated(remote);
        }
        if !local.is_unspecified() && local != bind.local {
            self.bind.store(Some(std::sync::Arc::new(Bind {
                remote: bind.remote,
                local,
            })));
            return EndpointChange::LocalLearned;
        }
        EndpointChange::None
    }

    /// Forgets the local address `stale` (§3.3): it is no longer assigned,
    /// or routing refused it as a source. Routing picks the source from now
    /// on, and the next authenticated packet teaches the new one (§2.6). A
    /// local address learned or configured since `stale` was read is kept.
    /// Returns whether the bind changed.
    pub(crate) fn clear_local(&self, stale: IpAddr) -> bool {
        let stale = stale.to_canonical();
        let _guard = lock(&self.bind_update);
        let Some(bind) = self.bind() else {
            return false;
        };
        if bind.local.is_unspecified() || bind.local != stale {
            return false;
        }
        let local = match bind.remote {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        self.bind.store(Some(std::sync::Arc::new(Bind {
            remote: bind.remote,
            local,
        })));
        true
    }

    pub(crate) fn vpn(&self) -> VpnAddrs {
        *lock(&self.vpn)
    }

    pub(crate) fn set_vpn(&self, vpn: VpnAddrs) {
        *lock(&self.vpn) = vpn;
    }

    /// Records the removal; true the first time only (a second removal of
    /// the same peer is a no-op, §2.8).
    pub(crate) fn mark_removed(&self, reason: DelReason) -> bool {
        self.delete_reason
            .compare_exchange(ALIVE, reason as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    pub(crate) fn delete_reason(&self) -> Option<DelReason> {
        DelReason::from_u8(self.delete_reason.load(Ordering::Acquire))
    }

    pub(crate) fn info(&self) -> PeerInfo {
        let vpn = self.vpn();
        let (keepalive_interval, keepalive_timeout) = self.keepalive.config();
        PeerInfo {
            id: self.id,
            tx_id: self.tx_id(),
            vpn_ipv4: (!vpn.ipv4.is_unspecified()).then_some(vpn.ipv4),
            vpn_ipv6: (!vpn.ipv6.is_unspecified()).then_some(vpn.ipv6),
            keepalive_interval,
            keepalive_timeout,
            bind: self.bind(),
            transport: self.transport,
            stats: self.stats.snapshot(),
        }
    }
}

/// What [`Peer::update_endpoints`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndpointChange {
    None,
    LocalLearned,
    Floated(SocketAddr),
}

/// A transport address as the kernel compares it: family, address and port,
/// without the IPv6 scope id (§2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct EndpointKey {
    addr: IpAddr,
    port: u16,
}

impl EndpointKey {
    pub(crate) fn of(addr: &SocketAddr) -> Self {
        Self {
            addr: addr.ip().to_canonical(),
            port: addr.port(),
        }
    }
}

/// `addr` with a v4-mapped IPv6 address turned into IPv4, as the kernel sees
/// IPv4 packets arriving on a dual-stack socket.
pub(crate) fn canonical_socket_addr(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values stay consistent even if a holder panicked: every
    // write replaces a whole value.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddrV6;

    fn transport() -> Transport {
        Transport {
            id: TransportId(1),
            kind: TransportKind::Udp,
            local_port: 1194,
        }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn removal_is_recorded_once() {
        let peer = Peer::new(5, transport());
        assert_eq!(peer.delete_reason(), None);
        assert!(peer.mark_removed(DelReason::Expired));
        assert!(!peer.mark_removed(DelReason::Userspace));
        assert_eq!(peer.delete_reason(), Some(DelReason::Expired));
    }

    #[test]
    fn endpoint_key_ignores_scope_and_mapping() {
        let a = SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 1, 0, 3));
        let b = SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 1, 0, 0));
        assert_eq!(EndpointKey::of(&a), EndpointKey::of(&b));
        assert_eq!(
            EndpointKey::of(&sa("[::ffff:198.18.0.1]:5")),
            EndpointKey::of(&sa("198.18.0.1:5"))
        );
        assert_ne!(
            EndpointKey::of(&sa("198.18.0.1:5")),
            EndpointKey::of(&sa("198.18.0.1:6"))
        );
    }

    #[test]
    fn float_and_local_learning() {
        let peer = Peer::new(1, transport());
        peer.set_bind(Bind {
            remote: sa("198.18.0.2:1194"),
            local: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        });

        // Same remote, first local address: learned.
        let local: IpAddr = "198.18.0.1".parse().unwrap();
        assert_eq!(
            peer.update_endpoints(sa("198.18.0.2:1194"), local),
            EndpointChange::LocalLearned
        );
        assert_eq!(peer.bind().unwrap().local, local);
        assert_eq!(
            peer.update_endpoints(sa("198.18.0.2:1194"), local),
            EndpointChange::None
        );

        // A v4-mapped source is the same endpoint.
        assert_eq!(
            peer.update_endpoints(sa("[::ffff:198.18.0.2]:1194"), local),
            EndpointChange::None
        );

        // New port: float, remote and local replaced.
        let new_local: IpAddr = "198.18.0.9".parse().unwrap();
        assert_eq!(
            peer.update_endpoints(sa("198.18.0.2:2000"), new_local),
            EndpointChange::Floated(sa("198.18.0.2:2000"))
        );
        assert_eq!(
            peer.bind(),
            Some(Bind {
                remote: sa("198.18.0.2:2000"),
                local: new_local
            })
        );
    }

    #[test]
    fn a_stale_local_address_is_cleared_and_then_learned_again() {
        let peer = Peer::new(1, transport());
        let old: IpAddr = "198.18.0.1".parse().unwrap();
        peer.set_bind(Bind {
            remote: sa("198.18.0.2:1194"),
            local: old,
        });

        // Another address than the bind's: nothing to clear.
        assert!(!peer.clear_local("198.18.0.7".parse().unwrap()));
        assert_eq!(peer.bind().unwrap().local, old);

        // The stale one (also as v4-mapped): cleared, remote kept.
        assert!(peer.clear_local("::ffff:198.18.0.1".parse().unwrap()));
        assert_eq!(
            peer.bind(),
            Some(Bind {
                remote: sa("198.18.0.2:1194"),
                local: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            })
        );
        assert_eq!(peer.bind().unwrap().local(), None);
        assert!(!peer.clear_local(old), "already cleared");

        // The next packet teaches the new address.
        let new: IpAddr = "198.18.0.3".parse().unwrap();
        assert_eq!(
            peer.update_endpoints(sa("198.18.0.2:1194"), new),
            EndpointChange::LocalLearned
        );
        assert!(!peer.clear_local(old), "a newer address is kept");
        assert_eq!(peer.bind().unwrap().local, new);

        // IPv6 binds clear to `::`.
        peer.set_bind(Bind {
            remote: sa("[2001:db8::2]:1194"),
            local: "2001:db8::1".parse().unwrap(),
        });
        assert!(peer.clear_local("2001:db8::1".parse().unwrap()));
        assert_eq!(
            peer.bind().unwrap().local,
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        );
    }

    #[test]
    fn tcp_peer_has_no_bind_and_never_floats() {
        let peer = Peer::new(1, transport());
        assert_eq!(
            peer.update_endpoints(sa("198.18.0.2:1194"), "198.18.0.1".parse().unwrap()),
            EndpointChange::None
        );
        assert_eq!(peer.bind(), None);
    }
}
