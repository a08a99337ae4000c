//! The `nlctrl` subset a client needs to find a family: CTRL_CMD_GETFAMILY
//! by name or id (or a dump of all families) and the CTRL_CMD_NEWFAMILY
//! reply with id, version, header size, max attribute, operations with
//! their flags and multicast groups with their ids
//! (`include/uapi/linux/genetlink.h`, `net/netlink/genetlink.c`
//! `ctrl_fill_info` / `ctrl_getfamily`).
//!
//! Client: [`encode_get_family`] then [`FamilyInfo::decode`] on the reply.
//! Server: [`parse_get_family`] (the controller's own checks) then
//! [`FamilyInfo::encode`]; [`FamilyInfo::ovpn`] describes the ovpn family
//! exactly as the kernel registers it.

use crate::DecodeError;
use crate::ack::Rejection;
use crate::attr::{self, Attrs};
use crate::errno::{EINVAL, ENOENT, EOPNOTSUPP};
use crate::genl::{self, GENL_ATTRS_OFFSET, GenlMsg};
use crate::nlmsg::{NLM_F_DUMP, NlMsg};
use crate::validate::{Pol, PolicySet, Strictness, validate};

/// `GENL_ID_CTRL`: the controller's fixed message type.
pub const GENL_ID_CTRL: u16 = 0x10;
/// The controller's family version.
pub const CTRL_VERSION: u8 = 2;
/// `CTRL_CMD_NEWFAMILY`: the reply command.
pub const CTRL_CMD_NEWFAMILY: u8 = 1;
/// `CTRL_CMD_GETFAMILY`: the request command.
pub const CTRL_CMD_GETFAMILY: u8 = 3;

/// `CTRL_ATTR_*`.
pub mod ctrl_attr {
    /// u16 family id.
    pub const FAMILY_ID: u16 = 1;
    /// NUL-terminated family name.
    pub const FAMILY_NAME: u16 = 2;
    /// u32 version.
    pub const VERSION: u16 = 3;
    /// u32 user header size.
    pub const HDRSIZE: u16 = 4;
    /// u32 maximum attribute.
    pub const MAXATTR: u16 = 5;
    /// Nest of operations.
    pub const OPS: u16 = 6;
    /// Nest of multicast groups.
    pub const MCAST_GROUPS: u16 = 7;
    /// Inside an operation: u32 command.
    pub const OP_ID: u16 = 1;
    /// Inside an operation: u32 `GENL_*` flags.
    pub const OP_FLAGS: u16 = 2;
    /// Inside a group: name.
    pub const MCAST_GRP_NAME: u16 = 1;
    /// Inside a group: u32 id.
    pub const MCAST_GRP_ID: u16 = 2;
}

/// `GENL_ADMIN_PERM`.
pub const GENL_ADMIN_PERM: u32 = 0x01;
/// `GENL_CMD_CAP_DO`.
pub const GENL_CMD_CAP_DO: u32 = 0x02;
/// `GENL_CMD_CAP_DUMP`.
pub const GENL_CMD_CAP_DUMP: u32 = 0x04;
/// `GENL_CMD_CAP_HASPOL`.
pub const GENL_CMD_CAP_HASPOL: u32 = 0x08;

/// One operation of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FamilyOp {
    /// Command number.
    pub id: u32,
    /// `GENL_*` flags.
    pub flags: u32,
}

/// One multicast group of a family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McastGroup {
    /// Group name.
    pub name: String,
    /// Group id to join.
    pub id: u32,
}

/// What the controller reports about a family.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FamilyInfo {
    /// Family name.
    pub name: String,
    /// Family id (the netlink message type of its messages).
    pub id: u16,
    /// Interface version.
    pub version: u32,
    /// User header size.
    pub hdrsize: u32,
    /// Maximum attribute (0 for families with per-op policies, as ovpn).
    pub maxattr: u32,
    /// Operations in command order.
    pub ops: Vec<FamilyOp>,
    /// Multicast groups.
    pub mcast_groups: Vec<McastGroup>,
}

impl FamilyInfo {
    /// The ovpn family as the kernel registers it (`netlink-gen.c`): version
    /// 1, no header, maxattr 0 (per-op policies), eight admin-only ops with
    /// a policy, PEER_GET with do and dump, and the `peers` group under the
    /// id the server assigned.
    pub fn ovpn(id: u16, peers_group_id: u32) -> Self {
        let base = GENL_ADMIN_PERM | GENL_CMD_CAP_DO | GENL_CMD_CAP_HASPOL;
        let ops = [1, 2, 3, 4, 6, 7, 8, 10]
            .into_iter()
            .map(|cmd| FamilyOp {
                id: cmd,
                flags: if cmd == 3 {
                    base | GENL_CMD_CAP_DUMP
                } else {
                    base
                },
            })
            .collect();
        Self {
            name: crate::ovpn::attrs::FAMILY_NAME.to_owned(),
            id,
            version: u32::from(crate::ovpn::attrs::FAMILY_VERSION),
            hdrsize: 0,
            maxattr: 0,
            ops,
            mcast_groups: vec![McastGroup {
                name: crate::ovpn::attrs::MCGRP_PEERS.to_owned(),
                id: peers_group_id,
            }],
        }
    }

    /// The id of the multicast group `name`.
    pub fn group_id(&self, name: &str) -> Option<u32> {
        self.mcast_groups
            .iter()
            .find(|g| g.name == name)
            .map(|g| g.id)
    }

    /// Appends the CTRL_CMD_NEWFAMILY message in `ctrl_fill_info`'s order.
    /// Use flags 0 for a reply to a do request, `NLM_F_MULTI` in a dump.
    /// Like the kernel, the ops and groups nests carry no `NLA_F_NESTED`.
    pub fn encode(&self, buf: &mut Vec<u8>, flags: u16, seq: u32, pid: u32) {
        let msg = genl::start(
            buf,
            GENL_ID_CTRL,
            flags,
            seq,
            pid,
            CTRL_CMD_NEWFAMILY,
            CTRL_VERSION,
        );
        attr::put_str(buf, ctrl_attr::FAMILY_NAME, &self.name);
        attr::put_u16(buf, ctrl_attr::FAMILY_ID, self.id);
        attr::put_u32(buf, ctrl_attr::VERSION, self.version);
        attr::put_u32(buf, ctrl_attr::HDRSIZE, self.hdrsize);
        attr::put_u32(buf, ctrl_attr::MAXATTR, self.maxattr);
        if !self.ops.is_empty() {
            let ops = attr::nest_start_raw(buf, ctrl_attr::OPS);
            for (i, op) in self.ops.iter().enumerate() {
                let n = attr::nest_start_raw(buf, index_type(i));
                attr::put_u32(buf, ctrl_attr::OP_ID, op.id);
                attr::put_u32(buf, ctrl_attr::OP_FLAGS, op.flags);
                n.end(buf);
            }
            ops.end(buf);
        }
        if !self.mcast_groups.is_empty() {
            let grps = attr::nest_start_raw(buf, ctrl_attr::MCAST_GROUPS);
            for (i, g) in self.mcast_groups.iter().enumerate() {
                let n = attr::nest_start_raw(buf, index_type(i));
                attr::put_u32(buf, ctrl_attr::MCAST_GRP_ID, g.id);
                attr::put_str(buf, ctrl_attr::MCAST_GRP_NAME, &g.name);
                n.end(buf);
            }
            grps.end(buf);
        }
        msg.finish(buf);
    }

    /// Decodes a CTRL_CMD_NEWFAMILY message. Unknown attributes (policy
    /// dumps of newer kernels) are skipped.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] on malformed attributes or another command.
    pub fn decode(msg: &NlMsg<'_>) -> Result<Self, DecodeError> {
        let g = GenlMsg::parse(msg)?;
        if g.genl.cmd != CTRL_CMD_NEWFAMILY {
            return Err(DecodeError::Unexpected("not a CTRL_CMD_NEWFAMILY message"));
        }
        let mut info = Self::default();
        for a in g.attrs() {
            let a = a?;
            match a.ty() {
                ctrl_attr::FAMILY_NAME => info.name = a.string()?.to_owned(),
                ctrl_attr::FAMILY_ID => info.id = a.u16()?,
                ctrl_attr::VERSION => info.version = a.u32()?,
                ctrl_attr::HDRSIZE => info.hdrsize = a.u32()?,
                ctrl_attr::MAXATTR => info.maxattr = a.u32()?,
                ctrl_attr::OPS => {
                    for op in a.nested() {
                        let mut o = FamilyOp { id: 0, flags: 0 };
                        for f in op?.nested() {
                            let f = f?;
                            match f.ty() {
                                ctrl_attr::OP_ID => o.id = f.u32()?,
                                ctrl_attr::OP_FLAGS => o.flags = f.u32()?,
                                _ => {}
                            }
                        }
                        info.ops.push(o);
                    }
                }
                ctrl_attr::MCAST_GROUPS => {
                    for grp in a.nested() {
                        let mut m = McastGroup {
                            name: String::new(),
                            id: 0,
                        };
                        for f in grp?.nested() {
                            let f = f?;
                            match f.ty() {
                                ctrl_attr::MCAST_GRP_NAME => m.name = f.string()?.to_owned(),
                                ctrl_attr::MCAST_GRP_ID => m.id = f.u32()?,
                                _ => {}
                            }
                        }
                        info.mcast_groups.push(m);
                    }
                }
                _ => {}
            }
        }
        Ok(info)
    }
}

/// Nest index types count from 1.
fn index_type(i: usize) -> u16 {
    u16::try_from(i + 1).unwrap_or(u16::MAX)
}

/// Appends a CTRL_CMD_GETFAMILY request for `name` (version 1, as libnl
/// and pyroute2 send it).
pub fn encode_get_family(buf: &mut Vec<u8>, name: &str, flags: u16, seq: u32, pid: u32) {
    let msg = genl::start(buf, GENL_ID_CTRL, flags, seq, pid, CTRL_CMD_GETFAMILY, 1);
    attr::put_str(buf, ctrl_attr::FAMILY_NAME, name);
    msg.finish(buf);
}

/// What a GETFAMILY request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FamilyQuery {
    /// One family by id.
    ById(u16),
    /// One family by name (a name given with an id wins, as in the kernel).
    ByName(String),
    /// All families (`NLM_F_DUMP`).
    Dump,
}

/// The controller's GETFAMILY policy (`ctrl_policy_family`), validated
/// liberally (the controller's ops opt out of strict validation).
static GETFAMILY_POLICY: PolicySet = PolicySet {
    entries: &[Pol::Unspec, Pol::U16, Pol::NulString { max: 15 }],
};

/// Server side: checks a request to the controller. Only GETFAMILY is
/// served; other commands get `EOPNOTSUPP`. Resolving the query is the
/// server's job: an unknown family is [`unknown_family`].
///
/// # Errors
///
/// `EINVAL` for a short header, a malformed attribute, or neither id nor
/// name in a do request; `EOPNOTSUPP` for other commands.
pub fn parse_get_family(msg: &NlMsg<'_>) -> Result<FamilyQuery, Rejection> {
    let g = GenlMsg::parse(msg).map_err(|_| Rejection::bare(EINVAL))?;
    if g.genl.cmd != CTRL_CMD_GETFAMILY {
        return Err(Rejection::bare(EOPNOTSUPP));
    }
    if msg.header.flags & NLM_F_DUMP == NLM_F_DUMP {
        return Ok(FamilyQuery::Dump);
    }
    validate(
        g.attr_bytes,
        GENL_ATTRS_OFFSET,
        &GETFAMILY_POLICY,
        Strictness::Liberal,
    )?;
    let mut query = None;
    for a in Attrs::new(g.attr_bytes, GENL_ATTRS_OFFSET).flatten() {
        match a.ty() {
            ctrl_attr::FAMILY_ID if query.is_none() => {
                query = a.u16().ok().map(FamilyQuery::ById);
            }
            ctrl_attr::FAMILY_NAME => {
                query = a.string().ok().map(|n| FamilyQuery::ByName(n.to_owned()));
            }
            _ => {}
        }
    }
    query.ok_or(Rejection::bare(EINVAL))
}

/// The controller's answer for a family it does not have: `ENOENT`.
pub fn unknown_family() -> Rejection {
    Rejection::bare(ENOENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nlmsg::{NLM_F_ACK, NLM_F_REQUEST};

    #[test]
    fn get_family_request_bytes() {
        let mut buf = Vec::new();
        encode_get_family(&mut buf, "ovpn", NLM_F_REQUEST | NLM_F_ACK, 1, 0);
        let expected: Vec<u8> = [
            &[32, 0, 0, 0, 0x10, 0, 5, 0, 1, 0, 0, 0, 0, 0, 0, 0][..], // type 16 (nlctrl)
            &[3, 1, 0, 0],                                             // GETFAMILY, version 1
            &[9, 0, 2, 0, b'o', b'v', b'p', b'n', 0, 0, 0, 0],         // FAMILY_NAME "ovpn\0"
        ]
        .concat();
        assert_eq!(buf, expected);
        let q = parse_get_family(&NlMsg::parse(&buf).unwrap()).unwrap();
        assert_eq!(q, FamilyQuery::ByName("ovpn".into()));
    }

    #[test]
    fn ovpn_family_reply_bytes() {
        let info = FamilyInfo::ovpn(0x1c, 9);
        let mut buf = Vec::new();
        info.encode(&mut buf, 0, 1, 77);
        let mut expected: Vec<u8> = vec![1, 2, 0, 0]; // NEWFAMILY, version 2
        expected.extend_from_slice(&[9, 0, 2, 0, b'o', b'v', b'p', b'n', 0, 0, 0, 0]);
        expected.extend_from_slice(&[6, 0, 1, 0, 0x1c, 0, 0, 0]); // FAMILY_ID u16 + pad
        expected.extend_from_slice(&[8, 0, 3, 0, 1, 0, 0, 0]); // VERSION 1
        expected.extend_from_slice(&[8, 0, 4, 0, 0, 0, 0, 0]); // HDRSIZE 0
        expected.extend_from_slice(&[8, 0, 5, 0, 0, 0, 0, 0]); // MAXATTR 0
        expected.extend_from_slice(&[4 + 8 * 20, 0, 6, 0]); // OPS, no NLA_F_NESTED
        for (i, (cmd, flags)) in [
            (1u8, 0x0bu8),
            (2, 0x0b),
            (3, 0x0f),
            (4, 0x0b),
            (6, 0x0b),
            (7, 0x0b),
            (8, 0x0b),
            (10, 0x0b),
        ]
        .into_iter()
        .enumerate()
        {
            expected.extend_from_slice(&[20, 0, i as u8 + 1, 0]);
            expected.extend_from_slice(&[8, 0, 1, 0, cmd, 0, 0, 0]); // OP_ID
            expected.extend_from_slice(&[8, 0, 2, 0, flags, 0, 0, 0]); // OP_FLAGS
        }
        expected.extend_from_slice(&[28, 0, 7, 0]); // MCAST_GROUPS
        expected.extend_from_slice(&[24, 0, 1, 0]); // group 1
        expected.extend_from_slice(&[8, 0, 2, 0, 9, 0, 0, 0]); // GRP_ID 9
        expected.extend_from_slice(&[10, 0, 1, 0, b'p', b'e', b'e', b'r', b's', 0, 0, 0]);
        assert_eq!(&buf[16..], &expected[..]);
        assert_eq!(&buf[4..8], &[0x10, 0, 0, 0]);

        let back = FamilyInfo::decode(&NlMsg::parse(&buf).unwrap()).unwrap();
        assert_eq!(back, info);
        assert_eq!(back.group_id("peers"), Some(9));
    }

    #[test]
    fn controller_errors() {
        let mut buf = Vec::new();
        let m = genl::start(
            &mut buf,
            GENL_ID_CTRL,
            NLM_F_REQUEST,
            1,
            0,
            CTRL_CMD_GETFAMILY,
            1,
        );
        m.finish(&mut buf);
        assert_eq!(
            parse_get_family(&NlMsg::parse(&buf).unwrap())
                .unwrap_err()
                .errno,
            EINVAL
        );

        let mut buf = Vec::new();
        let m = genl::start(
            &mut buf,
            GENL_ID_CTRL,
            NLM_F_REQUEST,
            1,
            0,
            CTRL_CMD_GETFAMILY,
            1,
        );
        attr::put(&mut buf, ctrl_attr::FAMILY_NAME, b"ovpn"); // no NUL
        m.finish(&mut buf);
        let r = parse_get_family(&NlMsg::parse(&buf).unwrap()).unwrap_err();
        assert_eq!(r.errno, EINVAL);
        assert_eq!(
            r.ext.message.as_deref(),
            Some("Attribute failed policy validation")
        );
        assert_eq!(r.ext.bad_attr, Some(20));

        let mut buf = Vec::new();
        let m = genl::start(
            &mut buf,
            GENL_ID_CTRL,
            NLM_F_REQUEST | NLM_F_DUMP,
            1,
            0,
            3,
            1,
        );
        m.finish(&mut buf);
        assert_eq!(
            parse_get_family(&NlMsg::parse(&buf).unwrap()).unwrap(),
            FamilyQuery::Dump
        );

        let mut buf = Vec::new();
        let m = genl::start(&mut buf, GENL_ID_CTRL, NLM_F_REQUEST, 1, 0, 10, 1);
        m.finish(&mut buf);
        assert_eq!(
            parse_get_family(&NlMsg::parse(&buf).unwrap())
                .unwrap_err()
                .errno,
            EOPNOTSUPP
        );
        assert_eq!(unknown_family().errno, ENOENT);
    }
}
