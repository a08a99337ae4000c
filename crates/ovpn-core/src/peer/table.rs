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
    /// When each id was inserted (a counter): the kernel adds a peer at
    /// the head of its id bucket, so the newer of two peers sharing a
    /// bucket comes first in a walk.
    inserted: HashMap<u32, u64>,
    next_insertion: u64,
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

    /// Every peer. MP: in the order the kernel walks its id table
    /// (§2.3), which is the order of PEER_GET dumps and of the
    /// notifications when many peers go at once (device teardown, a
    /// closed socket): bucket by bucket, newest first within a bucket.
    pub(crate) fn peers(&self) -> Box<dyn Iterator<Item = &Arc<Peer>> + '_> {
        match self {
            Self::P2p(peer) => Box::new(peer.iter()),
            Self::Mp(mp) => Box::new(mp.in_walk_order().into_iter()),
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

    /// The peers sorted as a walk of the kernel's id table visits them.
    fn in_walk_order(&self) -> Vec<&Arc<Peer>> {
        let mut peers: Vec<&Arc<Peer>> = self.by_id.values().collect();
        let inserted = |id: u32| self.inserted.get(&id).copied().unwrap_or_default();
        peers.sort_by_key(|p| (id_bucket(p.id), std::cmp::Reverse(inserted(p.id))));
        peers
    }

    /// Adds `peer` to every map it belongs in. The caller checked that the
    /// id is free.
    pub(crate) fn insert(&mut self, peer: &Arc<Peer>) {
        self.by_id.insert(peer.id, peer.clone());
        self.inserted.insert(peer.id, self.next_insertion);
        self.next_insertion += 1;
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
            self.inserted.remove(&peer.id);
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

/// Buckets of the kernel's MP id table (`DECLARE_HASHTABLE(by_id, 12)`).
const ID_BUCKETS: u32 = 1 << 12;

/// The bucket of `id` in the kernel's id table: Bob Jenkins' lookup3
/// hash as the kernel's `jhash()` computes it over the id's 4 bytes in
/// memory (little-endian here) with seed 0, modulo the bucket count.
fn id_bucket(id: u32) -> u32 {
    jhash_word(id, 0) % ID_BUCKETS
}

/// `jhash()` of a 4-byte key: lookup3's initial value for the length and
/// seed, the key added to the first word, then lookup3's final mix.
fn jhash_word(key: u32, seed: u32) -> u32 {
    let init = 0xdead_beef_u32.wrapping_add(4).wrapping_add(seed);
    let (mut a, mut b, mut c) = (init.wrapping_add(key), init, init);
    c = (c ^ b).wrapping_sub(b.rotate_left(14));
    a = (a ^ c).wrapping_sub(c.rotate_left(11));
    b = (b ^ a).wrapping_sub(a.rotate_left(25));
    c = (c ^ b).wrapping_sub(b.rotate_left(16));
    a = (a ^ c).wrapping_sub(c.rotate_left(4));
    b = (b ^ a).wrapping_sub(a.rotate_left(14));
    (c ^ b).wrapping_sub(b.rotate_left(24))
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

    /// The kernel's walk order, from Linux 6.16 in the parity suite
    /// (`vm/vectors/parity/kernel.txt`, case mp-dump): peers 10..=15 were
    /// dumped as 13, 15, 10, 12, 11, 14.
    #[test]
    fn mp_walk_follows_the_kernel_id_hash() {
        assert_eq!(jhash_word(10, 0), 0x3d6b_e971);
        assert_eq!(jhash_word(13, 0), 0xc6f5_c11b);
        assert_eq!(id_bucket(13), 283);
        let mut table = MpPeers::default();
        for id in 10..=15 {
            table.insert(&udp_peer(
                id,
                &format!("198.18.0.{id}:1194"),
                &format!("198.19.0.{id}"),
            ));
        }
        let order: Vec<u32> = PeerTable::Mp(table.clone()).peers().map(|p| p.id).collect();
        assert_eq!(order, [13, 15, 10, 12, 11, 14]);
    }

    /// Two ids in one bucket: the later insertion comes first, as the
    /// kernel adds at the head of the bucket's list.
    #[test]
    fn same_bucket_newest_first() {
        let first = 1;
        let second = (2..100_000)
            .find(|id| id_bucket(*id) == id_bucket(first))
            .expect("a colliding id");
        let mut table = MpPeers::default();
        table.insert(&udp_peer(first, "198.18.0.1:1194", "198.19.0.1"));
        table.insert(&udp_peer(second, "198.18.0.2:1194", "198.19.0.2"));
        let order: Vec<u32> = PeerTable::Mp(table).peers().map(|p| p.id).collect();
        assert_eq!(order, [second, first]);
    }
}
