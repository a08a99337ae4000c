//! Wire format of everything a control plane says to an `ovpn` device:
//! netlink framing, the `ovpn` generic-netlink family (`spec/ovpn.yaml`),
//! the `nlctrl` subset for family lookup and the rtnetlink link subset for
//! kind `ovpn`. No I/O.
#![forbid(unsafe_code)]
