//! The rtnetlink namespace-id messages (`RTM_NEWNSID`, `RTM_GETNSID`): how a
//! namespace is numbered as seen from another one, which the kernel reports
//! as `socket-netnsid` when a peer's socket lives elsewhere
//! (kernel-behaviour §3.1, §7.7).
//!
//! A request is an `rtgenmsg` (one family byte, padded to 4) and
//! `NETNSA_FD` naming the namespace by a descriptor of the requester;
//! RTM_NEWNSID also carries `NETNSA_NSID` (-1: any free id). The reply to
//! RTM_GETNSID is an RTM_NEWNSID with `NETNSA_NSID`, -1 when the namespace
//! has no id yet.

use crate::attr::{self, Attrs};
use crate::nlmsg::{MessageBuilder, NLM_F_ACK, NLM_F_REQUEST, NlMsg};

/// Assigns an id to a namespace (and the type of RTM_GETNSID replies).
pub const RTM_NEWNSID: u16 = 88;
/// Asks for a namespace's id.
pub const RTM_GETNSID: u16 = 90;
/// `s32`: the id; -1 for none.
pub const NETNSA_NSID: u16 = 1;
/// `u32`: a namespace file descriptor of the requester.
pub const NETNSA_FD: u16 = 3;
/// The id of a namespace that has none.
pub const NSID_NOT_ASSIGNED: i32 = -1;

const RTGENMSG_LEN: usize = 4;

fn request(buf: &mut Vec<u8>, ty: u16, flags: u16, seq: u32, fd: u32, nsid: Option<i32>) {
    let m = MessageBuilder::start(buf, ty, flags, seq, 0);
    buf.extend_from_slice(&[0; RTGENMSG_LEN]);
    attr::put_u32(buf, NETNSA_FD, fd);
    if let Some(nsid) = nsid {
        attr::put_s32(buf, NETNSA_NSID, nsid);
    }
    m.finish(buf);
}

/// RTM_GETNSID for the namespace behind the requester's descriptor `fd`.
pub fn encode_get(buf: &mut Vec<u8>, seq: u32, fd: u32) {
    request(buf, RTM_GETNSID, NLM_F_REQUEST, seq, fd, None);
}

/// RTM_NEWNSID giving the namespace behind `fd` any free id (ACK wanted).
pub fn encode_assign(buf: &mut Vec<u8>, seq: u32, fd: u32) {
    request(
        buf,
        RTM_NEWNSID,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        fd,
        Some(NSID_NOT_ASSIGNED),
    );
}

/// The id an RTM_NEWNSID message carries, or `None` if it is not one or
/// has no `NETNSA_NSID`.
pub fn decode_nsid(msg: &NlMsg<'_>) -> Option<i32> {
    if msg.header.ty != RTM_NEWNSID {
        return None;
    }
    let attrs = msg.payload.get(RTGENMSG_LEN..)?;
    Attrs::new(attrs, crate::nlmsg::NLMSG_HDRLEN + RTGENMSG_LEN)
        .filter_map(Result::ok)
        .find(|a| a.ty() == NETNSA_NSID)
        .and_then(|a| a.s32().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout() {
        let mut buf = Vec::new();
        encode_get(&mut buf, 7, 5);
        assert_eq!(
            buf,
            [
                28, 0, 0, 0, 90, 0, 1, 0, 7, 0, 0, 0, 0, 0, 0, 0, // header
                0, 0, 0, 0, // rtgenmsg
                8, 0, 3, 0, 5, 0, 0, 0, // NETNSA_FD 5
            ]
        );
        let mut buf = Vec::new();
        encode_assign(&mut buf, 8, 5);
        assert_eq!(&buf[4..8], &[88, 0, 5, 0]);
        assert_eq!(&buf[28..], &[8, 0, 1, 0, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(buf.len(), 36);
    }

    #[test]
    fn reply_id() {
        let reply = [
            28, 0, 0, 0, 88, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 1, 0, 3, 0, 0, 0,
        ];
        let msg = NlMsg::parse(&reply).unwrap();
        assert_eq!(decode_nsid(&msg), Some(3));
        let mut none = reply;
        none[24..28].copy_from_slice(&(-1i32).to_ne_bytes());
        assert_eq!(decode_nsid(&NlMsg::parse(&none).unwrap()), Some(-1));
        let mut other = reply;
        other[4] = 16;
        assert_eq!(decode_nsid(&NlMsg::parse(&other).unwrap()), None);
    }
}
