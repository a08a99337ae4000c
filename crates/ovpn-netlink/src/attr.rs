//! Netlink attributes (`struct nlattr`, `include/uapi/linux/netlink.h`):
//! a zero-copy, checked reader over `&[u8]` and a writer appending to a
//! `Vec<u8>`.
//!
//! ```text
//! 0        2        4
//! | nla_len | nla_type | payload ... (padded to 4 bytes)
//! ```
//!
//! `nla_len` counts the 4-byte header and the payload but not the padding.
//! The top two bits of `nla_type` are flags: [`NLA_F_NESTED`] marks a nest
//! (its payload is a list of attributes), [`NLA_F_NET_BYTEORDER`] marks a
//! big-endian integer. [`Attr::ty`] strips them.
//!
//! Every reader remembers the attribute's offset from the start of the
//! netlink message it came from: extended ACKs report the offending
//! attribute by that offset (`net/netlink/af_netlink.c`).
//!
//! Writing a nest:
//!
//! ```
//! use ovpn_netlink::attr::{self, Attrs};
//! let mut buf = Vec::new();
//! let nest = attr::nest_start(&mut buf, 2);
//! attr::put_u32(&mut buf, 1, 42);
//! nest.end(&mut buf);
//! let outer = Attrs::new(&buf, 0).next().unwrap().unwrap();
//! assert!(outer.is_nested());
//! let inner = outer.nested().next().unwrap().unwrap();
//! assert_eq!((inner.ty(), inner.u32().unwrap(), inner.offset()), (1, 42, 4));
//! ```

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::DecodeError;
use crate::nlmsg::align;

/// Size of `struct nlattr`.
pub const NLA_HDRLEN: usize = 4;
/// Type flag: the payload is a list of attributes.
pub const NLA_F_NESTED: u16 = 0x8000;
/// Type flag: the payload is an integer in network byte order.
pub const NLA_F_NET_BYTEORDER: u16 = 0x4000;
/// Mask leaving the attribute type without its flags.
pub const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);

/// One attribute inside a message buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr<'a> {
    raw_type: u16,
    payload: &'a [u8],
    offset: usize,
}

impl<'a> Attr<'a> {
    /// Attribute type without the flag bits.
    pub fn ty(&self) -> u16 {
        self.raw_type & NLA_TYPE_MASK
    }

    /// The type field as sent, flags included.
    pub fn raw_type(&self) -> u16 {
        self.raw_type
    }

    /// Whether [`NLA_F_NESTED`] is set.
    pub fn is_nested(&self) -> bool {
        self.raw_type & NLA_F_NESTED != 0
    }

    /// Whether [`NLA_F_NET_BYTEORDER`] is set.
    pub fn is_net_byteorder(&self) -> bool {
        self.raw_type & NLA_F_NET_BYTEORDER != 0
    }

    /// The payload, without header and padding.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// Offset of this attribute's header from the start of the message
    /// (or of whatever base the outermost [`Attrs`] was given).
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The attributes inside this one's payload.
    pub fn nested(&self) -> Attrs<'a> {
        Attrs::new(self.payload, self.offset + NLA_HDRLEN)
    }

    fn fixed<const N: usize>(&self, what: &'static str) -> Result<[u8; N], DecodeError> {
        self.payload.try_into().map_err(|_| DecodeError::AttrSize {
            what,
            ty: self.ty(),
            len: self.payload.len(),
        })
    }

    /// Payload as a `u8`.
    ///
    /// # Errors
    ///
    /// [`DecodeError::AttrSize`] unless the payload is exactly 1 byte.
    pub fn u8(&self) -> Result<u8, DecodeError> {
        Ok(self.fixed::<1>("u8")?[0])
    }

    /// Payload as a host-order `u16`.
    ///
    /// # Errors
    ///
    /// [`DecodeError::AttrSize`] unless the payload is exactly 2 bytes.
    pub fn u16(&self) -> Result<u16, DecodeError> {
        Ok(u16::from_ne_bytes(self.fixed("u16")?))
    }

    /// Payload as a host-order `u32`.
    ///
    /// # Errors
    ///
    /// [`DecodeError::AttrSize`] unless the payload is exactly 4 bytes.
    pub fn u32(&self) -> Result<u32, DecodeError> {
        Ok(u32::from_ne_bytes(self.fixed("u32")?))
    }

    /// Payload as a host-order `u64`.
    ///
    /// # Errors
    ///
    /// [`DecodeError::AttrSize`] unless the payload is exactly 8 bytes.
    pub fn u64(&self) -> Result<u64, DecodeError> {
        Ok(u64::from_ne_bytes(self.fixed("u64")?))
    }

    /// Payload as a host-order `i32`.
    ///
    /// # Errors
    ///
    /// [`DecodeError::AttrSize`] unless the payload is exactly 4 bytes.
    pub fn s32(&self) -> Result<i32, DecodeError> {
        Ok(i32::from_ne_bytes(self.fixed("s32")?))
    }

    /// Payload as a big-endian `u16`.
    ///
    /// # Errors
    ///
    /// [`DecodeError::AttrSize`] unless the payload is exactly 2 bytes.
    pub fn be16(&self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.fixed("be16")?))
    }

    /// Payload as a big-endian `u32`.
    ///
    /// # Errors
    ///
    /// [`DecodeError::AttrSize`] unless the payload is exactly 4 bytes.
    pub fn be32(&self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.fixed("be32")?))
    }

    /// Payload as the variable-width `uint` (`NLA_UINT`): 4 or 8 bytes.
    ///
    /// # Errors
    ///
    /// [`DecodeError::AttrSize`] for any other size.
    pub fn uint(&self) -> Result<u64, DecodeError> {
        match self.payload.len() {
            4 => Ok(u64::from(self.u32()?)),
            8 => self.u64(),
            len => Err(DecodeError::AttrSize {
                what: "uint",
                ty: self.ty(),
                len,
            }),
        }
    }

    /// Payload as an IPv4 address (4 bytes, network order).
    ///
    /// # Errors
    ///
    /// [`DecodeError::AttrSize`] unless the payload is exactly 4 bytes.
    pub fn ipv4(&self) -> Result<Ipv4Addr, DecodeError> {
        Ok(Ipv4Addr::from(self.fixed::<4>("ipv4")?))
    }

    /// Payload as an IPv6 address (16 bytes).
    ///
    /// # Errors
    ///
    /// [`DecodeError::AttrSize`] unless the payload is exactly 16 bytes.
    pub fn ipv6(&self) -> Result<Ipv6Addr, DecodeError> {
        Ok(Ipv6Addr::from(self.fixed::<16>("ipv6")?))
    }

    /// Payload as a string: up to the first NUL, which the kernel always
    /// sends but does not require on input.
    ///
    /// # Errors
    ///
    /// [`DecodeError::InvalidValue`] if the bytes are not UTF-8.
    pub fn string(&self) -> Result<&'a str, DecodeError> {
        let end = self
            .payload
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.payload.len());
        std::str::from_utf8(&self.payload[..end]).map_err(|_| DecodeError::InvalidValue {
            what: "string attribute",
            value: 0,
        })
    }
}

/// Iterator over a list of attributes.
///
/// Yields [`DecodeError::Truncated`] once and stops when the list ends in
/// bytes that do not form a whole attribute.
#[derive(Debug, Clone)]
pub struct Attrs<'a> {
    rest: &'a [u8],
    offset: usize,
}

impl<'a> Attrs<'a> {
    /// Iterates over `buf`, whose first byte is at `offset` in the message.
    pub fn new(buf: &'a [u8], offset: usize) -> Self {
        Self { rest: buf, offset }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<Attr<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match split_attr(self.rest) {
            Some((raw_type, payload, advance)) => {
                let attr = Attr {
                    raw_type,
                    payload,
                    offset: self.offset,
                };
                self.rest = &self.rest[advance..];
                self.offset += advance;
                Some(Ok(attr))
            }
            None => {
                self.rest = &[];
                Some(Err(DecodeError::Truncated("attribute")))
            }
        }
    }
}

/// Splits the first attribute off `buf` as the kernel's `nla_ok` would:
/// returns (type, payload, bytes to skip), or `None` when the remaining
/// bytes are not a whole attribute.
pub(crate) fn split_attr(buf: &[u8]) -> Option<(u16, &[u8], usize)> {
    let hdr = buf.get(..NLA_HDRLEN)?;
    let len = usize::from(u16::from_ne_bytes([hdr[0], hdr[1]]));
    let raw_type = u16::from_ne_bytes([hdr[2], hdr[3]]);
    if len < NLA_HDRLEN || len > buf.len() {
        return None;
    }
    Some((raw_type, &buf[NLA_HDRLEN..len], align(len).min(buf.len())))
}

/// Appends an attribute with `payload`, padded to 4 bytes.
///
/// # Panics
///
/// If the payload is longer than 65531 bytes, which no attribute of these
/// protocols is.
pub fn put(buf: &mut Vec<u8>, raw_type: u16, payload: &[u8]) {
    let len = u16::try_from(NLA_HDRLEN + payload.len()).expect("attribute larger than 64 KiB");
    buf.extend_from_slice(&len.to_ne_bytes());
    buf.extend_from_slice(&raw_type.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(align(buf.len()), 0);
}

/// Appends a `u8` attribute.
pub fn put_u8(buf: &mut Vec<u8>, ty: u16, v: u8) {
    put(buf, ty, &[v]);
}

/// Appends a host-order `u16` attribute.
pub fn put_u16(buf: &mut Vec<u8>, ty: u16, v: u16) {
    put(buf, ty, &v.to_ne_bytes());
}

/// Appends a host-order `u32` attribute.
pub fn put_u32(buf: &mut Vec<u8>, ty: u16, v: u32) {
    put(buf, ty, &v.to_ne_bytes());
}

/// Appends a host-order `u64` attribute.
pub fn put_u64(buf: &mut Vec<u8>, ty: u16, v: u64) {
    put(buf, ty, &v.to_ne_bytes());
}

/// Appends a host-order `i32` attribute.
pub fn put_s32(buf: &mut Vec<u8>, ty: u16, v: i32) {
    put(buf, ty, &v.to_ne_bytes());
}

/// Appends a big-endian `u16` attribute without [`NLA_F_NET_BYTEORDER`],
/// as libnl's `nla_put_u16(.., htons(..))` and the ovpn selftests' client
/// send ports. The kernel's policies mask the flag, so it accepts both.
pub fn put_be16(buf: &mut Vec<u8>, ty: u16, v: u16) {
    put(buf, ty, &v.to_be_bytes());
}

/// Appends a big-endian `u16` attribute with [`NLA_F_NET_BYTEORDER`] set on
/// the type, as the kernel's `nla_put_net16` does (the ports of PEER_GET
/// replies, verified against Linux 6.16 by the parity suite).
pub fn put_net16(buf: &mut Vec<u8>, ty: u16, v: u16) {
    put(buf, ty | NLA_F_NET_BYTEORDER, &v.to_be_bytes());
}

/// Appends a big-endian `u32` attribute.
pub fn put_be32(buf: &mut Vec<u8>, ty: u16, v: u32) {
    put(buf, ty, &v.to_be_bytes());
}

/// Appends a `uint` attribute as the kernel's `nla_put_uint` does: 4 bytes
/// when the value fits in 32 bits, else 8.
pub fn put_uint(buf: &mut Vec<u8>, ty: u16, v: u64) {
    match u32::try_from(v) {
        Ok(small) => put_u32(buf, ty, small),
        Err(_) => put_u64(buf, ty, v),
    }
}

/// Appends a NUL-terminated string attribute (`nla_put_string`).
pub fn put_str(buf: &mut Vec<u8>, ty: u16, s: &str) {
    let mut payload = Vec::with_capacity(s.len() + 1);
    payload.extend_from_slice(s.as_bytes());
    payload.push(0);
    put(buf, ty, &payload);
}

/// A nest whose length is patched by [`Nest::end`].
#[derive(Debug)]
#[must_use = "call end() to write the nest length"]
pub struct Nest {
    start: usize,
}

/// Starts a nest with [`NLA_F_NESTED`] set, as `nla_nest_start` does.
pub fn nest_start(buf: &mut Vec<u8>, ty: u16) -> Nest {
    nest_start_raw(buf, ty | NLA_F_NESTED)
}

/// Starts a nest with the type exactly as given (no flag added), as
/// `nla_nest_start_noflag` does; rtnetlink's `IFLA_LINKINFO` is sent this
/// way by the kernel.
pub fn nest_start_raw(buf: &mut Vec<u8>, raw_type: u16) -> Nest {
    let start = buf.len();
    buf.extend_from_slice(&0u16.to_ne_bytes());
    buf.extend_from_slice(&raw_type.to_ne_bytes());
    Nest { start }
}

impl Nest {
    /// Writes the nest's length (everything appended since the start).
    ///
    /// # Panics
    ///
    /// If the nest grew beyond 64 KiB, which no attribute of these
    /// protocols does.
    pub fn end(self, buf: &mut [u8]) {
        let len = u16::try_from(buf.len() - self.start).expect("nest larger than 64 KiB");
        buf[self.start..self.start + 2].copy_from_slice(&len.to_ne_bytes());
    }
}

/// An attribute kept as received: a later kernel's attribute this crate
/// does not know, so that decoding a newer reply never fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAttr {
    /// The type field, flags included.
    pub raw_type: u16,
    /// The payload.
    pub payload: Vec<u8>,
}

impl RawAttr {
    /// Copies an attribute.
    pub fn from_attr(a: &Attr<'_>) -> Self {
        Self {
            raw_type: a.raw_type(),
            payload: a.payload().to_vec(),
        }
    }

    /// Attribute type without flags.
    pub fn ty(&self) -> u16 {
        self.raw_type & NLA_TYPE_MASK
    }

    /// Appends it unchanged.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        put(buf, self.raw_type, &self.payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_layout() {
        let mut buf = Vec::new();
        put_u32(&mut buf, 1, 0x0a0b_0c0d);
        put_be16(&mut buf, 5, 1194);
        put_net16(&mut buf, 12, 1194);
        put_str(&mut buf, 2, "ovpn");
        put_uint(&mut buf, 16, 5);
        put_uint(&mut buf, 17, 1 << 32);
        let expected: Vec<u8> = [
            // len 8, type 1, u32 host order
            &[8, 0, 1, 0, 0x0d, 0x0c, 0x0b, 0x0a][..],
            // len 6, type 5, 1194 = 0x04aa big-endian, 2 bytes padding
            &[6, 0, 5, 0, 0x04, 0xaa, 0, 0],
            // the same with NLA_F_NET_BYTEORDER (0x4000) on type 12
            &[6, 0, 12, 0x40, 0x04, 0xaa, 0, 0],
            // len 9, type 2, "ovpn\0", 3 bytes padding
            &[9, 0, 2, 0, b'o', b'v', b'p', b'n', 0, 0, 0, 0],
            // uint 5 fits in 4 bytes
            &[8, 0, 16, 0, 5, 0, 0, 0],
            // uint 2^32 needs 8
            &[12, 0, 17, 0, 0, 0, 0, 0, 1, 0, 0, 0],
        ]
        .concat();
        assert_eq!(buf, expected);

        let attrs: Vec<_> = Attrs::new(&buf, 20).map(Result::unwrap).collect();
        assert_eq!(attrs.len(), 6);
        assert_eq!(attrs[0].u32().unwrap(), 0x0a0b_0c0d);
        assert_eq!(attrs[1].be16().unwrap(), 1194);
        assert_eq!(attrs[1].offset(), 28);
        assert!(!attrs[1].is_net_byteorder());
        assert_eq!((attrs[2].ty(), attrs[2].be16().unwrap()), (12, 1194));
        assert!(attrs[2].is_net_byteorder());
        assert_eq!(attrs[3].string().unwrap(), "ovpn");
        assert_eq!(attrs[4].uint().unwrap(), 5);
        assert_eq!(attrs[5].uint().unwrap(), 1 << 32);
    }

    #[test]
    fn nest_sets_flag_and_length() {
        let mut buf = Vec::new();
        let n = nest_start(&mut buf, 2);
        put_u32(&mut buf, 1, 7);
        let inner = nest_start(&mut buf, 5);
        put(&mut buf, 1, &[0xaa; 3]);
        inner.end(&mut buf);
        n.end(&mut buf);
        // outer: len 4 + 8 + (4 + 8) = 24, type 2 | NESTED
        assert_eq!(&buf[..4], &[24, 0, 2, 0x80]);
        // inner nest len 4 + 7 (unpadded inner attr) + 1 pad = 12
        assert_eq!(&buf[12..16], &[12, 0, 5, 0x80]);
        let outer = Attrs::new(&buf, 0).next().unwrap().unwrap();
        let kids: Vec<_> = outer.nested().map(Result::unwrap).collect();
        assert_eq!(kids[0].offset(), 4);
        assert_eq!(kids[1].offset(), 12);
        assert!(kids[1].is_nested());
        let leaf = kids[1].nested().next().unwrap().unwrap();
        assert_eq!(leaf.payload(), &[0xaa; 3]);
        assert_eq!(leaf.offset(), 16);
    }

    #[test]
    fn wrong_sizes_are_errors_not_panics() {
        let mut buf = Vec::new();
        put(&mut buf, 1, &[1, 2, 3]);
        let a = Attrs::new(&buf, 0).next().unwrap().unwrap();
        assert!(a.u32().is_err());
        assert!(a.u16().is_err());
        assert!(a.uint().is_err());
        assert!(a.ipv6().is_err());
    }

    #[test]
    fn truncated_list_reports_once() {
        // attribute claiming 12 bytes with 8 present, then nothing
        let buf = [12, 0, 1, 0, 0, 0, 0, 0];
        let items: Vec<_> = Attrs::new(&buf, 0).collect();
        assert_eq!(items, vec![Err(DecodeError::Truncated("attribute"))]);
        // a lone 2-byte tail after a good attribute
        let buf = [8, 0, 1, 0, 1, 0, 0, 0, 9, 9];
        let items: Vec<_> = Attrs::new(&buf, 0).collect();
        assert!(items[0].is_ok());
        assert!(items[1].is_err());
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn last_attribute_may_be_unpadded() {
        // len 5 and no padding bytes at all: accepted, like the kernel.
        let buf = [5, 0, 3, 0, 0x42];
        let a = Attrs::new(&buf, 0).next().unwrap().unwrap();
        assert_eq!(a.u8().unwrap(), 0x42);
    }
}
