//! The peer tables of a device (kernel-behaviour.md §2.2–§2.5).
//!
//! A P2P device holds at most one peer; every lookup compares with it. An MP
//! device indexes its peers by id, by VPN IPv4, by VPN IPv6, by transport
//! address (UDP) and by transport (TCP). A table is a value: the device
//! clones it, changes the clone under its writer lock and publishes it
//! atomically, so packet lookups never wait.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use super::{EndpointKey, Peer, TransportId, VpnAddrs};

/// The peers of one device.
// Always behind an `Arc`, and a device never changes variant: the size
// difference costs nothing, a box would cost an indirection per lookup.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub(crate) enum PeerTable {
    P2p(Option<Arc<Peer>>),
    Mp(MpPeers),
}

/// The lookup maps of an MP device.
#[derive(Debug, Clone, Default)]
pub(crate) struct MpPeers {
    by_id: HashMap<u32, Arc<Peer>>,
    by_vpn4: HashMap<Ipv4Addr, Arc<Peer>>,
    by_vpn6: HashMap<Ipv6Addr, Arc<Peer>>,
    by_endpoint: HashMap<EndpointKey, Arc<Peer>>,
    by_transport: HashMap<TransportId, Arc<Peer>>,
}

impl PeerTable {
    /// The peer with id `id`. P2P: the peer, if its id matches (§2.5).
    pub(crate) fn by_id(&self, id: u32) -> Option<&Arc<Peer>> {
        match self {
            Self::P2p(peer) => peer.as_ref().filter(|p| p.id == id),
            Self::Mp(mp) => mp.by_id.get(&id),
        }
    }

    /// The UDP peer whose remote endpoint is `key`.
    pub(crate) fn by_endpoint(&self, key: &EndpointKey) -> Option<&Arc<Peer>> {
        match self {
            Self::P2p(peer) => peer
                .as_ref()
                .filter(|p| p.bind().is_some_and(|b| EndpointKey::of(&b.remote) == *key)),
            Self::Mp(mp) => mp.by_endpoint.get(key),
        }
    }

    /// The TCP peer owning `transport`.
    pub(crate) fn by_transport(&self, transport: TransportId) -> Option<&Arc<Peer>> {
        match self {
            Self::P2p(peer) => peer.as_ref().filter(|p| p.transport.id == transport),
            Self::Mp(mp) => mp.by_transport.get(&transport),
        }
    }

    /// The peer owning VPN address `addr` (MP). P2P: always the peer (§2.4).
    pub(crate) fn by_vpn(&self, addr: IpAddr) -> Option<&Arc<Peer>> {
        match self {
            Self::P2p(peer) => peer.as_ref(),
            Self::Mp(mp) => match addr {
                IpAddr::V4(a) if !a.is_unspecified() => mp.by_vpn4.get(&a),
                IpAddr::V6(a) if !a.is_unspecified() => mp.by_vpn6.get(&a),
                _ => None,
            },
        }
    }

    /// Whether `peer` (this very object) is in the table.
    pub(crate) fn contains(&self, peer: &Arc<Peer>) -> bool {
        self.by_id(peer.id).is_some_and(|p| Arc::ptr_eq(p, peer))
    }

    /// Every peer, in no particular order.
    pub(crate) fn peers(&self) -> Box<dyn Iterator<Item = &Arc<Peer>> + '_> {
        match self {
            Self::P2p(peer) => Box::new(peer.iter()),
            Self::Mp(mp) => Box::new(mp.by_id.values()),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Self::P2p(peer) => usize::from(peer.is_some()),
            Self::Mp(mp) => mp.by_id.len(),
        }
    }
}

impl MpPeers {
    pub(crate) fn contains_id(&self, id: u32) -> bool {
        self.by_id.contains_key(&id)
    }

    /// Adds `peer` to every map it belongs in. The caller checked that the
    /// id is free.
    pub(crate) fn insert(&mut self, peer: &Arc<Peer>) {
        self.by_id.insert(peer.id, peer.clone());
        self.hash_vpn(peer);
        self.hash_endpoint(peer);
        if peer.transport.kind == super::TransportKind::Tcp {
            self.by_transport.insert(peer.transport.id, peer.clone());
        }
    }

    /// Removes `peer` from every map.
    pub(crate) fn remove(&mut self, peer: &Arc<Peer>) {
        if self
            .by_id
            .get(&peer.id)
            .is_some_and(|p| Arc::ptr_eq(p, peer))
        {
            self.by_id.remove(&peer.id);
        }
        self.unhash_vpn(peer);
        self.by_endpoint.retain(|_, p| !Arc::ptr_eq(p, peer));
        if self
            .by_transport
            .get(&peer.transport.id)
            .is_some_and(|p| Arc::ptr_eq(p, peer))
        {
            self.by_transport.remove(&peer.transport.id);
        }
    }

    /// Re-indexes `peer` under its current VPN addresses, after PEER_SET
    /// changed them from `old`.
    ///
    /// An address set to zero drops out of the lookups, as in the kernel
    /// (where the stale hash entry stays but never matches).
    pub(crate) fn rehash_vpn(&mut self, peer: &Arc<Peer>, old: VpnAddrs) {
        self.unhash_vpn_addrs(peer, old);
        self.hash_vpn(peer);
    }

    /// Re-indexes `peer` under its current remote endpoint (after a float or
    /// a PEER_SET with a new remote).
    pub(crate) fn rehash_endpoint(&mut self, peer: &Arc<Peer>) {
        self.by_endpoint.retain(|_, p| !Arc::ptr_eq(p, peer));
        self.hash_endpoint(peer);
    }

    fn hash_vpn(&mut self, peer: &Arc<Peer>) {
        // 6.16 does not refuse a VPN address another peer already has: the
        // peer hashed last shadows the other one for lookups (§2.2, §12.3).
        let vpn = peer.vpn();
        if !vpn.ipv4.is_unspecified() {
            self.by_vpn4.insert(vpn.ipv4, peer.clone());
        }
        if !vpn.ipv6.is_unspecified() {
            self.by_vpn6.insert(vpn.ipv6, peer.clone());
        }
    }

    fn hash_endpoint(&mut self, peer: &Arc<Peer>) {
        if let Some(bind) = peer.bind() {
            self.by_endpoint
                .insert(EndpointKey::of(&bind.remote), peer.clone());
        }
    }

    fn unhash_vpn(&mut self, peer: &Arc<Peer>) {
        self.unhash_vpn_addrs(peer, peer.vpn());
    }

    /// Removes the entries of `addrs` that point at `peer`; if another peer
    /// shares such an address, it becomes visible again (as the older entry
    /// in a kernel hash bucket would).
    fn unhash_vpn_addrs(&mut self, peer: &Arc<Peer>, addrs: VpnAddrs) {
        if self
            .by_vpn4
            .get(&addrs.ipv4)
            .is_some_and(|p| Arc::ptr_eq(p, peer))
        {
            self.by_vpn4.remove(&addrs.ipv4);
            let heir = self
                .by_id
                .values()
                .find(|p| !Arc::ptr_eq(p, peer) && p.vpn().ipv4 == addrs.ipv4);
            if let Some(heir) = heir {
                self.by_vpn4.insert(addrs.ipv4, heir.clone());
            }
        }
        if self
            .by_vpn6
            .get(&addrs.ipv6)
            .is_some_and(|p| Arc::ptr_eq(p, peer))
        {
            self.by_vpn6.remove(&addrs.ipv6);
            let heir = self
                .by_id
                .values()
                .find(|p| !Arc::ptr_eq(p, peer) && p.vpn().ipv6 == addrs.ipv6);
            if let Some(heir) = heir {
                self.by_vpn6.insert(addrs.ipv6, heir.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::{Bind, Transport, TransportKind};
    use std::net::SocketAddr;

    fn udp_peer(id: u32, remote: &str, vpn4: &str) -> Arc<Peer> {
        let peer = Peer::new(
            id,
            Transport {
                id: TransportId(1),
                kind: TransportKind::Udp,
                local_port: 1194,
            },
        );
        peer.set_bind(Bind {
            remote: remote.parse().unwrap(),
            local: "0.0.0.0".parse().unwrap(),
        });
        peer.set_vpn(VpnAddrs {
            ipv4: vpn4.parse().unwrap(),
            ipv6: Ipv6Addr::UNSPECIFIED,
        });
        Arc::new(peer)
    }

    fn tcp_peer(id: u32, transport: u64, vpn6: &str) -> Arc<Peer> {
        let peer = Peer::new(
            id,
            Transport {
                id: TransportId(transport),
                kind: TransportKind::Tcp,
                local_port: 1194,
            },
        );
        peer.set_vpn(VpnAddrs {
            ipv4: Ipv4Addr::UNSPECIFIED,
            ipv6: vpn6.parse().unwrap(),
        });
        Arc::new(peer)
    }

    fn key(s: &str) -> EndpointKey {
        EndpointKey::of(&s.parse::<SocketAddr>().unwrap())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn p2p_lookups_compare_with_the_single_peer() {
        let peer = udp_peer(3, "198.18.0.2:1194", "0.0.0.0");
        let table = PeerTable::P2p(Some(peer.clone()));
        assert!(table.by_id(3).is_some());
        assert!(
            table.by_id(4).is_none(),
            "P2P also requires the id to match"
        );
        assert!(table.by_endpoint(&key("198.18.0.2:1194")).is_some());
        assert!(table.by_endpoint(&key("198.18.0.2:1195")).is_none());
        // Any destination selects the P2P peer.
        assert!(table.by_vpn(ip("203.0.113.7")).is_some());
        assert!(table.contains(&peer));
        assert_eq!(table.len(), 1);

        let empty = PeerTable::P2p(None);
        assert!(empty.by_vpn(ip("198.18.0.1")).is_none());
        assert_eq!(empty.peers().count(), 0);
    }

    #[test]
    fn mp_indexes_every_key_and_forgets_on_remove() {
        let a = udp_peer(1, "198.18.0.2:1194", "198.19.0.2");
        let b = tcp_peer(2, 9, "2001:db8::2");
        let mut mp = MpPeers::default();
        mp.insert(&a);
        mp.insert(&b);
        let table = PeerTable::Mp(mp.clone());

        assert!(Arc::ptr_eq(table.by_id(1).unwrap(), &a));
        assert!(Arc::ptr_eq(table.by_vpn(ip("198.19.0.2")).unwrap(), &a));
        assert!(Arc::ptr_eq(table.by_vpn(ip("2001:db8::2")).unwrap(), &b));
        assert!(Arc::ptr_eq(
            table.by_endpoint(&key("198.18.0.2:1194")).unwrap(),
            &a
        ));
        assert!(Arc::ptr_eq(table.by_transport(TransportId(9)).unwrap(), &b));
        assert!(
            table.by_transport(TransportId(1)).is_none(),
            "UDP is shared"
        );
        assert!(table.by_vpn(ip("0.0.0.0")).is_none());
        assert!(table.by_vpn(ip("198.19.0.3")).is_none());

        mp.remove(&a);
        let table = PeerTable::Mp(mp);
        assert!(table.by_id(1).is_none());
        assert!(table.by_vpn(ip("198.19.0.2")).is_none());
        assert!(table.by_endpoint(&key("198.18.0.2:1194")).is_none());
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn vpn_rehash_moves_and_zero_unhashes() {
        let a = udp_peer(1, "198.18.0.2:1194", "198.19.0.2");
        let mut mp = MpPeers::default();
        mp.insert(&a);

        let old = a.vpn();
        a.set_vpn(VpnAddrs {
            ipv4: "198.19.0.20".parse().unwrap(),
            ..old
        });
        mp.rehash_vpn(&a, old);
        let table = PeerTable::Mp(mp.clone());
        assert!(table.by_vpn(ip("198.19.0.2")).is_none());
        assert!(table.by_vpn(ip("198.19.0.20")).is_some());

        let old = a.vpn();
        a.set_vpn(VpnAddrs {
            ipv4: Ipv4Addr::UNSPECIFIED,
            ..old
        });
        mp.rehash_vpn(&a, old);
        assert!(PeerTable::Mp(mp).by_vpn(ip("198.19.0.20")).is_none());
    }

    #[test]
    fn shared_vpn_address_last_wins_then_falls_back() {
        let a = udp_peer(1, "198.18.0.2:1194", "198.19.0.2");
        let b = udp_peer(2, "198.18.0.3:1194", "198.19.0.2");
        let mut mp = MpPeers::default();
        mp.insert(&a);
        mp.insert(&b);
        assert!(Arc::ptr_eq(
            PeerTable::Mp(mp.clone()).by_vpn(ip("198.19.0.2")).unwrap(),
            &b
        ));
        mp.remove(&b);
        assert!(Arc::ptr_eq(
            PeerTable::Mp(mp).by_vpn(ip("198.19.0.2")).unwrap(),
            &a
        ));
    }

    #[test]
    fn endpoint_rehash_follows_the_bind() {
        let a = udp_peer(1, "198.18.0.2:1194", "198.19.0.2");
        let mut mp = MpPeers::default();
        mp.insert(&a);
        a.set_bind(Bind {
            remote: "198.18.0.2:4000".parse().unwrap(),
            local: "0.0.0.0".parse().unwrap(),
        });
        mp.rehash_endpoint(&a);
        let table = PeerTable::Mp(mp);
        assert!(table.by_endpoint(&key("198.18.0.2:1194")).is_none());
        assert!(table.by_endpoint(&key("198.18.0.2:4000")).is_some());
    }
}
