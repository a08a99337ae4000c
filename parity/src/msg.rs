//! Request bytes with holes: netlink messages built from attributes whose
//! values may be placeholders that the executor fills in (the family id,
//! an interface index, a socket's descriptor number), written out in
//! nlprobe's script syntax (`vm/README.md`, "The netlink probe").

use std::fmt::Write as _;

/// One stretch of a request: literal bytes, or a value resolved where the
/// request is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Literal bytes.
    Bytes(Vec<u8>),
    /// `{ovpn}`: the u16 id of the ovpn family.
    Family,
    /// `{ifindex:NAME}`: u32 index of that interface.
    Ifindex(String),
    /// `{fd:NAME}`: u32 descriptor number of a socket made by the script.
    Fd(String),
}

impl Piece {
    /// Bytes this piece occupies once resolved.
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Bytes(b) => b.len(),
            Self::Family => 2,
            Self::Ifindex(_) | Self::Fd(_) => 4,
        }
    }
}

/// A sequence of pieces; attributes and messages are built from these.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Pieces(pub(crate) Vec<Piece>);

impl Pieces {
    pub(crate) fn len(&self) -> usize {
        self.0.iter().map(Piece::len).sum()
    }

    fn bytes(&mut self, b: &[u8]) {
        if let Some(Piece::Bytes(last)) = self.0.last_mut() {
            last.extend_from_slice(b);
        } else {
            self.0.push(Piece::Bytes(b.to_vec()));
        }
    }

    fn append(&mut self, other: Pieces) {
        for p in other.0 {
            match p {
                Piece::Bytes(b) => self.bytes(&b),
                p => self.0.push(p),
            }
        }
    }

    /// The nlprobe hex syntax: bytes as hex, placeholders in braces.
    pub(crate) fn to_script(&self) -> String {
        let mut out = String::new();
        for p in &self.0 {
            if !out.is_empty() {
                out.push(' ');
            }
            match p {
                Piece::Bytes(b) => {
                    for byte in b {
                        let _ = write!(out, "{byte:02x}");
                    }
                }
                Piece::Family => out.push_str("{ovpn}"),
                Piece::Ifindex(n) => {
                    let _ = write!(out, "{{ifindex:{n}}}");
                }
                Piece::Fd(n) => {
                    let _ = write!(out, "{{fd:{n}}}");
                }
            }
        }
        out
    }
}

/// An attribute payload or a whole attribute list.
pub(crate) type Attrs = Pieces;

/// Concatenates attributes (or payload pieces).
pub(crate) fn cat(parts: impl IntoIterator<Item = Pieces>) -> Pieces {
    let mut out = Pieces::default();
    for p in parts {
        out.append(p);
    }
    out
}

/// Literal bytes.
pub(crate) fn raw(b: &[u8]) -> Pieces {
    Pieces(vec![Piece::Bytes(b.to_vec())])
}

pub(crate) fn u8v(v: u8) -> Pieces {
    raw(&[v])
}
pub(crate) fn u16v(v: u16) -> Pieces {
    raw(&v.to_ne_bytes())
}
pub(crate) fn u32v(v: u32) -> Pieces {
    raw(&v.to_ne_bytes())
}
pub(crate) fn u64v(v: u64) -> Pieces {
    raw(&v.to_ne_bytes())
}
pub(crate) fn be16(v: u16) -> Pieces {
    raw(&v.to_be_bytes())
}
pub(crate) fn ipv4(a: [u8; 4]) -> Pieces {
    raw(&a)
}
pub(crate) fn ipv6(s: &str) -> Pieces {
    let addr: std::net::Ipv6Addr = s.parse().unwrap_or(std::net::Ipv6Addr::UNSPECIFIED);
    raw(&addr.octets())
}
pub(crate) fn cstr(s: &str) -> Pieces {
    let mut b = s.as_bytes().to_vec();
    b.push(0);
    raw(&b)
}
pub(crate) fn ifindex(name: &str) -> Pieces {
    Pieces(vec![Piece::Ifindex(name.to_owned())])
}
pub(crate) fn fd(name: &str) -> Pieces {
    Pieces(vec![Piece::Fd(name.to_owned())])
}

/// `NLA_F_NESTED`.
pub(crate) const NESTED: u16 = 0x8000;

/// One attribute with the given raw type field (flags included) and
/// payload, padded to 4 bytes.
pub(crate) fn attr(ty: u16, payload: Pieces) -> Pieces {
    attr_len(ty, payload, None)
}

/// An attribute whose length field is `len` instead of the true one (for
/// malformed requests); `None` = the true length.
pub(crate) fn attr_len(ty: u16, payload: Pieces, len: Option<u16>) -> Pieces {
    let true_len = 4 + payload.len();
    let field = len.unwrap_or(u16::try_from(true_len).unwrap_or(u16::MAX));
    let mut out = raw(&field.to_ne_bytes());
    out.bytes(&ty.to_ne_bytes());
    out.append(payload);
    let pad = (4 - true_len % 4) % 4;
    out.bytes(&[0; 3][..pad]);
    out
}

/// A nest with `NLA_F_NESTED`.
pub(crate) fn nest(ty: u16, children: impl IntoIterator<Item = Pieces>) -> Pieces {
    attr(ty | NESTED, cat(children))
}

/// Netlink flags.
pub(crate) const REQUEST: u16 = 0x1;
pub(crate) const ACK: u16 = 0x4;
pub(crate) const DUMP: u16 = 0x300;
pub(crate) const EXCL: u16 = 0x200;
pub(crate) const CREATE: u16 = 0x400;

/// Message type of a request: the ovpn family (placeholder) or a number.
#[derive(Debug, Clone, Copy)]
pub(crate) enum MsgType {
    Ovpn,
    Num(u16),
}

/// A whole netlink message: header (length computed, pid 0), then `body`
/// (family header and attributes). `extra` is added to the length field
/// (for trailing-garbage cases the bytes are part of `body`).
pub(crate) fn message(ty: MsgType, flags: u16, seq: u32, body: Pieces) -> Pieces {
    let len = u32::try_from(16 + body.len()).unwrap_or(u32::MAX);
    let mut out = raw(&len.to_ne_bytes());
    match ty {
        MsgType::Ovpn => out.0.push(Piece::Family),
        MsgType::Num(n) => out.bytes(&n.to_ne_bytes()),
    }
    out.bytes(&flags.to_ne_bytes());
    out.bytes(&seq.to_ne_bytes());
    out.bytes(&0u32.to_ne_bytes());
    out.append(body);
    out
}

/// The generic-netlink header.
pub(crate) fn genl_hdr(cmd: u8, version: u8) -> Pieces {
    raw(&[cmd, version, 0, 0])
}

/// The rtnetlink `ifinfomsg` with an index (placeholder, number or 0).
pub(crate) fn ifinfomsg(index: Pieces) -> Pieces {
    let index = if index.len() == 0 { u32v(0) } else { index };
    cat([raw(&[0, 0, 0, 0]), index, u32v(0), u32v(0)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn squash(s: &str) -> String {
        s.split_whitespace().collect()
    }

    #[test]
    fn attributes_are_padded_and_measured() {
        assert_eq!(attr(5, raw(&[1, 2])).to_script(), "0600050001020000");
        let n = nest(2, [attr(1, u32v(7)), attr(6, fd("u1"))]);
        assert_eq!(n.len(), 20);
        assert_eq!(
            squash(&n.to_script()),
            "1400028008000100070000000800 0600{fd:u1}".replace(' ', "")
        );
    }

    #[test]
    fn message_length_counts_placeholders() {
        let m = message(
            MsgType::Ovpn,
            REQUEST | ACK,
            3,
            cat([genl_hdr(1, 1), attr(1, ifindex("lo"))]),
        );
        assert_eq!(
            squash(&m.to_script()),
            "1c000000{ovpn}0500030000000000000001010000 08000100{ifindex:lo}".replace(' ', "")
        );
    }
}
