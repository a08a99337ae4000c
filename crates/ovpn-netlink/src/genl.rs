//! The generic-netlink header (`struct genlmsghdr`,
//! `include/uapi/linux/genetlink.h`): 4 bytes after the netlink header.
//!
//! ```text
//! 16    17        18         20
//! | cmd | version | reserved | attributes ...
//! ```
//!
//! Building a generic-netlink message: [`start`] writes both headers,
//! append attributes with [`crate::attr`], then `finish` the returned
//! builder. Parsing: [`GenlMsg::parse`] on an [`NlMsg`].

use crate::DecodeError;
use crate::attr::Attrs;
use crate::nlmsg::{MessageBuilder, NLMSG_HDRLEN, NlMsg, NlMsgHeader};

/// Size of `struct genlmsghdr`.
pub const GENL_HDRLEN: usize = 4;
/// Offset of the first attribute in a generic-netlink message whose
/// family has no user header (ovpn and nlctrl).
pub const GENL_ATTRS_OFFSET: usize = NLMSG_HDRLEN + GENL_HDRLEN;

/// A decoded `struct genlmsghdr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GenlHeader {
    /// Command number.
    pub cmd: u8,
    /// Family interface version.
    pub version: u8,
    /// Reserved, 0 on send; kept as received.
    pub reserved: u16,
}

impl GenlHeader {
    /// Reads the header from the first 4 bytes of a netlink payload.
    ///
    /// # Errors
    ///
    /// [`DecodeError::Truncated`] if `payload` is shorter than 4 bytes.
    pub fn parse(payload: &[u8]) -> Result<Self, DecodeError> {
        let b = payload
            .get(..GENL_HDRLEN)
            .ok_or(DecodeError::Truncated("generic netlink header"))?;
        Ok(Self {
            cmd: b[0],
            version: b[1],
            reserved: u16::from_ne_bytes([b[2], b[3]]),
        })
    }

    /// The 4 bytes of this header.
    pub fn to_bytes(&self) -> [u8; GENL_HDRLEN] {
        let r = self.reserved.to_ne_bytes();
        [self.cmd, self.version, r[0], r[1]]
    }
}

/// Appends a netlink header and a generic-netlink header; append the
/// attributes next and `finish` the returned builder.
pub fn start(
    buf: &mut Vec<u8>,
    family: u16,
    flags: u16,
    seq: u32,
    pid: u32,
    cmd: u8,
    version: u8,
) -> MessageBuilder {
    let msg = MessageBuilder::start(buf, family, flags, seq, pid);
    buf.extend_from_slice(
        &GenlHeader {
            cmd,
            version,
            reserved: 0,
        }
        .to_bytes(),
    );
    msg
}

/// A generic-netlink message: both headers and the attribute bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenlMsg<'a> {
    /// The netlink header.
    pub header: NlMsgHeader,
    /// The generic-netlink header.
    pub genl: GenlHeader,
    /// The attribute bytes (after both headers).
    pub attr_bytes: &'a [u8],
}

impl<'a> GenlMsg<'a> {
    /// Splits a netlink message into its generic-netlink parts.
    ///
    /// # Errors
    ///
    /// [`DecodeError::Truncated`] if the payload is shorter than 4 bytes.
    pub fn parse(msg: &NlMsg<'a>) -> Result<Self, DecodeError> {
        let genl = GenlHeader::parse(msg.payload)?;
        Ok(Self {
            header: msg.header,
            genl,
            attr_bytes: &msg.payload[GENL_HDRLEN..],
        })
    }

    /// The top-level attributes, with offsets from the message start.
    pub fn attrs(&self) -> Attrs<'a> {
        Attrs::new(self.attr_bytes, GENL_ATTRS_OFFSET)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr;
    use crate::nlmsg::NLM_F_REQUEST;

    #[test]
    fn build_and_parse() {
        let mut buf = Vec::new();
        let m = start(&mut buf, 0x1d, NLM_F_REQUEST, 3, 0, 7, 1);
        attr::put_u32(&mut buf, 1, 2);
        m.finish(&mut buf);
        assert_eq!(
            buf,
            [
                28, 0, 0, 0, 0x1d, 0, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, // nlmsghdr
                7, 1, 0, 0, // cmd 7, version 1
                8, 0, 1, 0, 2, 0, 0, 0, // u32 attr 1 = 2
            ]
        );
        let nl = NlMsg::parse(&buf).unwrap();
        let g = GenlMsg::parse(&nl).unwrap();
        assert_eq!(g.genl.cmd, 7);
        let a = g.attrs().next().unwrap().unwrap();
        assert_eq!(a.offset(), 20);
    }
}
