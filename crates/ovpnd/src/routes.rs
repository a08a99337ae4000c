//! The route mirror (DESIGN.md "Data path", kernel-behaviour §2.4, §2.5): a
//! TUN read carries no route, so the daemon keeps a copy of every route
//! whose output interface is one of its devices and publishes it to that
//! device's model, which does the longest-prefix match for MP next-hop
//! selection and the reverse-path check.
//!
//! The copy starts with an rtnetlink route dump and follows the IPv4 and
//! IPv6 route groups. Routes of the `local` table are skipped (they never
//! point into a device). Policy routing rules are not followed: the mirror
//! merges the device's routes of all other tables.

use std::collections::{BTreeMap, HashMap};

use ovpn_core::{Prefix, Route, RouteTable};
use ovpn_netlink::nlmsg::{Messages, NLMSG_DONE, NLMSG_ERROR};
use ovpn_netlink::route::{
    self as rt, RT_TABLE_LOCAL, RTM_DELROUTE, RTM_NEWROUTE, RTN_UNICAST, RouteMsg,
};
use ovpn_sys::netlink::{NetlinkSocket, Protocol};

use crate::device::DeviceRuntime;
use crate::server::Server;

/// Routes per output interface, as rtnetlink reports them.
#[derive(Debug)]
pub(crate) struct RouteMirror {
    socket: NetlinkSocket,
    by_oif: HashMap<u32, RouteTable>,
}

impl RouteMirror {
    /// Opens the rtnetlink socket, joins the route groups and asks for a
    /// dump of the current routes.
    ///
    /// # Errors
    ///
    /// The socket cannot be opened or subscribed, or the dump not sent.
    pub(crate) fn open() -> Result<Self, ovpn_sys::Error> {
        let socket = NetlinkSocket::open(Protocol::Route)?;
        socket.set_recv_buffer_size(1 << 20)?;
        socket.subscribe_routes()?;
        socket.set_nonblocking(true)?;
        let mut request = Vec::new();
        rt::encode_dump_request(&mut request, 1);
        socket.send(&request)?;
        Ok(Self {
            socket,
            by_oif: HashMap::new(),
        })
    }

    pub(crate) fn socket(&self) -> &NetlinkSocket {
        &self.socket
    }

    /// Applies one route message; returns the output interface it changed.
    fn apply(&mut self, ty: u16, route: &RouteMsg) -> Option<u32> {
        if route.table == RT_TABLE_LOCAL || route.route_type != RTN_UNICAST {
            return None;
        }
        let oif = route.oif?;
        let prefix = Prefix::new(route.dst, route.dst_len).ok()?;
        let table = self.by_oif.entry(oif).or_default();
        if ty == RTM_NEWROUTE {
            table.insert(Route {
                prefix,
                gateway: route.gateway,
            });
        } else {
            table.remove(&prefix);
        }
        Some(oif)
    }

    /// Publishes the mirrored routes of every device again (after a device
    /// was created).
    pub(crate) fn resync(&self, devices: &BTreeMap<u32, DeviceRuntime>) {
        for (ifindex, runtime) in devices {
            let table = self.by_oif.get(ifindex).cloned().unwrap_or_default();
            runtime.shared.core.set_routes(table);
        }
    }

    /// Drops what is known about an interface that went away.
    pub(crate) fn forget(&mut self, ifindex: u32) {
        self.by_oif.remove(&ifindex);
    }
}

impl Server {
    /// Reads every queued route message and republishes the tables of the
    /// devices whose routes changed.
    pub(crate) fn read_routes(&mut self) {
        let Some(mirror) = &mut self.routes else {
            return;
        };
        let mut buf = Vec::new();
        let mut changed = Vec::new();
        loop {
            match mirror.socket.recv_vec(&mut buf) {
                Ok(r) => {
                    for msg in Messages::new(&buf[..r.len]).flatten() {
                        let ty = msg.header.ty;
                        if ty == NLMSG_DONE || ty == NLMSG_ERROR {
                            continue;
                        }
                        if ty != RTM_NEWROUTE && ty != RTM_DELROUTE {
                            continue;
                        }
                        if let Ok(Some(route)) = RouteMsg::decode(&msg) {
                            if let Some(oif) = mirror.apply(ty, &route) {
                                changed.push(oif);
                            }
                        }
                    }
                }
                Err(e) if e.is_would_block() => break,
                Err(error) => {
                    // ENOBUFS: notifications were lost; start over.
                    tracing::debug!(%error, "route mirror lost messages, dumping again");
                    mirror.by_oif.clear();
                    let mut request = Vec::new();
                    rt::encode_dump_request(&mut request, 2);
                    if let Err(error) = mirror.socket.send(&request) {
                        tracing::error!(%error, "route mirror cannot dump routes");
                    }
                    break;
                }
            }
        }
        changed.sort_unstable();
        changed.dedup();
        for oif in changed {
            if let Some(runtime) = self.devices.get(&oif) {
                let table = mirror.by_oif.get(&oif).cloned().unwrap_or_default();
                tracing::debug!(dev = %runtime.shared.name, routes = table.len(), "routes mirrored");
                runtime.shared.core.set_routes(table);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn mirror_without_socket() -> Option<RouteMirror> {
        // Opening a NETLINK_ROUTE socket works unprivileged.
        RouteMirror::open().ok()
    }

    #[test]
    fn applies_routes_of_one_interface_and_skips_local_table() {
        let Some(mut mirror) = mirror_without_socket() else {
            return;
        };
        mirror.by_oif.clear();
        let route = RouteMsg {
            dst: IpAddr::from([198, 19, 0, 0]),
            dst_len: 16,
            gateway: Some(IpAddr::from([198, 18, 1, 2])),
            oif: Some(42),
            table: 254,
            route_type: RTN_UNICAST,
            priority: None,
        };
        assert_eq!(mirror.apply(RTM_NEWROUTE, &route), Some(42));
        let table = &mirror.by_oif[&42];
        assert_eq!(
            table.next_hop(IpAddr::from([198, 19, 5, 5])),
            IpAddr::from([198, 18, 1, 2])
        );
        let local = RouteMsg {
            table: RT_TABLE_LOCAL,
            ..route
        };
        assert_eq!(mirror.apply(RTM_NEWROUTE, &local), None);
        assert_eq!(mirror.apply(RTM_DELROUTE, &route), Some(42));
        assert!(mirror.by_oif[&42].is_empty());
    }
}
