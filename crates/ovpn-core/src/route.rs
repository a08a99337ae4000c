//! Next-hop selection for MP devices (kernel-behaviour.md §2.4, §2.5).
//!
//! The kernel picks the peer for an outgoing packet from the route that sent
//! the packet into the device: the route's gateway if it has one, else the
//! packet's destination, looked up among the peers' VPN addresses. The same
//! rule, applied to the inner source address, is the reverse-path check on
//! receive. A packet read from a TUN device carries no route, so the daemon
//! mirrors the routes that point into its device into a [`RouteTable`] and
//! this module does the longest-prefix match.
//!
//! A table is an immutable value once published on a device
//! ([`crate::device::Device::set_routes`]); readers never wait for writers.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

/// An address prefix, such as `10.8.0.0/24` or `2001:db8::/64`. Host bits are
/// cleared on construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

/// A prefix length longer than the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("prefix length {len} is longer than the address ({max} bits)")]
pub struct PrefixLenError {
    /// The length asked for.
    pub len: u8,
    /// The address width.
    pub max: u8,
}

impl Prefix {
    /// The prefix of `len` bits of `addr`.
    ///
    /// # Errors
    ///
    /// [`PrefixLenError`] if `len` exceeds 32 (IPv4) or 128 (IPv6).
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, PrefixLenError> {
        let addr = match addr {
            IpAddr::V4(a) if len <= 32 => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(len))),
            IpAddr::V6(a) if len <= 128 => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(len))),
            IpAddr::V4(_) => return Err(PrefixLenError { len, max: 32 }),
            IpAddr::V6(_) => return Err(PrefixLenError { len, max: 128 }),
        };
        Ok(Self { addr, len })
    }

    /// The network address (host bits cleared).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether `addr` lies inside this prefix.
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.addr, addr) {
            (IpAddr::V4(net), IpAddr::V4(a)) => u32::from(a) & mask32(self.len) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                u128::from(a) & mask128(self.len) == u128::from(net)
            }
            _ => false,
        }
    }
}

/// A route into the device: packets for `prefix` go to `gateway` if set,
/// else straight to their destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The destination prefix.
    pub prefix: Prefix,
    /// The next hop (a peer's VPN address), if the route has one.
    pub gateway: Option<IpAddr>,
}

/// Routes pointing into one device, with longest-prefix match.
///
/// One route per prefix: inserting a prefix again replaces its route.
// TODO: the kernel keeps several routes per prefix and picks by metric; a
// mirror that sees two routes for one prefix should keep both and use the
// lowest metric. Today the last one inserted wins.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    v4: Levels<u32>,
    v6: Levels<u128>,
}

impl RouteTable {
    /// An empty table: every address is its own next hop.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `route`, returning the route it replaced for the same prefix.
    pub fn insert(&mut self, route: Route) -> Option<Route> {
        match route.prefix.addr {
            IpAddr::V4(a) => self.v4.insert(route.prefix.len, u32::from(a), route),
            IpAddr::V6(a) => self.v6.insert(route.prefix.len, u128::from(a), route),
        }
    }

    /// Removes the route for exactly `prefix`.
    pub fn remove(&mut self, prefix: &Prefix) -> Option<Route> {
        match prefix.addr {
            IpAddr::V4(a) => self.v4.remove(prefix.len, u32::from(a)),
            IpAddr::V6(a) => self.v6.remove(prefix.len, u128::from(a)),
        }
    }

    /// The most specific route containing `addr`.
    pub fn lookup(&self, addr: IpAddr) -> Option<&Route> {
        match addr {
            IpAddr::V4(a) => self.v4.lookup(u32::from(a), mask32),
            IpAddr::V6(a) => self.v6.lookup(u128::from(a), mask128),
        }
    }

    /// The address whose owner receives a packet for `addr`: the gateway of
    /// the most specific route if it has one, else `addr` itself (also when
    /// no route matches).
    pub fn next_hop(&self, addr: IpAddr) -> IpAddr {
        self.lookup(addr)
            .and_then(|route| route.gateway)
            .unwrap_or(addr)
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Whether the table has no route.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All routes, most specific first within each family, IPv4 first.
    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.v4.iter().chain(self.v6.iter())
    }
}

/// Routes of one family grouped by prefix length, longest first, so a lookup
/// probes one hash map per distinct length in use.
#[derive(Debug, Clone)]
struct Levels<K> {
    levels: Vec<(u8, HashMap<K, Route>)>,
}

impl<K> Default for Levels<K> {
    fn default() -> Self {
        Self { levels: Vec::new() }
    }
}

impl<K> Levels<K>
where
    K: std::hash::Hash + Eq + Copy + std::ops::BitAnd<Output = K>,
{
    fn insert(&mut self, len: u8, key: K, route: Route) -> Option<Route> {
        let index = match self.levels.binary_search_by(|(l, _)| len.cmp(l)) {
            Ok(index) => index,
            Err(index) => {
                self.levels.insert(index, (len, HashMap::new()));
                index
            }
        };
        self.levels[index].1.insert(key, route)
    }

    fn remove(&mut self, len: u8, key: K) -> Option<Route> {
        let index = self.levels.binary_search_by(|(l, _)| len.cmp(l)).ok()?;
        let removed = self.levels[index].1.remove(&key);
        if self.levels[index].1.is_empty() {
            self.levels.remove(index);
        }
        removed
    }

    fn lookup(&self, addr: K, mask: fn(u8) -> K) -> Option<&Route> {
        self.levels
            .iter()
            .find_map(|(len, routes)| routes.get(&(addr & mask(*len))))
    }

    fn len(&self) -> usize {
        self.levels.iter().map(|(_, routes)| routes.len()).sum()
    }

    fn iter(&self) -> impl Iterator<Item = &Route> {
        self.levels.iter().flat_map(|(_, routes)| routes.values())
    }
}

fn mask32(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn route(prefix: &str, len: u8, gateway: Option<&str>) -> Route {
        Route {
            prefix: Prefix::new(ip(prefix), len).unwrap(),
            gateway: gateway.map(ip),
        }
    }

    #[test]
    fn prefix_clears_host_bits_and_checks_length() {
        let p = Prefix::new(ip("198.18.5.77"), 16).unwrap();
        assert_eq!(p.addr(), ip("198.18.0.0"));
        assert!(p.contains(ip("198.18.255.1")));
        assert!(!p.contains(ip("198.19.0.1")));
        assert!(!p.contains(ip("2001:db8::1")));
        assert_eq!(
            Prefix::new(ip("198.18.0.0"), 33),
            Err(PrefixLenError { len: 33, max: 32 })
        );
        assert_eq!(
            Prefix::new(ip("2001:db8::"), 129),
            Err(PrefixLenError { len: 129, max: 128 })
        );
        let all = Prefix::new(ip("198.18.0.1"), 0).unwrap();
        assert_eq!(all.addr(), ip("0.0.0.0"));
        assert!(all.contains(ip("203.0.113.9")));
        let host = Prefix::new(ip("2001:db8::1:2"), 128).unwrap();
        assert_eq!(host.addr(), ip("2001:db8::1:2"));
    }

    #[test]
    fn empty_table_maps_every_address_to_itself() {
        let table = RouteTable::new();
        assert!(table.is_empty());
        assert_eq!(table.next_hop(ip("198.18.0.9")), ip("198.18.0.9"));
        assert_eq!(table.next_hop(ip("2001:db8::9")), ip("2001:db8::9"));
    }

    #[test]
    fn longest_prefix_wins() {
        let mut table = RouteTable::new();
        table.insert(route("0.0.0.0", 0, Some("198.18.0.2")));
        table.insert(route("198.19.0.0", 16, Some("198.18.0.3")));
        table.insert(route("198.19.7.0", 24, Some("198.18.0.4")));
        table.insert(route("198.18.0.0", 24, None));
        assert_eq!(table.len(), 4);

        assert_eq!(table.next_hop(ip("198.19.7.200")), ip("198.18.0.4"));
        assert_eq!(table.next_hop(ip("198.19.8.1")), ip("198.18.0.3"));
        assert_eq!(table.next_hop(ip("203.0.113.1")), ip("198.18.0.2"));
        // A connected route (no gateway): the destination itself.
        assert_eq!(table.next_hop(ip("198.18.0.77")), ip("198.18.0.77"));
        // IPv6 is separate: no IPv6 route, so itself.
        assert_eq!(table.next_hop(ip("2001:db8::5")), ip("2001:db8::5"));
    }

    #[test]
    fn ipv6_longest_prefix() {
        let mut table = RouteTable::new();
        table.insert(route("2001:db8::", 32, Some("2001:db8:ffff::2")));
        table.insert(route("2001:db8:1::", 48, Some("2001:db8:ffff::3")));
        table.insert(route("2001:db8:1:2::", 64, None));
        assert_eq!(table.next_hop(ip("2001:db8:1:2::9")), ip("2001:db8:1:2::9"));
        assert_eq!(
            table.next_hop(ip("2001:db8:1:3::9")),
            ip("2001:db8:ffff::3")
        );
        assert_eq!(table.next_hop(ip("2001:db8:2::9")), ip("2001:db8:ffff::2"));
        assert_eq!(table.next_hop(ip("2001:db9::1")), ip("2001:db9::1"));
    }

    #[test]
    fn insert_replaces_and_remove_forgets() {
        let mut table = RouteTable::new();
        assert_eq!(
            table.insert(route("198.19.0.0", 16, Some("198.18.0.3"))),
            None
        );
        let old = table.insert(route("198.19.0.0", 16, Some("198.18.0.5")));
        assert_eq!(old, Some(route("198.19.0.0", 16, Some("198.18.0.3"))));
        assert_eq!(table.next_hop(ip("198.19.1.1")), ip("198.18.0.5"));

        let prefix = Prefix::new(ip("198.19.0.0"), 16).unwrap();
        assert!(table.remove(&prefix).is_some());
        assert!(table.remove(&prefix).is_none());
        assert!(table.is_empty());
        assert_eq!(table.next_hop(ip("198.19.1.1")), ip("198.19.1.1"));
    }

    #[test]
    fn iter_lists_every_route() {
        let mut table = RouteTable::new();
        table.insert(route("198.19.0.0", 16, None));
        table.insert(route("198.19.7.0", 24, None));
        table.insert(route("2001:db8::", 32, None));
        let lens: Vec<u8> = table.iter().map(|r| r.prefix.prefix_len()).collect();
        assert_eq!(lens, vec![24, 16, 32]);
    }
}
