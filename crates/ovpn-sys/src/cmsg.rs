//! Ancillary data (control messages) as plain bytes: a writer for the
//! messages we attach on send and an iterator over the ones the kernel
//! returns. The layout is `struct cmsghdr` followed by the payload, each
//! entry padded to the alignment of `size_t` (`cmsg(3)`).

use std::mem::{offset_of, size_of};

const ALIGN: usize = size_of::<usize>();
const LEN_AT: usize = offset_of!(libc::cmsghdr, cmsg_len);
const LEVEL_AT: usize = offset_of!(libc::cmsghdr, cmsg_level);
const TYPE_AT: usize = offset_of!(libc::cmsghdr, cmsg_type);
/// Size of the header, padded.
const HDR: usize = align(size_of::<libc::cmsghdr>());

const fn align(len: usize) -> usize {
    (len + ALIGN - 1) & !(ALIGN - 1)
}

/// `CMSG_SPACE`: room one message with `len` payload bytes takes.
pub(crate) const fn space(len: usize) -> usize {
    HDR + align(len)
}

/// A control buffer aligned for `struct cmsghdr`.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub(crate) struct CmsgBuf<const N: usize>(pub(crate) [u8; N]);

impl<const N: usize> CmsgBuf<N> {
    pub(crate) const fn new() -> Self {
        Self([0; N])
    }
}

/// Appends control messages to a buffer.
pub(crate) struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, len: 0 }
    }

    /// Appends one message; `false` (and nothing written) if it does not fit.
    pub(crate) fn push(&mut self, level: libc::c_int, ty: libc::c_int, data: &[u8]) -> bool {
        let need = space(data.len());
        let Some(entry) = self.buf.get_mut(self.len..self.len + need) else {
            return false;
        };
        entry.fill(0);
        let cmsg_len: libc::size_t = HDR + data.len();
        entry[LEN_AT..LEN_AT + size_of::<libc::size_t>()].copy_from_slice(&cmsg_len.to_ne_bytes());
        entry[LEVEL_AT..LEVEL_AT + 4].copy_from_slice(&level.to_ne_bytes());
        entry[TYPE_AT..TYPE_AT + 4].copy_from_slice(&ty.to_ne_bytes());
        entry[HDR..HDR + data.len()].copy_from_slice(data);
        self.len += need;
        true
    }

    /// Bytes written so far (the `msg_controllen` to pass).
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// One received control message.
pub(crate) struct Cmsg<'a> {
    pub(crate) level: libc::c_int,
    pub(crate) ty: libc::c_int,
    pub(crate) data: &'a [u8],
}

/// Iterates over the control messages in the first `msg_controllen` bytes
/// of a receive buffer; stops at the first malformed entry.
pub(crate) struct Iter<'a> {
    rest: &'a [u8],
}

impl<'a> Iter<'a> {
    pub(crate) fn new(control: &'a [u8]) -> Self {
        Self { rest: control }
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = Cmsg<'a>;

    fn next(&mut self) -> Option<Cmsg<'a>> {
        let rest = self.rest;
        if rest.len() < HDR {
            return None;
        }
        let word = |at: usize| -> [u8; 4] { [rest[at], rest[at + 1], rest[at + 2], rest[at + 3]] };
        let mut len_bytes = [0u8; size_of::<libc::size_t>()];
        len_bytes.copy_from_slice(&rest[LEN_AT..LEN_AT + size_of::<libc::size_t>()]);
        let len = libc::size_t::from_ne_bytes(len_bytes);
        if len < HDR || len > rest.len() {
            self.rest = &[];
            return None;
        }
        let item = Cmsg {
            level: libc::c_int::from_ne_bytes(word(LEVEL_AT)),
            ty: libc::c_int::from_ne_bytes(word(TYPE_AT)),
            data: &rest[HDR..len],
        };
        self.rest = rest.get(align(len)..).unwrap_or(&[]);
        Some(item)
    }
}

/// Reads a native-endian `i32` from the start of `data`.
pub(crate) fn read_i32(data: &[u8]) -> Option<i32> {
    Some(i32::from_ne_bytes(data.get(..4)?.try_into().ok()?))
}

/// Reads a native-endian `u16` from the start of `data`.
pub(crate) fn read_u16(data: &[u8]) -> Option<u16> {
    Some(u16::from_ne_bytes(data.get(..2)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_messages_parse_back() {
        let mut buf = CmsgBuf::<128>::new();
        let mut w = Writer::new(&mut buf.0);
        assert!(w.push(libc::SOL_UDP, 103, &1400u16.to_ne_bytes()));
        assert!(w.push(
            libc::SOL_SOCKET,
            libc::SCM_RIGHTS,
            &[1, 0, 0, 0, 2, 0, 0, 0]
        ));
        let len = w.len();
        assert_eq!(len, space(2) + space(8));

        let items: Vec<_> = Iter::new(&buf.0[..len]).collect();
        assert_eq!(items.len(), 2);
        assert_eq!((items[0].level, items[0].ty), (libc::SOL_UDP, 103));
        assert_eq!(read_u16(items[0].data), Some(1400));
        assert_eq!(items[1].data.len(), 8);
        assert_eq!(read_i32(&items[1].data[4..]), Some(2));
    }

    #[test]
    fn full_buffer_refuses_and_garbage_stops_iteration() {
        let mut buf = [0u8; 20];
        let mut w = Writer::new(&mut buf);
        assert!(!w.push(libc::SOL_IP, libc::IP_PKTINFO, &[0; 12]));
        assert_eq!(w.len(), 0);

        // A length field pointing past the end ends the walk.
        let mut bad = CmsgBuf::<32>::new();
        bad.0[..8].copy_from_slice(&999usize.to_ne_bytes());
        assert_eq!(Iter::new(&bad.0).count(), 0);
    }

    #[test]
    fn sizes_match_libc() {
        // SAFETY: CMSG_SPACE is pure arithmetic.
        let libc_space = unsafe { libc::CMSG_SPACE(12) } as usize;
        assert_eq!(space(12), libc_space);
    }
}
