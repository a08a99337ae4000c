//! Wire format of everything a control plane says to an `ovpn` device:
//! netlink framing, the `ovpn` generic-netlink family (`spec/ovpn.yaml`),
//! the `nlctrl` subset for family lookup and the rtnetlink link subset for
//! kind `ovpn`, in both directions, with the kernel's request validation,
//! error codes and extended-ACK reports. No I/O.
//!
//! Modules, bottom up:
//! - [`nlmsg`]: the netlink header, flags, message iteration and building;
//! - [`attr`]: attribute reader and writer;
//! - [`ack`]: ACK / error / `NLMSG_DONE` with extended ACK, both directions;
//! - [`genl`]: the generic-netlink header;
//! - [`validate`]: the kernel's attribute-policy checks;
//! - [`ovpn`]: the family's typed messages and request policies;
//! - [`ctrl`]: `nlctrl` family and multicast-group lookup;
//! - [`policy_dump`]: `nlctrl`'s policy dump (`CTRL_CMD_GETPOLICY`);
//! - [`link`]: rtnetlink links of kind `ovpn`;
//! - [`view`]: a spec-named tree of any of these messages, for tools;
//! - [`route`]: rtnetlink routes, for the daemon's route mirror;
//! - [`ovpnd`]: the messages of our Unix-socket extension (socket options,
//!   control packets), `docs/control-transport.md`.
//!
//! Everything is little-endian host order except where the spec says
//! big-endian; the crate targets little-endian Linux machines, as the
//! byte-array tests assume.
#![forbid(unsafe_code)]

pub mod ack;
pub mod attr;
pub mod ctrl;
pub mod errno;
pub mod error;
pub mod genl;
pub mod link;
pub mod nlmsg;
pub mod nsid;
pub mod ovpn;
pub mod ovpnd;
pub mod policy_dump;
pub mod route;
pub mod validate;
pub mod view;

pub use error::DecodeError;
