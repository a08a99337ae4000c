//! The rtnetlink subset for ovpn devices (`include/uapi/linux/rtnetlink.h`,
//! `if_link.h`; kernel-behaviour §1.1): RTM_NEWLINK / RTM_DELLINK /
//! RTM_GETLINK (do and dump) with `struct ifinfomsg`, `IFLA_IFNAME`,
//! `IFLA_MTU` and `IFLA_LINKINFO` → `IFLA_INFO_KIND` "ovpn" →
//! `IFLA_INFO_DATA` → `IFLA_OVPN_MODE`.
//!
//! One type, [`LinkMsg`], serves requests and replies in both directions;
//! every other `IFLA_*` attribute of a real kernel's reply is kept raw in
//! [`LinkMsg::other`]. Server side, [`validate_link_request`] applies the
//! kernel's checks for what it accepts (`net/core/rtnetlink.c` parses
//! links with the liberal, "deprecated" validation; the ovpn mode policy
//! is a u8 range 0..=1, `drivers/net/ovpn/main.c`, so a mode above 1 is
//! `ERANGE` "integer out of range" — not `EINVAL` as §1.1 says).
//!
//! Layout after the netlink header:
//!
//! ```text
//! 16      17    18     20      24      28       32
//! | family | pad | type | index | flags | change | attributes ...
//! ```

use crate::DecodeError;
use crate::ack::Rejection;
use crate::attr::{self, Attr, Attrs, RawAttr};
use crate::errno::{EINVAL, EOPNOTSUPP};
use crate::nlmsg::{MessageBuilder, NLMSG_HDRLEN, NlMsg};
use crate::ovpn::attrs::Mode;
use crate::validate::{Pol, PolicySet, Strictness, validate};

/// `RTM_NEWLINK`: create a link; also every link reply.
pub const RTM_NEWLINK: u16 = 16;
/// `RTM_DELLINK`: delete a link.
pub const RTM_DELLINK: u16 = 17;
/// `RTM_GETLINK`: query one link or dump all.
pub const RTM_GETLINK: u16 = 18;

/// `IFLA_IFNAME`, string.
pub const IFLA_IFNAME: u16 = 3;
/// `IFLA_MTU`, u32.
pub const IFLA_MTU: u16 = 4;
/// `IFLA_LINKINFO`, nest.
pub const IFLA_LINKINFO: u16 = 18;
/// `IFLA_INFO_KIND` inside `IFLA_LINKINFO`, string.
pub const IFLA_INFO_KIND: u16 = 1;
/// `IFLA_INFO_DATA` inside `IFLA_LINKINFO`, nest of kind-specific data.
pub const IFLA_INFO_DATA: u16 = 2;
/// `IFLA_OVPN_MODE` inside `IFLA_INFO_DATA`, u8.
pub const IFLA_OVPN_MODE: u16 = 1;

/// `ARPHRD_NONE`: the device type of ovpn (and TUN) devices.
pub const ARPHRD_NONE: u16 = 65534;
/// Size of `struct ifinfomsg`.
pub const IFINFOMSG_LEN: usize = 16;
/// Offset of the first attribute in a link message.
pub const LINK_ATTRS_OFFSET: usize = NLMSG_HDRLEN + IFINFOMSG_LEN;
/// The link kind.
pub const KIND_OVPN: &str = "ovpn";

/// `struct ifinfomsg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IfInfoMsg {
    /// Address family (`AF_UNSPEC`).
    pub family: u8,
    /// Device type (`ARPHRD_*`).
    pub ty: u16,
    /// Interface index (0 = by name, or none yet).
    pub index: i32,
    /// `IFF_*` flags.
    pub flags: u32,
    /// Which flags to change.
    pub change: u32,
}

impl IfInfoMsg {
    fn encode(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&[self.family, 0]);
        buf.extend_from_slice(&self.ty.to_ne_bytes());
        buf.extend_from_slice(&self.index.to_ne_bytes());
        buf.extend_from_slice(&self.flags.to_ne_bytes());
        buf.extend_from_slice(&self.change.to_ne_bytes());
    }

    fn parse(b: &[u8]) -> Option<Self> {
        let b = b.get(..IFINFOMSG_LEN)?;
        let u32_at = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Some(Self {
            family: b[0],
            ty: u16::from_ne_bytes([b[2], b[3]]),
            index: u32_at(4) as i32,
            flags: u32_at(8),
            change: u32_at(12),
        })
    }
}

/// A link message: request or reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LinkMsg {
    /// The `ifinfomsg` header.
    pub info: IfInfoMsg,
    /// `IFLA_IFNAME`.
    pub name: Option<String>,
    /// `IFLA_MTU`.
    pub mtu: Option<u32>,
    /// `IFLA_INFO_KIND`.
    pub kind: Option<String>,
    /// `IFLA_OVPN_MODE` (only meaningful for kind "ovpn").
    pub mode: Option<Mode>,
    /// Other `IFLA_*` attributes, kept as received.
    pub other: Vec<RawAttr>,
}

impl LinkMsg {
    /// RTM_NEWLINK request body for an ovpn device named `name`.
    pub fn new_ovpn(name: &str, mode: Mode) -> Self {
        Self {
            name: Some(name.to_owned()),
            kind: Some(KIND_OVPN.to_owned()),
            mode: Some(mode),
            ..Self::default()
        }
    }

    /// RTM_DELLINK / RTM_GETLINK body for an interface index.
    pub fn by_index(index: i32) -> Self {
        Self {
            info: IfInfoMsg {
                index,
                ..IfInfoMsg::default()
            },
            ..Self::default()
        }
    }

    /// The body a server replies with for one ovpn device: `ARPHRD_NONE`,
    /// index, flags, name, MTU, kind and mode.
    pub fn ovpn_reply(index: i32, flags: u32, name: &str, mtu: u32, mode: Mode) -> Self {
        Self {
            info: IfInfoMsg {
                family: 0,
                ty: ARPHRD_NONE,
                index,
                flags,
                change: 0,
            },
            name: Some(name.to_owned()),
            mtu: Some(mtu),
            kind: Some(KIND_OVPN.to_owned()),
            mode: Some(mode),
            other: Vec::new(),
        }
    }

    /// Appends a whole message of type `ty` (`RTM_*LINK`). The link-info
    /// nests carry no `NLA_F_NESTED`, as the kernel and iproute2 send them;
    /// `IFLA_INFO_DATA` is written only with a mode.
    pub fn encode(&self, buf: &mut Vec<u8>, ty: u16, flags: u16, seq: u32, pid: u32) {
        let msg = MessageBuilder::start(buf, ty, flags, seq, pid);
        self.info.encode(buf);
        if let Some(n) = &self.name {
            attr::put_str(buf, IFLA_IFNAME, n);
        }
        if let Some(m) = self.mtu {
            attr::put_u32(buf, IFLA_MTU, m);
        }
        if self.kind.is_some() || self.mode.is_some() {
            let li = attr::nest_start_raw(buf, IFLA_LINKINFO);
            if let Some(k) = &self.kind {
                attr::put_str(buf, IFLA_INFO_KIND, k);
            }
            if let Some(mode) = self.mode {
                let data = attr::nest_start_raw(buf, IFLA_INFO_DATA);
                attr::put_u8(buf, IFLA_OVPN_MODE, mode.to_u8());
                data.end(buf);
            }
            li.end(buf);
        }
        for raw in &self.other {
            raw.encode(buf);
        }
        msg.finish(buf);
    }

    /// Decodes a link message. A mode value above 1 is an error; link info
    /// of another kind is read for its kind only.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] on a truncated header or malformed known attribute.
    pub fn decode(msg: &NlMsg<'_>) -> Result<Self, DecodeError> {
        let info = IfInfoMsg::parse(msg.payload).ok_or(DecodeError::Truncated("ifinfomsg"))?;
        let mut out = Self {
            info,
            ..Self::default()
        };
        for a in Attrs::new(&msg.payload[IFINFOMSG_LEN..], LINK_ATTRS_OFFSET) {
            let a = a?;
            match a.ty() {
                IFLA_IFNAME => out.name = Some(a.string()?.to_owned()),
                IFLA_MTU => out.mtu = Some(u32::from_ne_bytes(leading(&a)?)),
                IFLA_LINKINFO => out.decode_linkinfo(a.nested())?,
                _ => out.other.push(RawAttr::from_attr(&a)),
            }
        }
        Ok(out)
    }

    fn decode_linkinfo(&mut self, attrs: Attrs<'_>) -> Result<(), DecodeError> {
        let mut data = None;
        for a in attrs {
            let a = a?;
            match a.ty() {
                IFLA_INFO_KIND => self.kind = Some(a.string()?.to_owned()),
                IFLA_INFO_DATA => data = Some(a),
                _ => {}
            }
        }
        if self.kind.as_deref() != Some(KIND_OVPN) {
            return Ok(());
        }
        for a in data.into_iter().flat_map(|d| d.nested()) {
            let a = a?;
            if a.ty() == IFLA_OVPN_MODE {
                let [v] = leading(&a)?;
                self.mode = Some(Mode::from_u8(v).ok_or(DecodeError::InvalidValue {
                    what: "ovpn mode",
                    value: u64::from(v),
                })?);
            }
        }
        Ok(())
    }
}

/// The first `N` bytes of a fixed-size attribute. rtnetlink parses link
/// attributes liberally (`nla_parse_deprecated`): a payload longer than
/// its type is accepted and `nla_get_u8`/`nla_get_u32` read its first
/// bytes, so a 4-byte `IFLA_OVPN_MODE` of 1 means MP, as Linux 6.16 does
/// (parity case link-new-mode-u32). Shorter payloads are refused.
fn leading<const N: usize>(a: &Attr<'_>) -> Result<[u8; N], DecodeError> {
    a.payload()
        .get(..N)
        .and_then(|b| b.try_into().ok())
        .ok_or(DecodeError::Truncated("link attribute"))
}

/// `ifla_policy`, the part this crate checks: `IFLA_IFNAME` is a string of
/// at most 15 bytes (`IFNAMSIZ - 1`), `IFLA_MTU` a u32, `IFLA_LINKINFO` a
/// nest. Everything else is skipped as the liberal parser does.
static IFLA_POLICY: PolicySet = PolicySet {
    entries: &[
        Pol::Unspec,
        Pol::Unspec,
        Pol::Unspec,
        Pol::String { max: 15 },
        Pol::U32 {
            min: 0,
            max: u32::MAX,
        },
        Pol::Unspec,
        Pol::Unspec,
        Pol::Unspec,
        Pol::Unspec,
        Pol::Unspec,
        Pol::Unspec,
        Pol::Unspec,
        Pol::Unspec,
        Pol::Unspec,
        Pol::Unspec,
        Pol::Unspec,
        Pol::Unspec,
        Pol::Unspec,
        Pol::NestedAny,
    ],
};

/// `ifla_info_policy`: kind is a string, data a nest.
static INFO_POLICY: PolicySet = PolicySet {
    entries: &[Pol::Unspec, Pol::String { max: 0 }, Pol::NestedAny],
};

/// `ovpn_policy` (`drivers/net/ovpn/main.c`): mode u8 in 0..=1.
static OVPN_POLICY: PolicySet = PolicySet {
    entries: &[Pol::Unspec, Pol::U8 { min: 0, max: 1 }],
};

/// Server side: the checks rtnetlink applies to a link request before a
/// server acts on it: the `ifinfomsg` must be present (`EINVAL`), the
/// attributes pass the liberal link policies, link info of a kind other
/// than "ovpn" on RTM_NEWLINK is refused (`EOPNOTSUPP`, "Unknown device
/// type"), and the ovpn mode is range-checked (`ERANGE`).
///
/// # Errors
///
/// The kernel's rejection for the first failed check.
pub fn validate_link_request(msg: &NlMsg<'_>) -> Result<LinkMsg, Rejection> {
    if msg.payload.len() < IFINFOMSG_LEN {
        return Err(Rejection::bare(EINVAL));
    }
    let attrs = &msg.payload[IFINFOMSG_LEN..];
    validate(attrs, LINK_ATTRS_OFFSET, &IFLA_POLICY, Strictness::Liberal)?;
    for a in Attrs::new(attrs, LINK_ATTRS_OFFSET).flatten() {
        if a.ty() != IFLA_LINKINFO {
            continue;
        }
        let base = a.offset() + attr::NLA_HDRLEN;
        validate(a.payload(), base, &INFO_POLICY, Strictness::Liberal)?;
        let mut kind = None;
        let mut data = None;
        for i in a.nested().flatten() {
            match i.ty() {
                IFLA_INFO_KIND => kind = i.string().ok(),
                IFLA_INFO_DATA => data = Some(i),
                _ => {}
            }
        }
        if msg.header.ty == RTM_NEWLINK && kind.is_some_and(|k| k != KIND_OVPN) {
            return Err(Rejection::msg(EOPNOTSUPP, "Unknown device type"));
        }
        if let Some(d) = data {
            let base = d.offset() + attr::NLA_HDRLEN;
            validate(d.payload(), base, &OVPN_POLICY, Strictness::Liberal)?;
        }
    }
    LinkMsg::decode(msg).map_err(|_| Rejection::bare(EINVAL))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errno::ERANGE;
    use crate::nlmsg::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST};

    #[test]
    fn newlink_request_bytes() {
        let mut buf = Vec::new();
        let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        LinkMsg::new_ovpn("ovpn0", Mode::Mp).encode(&mut buf, RTM_NEWLINK, flags, 1, 0);
        let expected: Vec<u8> = [
            &[72, 0, 0, 0, 16, 0, 0x05, 0x06, 1, 0, 0, 0, 0, 0, 0, 0][..], // NEWLINK, 16 + 16 + 12 + 28
            &[0; 16],                                                      // ifinfomsg all zero
            &[10, 0, 3, 0, b'o', b'v', b'p', b'n', b'0', 0, 0, 0],         // IFLA_IFNAME
            &[28, 0, 18, 0], // IFLA_LINKINFO (no flag)
            &[9, 0, 1, 0, b'o', b'v', b'p', b'n', 0, 0, 0, 0], // INFO_KIND "ovpn"
            &[12, 0, 2, 0],  // INFO_DATA
            &[5, 0, 1, 0, 1, 0, 0, 0], // IFLA_OVPN_MODE = MP
        ]
        .concat();
        assert_eq!(buf, expected);
        let v = validate_link_request(&NlMsg::parse(&buf).unwrap()).unwrap();
        assert_eq!(v, LinkMsg::new_ovpn("ovpn0", Mode::Mp));
    }

    #[test]
    fn reply_round_trip_keeps_other_attributes() {
        let mut link = LinkMsg::ovpn_reply(7, 0x91, "ovpn0", 1416, Mode::P2p);
        link.other.push(RawAttr {
            raw_type: 13, // IFLA_TXQLEN
            payload: 1000u32.to_ne_bytes().to_vec(),
        });
        let mut buf = Vec::new();
        link.encode(&mut buf, RTM_NEWLINK, 0, 4, 99);
        // ifinfomsg: family 0, pad, type 65534, index 7, flags 0x91, change 0
        assert_eq!(
            &buf[16..32],
            &[0, 0, 0xfe, 0xff, 7, 0, 0, 0, 0x91, 0, 0, 0, 0, 0, 0, 0]
        );
        let back = LinkMsg::decode(&NlMsg::parse(&buf).unwrap()).unwrap();
        assert_eq!(back, link);
    }

    #[test]
    fn mode_above_one_is_erange() {
        let mut buf = Vec::new();
        let m = MessageBuilder::start(&mut buf, RTM_NEWLINK, NLM_F_REQUEST, 1, 0);
        buf.extend_from_slice(&[0; 16]);
        let li = attr::nest_start_raw(&mut buf, IFLA_LINKINFO); // 32
        attr::put_str(&mut buf, IFLA_INFO_KIND, "ovpn"); // 36
        let d = attr::nest_start_raw(&mut buf, IFLA_INFO_DATA); // 48
        attr::put_u8(&mut buf, IFLA_OVPN_MODE, 2); // 52
        d.end(&mut buf);
        li.end(&mut buf);
        m.finish(&mut buf);
        let r = validate_link_request(&NlMsg::parse(&buf).unwrap()).unwrap_err();
        assert_eq!(r.errno, ERANGE);
        assert_eq!(r.ext.message.as_deref(), Some("integer out of range"));
        assert_eq!(r.ext.bad_attr, Some(52));
        let p = r.ext.policy.unwrap();
        assert_eq!((p.min_value_u, p.max_value_u), (Some(0), Some(1)));
        assert!(LinkMsg::decode(&NlMsg::parse(&buf).unwrap()).is_err());
    }

    #[test]
    fn other_kind_name_too_long_and_short_header() {
        let mut buf = Vec::new();
        let mut l = LinkMsg::new_ovpn("x", Mode::P2p);
        l.kind = Some("wireguard".into());
        l.mode = None;
        l.encode(&mut buf, RTM_NEWLINK, NLM_F_REQUEST, 1, 0);
        let r = validate_link_request(&NlMsg::parse(&buf).unwrap()).unwrap_err();
        assert_eq!(
            (r.errno, r.ext.message.as_deref()),
            (EOPNOTSUPP, Some("Unknown device type"))
        );

        let mut buf = Vec::new();
        LinkMsg::new_ovpn("a-very-long-name0", Mode::P2p).encode(&mut buf, RTM_NEWLINK, 1, 1, 0);
        let r = validate_link_request(&NlMsg::parse(&buf).unwrap()).unwrap_err();
        assert_eq!((r.errno, r.ext.bad_attr), (ERANGE, Some(32)));

        let mut buf = Vec::new();
        let m = MessageBuilder::start(&mut buf, RTM_GETLINK, NLM_F_REQUEST, 1, 0);
        buf.extend_from_slice(&[0; 8]);
        m.finish(&mut buf);
        assert_eq!(
            validate_link_request(&NlMsg::parse(&buf).unwrap())
                .unwrap_err()
                .errno,
            EINVAL
        );
    }

    /// rtnetlink's liberal parsing (parity case link-new-mode-u32): a
    /// 4-byte mode and an 8-byte MTU are read by their first bytes; a
    /// mode out of range is still refused, and so is an empty one.
    #[test]
    fn wide_link_attributes_are_read_by_their_first_bytes() {
        let request = |mode: &[u8], mtu: &[u8]| {
            let mut buf = Vec::new();
            let m = MessageBuilder::start(&mut buf, RTM_NEWLINK, NLM_F_REQUEST, 1, 0);
            buf.extend_from_slice(&[0; IFINFOMSG_LEN]);
            attr::put_str(&mut buf, IFLA_IFNAME, "ovpnw");
            attr::put(&mut buf, IFLA_MTU, mtu);
            let info = attr::nest_start(&mut buf, IFLA_LINKINFO);
            attr::put_str(&mut buf, IFLA_INFO_KIND, KIND_OVPN);
            let data = attr::nest_start(&mut buf, IFLA_INFO_DATA);
            attr::put(&mut buf, IFLA_OVPN_MODE, mode);
            data.end(&mut buf);
            info.end(&mut buf);
            m.finish(&mut buf);
            buf
        };
        let mtu8 = [0xdc, 5, 0, 0, 0xff, 0xff, 0xff, 0xff];
        let buf = request(&1u32.to_ne_bytes(), &mtu8);
        let l = validate_link_request(&NlMsg::parse(&buf).unwrap()).unwrap();
        assert_eq!(
            (l.mode, l.mtu, l.name.as_deref()),
            (Some(Mode::Mp), Some(1500), Some("ovpnw"))
        );

        let buf = request(&2u32.to_ne_bytes(), &1500u32.to_ne_bytes());
        let r = validate_link_request(&NlMsg::parse(&buf).unwrap()).unwrap_err();
        assert_eq!(r.errno, ERANGE);
        let buf = request(&[], &1500u32.to_ne_bytes());
        assert!(validate_link_request(&NlMsg::parse(&buf).unwrap()).is_err());
        let buf = request(&[1], &[0xdc, 5]);
        assert!(validate_link_request(&NlMsg::parse(&buf).unwrap()).is_err());
    }

    #[test]
    fn getlink_and_dellink_by_index() {
        let mut buf = Vec::new();
        LinkMsg::by_index(9).encode(&mut buf, RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, 2, 0);
        assert_eq!(buf.len(), 32);
        assert_eq!(&buf[4..6], &[17, 0]);
        assert_eq!(&buf[20..24], &[9, 0, 0, 0]);
        let v = validate_link_request(&NlMsg::parse(&buf).unwrap()).unwrap();
        assert_eq!(v.info.index, 9);
    }
}
