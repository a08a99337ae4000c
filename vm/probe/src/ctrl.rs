//! Just enough of netlink attributes and of the `nlctrl` family to look up a
//! generic-netlink family id and its multicast groups by name
//! (`CTRL_CMD_GETFAMILY`), and to read the TLVs of an extended ACK.

use crate::nl::{Header, NLM_F_ACK, NLM_F_REQUEST, NLMSG_HDRLEN};

/// The fixed message type of the `nlctrl` family.
pub(crate) const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_NEWFAMILY: u8 = 1;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const CTRL_ATTR_VERSION: u16 = 3;
const CTRL_ATTR_HDRSIZE: u16 = 4;
const CTRL_ATTR_MAXATTR: u16 = 5;
const CTRL_ATTR_MCAST_GROUPS: u16 = 7;
const CTRL_ATTR_MCAST_GRP_NAME: u16 = 1;
const CTRL_ATTR_MCAST_GRP_ID: u16 = 2;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// What the kernel said about one generic-netlink family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Family {
    /// Family name.
    pub(crate) name: String,
    /// Message type to use for requests to the family.
    pub(crate) id: u16,
    /// Family version.
    pub(crate) version: u32,
    /// Length of the family's own header after the genl header.
    pub(crate) hdrsize: u32,
    /// Highest attribute type of the family.
    pub(crate) maxattr: u32,
    /// Multicast groups: name and id.
    pub(crate) groups: Vec<(String, u32)>,
}

/// Builds a `CTRL_CMD_GETFAMILY` request for `name` with an ACK requested.
pub(crate) fn getfamily_request(name: &str, seq: u32) -> Vec<u8> {
    let mut payload = vec![CTRL_CMD_GETFAMILY, 2, 0, 0];
    let mut value = name.as_bytes().to_vec();
    value.push(0);
    push_attr(&mut payload, CTRL_ATTR_FAMILY_NAME, &value);

    let len = u32::try_from(NLMSG_HDRLEN + payload.len()).unwrap_or(u32::MAX);
    let mut msg = Vec::with_capacity(len as usize);
    msg.extend_from_slice(&len.to_ne_bytes());
    msg.extend_from_slice(&GENL_ID_CTRL.to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&payload);
    msg
}

/// Reads a `CTRL_CMD_NEWFAMILY` reply; `None` if `msg` is not one.
pub(crate) fn parse_family(msg: &[u8]) -> Option<Family> {
    let header = Header::parse(msg)?;
    let genl = msg.get(NLMSG_HDRLEN..NLMSG_HDRLEN + 4)?;
    if header.kind != GENL_ID_CTRL || genl[0] != CTRL_CMD_NEWFAMILY {
        return None;
    }
    let mut family = Family {
        name: String::new(),
        id: 0,
        version: 0,
        hdrsize: 0,
        maxattr: 0,
        groups: Vec::new(),
    };
    for (kind, value) in attrs(msg.get(NLMSG_HDRLEN + 4..)?) {
        match kind {
            CTRL_ATTR_FAMILY_ID => family.id = u16_of(value)?,
            CTRL_ATTR_FAMILY_NAME => family.name = c_string(value),
            CTRL_ATTR_VERSION => family.version = u32_of(value)?,
            CTRL_ATTR_HDRSIZE => family.hdrsize = u32_of(value)?,
            CTRL_ATTR_MAXATTR => family.maxattr = u32_of(value)?,
            CTRL_ATTR_MCAST_GROUPS => family.groups = parse_groups(value),
            _ => {}
        }
    }
    (family.id != 0).then_some(family)
}

fn parse_groups(nest: &[u8]) -> Vec<(String, u32)> {
    let mut groups = Vec::new();
    for (_, entry) in attrs(nest) {
        let mut name = None;
        let mut id = None;
        for (kind, value) in attrs(entry) {
            match kind {
                CTRL_ATTR_MCAST_GRP_NAME => name = Some(c_string(value)),
                CTRL_ATTR_MCAST_GRP_ID => id = u32_of(value),
                _ => {}
            }
        }
        if let (Some(name), Some(id)) = (name, id) {
            groups.push((name, id));
        }
    }
    groups
}

/// Iterates over the attributes in `buf` as (type without flags, payload).
/// Stops at the first malformed attribute.
pub(crate) fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16::from_ne_bytes([*buf.first()?, *buf.get(1)?]));
        let kind = u16::from_ne_bytes([*buf.get(2)?, *buf.get(3)?]) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            return None;
        }
        let value = &buf[4..len];
        buf = buf.get((len + 3) & !3..).unwrap_or_default();
        Some((kind, value))
    })
}

/// Appends one attribute, padded to 4 bytes.
pub(crate) fn push_attr(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = u16::try_from(4 + value.len()).unwrap_or(u16::MAX);
    buf.extend_from_slice(&len.to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize((buf.len() + 3) & !3, 0);
}

/// A NUL-terminated (or not) attribute string, lossily decoded.
pub(crate) fn c_string(value: &[u8]) -> String {
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end]).into_owned()
}

/// A native-endian u32 attribute payload.
pub(crate) fn u32_of(value: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(value.get(..4)?.try_into().ok()?))
}

fn u16_of(value: &[u8]) -> Option<u16> {
    Some(u16::from_ne_bytes(value.get(..2)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getfamily_request_bytes() {
        let msg = getfamily_request("ovpn", 1);
        let expected: [u8; 28] = [
            0x20, 0, 0, 0, 0x10, 0, 0x05, 0, 1, 0, 0, 0, 0, 0, 0, 0, // nlmsghdr
            3, 2, 0, 0, // genl: GETFAMILY, version 2
            9, 0, 2, 0, b'o', b'v', b'p', b'n', // FAMILY_NAME "ovpn\0" ...
        ];
        assert_eq!(&msg[..28], &expected);
        assert_eq!(&msg[28..], &[0, 0, 0, 0]); // ... NUL and padding
    }

    #[test]
    fn family_reply_is_read() {
        let mut payload = vec![CTRL_CMD_NEWFAMILY, 2, 0, 0];
        push_attr(&mut payload, CTRL_ATTR_FAMILY_NAME, b"ovpn\0");
        push_attr(&mut payload, CTRL_ATTR_FAMILY_ID, &0x22u16.to_ne_bytes());
        push_attr(&mut payload, CTRL_ATTR_VERSION, &1u32.to_ne_bytes());
        push_attr(&mut payload, CTRL_ATTR_MAXATTR, &3u32.to_ne_bytes());
        let mut group = Vec::new();
        push_attr(&mut group, CTRL_ATTR_MCAST_GRP_ID, &7u32.to_ne_bytes());
        push_attr(&mut group, CTRL_ATTR_MCAST_GRP_NAME, b"peers\0");
        let mut groups = Vec::new();
        push_attr(&mut groups, 1 | 0x8000, &group);
        push_attr(&mut payload, CTRL_ATTR_MCAST_GROUPS | 0x8000, &groups);

        let mut msg = ((16 + payload.len()) as u32).to_ne_bytes().to_vec();
        msg.extend_from_slice(&[0x10, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        msg.extend_from_slice(&payload);

        let family = parse_family(&msg).expect("a family reply");
        assert_eq!(family.name, "ovpn");
        assert_eq!((family.id, family.version, family.maxattr), (0x22, 1, 3));
        assert_eq!(family.groups, vec![("peers".to_owned(), 7)]);
    }

    #[test]
    fn attrs_stop_at_malformed_length() {
        let buf = [8, 0, 1, 0, 1, 2, 3, 4, 2, 0, 9, 0];
        let got: Vec<_> = attrs(&buf).collect();
        assert_eq!(got, vec![(1, &[1u8, 2, 3, 4][..])]);
    }
}
