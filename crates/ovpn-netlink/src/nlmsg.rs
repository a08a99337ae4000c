//! Netlink message framing: the 16-byte `nlmsghdr`, its type and flag
//! constants, iteration over a buffer holding several messages, and a
//! builder that appends a message to a `Vec<u8>` and patches its length.
//!
//! Layout (`include/uapi/linux/netlink.h`, host byte order, which is
//! little-endian on every machine we target):
//!
//! ```text
//! 0      4      6       8      12     16
//! | len  | type | flags | seq  | pid  | payload ... (padded to 4 bytes)
//! ```
//!
//! Building a request:
//!
//! ```
//! use ovpn_netlink::nlmsg::{MessageBuilder, NlMsgHeader, NLM_F_REQUEST, NLM_F_ACK};
//! let mut buf = Vec::new();
//! let msg = MessageBuilder::start(&mut buf, 0x1c, NLM_F_REQUEST | NLM_F_ACK, 7, 0);
//! buf.extend_from_slice(&[1, 1, 0, 0]); // e.g. a genl header
//! msg.finish(&mut buf);
//! let hdr = NlMsgHeader::parse(&buf).unwrap();
//! assert_eq!(hdr.len, 20);
//! ```
//!
//! Parsing a receive buffer: [`Messages::new`] yields each message as an
//! [`NlMsg`] (header plus payload slice) and stops with an error on a
//! malformed length instead of reading past the buffer.

use crate::DecodeError;

/// Size of `struct nlmsghdr`.
pub const NLMSG_HDRLEN: usize = 16;

/// `NLMSG_NOOP`: nothing, to be ignored.
pub const NLMSG_NOOP: u16 = 1;
/// `NLMSG_ERROR`: an error or, with error code 0, an acknowledgement.
pub const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: end of a multi-part (dump) reply.
pub const NLMSG_DONE: u16 = 3;
/// `NLMSG_OVERRUN`: data lost.
pub const NLMSG_OVERRUN: u16 = 4;
/// Message types below this value are control messages.
pub const NLMSG_MIN_TYPE: u16 = 16;

/// `NLM_F_REQUEST`: the message is a request.
pub const NLM_F_REQUEST: u16 = 0x01;
/// `NLM_F_MULTI`: part of a multi-part reply, terminated by `NLMSG_DONE`.
pub const NLM_F_MULTI: u16 = 0x02;
/// `NLM_F_ACK`: the sender wants an acknowledgement.
pub const NLM_F_ACK: u16 = 0x04;
/// `NLM_F_ECHO`: echo this request.
pub const NLM_F_ECHO: u16 = 0x08;
/// `NLM_F_DUMP_INTR`: a dump was interrupted by a change of the data.
pub const NLM_F_DUMP_INTR: u16 = 0x10;
/// `NLM_F_ROOT`: return the whole table (first half of `NLM_F_DUMP`).
pub const NLM_F_ROOT: u16 = 0x100;
/// `NLM_F_MATCH`: return all matching entries (second half of `NLM_F_DUMP`).
pub const NLM_F_MATCH: u16 = 0x200;
/// `NLM_F_DUMP`: a dump request; both bits must be set for the kernel to
/// treat the request as a dump.
pub const NLM_F_DUMP: u16 = NLM_F_ROOT | NLM_F_MATCH;
/// `NLM_F_EXCL` (new requests): fail if the object exists.
pub const NLM_F_EXCL: u16 = 0x200;
/// `NLM_F_CREATE` (new requests): create the object if it does not exist.
pub const NLM_F_CREATE: u16 = 0x400;
/// `NLM_F_CAPPED` (on `NLMSG_ERROR`): the original request was not copied.
pub const NLM_F_CAPPED: u16 = 0x100;
/// `NLM_F_ACK_TLVS` (on `NLMSG_ERROR` / `NLMSG_DONE`): extended-ACK TLVs follow.
pub const NLM_F_ACK_TLVS: u16 = 0x200;

/// Rounds a length up to netlink's 4-byte alignment.
pub const fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// A decoded `struct nlmsghdr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NlMsgHeader {
    /// Length of the message including this header (`nlmsg_len`).
    pub len: u32,
    /// Message type: a control type, a family id or an rtnetlink type.
    pub ty: u16,
    /// `NLM_F_*` flags.
    pub flags: u16,
    /// Sequence number chosen by the requester and echoed in replies.
    pub seq: u32,
    /// Port id of the sender (0 for the kernel).
    pub pid: u32,
}

impl NlMsgHeader {
    /// Reads a header from the first 16 bytes of `buf`.
    ///
    /// # Errors
    ///
    /// [`DecodeError::Truncated`] if `buf` is shorter than a header.
    pub fn parse(buf: &[u8]) -> Result<Self, DecodeError> {
        let b = buf
            .get(..NLMSG_HDRLEN)
            .ok_or(DecodeError::Truncated("netlink header"))?;
        Ok(Self {
            len: u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
            ty: u16::from_ne_bytes([b[4], b[5]]),
            flags: u16::from_ne_bytes([b[6], b[7]]),
            seq: u32::from_ne_bytes([b[8], b[9], b[10], b[11]]),
            pid: u32::from_ne_bytes([b[12], b[13], b[14], b[15]]),
        })
    }

    /// The 16 bytes of this header.
    pub fn to_bytes(&self) -> [u8; NLMSG_HDRLEN] {
        let mut out = [0u8; NLMSG_HDRLEN];
        out[0..4].copy_from_slice(&self.len.to_ne_bytes());
        out[4..6].copy_from_slice(&self.ty.to_ne_bytes());
        out[6..8].copy_from_slice(&self.flags.to_ne_bytes());
        out[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        out[12..16].copy_from_slice(&self.pid.to_ne_bytes());
        out
    }

    /// Whether a kernel would hand this message to a protocol handler
    /// (`net/netlink/af_netlink.c`, `netlink_rcv_skb`): only requests
    /// (`NLM_F_REQUEST`) of a type at or above `NLMSG_MIN_TYPE`. Anything
    /// else is skipped and answered with an ACK (error 0) only when it
    /// carries `NLM_F_ACK`.
    pub fn is_dispatched_request(&self) -> bool {
        self.flags & NLM_F_REQUEST != 0 && self.ty >= NLMSG_MIN_TYPE
    }

    /// Whether both halves of `NLM_F_DUMP` are set, the kernel's test for a
    /// dump request (`net/netlink/genetlink.c`).
    pub fn is_dump(&self) -> bool {
        self.flags & NLM_F_DUMP == NLM_F_DUMP
    }
}

/// One message of a buffer: its header, its payload (without padding) and
/// the whole message bytes (header included, as needed for error replies
/// and extended-ACK offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NlMsg<'a> {
    /// The decoded header.
    pub header: NlMsgHeader,
    /// The bytes after the header, `len - 16` of them.
    pub payload: &'a [u8],
    /// The whole message, header included, `len` bytes.
    pub bytes: &'a [u8],
}

impl<'a> NlMsg<'a> {
    /// Parses exactly one message at the start of `buf`.
    ///
    /// # Errors
    ///
    /// [`DecodeError::Truncated`] or [`DecodeError::BadLength`] when the
    /// header's length is shorter than a header or longer than `buf`.
    pub fn parse(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let header = NlMsgHeader::parse(buf)?;
        let len = header.len as usize;
        if len < NLMSG_HDRLEN {
            return Err(DecodeError::BadLength("netlink message"));
        }
        let bytes = buf
            .get(..len)
            .ok_or(DecodeError::Truncated("netlink message"))?;
        Ok(Self {
            header,
            payload: &bytes[NLMSG_HDRLEN..],
            bytes,
        })
    }
}

/// Iterator over the messages of a receive buffer.
///
/// After the first malformed message it yields that error once and then
/// stops, as the kernel's own loop does.
#[derive(Debug, Clone)]
pub struct Messages<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Messages<'a> {
    /// Iterates over the messages in `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            rest: buf,
            failed: false,
        }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<NlMsg<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        match NlMsg::parse(self.rest) {
            Ok(msg) => {
                let advance = align(msg.bytes.len()).min(self.rest.len());
                self.rest = &self.rest[advance..];
                Some(Ok(msg))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// A message under construction in a `Vec<u8>`: [`MessageBuilder::start`]
/// writes the header with a zero length, the caller appends the payload,
/// and [`MessageBuilder::finish`] pads it and writes the final length.
#[derive(Debug)]
#[must_use = "call finish() to write the message length"]
pub struct MessageBuilder {
    start: usize,
}

impl MessageBuilder {
    /// Appends a header to `buf` and returns the token to finish it.
    pub fn start(buf: &mut Vec<u8>, ty: u16, flags: u16, seq: u32, pid: u32) -> Self {
        let start = buf.len();
        let header = NlMsgHeader {
            len: 0,
            ty,
            flags,
            seq,
            pid,
        };
        buf.extend_from_slice(&header.to_bytes());
        Self { start }
    }

    /// Offset of this message's header in the buffer.
    pub fn offset(&self) -> usize {
        self.start
    }

    /// Pads the payload to 4 bytes and writes the message length.
    ///
    /// # Panics
    ///
    /// If the message grew beyond 4 GiB, which no netlink message can.
    pub fn finish(self, buf: &mut Vec<u8>) {
        let len = align(buf.len() - self.start);
        buf.resize(self.start + len, 0);
        let len = u32::try_from(len).expect("netlink message larger than 4 GiB");
        buf[self.start..self.start + 4].copy_from_slice(&len.to_ne_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        // len 20, type 0x1c, flags REQUEST|ACK, seq 7, pid 0x11223344
        let bytes = [
            20, 0, 0, 0, 0x1c, 0, 5, 0, 7, 0, 0, 0, 0x44, 0x33, 0x22, 0x11,
        ];
        let h = NlMsgHeader::parse(&bytes).unwrap();
        assert_eq!(
            h,
            NlMsgHeader {
                len: 20,
                ty: 0x1c,
                flags: NLM_F_REQUEST | NLM_F_ACK,
                seq: 7,
                pid: 0x1122_3344
            }
        );
        assert_eq!(h.to_bytes(), bytes);
    }

    #[test]
    fn builder_pads_and_patches_length() {
        let mut buf = vec![0xee]; // something before the message
        let m = MessageBuilder::start(&mut buf, 16, NLM_F_REQUEST, 1, 2);
        buf.extend_from_slice(&[1, 2, 3]);
        m.finish(&mut buf);
        // 16 header + 3 payload = 19, padded to 20 counted from the header,
        // after the 1 leading byte.
        assert_eq!(buf.len(), 21);
        assert_eq!(&buf[1..5], &20u32.to_ne_bytes()[..]);
        let msg = NlMsg::parse(&buf[1..]).unwrap();
        assert_eq!(msg.payload, &[1, 2, 3, 0][..]);
    }

    #[test]
    fn iterates_several_messages_and_stops_on_garbage() {
        let mut buf = Vec::new();
        for seq in 1..=2 {
            let m = MessageBuilder::start(&mut buf, NLMSG_NOOP, 0, seq, 0);
            buf.extend_from_slice(&[seq as u8]);
            m.finish(&mut buf);
        }
        // A third header claiming 100 bytes with only 16 present.
        let bad = NlMsgHeader {
            len: 100,
            ..NlMsgHeader::default()
        };
        buf.extend_from_slice(&bad.to_bytes());
        let items: Vec<_> = Messages::new(&buf).collect();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].as_ref().unwrap().header.seq, 1);
        assert_eq!(items[1].as_ref().unwrap().payload, &[2, 0, 0, 0]); // padded by the builder
        assert!(matches!(items[2], Err(DecodeError::Truncated(_))));
    }

    #[test]
    fn rejects_length_below_header() {
        let h = NlMsgHeader {
            len: 8,
            ..NlMsgHeader::default()
        };
        assert!(matches!(
            NlMsg::parse(&h.to_bytes()),
            Err(DecodeError::BadLength(_))
        ));
    }

    #[test]
    fn only_requests_of_non_control_types_are_dispatched() {
        let mut h = NlMsgHeader {
            ty: 0x1c,
            flags: NLM_F_ACK,
            ..NlMsgHeader::default()
        };
        assert!(!h.is_dispatched_request());
        h.flags |= NLM_F_REQUEST;
        assert!(h.is_dispatched_request());
        h.ty = NLMSG_DONE;
        assert!(!h.is_dispatched_request());
    }

    #[test]
    fn dump_needs_both_bits() {
        let mut h = NlMsgHeader {
            flags: NLM_F_REQUEST | NLM_F_ROOT,
            ..NlMsgHeader::default()
        };
        assert!(!h.is_dump());
        h.flags |= NLM_F_MATCH;
        assert!(h.is_dump());
    }
}
