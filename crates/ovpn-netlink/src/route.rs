//! The rtnetlink route subset a daemon needs to mirror the routes that point
//! into its devices (`include/uapi/linux/rtnetlink.h`; DESIGN.md "Data
//! path", kernel-behaviour §2.4): the RTM_GETROUTE dump request, and
//! RTM_NEWROUTE / RTM_DELROUTE messages (dump replies and
//! `RTNLGRP_IPV4_ROUTE` / `RTNLGRP_IPV6_ROUTE` notifications) decoded to
//! destination prefix, gateway, output interface and table.
//!
//! Layout after the netlink header (`struct rtmsg`):
//!
//! ```text
//! 16       17        18        19    20      21         22      23     24      28
//! | family | dst_len | src_len | tos | table | protocol | scope | type | flags | attributes ...
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::DecodeError;
use crate::attr::Attrs;
use crate::nlmsg::{MessageBuilder, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_HDRLEN, NlMsg};

/// `RTM_NEWROUTE`.
pub const RTM_NEWROUTE: u16 = 24;
/// `RTM_DELROUTE`.
pub const RTM_DELROUTE: u16 = 25;
/// `RTM_GETROUTE`.
pub const RTM_GETROUTE: u16 = 26;

/// Size of `struct rtmsg`.
pub const RTMSG_LEN: usize = 12;
/// `RTA_DST`: destination address.
pub const RTA_DST: u16 = 1;
/// `RTA_OIF`: output interface index (u32).
pub const RTA_OIF: u16 = 4;
/// `RTA_GATEWAY`: next-hop address.
pub const RTA_GATEWAY: u16 = 5;
/// `RTA_PRIORITY`: metric (u32).
pub const RTA_PRIORITY: u16 = 6;
/// `RTA_TABLE`: table id (u32; overrides `rtm_table`).
pub const RTA_TABLE: u16 = 15;
/// `RTA_VIA`: next hop of another family (u16 family + address).
pub const RTA_VIA: u16 = 18;

/// `RTN_UNICAST`, the route type of ordinary routes.
pub const RTN_UNICAST: u8 = 1;
/// `RT_TABLE_MAIN`.
pub const RT_TABLE_MAIN: u32 = 254;
/// `RT_TABLE_LOCAL`.
pub const RT_TABLE_LOCAL: u32 = 255;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// One decoded route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMsg {
    /// The destination prefix address (all zeros for a default route).
    pub dst: IpAddr,
    /// The destination prefix length.
    pub dst_len: u8,
    /// The next hop, if the route has one (`RTA_GATEWAY` or `RTA_VIA`).
    pub gateway: Option<IpAddr>,
    /// The output interface, if given.
    pub oif: Option<u32>,
    /// The routing table (`RTA_TABLE` if present, else `rtm_table`).
    pub table: u32,
    /// The route type (`RTN_*`).
    pub route_type: u8,
    /// The metric, if given.
    pub priority: Option<u32>,
}

impl RouteMsg {
    /// Decodes an RTM_NEWROUTE / RTM_DELROUTE message. Returns `Ok(None)`
    /// for a family other than IPv4 and IPv6 and for multipath routes'
    /// extra data (not decoded).
    ///
    /// # Errors
    ///
    /// [`DecodeError`] for a truncated header or malformed attribute.
    pub fn decode(msg: &NlMsg<'_>) -> Result<Option<Self>, DecodeError> {
        let h = msg
            .payload
            .get(..RTMSG_LEN)
            .ok_or(DecodeError::Truncated("rtmsg"))?;
        let (family, dst_len, table, route_type) = (h[0], h[1], h[4], h[7]);
        let unspecified: IpAddr = match family {
            AF_INET => Ipv4Addr::UNSPECIFIED.into(),
            AF_INET6 => Ipv6Addr::UNSPECIFIED.into(),
            _ => return Ok(None),
        };
        let mut route = Self {
            dst: unspecified,
            dst_len,
            gateway: None,
            oif: None,
            table: u32::from(table),
            route_type,
            priority: None,
        };
        for a in Attrs::new(&msg.payload[RTMSG_LEN..], NLMSG_HDRLEN + RTMSG_LEN) {
            let a = a?;
            match a.ty() {
                RTA_DST => route.dst = addr(family, a.payload())?,
                RTA_GATEWAY => route.gateway = Some(addr(family, a.payload())?),
                RTA_VIA => {
                    let p = a.payload();
                    let via_family = p.get(..2).ok_or(DecodeError::Truncated("rta_via"))?;
                    let via_family = u16::from_ne_bytes([via_family[0], via_family[1]]);
                    let via_family = u8::try_from(via_family).unwrap_or(0);
                    route.gateway = Some(addr(via_family, &p[2..])?);
                }
                RTA_OIF => route.oif = Some(a.u32()?),
                RTA_TABLE => route.table = a.u32()?,
                RTA_PRIORITY => route.priority = Some(a.u32()?),
                _ => {}
            }
        }
        Ok(Some(route))
    }
}

fn addr(family: u8, p: &[u8]) -> Result<IpAddr, DecodeError> {
    match family {
        AF_INET => {
            let b: [u8; 4] = p.try_into().map_err(|_| DecodeError::AttrSize {
                what: "ipv4 address",
                ty: RTA_DST,
                len: p.len(),
            })?;
            Ok(Ipv4Addr::from(b).into())
        }
        AF_INET6 => {
            let b: [u8; 16] = p.try_into().map_err(|_| DecodeError::AttrSize {
                what: "ipv6 address",
                ty: RTA_DST,
                len: p.len(),
            })?;
            Ok(Ipv6Addr::from(b).into())
        }
        _ => Err(DecodeError::InvalidValue {
            what: "address family",
            value: u64::from(family),
        }),
    }
}

/// Appends an RTM_GETROUTE dump request for every family.
pub fn encode_dump_request(buf: &mut Vec<u8>, seq: u32) {
    let msg = MessageBuilder::start(buf, RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq, 0);
    buf.extend_from_slice(&[0u8; RTMSG_LEN]);
    msg.finish(buf);
}

/// Appends an RTM_NEWROUTE / RTM_DELROUTE message for `route` (for tests
/// and tools; the kernel's notifications carry more attributes).
pub fn encode(buf: &mut Vec<u8>, ty: u16, route: &RouteMsg) {
    use crate::attr;
    let msg = MessageBuilder::start(buf, ty, 0, 0, 0);
    let family = if route.dst.is_ipv4() {
        AF_INET
    } else {
        AF_INET6
    };
    let table = u8::try_from(route.table).unwrap_or(0);
    buf.extend_from_slice(&[family, route.dst_len, 0, 0, table, 0, 0, route.route_type]);
    buf.extend_from_slice(&0u32.to_ne_bytes());
    let octets = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    if route.dst_len > 0 {
        attr::put(buf, RTA_DST, &octets(route.dst));
    }
    attr::put_u32(buf, RTA_TABLE, route.table);
    if let Some(gw) = route.gateway {
        attr::put(buf, RTA_GATEWAY, &octets(gw));
    }
    if let Some(oif) = route.oif {
        attr::put_u32(buf, RTA_OIF, oif);
    }
    if let Some(p) = route.priority {
        attr::put_u32(buf, RTA_PRIORITY, p);
    }
    msg.finish(buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_an_ipv4_route_with_gateway() {
        // "198.19.0.0/16 via 198.18.1.2 dev #7 table main", as the kernel
        // sends it (rtmsg + RTA_TABLE, RTA_DST, RTA_GATEWAY, RTA_OIF).
        let bytes = [
            60, 0, 0, 0, 24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // header
            2, 16, 0, 0, 254, 3, 0, 1, 0, 0, 0, 0, // rtmsg
            8, 0, 15, 0, 254, 0, 0, 0, // RTA_TABLE
            8, 0, 1, 0, 198, 19, 0, 0, // RTA_DST
            8, 0, 5, 0, 198, 18, 1, 2, // RTA_GATEWAY
            8, 0, 4, 0, 7, 0, 0, 0, // RTA_OIF
        ];
        let r = RouteMsg::decode(&NlMsg::parse(&bytes).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(r.dst, IpAddr::from([198, 19, 0, 0]));
        assert_eq!(r.dst_len, 16);
        assert_eq!(r.gateway, Some(IpAddr::from([198, 18, 1, 2])));
        assert_eq!(r.oif, Some(7));
        assert_eq!(r.table, RT_TABLE_MAIN);
        assert_eq!(r.route_type, RTN_UNICAST);
    }

    #[test]
    fn round_trips_an_ipv6_route_and_skips_other_families() {
        let route = RouteMsg {
            dst: "2001:db8:1::".parse().unwrap(),
            dst_len: 48,
            gateway: Some("2001:db8::2".parse().unwrap()),
            oif: Some(3),
            table: RT_TABLE_MAIN,
            route_type: RTN_UNICAST,
            priority: Some(1024),
        };
        let mut buf = Vec::new();
        encode(&mut buf, RTM_DELROUTE, &route);
        let msg = NlMsg::parse(&buf).unwrap();
        assert_eq!(msg.header.ty, RTM_DELROUTE);
        assert_eq!(RouteMsg::decode(&msg).unwrap(), Some(route));

        buf[NLMSG_HDRLEN] = 7; // AF_BRIDGE
        assert_eq!(
            RouteMsg::decode(&NlMsg::parse(&buf).unwrap()).unwrap(),
            None
        );
    }

    #[test]
    fn rejects_a_short_header_and_a_bad_address() {
        let mut buf = Vec::new();
        let m = MessageBuilder::start(&mut buf, RTM_NEWROUTE, 0, 0, 0);
        buf.extend_from_slice(&[2, 0, 0, 0]);
        m.finish(&mut buf);
        assert!(RouteMsg::decode(&NlMsg::parse(&buf).unwrap()).is_err());

        let mut buf = Vec::new();
        let m = MessageBuilder::start(&mut buf, RTM_NEWROUTE, 0, 0, 0);
        buf.extend_from_slice(&[2, 8, 0, 0, 254, 0, 0, 1, 0, 0, 0, 0]);
        crate::attr::put(&mut buf, RTA_DST, &[198, 18, 0]);
        m.finish(&mut buf);
        assert!(RouteMsg::decode(&NlMsg::parse(&buf).unwrap()).is_err());
    }

    #[test]
    fn dump_request_bytes() {
        let mut buf = Vec::new();
        encode_dump_request(&mut buf, 5);
        assert_eq!(
            buf,
            [
                28, 0, 0, 0, 26, 0, 1, 3, 5, 0, 0, 0, 0, 0, 0, 0, // header
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // rtmsg
            ]
        );
    }
}
