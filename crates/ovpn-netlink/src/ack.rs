//! Acknowledgements, errors and the end of dumps, in both directions.
//!
//! **`NLMSG_ERROR`** (`net/netlink/af_netlink.c`, `netlink_ack`): payload
//! is `struct nlmsgerr` = the error as a negative `i32` (0 for an ACK)
//! followed by the request's 16-byte header. For an error the kernel then
//! copies the request's payload too, unless the socket enabled
//! `NETLINK_CAP_ACK`; an ACK and a capped error carry [`NLM_F_CAPPED`].
//! When the socket enabled `NETLINK_EXT_ACK` the extended-ACK TLVs follow
//! and the message carries [`NLM_F_ACK_TLVS`]: the message (also on a
//! plain ACK, as a warning), and for errors only the offending attribute's
//! offset from the start of the request, the policy that attribute broke,
//! the missing attribute's type and the offset of the nest it was missing
//! from. Both socket options are explicit fields of [`AckOptions`].
//!
//! **`NLMSG_DONE`** ends a dump: `NLM_F_MULTI`, payload an `i32` that is 0,
//! or the negative errno of a dump that failed after it started, followed
//! (extended ACK enabled and something to say) by the same TLVs, with
//! offsets relative to the dump request.
//!
//! A server builds these with [`encode_error`], [`encode_ack`] and
//! [`encode_done`] from a [`Rejection`]; a client turns a received message
//! back into an [`ErrorReport`] with [`ErrorReport::parse`] and can map
//! the reported offset back to the attribute it sent with
//! [`ErrorReport::attribute_path`].

use std::fmt;

use crate::DecodeError;
use crate::attr::{self, Attrs};
use crate::errno;
use crate::nlmsg::{
    MessageBuilder, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_MULTI, NLMSG_DONE, NLMSG_ERROR,
    NLMSG_HDRLEN, NlMsg, NlMsgHeader, align,
};

/// `NLMSGERR_ATTR_MSG`: NUL-terminated message string.
pub const NLMSGERR_ATTR_MSG: u16 = 1;
/// `NLMSGERR_ATTR_OFFS`: offset of the offending attribute in the request.
pub const NLMSGERR_ATTR_OFFS: u16 = 2;
/// `NLMSGERR_ATTR_COOKIE`: arbitrary subsystem data.
pub const NLMSGERR_ATTR_COOKIE: u16 = 3;
/// `NLMSGERR_ATTR_POLICY`: nested description of the violated policy.
pub const NLMSGERR_ATTR_POLICY: u16 = 4;
/// `NLMSGERR_ATTR_MISS_TYPE`: type of a missing required attribute.
pub const NLMSGERR_ATTR_MISS_TYPE: u16 = 5;
/// `NLMSGERR_ATTR_MISS_NEST`: offset of the nest the attribute is missing from.
pub const NLMSGERR_ATTR_MISS_NEST: u16 = 6;

/// The two socket options that shape an error reply, explicit because a
/// userspace server has no netlink socket to read them from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AckOptions {
    /// `NETLINK_EXT_ACK`: append extended-ACK TLVs.
    pub ext_ack: bool,
    /// `NETLINK_CAP_ACK`: do not copy the request's payload into errors.
    pub cap_ack: bool,
}

/// Extended-ACK content, as a server fills it and a client reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtAck {
    /// Human-readable message (`NL_SET_ERR_MSG*`).
    pub message: Option<String>,
    /// Offset of the offending attribute from the start of the request.
    pub bad_attr: Option<u32>,
    /// The policy the offending attribute broke.
    pub policy: Option<Box<PolicyDescription>>,
    /// Type of the missing required attribute.
    pub miss_type: Option<u32>,
    /// Offset of the nest the required attribute is missing from; absent
    /// when it is missing at the top level.
    pub miss_nest: Option<u32>,
    /// Subsystem cookie (unused by the ovpn family, kept when received).
    pub cookie: Option<Vec<u8>>,
}

impl ExtAck {
    /// Whether nothing would be sent.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A request refused by a server: the errno (positive) and what the
/// kernel would have put in the extended ACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Positive errno, e.g. [`errno::EINVAL`].
    pub errno: i32,
    /// Extended-ACK content.
    pub ext: ExtAck,
}

impl Rejection {
    /// A rejection with no extended-ACK content.
    pub fn bare(errno: i32) -> Self {
        Self {
            errno,
            ext: ExtAck::default(),
        }
    }

    /// A rejection with only a message.
    pub fn msg(errno: i32, message: impl Into<String>) -> Self {
        Self {
            errno,
            ext: ExtAck {
                message: Some(message.into()),
                ..ExtAck::default()
            },
        }
    }

    /// Adds the offending attribute's offset.
    #[must_use]
    pub fn at(mut self, offset: usize) -> Self {
        self.ext.bad_attr = u32::try_from(offset).ok();
        self
    }

    /// A missing required attribute (`NL_REQ_ATTR_CHECK`): errno `EINVAL`,
    /// no message, the type and the enclosing nest's offset (`None` at the
    /// top level).
    pub fn missing(ty: u16, nest: Option<usize>) -> Self {
        Self {
            errno: errno::EINVAL,
            ext: ExtAck {
                miss_type: Some(u32::from(ty)),
                miss_nest: nest.and_then(|n| u32::try_from(n).ok()),
                ..ExtAck::default()
            },
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_errno(f, self.errno)?;
        if let Some(m) = &self.ext.message {
            write!(f, ": {m}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Rejection {}

fn fmt_errno(f: &mut fmt::Formatter<'_>, e: i32) -> fmt::Result {
    match errno::name(e) {
        Some(name) => write!(f, "{name} ({e})"),
        None => write!(f, "errno {e}"),
    }
}

/// Appends the `NLMSG_ERROR` reply to `request` with error `errno`
/// (positive; 0 makes it an ACK), as the kernel's `netlink_ack` does.
/// `port_id` is the requester's port, `request` the whole request message
/// (header included).
///
/// # Errors
///
/// [`DecodeError`] if `request` does not start with a netlink header.
pub fn encode_error(
    buf: &mut Vec<u8>,
    opts: AckOptions,
    port_id: u32,
    request: &[u8],
    errno: i32,
    ext: &ExtAck,
) -> Result<(), DecodeError> {
    let req_hdr = NlMsgHeader::parse(request)?;
    let req_payload = request
        .get(NLMSG_HDRLEN..req_hdr.len as usize)
        .unwrap_or(&request[NLMSG_HDRLEN..]);

    let capped = errno == 0 || opts.cap_ack;
    let mut flags = if capped { NLM_F_CAPPED } else { 0 };
    let tlvs = ext_ack_tlvs(opts, errno, ext);
    if !tlvs.is_empty() {
        flags |= NLM_F_ACK_TLVS;
    }

    let msg = MessageBuilder::start(buf, NLMSG_ERROR, flags, req_hdr.seq, port_id);
    buf.extend_from_slice(&(-errno).to_ne_bytes());
    buf.extend_from_slice(&req_hdr.to_bytes());
    if !capped {
        buf.extend_from_slice(req_payload);
        buf.resize(align(buf.len()), 0);
    }
    buf.extend_from_slice(&tlvs);
    msg.finish(buf);
    Ok(())
}

/// Appends an ACK (error 0) for `request`; `ext` may carry a warning
/// message, sent only when extended ACK is on.
///
/// # Errors
///
/// [`DecodeError`] if `request` does not start with a netlink header.
pub fn encode_ack(
    buf: &mut Vec<u8>,
    opts: AckOptions,
    port_id: u32,
    request: &[u8],
    ext: &ExtAck,
) -> Result<(), DecodeError> {
    encode_error(buf, opts, port_id, request, 0, ext)
}

/// Appends the `NLMSG_DONE` that ends a dump; `errno` is 0 for success or
/// the (positive) error of a dump that failed after it started.
pub fn encode_done(
    buf: &mut Vec<u8>,
    opts: AckOptions,
    port_id: u32,
    seq: u32,
    errno: i32,
    ext: &ExtAck,
) {
    let tlvs = ext_ack_tlvs(opts, errno, ext);
    let mut flags = NLM_F_MULTI;
    if !tlvs.is_empty() {
        flags |= NLM_F_ACK_TLVS;
    }
    let msg = MessageBuilder::start(buf, NLMSG_DONE, flags, seq, port_id);
    buf.extend_from_slice(&(-errno).to_ne_bytes());
    buf.extend_from_slice(&tlvs);
    msg.finish(buf);
}

/// The TLVs `netlink_ack_tlv_fill` would write: message and cookie always,
/// the rest only for errors; nothing unless extended ACK is on.
fn ext_ack_tlvs(opts: AckOptions, errno: i32, ext: &ExtAck) -> Vec<u8> {
    let mut out = Vec::new();
    if !opts.ext_ack {
        return out;
    }
    if let Some(m) = &ext.message {
        attr::put_str(&mut out, NLMSGERR_ATTR_MSG, m);
    }
    if let Some(c) = &ext.cookie {
        attr::put(&mut out, NLMSGERR_ATTR_COOKIE, c);
    }
    if errno == 0 {
        return out;
    }
    if let Some(off) = ext.bad_attr {
        attr::put_u32(&mut out, NLMSGERR_ATTR_OFFS, off);
    }
    if let Some(p) = &ext.policy {
        p.encode(&mut out, NLMSGERR_ATTR_POLICY);
    }
    if let Some(t) = ext.miss_type {
        attr::put_u32(&mut out, NLMSGERR_ATTR_MISS_TYPE, t);
    }
    if let Some(n) = ext.miss_nest {
        attr::put_u32(&mut out, NLMSGERR_ATTR_MISS_NEST, n);
    }
    out
}

/// What a client learns from an `NLMSG_ERROR` or an `NLMSG_DONE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReport {
    /// Positive errno; 0 for an ACK or a successful DONE.
    pub errno: i32,
    /// The request header echoed in `NLMSG_ERROR` (`None` for DONE).
    pub request_header: Option<NlMsgHeader>,
    /// The request payload echoed in an uncapped error.
    pub request_payload: Option<Vec<u8>>,
    /// Extended-ACK content.
    pub ext: ExtAck,
}

impl ErrorReport {
    /// Parses an `NLMSG_ERROR` or `NLMSG_DONE` message.
    ///
    /// A DONE whose payload is shorter than 4 bytes (old kernels and some
    /// servers send an empty one) counts as success.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] for any other message type or a truncated payload.
    pub fn parse(msg: &NlMsg<'_>) -> Result<Self, DecodeError> {
        let flags = msg.header.flags;
        match msg.header.ty {
            NLMSG_ERROR => {
                let p = msg.payload;
                let code = read_i32(p).ok_or(DecodeError::Truncated("nlmsgerr"))?;
                let req = NlMsgHeader::parse(&p[4..])?;
                let mut tlv_start = 4 + NLMSG_HDRLEN;
                let mut request_payload = None;
                if flags & NLM_F_CAPPED == 0 {
                    let n = (req.len as usize).saturating_sub(NLMSG_HDRLEN);
                    let bytes = p
                        .get(tlv_start..tlv_start + n)
                        .ok_or(DecodeError::Truncated("echoed request"))?;
                    request_payload = Some(bytes.to_vec());
                    tlv_start += align(n);
                }
                let ext = if flags & NLM_F_ACK_TLVS != 0 {
                    parse_tlvs(p.get(tlv_start..).unwrap_or(&[]))?
                } else {
                    ExtAck::default()
                };
                Ok(Self {
                    errno: code.checked_neg().unwrap_or(i32::MAX),
                    request_header: Some(req),
                    request_payload,
                    ext,
                })
            }
            NLMSG_DONE => {
                let code = read_i32(msg.payload).unwrap_or(0);
                let ext = if flags & NLM_F_ACK_TLVS != 0 {
                    parse_tlvs(msg.payload.get(4..).unwrap_or(&[]))?
                } else {
                    ExtAck::default()
                };
                Ok(Self {
                    errno: code.checked_neg().unwrap_or(i32::MAX),
                    request_header: None,
                    request_payload: None,
                    ext,
                })
            }
            _ => Err(DecodeError::Unexpected("not an error or done message")),
        }
    }

    /// Whether this reports success (an ACK or a clean DONE).
    pub fn is_ok(&self) -> bool {
        self.errno == 0
    }

    /// The chain of attribute types leading to the offending attribute in
    /// `request` (the whole request message as sent), outermost first.
    /// `attrs_start` is where the request's attributes begin: 20 for
    /// generic netlink, 32 for rtnetlink link messages.
    pub fn attribute_path(&self, request: &[u8], attrs_start: usize) -> Option<Vec<u16>> {
        locate_attr(request, attrs_start, self.ext.bad_attr? as usize)
    }

    /// Like [`ErrorReport::attribute_path`] for the nest that a missing
    /// attribute belongs to.
    pub fn missing_nest_path(&self, request: &[u8], attrs_start: usize) -> Option<Vec<u16>> {
        locate_attr(request, attrs_start, self.ext.miss_nest? as usize)
    }
}

impl fmt::Display for ErrorReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_errno(f, self.errno)?;
        if let Some(m) = &self.ext.message {
            write!(f, ": {m}")?;
        }
        if let Some(o) = self.ext.bad_attr {
            write!(f, " (attribute at offset {o})")?;
        }
        if let Some(t) = self.ext.miss_type {
            write!(f, " (missing attribute {t}")?;
            if let Some(n) = self.ext.miss_nest {
                write!(f, " in nest at offset {n}")?;
            }
            write!(f, ")")?;
        }
        Ok(())
    }
}

impl std::error::Error for ErrorReport {}

/// What one received message means to a client waiting for a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<'a> {
    /// A data message (a reply, a dump part or a notification).
    Message(NlMsg<'a>),
    /// `NLMSG_ERROR` with error 0.
    Ack(ErrorReport),
    /// `NLMSG_ERROR` with an error.
    Error(ErrorReport),
    /// `NLMSG_DONE`: the end of a dump, successful or not (check
    /// [`ErrorReport::errno`]: a dump that fails after it started reports
    /// its error here).
    Done(ErrorReport),
}

impl<'a> Reply<'a> {
    /// Sorts a received message.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] for a malformed error or done message.
    pub fn classify(msg: NlMsg<'a>) -> Result<Self, DecodeError> {
        Ok(match msg.header.ty {
            NLMSG_ERROR => {
                let rep = ErrorReport::parse(&msg)?;
                if rep.is_ok() {
                    Self::Ack(rep)
                } else {
                    Self::Error(rep)
                }
            }
            NLMSG_DONE => Self::Done(ErrorReport::parse(&msg)?),
            _ => Self::Message(msg),
        })
    }
}

fn read_i32(p: &[u8]) -> Option<i32> {
    Some(i32::from_ne_bytes(p.get(..4)?.try_into().ok()?))
}

fn parse_tlvs(buf: &[u8]) -> Result<ExtAck, DecodeError> {
    let mut ext = ExtAck::default();
    for a in Attrs::new(buf, 0) {
        let a = a?;
        match a.ty() {
            NLMSGERR_ATTR_MSG => ext.message = Some(a.string()?.to_owned()),
            NLMSGERR_ATTR_OFFS => ext.bad_attr = Some(a.u32()?),
            NLMSGERR_ATTR_COOKIE => ext.cookie = Some(a.payload().to_vec()),
            NLMSGERR_ATTR_POLICY => {
                ext.policy = Some(Box::new(PolicyDescription::parse(a.payload())?));
            }
            NLMSGERR_ATTR_MISS_TYPE => ext.miss_type = Some(a.u32()?),
            NLMSGERR_ATTR_MISS_NEST => ext.miss_nest = Some(a.u32()?),
            _ => {} // a newer kernel's TLV: ignored, never an error
        }
    }
    Ok(ext)
}

/// Finds the attribute whose header is at `offset` in `msg`, descending
/// into any attribute whose payload parses as a list of attributes.
pub fn locate_attr(msg: &[u8], attrs_start: usize, offset: usize) -> Option<Vec<u16>> {
    let hdr = NlMsgHeader::parse(msg).ok()?;
    let end = (hdr.len as usize).min(msg.len());
    let list = msg.get(attrs_start..end)?;
    let mut path = Vec::new();
    find_in(Attrs::new(list, attrs_start), offset, &mut path).then_some(path)
}

fn find_in(attrs: Attrs<'_>, offset: usize, path: &mut Vec<u16>) -> bool {
    for a in attrs {
        let Ok(a) = a else { return false };
        if a.offset() == offset {
            path.push(a.ty());
            return true;
        }
        let inside = a.offset() < offset && offset < a.offset() + 4 + a.payload().len();
        if inside {
            path.push(a.ty());
            return find_in(a.nested(), offset, path);
        }
    }
    false
}

/// `NL_ATTR_TYPE_*` (`include/uapi/linux/netlink.h`): the kind of
/// attribute a policy describes.
pub mod nl_attr_type {
    /// Flag (no payload).
    pub const FLAG: u32 = 1;
    /// `u8`.
    pub const U8: u32 = 2;
    /// `u16` (also big-endian `u16`).
    pub const U16: u32 = 3;
    /// `u32` (also big-endian `u32`).
    pub const U32: u32 = 4;
    /// `u64`.
    pub const U64: u32 = 5;
    /// `s32`.
    pub const S32: u32 = 8;
    /// Binary blob.
    pub const BINARY: u32 = 10;
    /// String.
    pub const STRING: u32 = 11;
    /// NUL-terminated string.
    pub const NUL_STRING: u32 = 12;
    /// Nest.
    pub const NESTED: u32 = 13;
    /// Variable-width unsigned (`uint`).
    pub const UINT: u32 = 17;
}

/// `NL_POLICY_TYPE_ATTR_*` numbers used inside a policy description.
mod pol_attr {
    pub(super) const TYPE: u16 = 1;
    pub(super) const MIN_VALUE_S: u16 = 2;
    pub(super) const MAX_VALUE_S: u16 = 3;
    pub(super) const MIN_VALUE_U: u16 = 4;
    pub(super) const MAX_VALUE_U: u16 = 5;
    pub(super) const MIN_LENGTH: u16 = 6;
    pub(super) const MAX_LENGTH: u16 = 7;
    pub(super) const POLICY_IDX: u16 = 8;
    pub(super) const POLICY_MAXTYPE: u16 = 9;
    pub(super) const MASK: u16 = 12;
}

/// The description of one attribute policy, as the kernel writes it into
/// `NLMSGERR_ATTR_POLICY` (`net/netlink/policy.c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PolicyDescription {
    /// `NL_ATTR_TYPE_*`, see [`nl_attr_type`].
    pub attr_type: u32,
    /// Smallest accepted unsigned value.
    pub min_value_u: Option<u64>,
    /// Largest accepted unsigned value.
    pub max_value_u: Option<u64>,
    /// Smallest accepted signed value.
    pub min_value_s: Option<i64>,
    /// Largest accepted signed value.
    pub max_value_s: Option<i64>,
    /// Smallest accepted payload length.
    pub min_length: Option<u32>,
    /// Largest accepted payload length.
    pub max_length: Option<u32>,
    /// Accepted bits.
    pub mask: Option<u64>,
    /// Index of a nested policy (policy dumps only).
    pub policy_idx: Option<u32>,
    /// Maximum type of a nested policy (policy dumps only).
    pub policy_maxtype: Option<u32>,
}

impl PolicyDescription {
    /// Appends the description as nest `ty`, members in the kernel's order
    /// (bounds first, type last). 64-bit values carry no pad attribute: on
    /// x86-64 and arm64 the kernel's `nla_put_u64_64bit` adds none.
    pub fn encode(&self, buf: &mut Vec<u8>, ty: u16) {
        let nest = attr::nest_start(buf, ty);
        if let Some(v) = self.policy_idx {
            attr::put_u32(buf, pol_attr::POLICY_IDX, v);
        }
        if let Some(v) = self.policy_maxtype {
            attr::put_u32(buf, pol_attr::POLICY_MAXTYPE, v);
        }
        if let Some(v) = self.mask {
            attr::put_u64(buf, pol_attr::MASK, v);
        }
        if let Some(v) = self.min_value_u {
            attr::put_u64(buf, pol_attr::MIN_VALUE_U, v);
        }
        if let Some(v) = self.max_value_u {
            attr::put_u64(buf, pol_attr::MAX_VALUE_U, v);
        }
        if let Some(v) = self.min_value_s {
            attr::put(buf, pol_attr::MIN_VALUE_S, &v.to_ne_bytes());
        }
        if let Some(v) = self.max_value_s {
            attr::put(buf, pol_attr::MAX_VALUE_S, &v.to_ne_bytes());
        }
        if let Some(v) = self.min_length {
            attr::put_u32(buf, pol_attr::MIN_LENGTH, v);
        }
        if let Some(v) = self.max_length {
            attr::put_u32(buf, pol_attr::MAX_LENGTH, v);
        }
        attr::put_u32(buf, pol_attr::TYPE, self.attr_type);
        nest.end(buf);
    }

    /// Parses the payload of an `NLMSGERR_ATTR_POLICY` nest; unknown
    /// members are ignored.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] on a malformed member.
    pub fn parse(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        for a in Attrs::new(payload, 0) {
            let a = a?;
            match a.ty() {
                pol_attr::TYPE => p.attr_type = a.u32()?,
                pol_attr::MIN_VALUE_U => p.min_value_u = Some(a.u64()?),
                pol_attr::MAX_VALUE_U => p.max_value_u = Some(a.u64()?),
                pol_attr::MIN_VALUE_S => p.min_value_s = Some(a.u64()? as i64),
                pol_attr::MAX_VALUE_S => p.max_value_s = Some(a.u64()? as i64),
                pol_attr::MIN_LENGTH => p.min_length = Some(a.u32()?),
                pol_attr::MAX_LENGTH => p.max_length = Some(a.u32()?),
                pol_attr::MASK => p.mask = Some(a.u64()?),
                pol_attr::POLICY_IDX => p.policy_idx = Some(a.u32()?),
                pol_attr::POLICY_MAXTYPE => p.policy_maxtype = Some(a.u32()?),
                _ => {}
            }
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nlmsg::{NLM_F_ACK, NLM_F_REQUEST};

    /// A 28-byte request: header (type 0x1c, REQUEST|ACK, seq 9, pid 0),
    /// genl header (cmd 4, version 1), one u32 attribute (type 1, value 3).
    fn request() -> Vec<u8> {
        let mut buf = Vec::new();
        let m = MessageBuilder::start(&mut buf, 0x1c, NLM_F_REQUEST | NLM_F_ACK, 9, 0);
        buf.extend_from_slice(&[4, 1, 0, 0]);
        attr::put_u32(&mut buf, 1, 3);
        m.finish(&mut buf);
        buf
    }

    #[test]
    fn plain_ack_is_capped_without_tlvs() {
        let req = request();
        let mut out = Vec::new();
        encode_ack(
            &mut out,
            AckOptions::default(),
            77,
            &req,
            &ExtAck::default(),
        )
        .unwrap();
        let mut expected = Vec::new();
        // header: len 36 = 16 + 4 (error) + 16 (request header), type 2,
        // flags CAPPED, seq 9 (from the request), pid 77 (the requester)
        expected.extend_from_slice(&[36, 0, 0, 0, 2, 0, 0x00, 0x01, 9, 0, 0, 0, 77, 0, 0, 0]);
        expected.extend_from_slice(&0i32.to_ne_bytes());
        expected.extend_from_slice(&req[..16]);
        assert_eq!(out, expected);

        let msg = NlMsg::parse(&out).unwrap();
        let rep = ErrorReport::parse(&msg).unwrap();
        assert!(rep.is_ok());
        assert_eq!(rep.request_header.unwrap().seq, 9);
        assert_eq!(rep.request_payload, None);
    }

    #[test]
    fn uncapped_error_echoes_request_and_tlvs() {
        let req = request();
        let ext = ExtAck {
            message: Some("ovpn: x".into()),
            bad_attr: Some(20),
            miss_type: Some(2),
            miss_nest: None,
            ..ExtAck::default()
        };
        let opts = AckOptions {
            ext_ack: true,
            cap_ack: false,
        };
        let mut out = Vec::new();
        encode_error(&mut out, opts, 5, &req, errno::EINVAL, &ext).unwrap();
        // flags: ACK_TLVS only (not capped)
        assert_eq!(u16::from_ne_bytes([out[6], out[7]]), NLM_F_ACK_TLVS);
        // error -22
        assert_eq!(&out[16..20], &(-22i32).to_ne_bytes());
        // the whole request follows
        assert_eq!(&out[20..48], &req[..]);
        // TLVs: MSG "ovpn: x\0" (len 12), OFFS 20, MISS_TYPE 2
        assert_eq!(&out[48..52], &[12, 0, 1, 0]);
        assert_eq!(&out[52..60], b"ovpn: x\0");
        assert_eq!(&out[60..68], &[8, 0, 2, 0, 20, 0, 0, 0]);
        assert_eq!(&out[68..76], &[8, 0, 5, 0, 2, 0, 0, 0]);
        assert_eq!(out.len(), 76);

        let rep = ErrorReport::parse(&NlMsg::parse(&out).unwrap()).unwrap();
        assert_eq!(rep.errno, errno::EINVAL);
        assert_eq!(rep.ext, ext);
        assert_eq!(rep.request_payload.as_deref(), Some(&req[16..]));
        assert_eq!(rep.attribute_path(&req, 20), Some(vec![1]));
    }

    #[test]
    fn no_tlvs_without_ext_ack_even_with_content() {
        let req = request();
        let mut out = Vec::new();
        let opts = AckOptions {
            ext_ack: false,
            cap_ack: true,
        };
        let r = Rejection::msg(errno::ENOENT, "ovpn: gone");
        encode_error(&mut out, opts, 0, &req, r.errno, &r.ext).unwrap();
        assert_eq!(out.len(), 36);
        assert_eq!(u16::from_ne_bytes([out[6], out[7]]), NLM_F_CAPPED);
    }

    #[test]
    fn ack_carries_only_message_tlv() {
        let req = request();
        let ext = ExtAck {
            message: Some("warn".into()),
            bad_attr: Some(20), // dropped on success, as the kernel does
            ..ExtAck::default()
        };
        let mut out = Vec::new();
        let opts = AckOptions {
            ext_ack: true,
            cap_ack: false,
        };
        encode_ack(&mut out, opts, 0, &req, &ext).unwrap();
        let rep = ErrorReport::parse(&NlMsg::parse(&out).unwrap()).unwrap();
        assert_eq!(rep.ext.message.as_deref(), Some("warn"));
        assert_eq!(rep.ext.bad_attr, None);
    }

    #[test]
    fn done_with_error_and_tlvs() {
        let mut out = Vec::new();
        let opts = AckOptions {
            ext_ack: true,
            cap_ack: false,
        };
        let ext = ExtAck {
            message: Some("ovpn: ifindex does not match any interface".into()),
            ..ExtAck::default()
        };
        encode_done(&mut out, opts, 3, 8, errno::ENODEV, &ext);
        // type 3, flags MULTI|ACK_TLVS, payload -19 then the MSG TLV
        assert_eq!(&out[4..8], &[3, 0, 0x02, 0x02]);
        assert_eq!(&out[16..20], &(-19i32).to_ne_bytes());
        let rep = ErrorReport::parse(&NlMsg::parse(&out).unwrap()).unwrap();
        assert_eq!(rep.errno, errno::ENODEV);
        assert_eq!(rep.ext, ext);

        let mut ok = Vec::new();
        encode_done(&mut ok, opts, 3, 8, 0, &ExtAck::default());
        assert_eq!(ok.len(), 20);
        assert_eq!(&ok[4..8], &[3, 0, 0x02, 0]);
    }

    #[test]
    fn classify_a_dump_buffer() {
        // Two dump parts, then a DONE that reports a failure mid-dump.
        let mut buf = Vec::new();
        for seq in [4, 4] {
            let m = MessageBuilder::start(&mut buf, 0x1c, NLM_F_MULTI, seq, 1);
            buf.extend_from_slice(&[3, 1, 0, 0]);
            m.finish(&mut buf);
        }
        let opts = AckOptions {
            ext_ack: true,
            cap_ack: false,
        };
        encode_done(&mut buf, opts, 1, 4, errno::EINVAL, &ExtAck::default());
        let kinds: Vec<_> = crate::nlmsg::Messages::new(&buf)
            .map(|m| Reply::classify(m.unwrap()).unwrap())
            .collect();
        assert!(matches!(kinds[0], Reply::Message(_)));
        assert!(matches!(kinds[1], Reply::Message(_)));
        match &kinds[2] {
            Reply::Done(rep) => assert_eq!(rep.errno, errno::EINVAL),
            other => panic!("expected DONE, got {other:?}"),
        }
        let mut ack = Vec::new();
        encode_ack(&mut ack, opts, 1, &request(), &ExtAck::default()).unwrap();
        let reply = Reply::classify(NlMsg::parse(&ack).unwrap()).unwrap();
        assert!(matches!(reply, Reply::Ack(_)));
    }

    #[test]
    fn policy_round_trip_and_layout() {
        let p = PolicyDescription {
            attr_type: nl_attr_type::U32,
            min_value_u: Some(0),
            max_value_u: Some(0xff_ffff),
            ..PolicyDescription::default()
        };
        let mut buf = Vec::new();
        p.encode(&mut buf, NLMSGERR_ATTR_POLICY);
        // nest 4 + 12 + 12 + 8 = 36, type 4 | NESTED
        assert_eq!(&buf[..4], &[36, 0, 4, 0x80]);
        assert_eq!(&buf[4..8], &[12, 0, 4, 0]);
        assert_eq!(&buf[16..20], &[12, 0, 5, 0]);
        assert_eq!(&buf[20..28], &0xff_ffffu64.to_ne_bytes());
        assert_eq!(&buf[28..36], &[8, 0, 1, 0, 4, 0, 0, 0]);
        assert_eq!(PolicyDescription::parse(&buf[4..]).unwrap(), p);
    }

    #[test]
    fn locate_nested_attribute() {
        let mut req = Vec::new();
        let m = MessageBuilder::start(&mut req, 0x1c, NLM_F_REQUEST, 1, 0);
        req.extend_from_slice(&[1, 1, 0, 0]);
        attr::put_u32(&mut req, 1, 5); // at 20
        let n = attr::nest_start(&mut req, 2); // at 28
        attr::put_u32(&mut req, 1, 9); // at 32
        attr::put_be16(&mut req, 5, 0); // at 40
        n.end(&mut req);
        m.finish(&mut req);
        assert_eq!(locate_attr(&req, 20, 40), Some(vec![2, 5]));
        assert_eq!(locate_attr(&req, 20, 28), Some(vec![2]));
        assert_eq!(locate_attr(&req, 20, 21), None);
    }
}
