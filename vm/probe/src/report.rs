//! The probe's output: one line per netlink message in hex, plus a `#` line
//! decoding errors and ACKs (errno name, extack message, offset, missing
//! attribute). No timestamps, so runs can be diffed.

use crate::ctrl::{attrs, c_string, u32_of};
use crate::nl::{Header, NLMSG_ERROR, NLMSG_HDRLEN};

const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;
const NLMSGERR_ATTR_OFFS: u16 = 2;
const NLMSGERR_ATTR_MISS_TYPE: u16 = 5;
const NLMSGERR_ATTR_MISS_NEST: u16 = 6;

/// Decodes an `NLMSG_ERROR` message into a comment line; `None` for other
/// messages.
pub(crate) fn describe_error(msg: &[u8]) -> Option<String> {
    let header = Header::parse(msg)?;
    if header.kind != NLMSG_ERROR {
        return None;
    }
    let body = msg.get(NLMSG_HDRLEN..)?;
    let errno = i32::from_ne_bytes(body.get(..4)?.try_into().ok()?);
    if errno == 0 && header.flags & NLM_F_ACK_TLVS == 0 {
        return Some("# ack".to_owned());
    }
    let mut line = if errno == 0 {
        "# ack".to_owned()
    } else {
        format!("# error {errno} {}", errno_name(-errno))
    };

    if header.flags & NLM_F_ACK_TLVS != 0 {
        let request_len = if header.flags & NLM_F_CAPPED != 0 {
            NLMSG_HDRLEN
        } else {
            Header::parse(body.get(4..)?).map_or(NLMSG_HDRLEN, |h| h.len as usize)
        };
        let tlvs = body.get(4 + ((request_len + 3) & !3)..).unwrap_or_default();
        for (kind, value) in attrs(tlvs) {
            match kind {
                NLMSGERR_ATTR_MSG => line.push_str(&format!(" msg={:?}", c_string(value))),
                NLMSGERR_ATTR_OFFS => push_u32(&mut line, "offset", value),
                NLMSGERR_ATTR_MISS_TYPE => push_u32(&mut line, "miss-type", value),
                NLMSGERR_ATTR_MISS_NEST => push_u32(&mut line, "miss-nest", value),
                other => line.push_str(&format!(" tlv{other}")),
            }
        }
    }
    Some(line)
}

fn push_u32(line: &mut String, label: &str, value: &[u8]) {
    if let Some(v) = u32_of(value) {
        line.push_str(&format!(" {label}={v}"));
    }
}

/// The symbolic name of a positive errno value, as far as netlink returns
/// them; `E?` for others.
pub(crate) fn errno_name(errno: i32) -> &'static str {
    match errno {
        1 => "EPERM",
        2 => "ENOENT",
        3 => "ESRCH",
        9 => "EBADF",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        16 => "EBUSY",
        17 => "EEXIST",
        19 => "ENODEV",
        22 => "EINVAL",
        28 => "ENOSPC",
        34 => "ERANGE",
        61 => "ENODATA",
        71 => "EPROTO",
        75 => "EOVERFLOW",
        88 => "ENOTSOCK",
        90 => "EMSGSIZE",
        91 => "EPROTOTYPE",
        93 => "EPROTONOSUPPORT",
        95 => "EOPNOTSUPP",
        97 => "EAFNOSUPPORT",
        98 => "EADDRINUSE",
        106 => "EISCONN",
        107 => "ENOTCONN",
        114 => "EALREADY",
        115 => "EINPROGRESS",
        524 => "ENOTSUPP",
        _ => "E?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctrl::push_attr;

    fn error_msg(errno: i32, flags: u16, tlvs: &[u8]) -> Vec<u8> {
        let request = [20u8, 0, 0, 0, 0x22, 0, 5, 0, 1, 0, 0, 0, 0, 0, 0, 0];
        let mut body = errno.to_ne_bytes().to_vec();
        body.extend_from_slice(&request);
        body.extend_from_slice(tlvs);
        let mut msg = ((16 + body.len()) as u32).to_ne_bytes().to_vec();
        msg.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        msg.extend_from_slice(&flags.to_ne_bytes());
        msg.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        msg.extend_from_slice(&body);
        msg
    }

    #[test]
    fn plain_ack() {
        assert_eq!(
            describe_error(&error_msg(0, 0x100, &[])).as_deref(),
            Some("# ack")
        );
    }

    #[test]
    fn error_with_extack() {
        let mut tlvs = Vec::new();
        push_attr(&mut tlvs, NLMSGERR_ATTR_MSG, b"missing attribute\0");
        push_attr(&mut tlvs, NLMSGERR_ATTR_MISS_TYPE, &2u32.to_ne_bytes());
        let msg = error_msg(-22, NLM_F_CAPPED | NLM_F_ACK_TLVS, &tlvs);
        assert_eq!(
            describe_error(&msg).as_deref(),
            Some("# error -22 EINVAL msg=\"missing attribute\" miss-type=2")
        );
    }

    #[test]
    fn not_an_error() {
        let mut msg = error_msg(0, 0, &[]);
        msg[4] = 0x22;
        assert_eq!(describe_error(&msg), None);
    }
}
