//! What a TUN interface with a virtio-net header hands over, made into the
//! plain, fully checksummed IP packets the data channel encrypts.
//!
//! With TCP segmentation offload on, the host's TCP stack gives the device
//! super-packets of up to 64 KiB (one IP and TCP header, many MSS of
//! payload) and may leave checksums partial. The kernel's `ovpn` device
//! segments such packets before encrypting each segment (its features
//! include GSO, kernel-behaviour §1.2), and so do we: [`segment_tcp`] cuts a
//! super-packet into the segments the host would otherwise have sent, and
//! [`complete_checksum`] finishes a checksum the host left partial. Both
//! work on bytes only.

use ovpn_sys::tun::{VNET_HDR_LEN, VnetHeader};

/// Why a packet from the TUN interface could not be prepared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// The checksum location lies outside the packet.
    ChecksumOutside,
    /// A GSO type we did not ask for.
    GsoType,
    /// The IP or TCP header of a super-packet does not add up.
    Headers,
    /// The segments do not fit into the space given.
    NoRoom,
}

/// The ones' complement sum of `bytes` as 16-bit big-endian words (an odd
/// last byte padded with zero), not yet folded.
fn sum(bytes: &[u8], mut acc: u64) -> u64 {
    // 32-bit big-endian words sum to the same value modulo 0xffff as their
    // 16-bit halves (2^16 ≡ 1), and `fold` takes every carry back in.
    let mut quads = bytes.chunks_exact(4);
    for q in &mut quads {
        acc += u64::from(u32::from_be_bytes([q[0], q[1], q[2], q[3]]));
    }
    let mut words = quads.remainder().chunks_exact(2);
    for w in &mut words {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a sum to 16 bits.
fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Completes the checksum the host left partial (`VIRTIO_NET_HDR_F_NEEDS_CSUM`):
/// the field at `start + offset` holds the pseudo-header sum, and the
/// checksum covers everything from `start` to the end.
///
/// # Errors
///
/// [`Malformed::ChecksumOutside`] when the field is not inside `packet`.
pub(crate) fn complete_checksum(
    packet: &mut [u8],
    start: usize,
    offset: usize,
) -> Result<(), Malformed> {
    let at = start
        .checked_add(offset)
        .ok_or(Malformed::ChecksumOutside)?;
    if at.checked_add(2).is_none_or(|end| end > packet.len()) {
        return Err(Malformed::ChecksumOutside);
    }
    let mut csum = !fold(sum(&packet[start..], 0));
    // UDP (its checksum field is at offset 6) sends a computed 0 as 0xffff:
    // 0 means "no checksum".
    if csum == 0 && offset == 6 {
        csum = 0xffff;
    }
    packet[at..at + 2].copy_from_slice(&csum.to_be_bytes());
    Ok(())
}

/// Where one segment was written: its inner packet is
/// `out[start + headroom..start + headroom + len]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Offset of the segment's headroom in `out`.
    pub(crate) start: usize,
    /// Length of the inner packet.
    pub(crate) len: usize,
}

/// Cuts a TCP super-packet into segments of `vnet.gso_size` payload bytes,
/// as the host's TCP stack would have sent them: each with its own copy of
/// the IP and TCP headers, IPv4 total length, id (+1 per segment) and
/// header checksum, IPv6 payload length, TCP sequence number, FIN and PSH
/// on the last segment only, CWR on the first only, and a full TCP
/// checksum.
///
/// Segments go into `out` one after the other, each preceded by `headroom`
/// free bytes (room for the DATA_V2 header), and are listed in `segments`
/// (cleared first).
///
/// # Errors
///
/// [`Malformed::GsoType`] for anything but TCP over IPv4 or IPv6;
/// [`Malformed::Headers`] when the headers are inconsistent;
/// [`Malformed::NoRoom`] when `out` is too small.
pub(crate) fn segment_tcp(
    packet: &[u8],
    vnet: &VnetHeader,
    out: &mut [u8],
    headroom: usize,
    segments: &mut Vec<Segment>,
) -> Result<(), Malformed> {
    segments.clear();
    let v4 = match vnet.gso_type & !VnetHeader::GSO_ECN {
        VnetHeader::GSO_TCPV4 => true,
        VnetHeader::GSO_TCPV6 => false,
        _ => return Err(Malformed::GsoType),
    };
    let l4 = usize::from(vnet.csum_start);
    let mss = usize::from(vnet.gso_size);
    let version = packet.first().map(|b| b >> 4);
    let ip_ok = match (v4, version) {
        (true, Some(4)) => l4 >= 20 && l4 == usize::from(packet[0] & 0x0f) * 4,
        (false, Some(6)) => l4 >= 40,
        _ => false,
    };
    if !ip_ok || mss == 0 || packet.len() < l4 + 20 {
        return Err(Malformed::Headers);
    }
    let tcp_len = usize::from(packet[l4 + 12] >> 4) * 4;
    let hdr_len = l4 + tcp_len;
    if tcp_len < 20 || packet.len() < hdr_len {
        return Err(Malformed::Headers);
    }
    let headers = &packet[..hdr_len];
    let payload = &packet[hdr_len..];
    let count = payload.len().div_ceil(mss).max(1);
    let seq = u32::from_be_bytes([
        headers[l4 + 4],
        headers[l4 + 5],
        headers[l4 + 6],
        headers[l4 + 7],
    ]);
    let id = u16::from_be_bytes([headers[4], headers[5]]);
    let flags = headers[l4 + 13];

    let mut pos = 0;
    for i in 0..count {
        let chunk = payload
            .get(i * mss..payload.len().min((i + 1) * mss))
            .unwrap_or_default();
        let len = hdr_len + chunk.len();
        let Some(seg) = out.get_mut(pos + headroom..pos + headroom + len) else {
            return Err(Malformed::NoRoom);
        };
        seg[..hdr_len].copy_from_slice(headers);
        seg[hdr_len..].copy_from_slice(chunk);
        let total = u16::try_from(len).map_err(|_| Malformed::Headers)?;
        if v4 {
            seg[2..4].copy_from_slice(&total.to_be_bytes());
            let seg_id = id.wrapping_add(i as u16);
            seg[4..6].copy_from_slice(&seg_id.to_be_bytes());
            set_ipv4_checksum(seg, l4);
        } else {
            seg[4..6].copy_from_slice(&(total - 40).to_be_bytes());
        }
        let tcp = &mut seg[l4..];
        let seg_seq = seq.wrapping_add((i * mss) as u32);
        tcp[4..8].copy_from_slice(&seg_seq.to_be_bytes());
        let mut seg_flags = flags;
        if i + 1 < count {
            seg_flags &= !(0x01 | 0x08); // FIN, PSH
        }
        if i > 0 {
            seg_flags &= !0x80; // CWR
        }
        tcp[13] = seg_flags;
        tcp[16..18].fill(0);
        let csum = !fold(sum(&seg[l4..], tcp_pseudo(seg, v4, l4)));
        seg[l4 + 16..l4 + 18].copy_from_slice(&csum.to_be_bytes());
        segments.push(Segment { start: pos, len });
        pos += headroom + len;
    }
    Ok(())
}

/// Largest IP packet a super-packet may become.
const SUPER_MAX: usize = 65_535;

/// Joins received TCP segments of one flow into a super-packet for a TUN
/// interface with a vnet header, as the host's GRO would: one TUN write
/// and one pass through the host's TCP stack instead of one per segment.
///
/// Only what GRO would join is joined: IPv4 without options or
/// fragmentation, or IPv6 without extension headers; TCP with only ACK (and
/// PSH on the last segment) set; identical IP and TCP headers apart from
/// lengths, IPv4 id, sequence number and checksums; contiguous sequence
/// numbers; equal payload sizes, a shorter one ending the super-packet.
/// Every segment's checksums are verified first: the kernel's ovpn device
/// leaves that to the host (§4.5), which cannot check a super-packet's
/// segments any more, and a segment that fails is handed over alone for the
/// host to drop.
pub(crate) struct Coalescer {
    /// The vnet header's room, then the super-packet.
    buf: Vec<u8>,
    /// Bytes of the super-packet (0: nothing pending).
    len: usize,
    segments: usize,
    v4: bool,
    hdr_len: usize,
    mss: usize,
    next_seq: u32,
    /// A shorter or PSH segment was appended: nothing may follow.
    closed: bool,
}

/// A TCP segment's layout.
struct Tcp {
    v4: bool,
    l4: usize,
    hdr_len: usize,
    seq: u32,
    flags: u8,
}

const ACK: u8 = 0x10;
const PSH: u8 = 0x08;

impl Coalescer {
    pub(crate) fn new() -> Self {
        Self {
            buf: vec![0; VNET_HDR_LEN + SUPER_MAX],
            len: 0,
            segments: 0,
            v4: false,
            hdr_len: 0,
            mss: 0,
            next_seq: 0,
            closed: false,
        }
    }

    /// Whether a super-packet is pending.
    pub(crate) fn is_pending(&self) -> bool {
        self.len > 0
    }

    /// Takes `packet` into the pending super-packet, or starts one with it.
    /// `false`: it cannot join (write the pending one with [`Self::take`]
    /// first, then offer it again or write it alone).
    pub(crate) fn push(&mut self, packet: &[u8]) -> bool {
        let Some(tcp) = parse_tcp(packet) else {
            return false;
        };
        let payload = packet.len() - tcp.hdr_len;
        if self.len == 0 {
            if !checksums_valid(packet, &tcp) {
                return false;
            }
            self.buf[VNET_HDR_LEN..VNET_HDR_LEN + packet.len()].copy_from_slice(packet);
            self.len = packet.len();
            self.segments = 1;
            self.v4 = tcp.v4;
            self.hdr_len = tcp.hdr_len;
            self.mss = payload;
            self.next_seq = tcp.seq.wrapping_add(payload as u32);
            self.closed = tcp.flags & PSH != 0;
            return true;
        }
        let head = &self.buf[VNET_HDR_LEN..VNET_HDR_LEN + tcp.hdr_len.min(self.len)];
        let joins = !self.closed
            && tcp.v4 == self.v4
            && tcp.hdr_len == self.hdr_len
            && tcp.seq == self.next_seq
            && payload <= self.mss
            && self.len + payload <= SUPER_MAX
            && same_headers(head, packet, &tcp)
            && checksums_valid(packet, &tcp);
        if !joins {
            return false;
        }
        let at = VNET_HDR_LEN + self.len;
        self.buf[at..at + payload].copy_from_slice(&packet[tcp.hdr_len..]);
        self.len += payload;
        self.segments += 1;
        self.next_seq = tcp.seq.wrapping_add(payload as u32);
        if payload < self.mss || tcp.flags & PSH != 0 {
            self.closed = true;
            // The super-packet's header carries the last segment's flags.
            let l4 = tcp.l4;
            self.buf[VNET_HDR_LEN + l4 + 13] = tcp.flags;
        }
        true
    }

    /// The pending packet with its vnet header, to write to the TUN
    /// interface as it is; the coalescer is empty again afterwards. A single
    /// segment comes back unchanged behind an empty header.
    pub(crate) fn take(&mut self) -> &[u8] {
        let len = std::mem::take(&mut self.len);
        let packet = &mut self.buf[VNET_HDR_LEN..VNET_HDR_LEN + len];
        if self.segments <= 1 {
            VnetHeader::default().emit(&mut self.buf);
            return &self.buf[..VNET_HDR_LEN + len];
        }
        let l4 = if self.v4 { 20 } else { 40 };
        let total = u16::try_from(len).unwrap_or(u16::MAX);
        if self.v4 {
            packet[2..4].copy_from_slice(&total.to_be_bytes());
            set_ipv4_checksum(packet, l4);
        } else {
            packet[4..6].copy_from_slice(&(total - 40).to_be_bytes());
        }
        // A partial checksum: the pseudo-header sum, for the host to
        // complete (VIRTIO_NET_HDR_F_NEEDS_CSUM).
        let pseudo = tcp_pseudo(packet, self.v4, l4);
        packet[l4 + 16..l4 + 18].copy_from_slice(&fold(pseudo).to_be_bytes());
        let header = VnetHeader {
            flags: VnetHeader::F_NEEDS_CSUM,
            gso_type: if self.v4 {
                VnetHeader::GSO_TCPV4
            } else {
                VnetHeader::GSO_TCPV6
            },
            hdr_len: self.hdr_len as u16,
            gso_size: self.mss as u16,
            csum_start: l4 as u16,
            csum_offset: 16,
        };
        header.emit(&mut self.buf);
        &self.buf[..VNET_HDR_LEN + len]
    }
}

/// The layout of a TCP segment that GRO could join, or `None`.
fn parse_tcp(p: &[u8]) -> Option<Tcp> {
    let (v4, l4) = match p.first()? >> 4 {
        4 => {
            let plain = p.len() >= 40
                && p[0] == 0x45
                && usize::from(u16::from_be_bytes([p[2], p[3]])) == p.len()
                && u16::from_be_bytes([p[6], p[7]]) & 0x3fff == 0 // no MF, offset 0
                && p[9] == 6;
            if !plain {
                return None;
            }
            (true, 20)
        }
        6 => {
            let plain = p.len() >= 60
                && usize::from(u16::from_be_bytes([p[4], p[5]])) + 40 == p.len()
                && p[6] == 6;
            if !plain {
                return None;
            }
            (false, 40)
        }
        _ => return None,
    };
    if p.len() > SUPER_MAX {
        return None;
    }
    let hdr_len = l4 + usize::from(p[l4 + 12] >> 4) * 4;
    let flags = p[l4 + 13];
    let usable = hdr_len >= l4 + 20 && hdr_len < p.len() && flags & !PSH == ACK;
    usable.then(|| Tcp {
        v4,
        l4,
        hdr_len,
        seq: u32::from_be_bytes([p[l4 + 4], p[l4 + 5], p[l4 + 6], p[l4 + 7]]),
        flags,
    })
}

/// IP and TCP headers equal but for the fields that differ between the
/// segments of one super-packet.
fn same_headers(head: &[u8], p: &[u8], tcp: &Tcp) -> bool {
    let l4 = tcp.l4;
    let ip_same = if tcp.v4 {
        // version..tos, flags/offset, ttl, protocol, addresses
        head[..2] == p[..2] && head[6..10] == p[6..10] && head[12..20] == p[12..20]
    } else {
        // version, class, flow label; next header, hop limit, addresses
        head[..4] == p[..4] && head[6..40] == p[6..40]
    };
    // ports; ack; data offset; window; urgent pointer; options
    ip_same
        && head[l4..l4 + 4] == p[l4..l4 + 4]
        && head[l4 + 8..l4 + 13] == p[l4 + 8..l4 + 13]
        && head[l4 + 14..l4 + 16] == p[l4 + 14..l4 + 16]
        && head[l4 + 18..tcp.hdr_len] == p[l4 + 18..tcp.hdr_len]
}

/// The IPv4 header checksum and the TCP checksum are right.
fn checksums_valid(p: &[u8], tcp: &Tcp) -> bool {
    let ip_valid = !tcp.v4 || fold(sum(&p[..20], 0)) == 0xffff;
    ip_valid && fold(sum(&p[tcp.l4..], tcp_pseudo(p, tcp.v4, tcp.l4))) == 0xffff
}

/// The TCP pseudo-header sum of the IP packet `p` (addresses, protocol
/// and the length of everything from `l4` on), not yet folded.
fn tcp_pseudo(p: &[u8], v4: bool, l4: usize) -> u64 {
    let tcp_bytes = 6 + (p.len() - l4) as u64;
    if v4 {
        sum(&p[12..20], tcp_bytes)
    } else {
        sum(&p[8..40], tcp_bytes)
    }
}

/// Writes the checksum of the `ihl`-byte IPv4 header at the start of `p`.
fn set_ipv4_checksum(p: &mut [u8], ihl: usize) {
    p[10..12].fill(0);
    let csum = !fold(sum(&p[..ihl], 0));
    p[10..12].copy_from_slice(&csum.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An independent check: the ones' complement sum over a region that
    /// includes its checksum field is 0xffff when the checksum is right.
    fn verifies(bytes: &[u8], pseudo: u64) -> bool {
        fold(sum(bytes, pseudo)) == 0xffff
    }

    fn tcp_pseudo_v4(p: &[u8], l4: usize) -> u64 {
        sum(&p[12..20], 6 + (p.len() - l4) as u64)
    }

    fn tcp_pseudo_v6(p: &[u8]) -> u64 {
        sum(&p[8..40], 6 + (p.len() - 40) as u64)
    }

    /// IPv6 (2001:db8::1 → 2001:db8::2, hop limit 64) and a `tcp_len`-byte
    /// TCP header with the given flags, the rest zero.
    fn ipv6_tcp_headers(tcp_len: usize, flags: u8) -> Vec<u8> {
        let mut p = vec![0u8; 40 + tcp_len];
        p[0] = 0x60;
        p[6] = 6;
        p[7] = 64;
        let addr = |a: &str| a.parse::<std::net::Ipv6Addr>().unwrap().octets();
        p[8..24].copy_from_slice(&addr("2001:db8::1"));
        p[24..40].copy_from_slice(&addr("2001:db8::2"));
        p[40 + 12] = ((tcp_len / 4) as u8) << 4;
        p[40 + 13] = flags;
        p
    }

    /// An IPv4/TCP super-packet as the host hands it over: total length of
    /// the whole thing, partial checksum, PSH|FIN|CWR|ACK set.
    fn super_v4(payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        let total = (40 + payload.len()).min(0xffff) as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p[4..6].copy_from_slice(&0xfffeu16.to_be_bytes());
        p[6] = 0x40; // DF
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&[198, 19, 0, 1]);
        p[16..20].copy_from_slice(&[198, 19, 0, 2]);
        p[20..22].copy_from_slice(&5201u16.to_be_bytes());
        p[22..24].copy_from_slice(&40000u16.to_be_bytes());
        p[24..28].copy_from_slice(&0xffff_ff00u32.to_be_bytes()); // wraps
        p[32] = 5 << 4;
        p[33] = 0x80 | 0x10 | 0x08 | 0x01;
        p[34..36].copy_from_slice(&512u16.to_be_bytes());
        p[36..38].copy_from_slice(&0x1234u16.to_be_bytes()); // partial, ignored
        p.extend_from_slice(payload);
        p
    }

    fn vnet(gso_type: u8, l4: u16, mss: u16) -> VnetHeader {
        VnetHeader {
            flags: VnetHeader::F_NEEDS_CSUM,
            gso_type,
            hdr_len: 0,
            gso_size: mss,
            csum_start: l4,
            csum_offset: 16,
        }
    }

    #[test]
    fn ipv4_super_packet_becomes_mss_segments() {
        let payload: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
        let p = super_v4(&payload);
        let mut out = vec![0u8; 8192];
        let mut segs = Vec::new();
        segment_tcp(
            &p,
            &vnet(VnetHeader::GSO_TCPV4, 20, 1400),
            &mut out,
            24,
            &mut segs,
        )
        .unwrap();
        assert_eq!(
            segs.iter().map(|s| s.len).collect::<Vec<_>>(),
            [1440, 1440, 240]
        );
        let mut joined = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            let seg = &out[s.start + 24..s.start + 24 + s.len];
            assert_eq!(usize::from(u16::from_be_bytes([seg[2], seg[3]])), s.len);
            assert_eq!(
                u16::from_be_bytes([seg[4], seg[5]]),
                0xfffeu16.wrapping_add(i as u16)
            );
            assert!(
                verifies(&seg[..20], 0),
                "IPv4 header checksum of segment {i}"
            );
            assert!(
                verifies(&seg[20..], tcp_pseudo_v4(seg, 20)),
                "TCP checksum of segment {i}"
            );
            let seq = u32::from_be_bytes([seg[24], seg[25], seg[26], seg[27]]);
            assert_eq!(seq, 0xffff_ff00u32.wrapping_add(1400 * i as u32));
            let flags = seg[33];
            assert_eq!(flags & 0x10, 0x10, "ACK everywhere");
            assert_eq!(flags & 0x80 != 0, i == 0, "CWR on the first only");
            assert_eq!(flags & 0x09 != 0, i == 2, "FIN and PSH on the last only");
            assert_eq!(&seg[..2], &p[..2]);
            assert_eq!(&seg[12..20], &p[12..20]);
            joined.extend_from_slice(&seg[40..]);
        }
        assert_eq!(joined, payload);
        // Segments follow each other, each behind its headroom.
        assert_eq!(segs[1].start, 24 + 1440);
    }

    #[test]
    fn ipv6_super_packet_with_tcp_options() {
        let payload = vec![0xa5u8; 2500];
        // A 32-byte TCP header (options), ACK|PSH.
        let mut p = ipv6_tcp_headers(32, 0x18);
        p.extend_from_slice(&payload);
        let mut out = vec![0u8; 8192];
        let mut segs = Vec::new();
        segment_tcp(
            &p,
            &vnet(VnetHeader::GSO_TCPV6, 40, 1000),
            &mut out,
            0,
            &mut segs,
        )
        .unwrap();
        assert_eq!(segs.len(), 3);
        for (i, s) in segs.iter().enumerate() {
            let seg = &out[s.start..s.start + s.len];
            let plen = usize::from(u16::from_be_bytes([seg[4], seg[5]]));
            assert_eq!(plen, s.len - 40);
            assert!(verifies(&seg[40..], tcp_pseudo_v6(seg)), "segment {i}");
            assert_eq!(&seg[72..], &payload[i * 1000..(i * 1000 + 1000).min(2500)]);
        }
    }

    #[test]
    fn malformed_super_packets_are_refused() {
        let p = super_v4(&[0u8; 100]);
        let mut out = vec![0u8; 4096];
        let mut segs = Vec::new();
        let mut run =
            |p: &[u8], v: VnetHeader, out: &mut [u8]| segment_tcp(p, &v, out, 24, &mut segs);
        let udp = vnet(VnetHeader::GSO_UDP_L4, 20, 50);
        assert_eq!(run(&p, udp, &mut out), Err(Malformed::GsoType));
        let wrong_family = vnet(VnetHeader::GSO_TCPV6, 20, 50);
        assert_eq!(run(&p, wrong_family, &mut out), Err(Malformed::Headers));
        let no_mss = vnet(VnetHeader::GSO_TCPV4, 20, 0);
        assert_eq!(run(&p, no_mss, &mut out), Err(Malformed::Headers));
        let past_end = vnet(VnetHeader::GSO_TCPV4, 20, 50);
        assert_eq!(run(&p[..30], past_end, &mut out), Err(Malformed::Headers));
        assert_eq!(run(&p, past_end, &mut out[..100]), Err(Malformed::NoRoom));
    }

    #[test]
    fn partial_checksums_are_completed() {
        // A UDP datagram over IPv4 whose checksum field holds the
        // pseudo-header sum, as the host leaves it.
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[9] = 17;
        p[12..16].copy_from_slice(&[198, 19, 0, 1]);
        p[16..20].copy_from_slice(&[198, 19, 0, 2]);
        p[24..26].copy_from_slice(&13u16.to_be_bytes());
        p.extend_from_slice(b"hello");
        let pseudo = sum(&p[12..20], 17 + 13);
        p[26..28].copy_from_slice(&fold(pseudo).to_be_bytes());
        complete_checksum(&mut p, 20, 6).unwrap();
        assert!(verifies(&p[20..], pseudo));
        assert_eq!(
            complete_checksum(&mut p, 20, 100),
            Err(Malformed::ChecksumOutside)
        );
        assert_eq!(
            complete_checksum(&mut p, usize::MAX, 6),
            Err(Malformed::ChecksumOutside)
        );
    }

    /// Full segments, as a sender's stack would put them on the wire.
    fn segments_of(super_packet: &[u8], v: &VnetHeader) -> Vec<Vec<u8>> {
        let mut out = vec![0u8; 16384];
        let mut segs = Vec::new();
        segment_tcp(super_packet, v, &mut out, 0, &mut segs).unwrap();
        segs.iter()
            .map(|s| out[s.start..s.start + s.len].to_vec())
            .collect()
    }

    #[test]
    fn received_segments_coalesce_and_segment_back_to_the_same_bytes() {
        let payload: Vec<u8> = (0..3000u32).map(|i| (i * 13 % 256) as u8).collect();
        let mut sp = super_v4(&payload);
        sp[33] = 0x10 | 0x08; // ACK, PSH (no FIN, no CWR: GRO leaves those alone)
        let v = vnet(VnetHeader::GSO_TCPV4, 20, 1400);
        let wire = segments_of(&sp, &v);
        assert_eq!(wire.len(), 3);

        let mut c = Coalescer::new();
        for seg in &wire {
            assert!(c.push(seg));
        }
        assert!(c.is_pending());
        let written = c.take().to_vec();
        assert!(!c.is_pending());
        let h = VnetHeader::parse(&written).unwrap();
        assert_eq!(h.gso_type, VnetHeader::GSO_TCPV4);
        assert_eq!(h.flags, VnetHeader::F_NEEDS_CSUM);
        assert_eq!(
            (h.gso_size, h.csum_start, h.csum_offset, h.hdr_len),
            (1400, 20, 16, 40)
        );
        let joined = &written[VNET_HDR_LEN..];
        assert_eq!(joined.len(), 40 + 3000);
        assert_eq!(&joined[40..], &payload[..]);
        assert!(verifies(&joined[..20], 0), "IPv4 header checksum");
        // What the host does with it: the same segments again.
        assert_eq!(segments_of(joined, &h), wire);
    }

    #[test]
    fn what_gro_would_not_join_stays_apart() {
        let payload = vec![7u8; 2800];
        let mut sp = super_v4(&payload);
        sp[33] = 0x10;
        let v = vnet(VnetHeader::GSO_TCPV4, 20, 1400);
        let wire = segments_of(&sp, &v);
        let mut c = Coalescer::new();

        // A gap in the sequence numbers.
        assert!(c.push(&wire[0]));
        let mut late = wire[1].clone();
        late[24..28].copy_from_slice(&0x0102_0304u32.to_be_bytes());
        assert!(!c.push(&late));
        // A corrupted segment is not taken, alone or joined.
        let mut bad = wire[1].clone();
        bad[100] ^= 1;
        assert!(!c.push(&bad));
        // One segment comes back unchanged behind an empty header.
        let single = c.take().to_vec();
        assert_eq!(VnetHeader::parse(&single), Some(VnetHeader::default()));
        assert_eq!(&single[VNET_HDR_LEN..], &wire[0][..]);
        assert!(!c.push(&bad));

        // SYN, and non-TCP packets, are never taken.
        let mut syn = wire[0].clone();
        syn[33] = 0x12;
        assert!(!c.push(&syn));
        let mut udp = wire[0].clone();
        udp[9] = 17;
        assert!(!c.push(&udp));
        // A different ack number starts a new super-packet.
        assert!(c.push(&wire[0]));
        let mut other_ack = wire[1].clone();
        other_ack[28] ^= 1;
        assert!(!c.push(&other_ack));
        // A shorter segment ends the super-packet.
        let mut short_sp = super_v4(&vec![1u8; 1000]);
        short_sp[33] = 0x10;
        let _ = c.take();
        assert!(c.push(&wire[0]));
        let mut short = segments_of(&short_sp, &vnet(VnetHeader::GSO_TCPV4, 20, 1400)).remove(0);
        short[24..28].copy_from_slice(&0xffff_ff00u32.wrapping_add(1400).to_be_bytes());
        fix_tcp_checksum_v4(&mut short);
        assert!(c.push(&short));
        assert!(!c.push(&wire[1]), "nothing follows a shorter segment");
    }

    fn fix_tcp_checksum_v4(p: &mut [u8]) {
        p[36..38].fill(0);
        let pseudo = tcp_pseudo_v4(p, 20);
        let csum = !fold(sum(&p[20..], pseudo));
        p[36..38].copy_from_slice(&csum.to_be_bytes());
    }

    #[test]
    fn ipv6_segments_coalesce() {
        let payload = vec![0x5au8; 2000];
        let mut p = ipv6_tcp_headers(20, 0x10);
        p.extend_from_slice(&payload);
        let v = vnet(VnetHeader::GSO_TCPV6, 40, 1000);
        let wire = segments_of(&p, &v);
        let mut c = Coalescer::new();
        assert!(wire.iter().all(|s| c.push(s)));
        let written = c.take().to_vec();
        let h = VnetHeader::parse(&written).unwrap();
        assert_eq!(h.gso_type, VnetHeader::GSO_TCPV6);
        assert_eq!(segments_of(&written[VNET_HDR_LEN..], &h), wire);
    }

    /// Inner packets come from the remote peer: whatever they hold, the
    /// coalescer neither panics nor joins what does not verify.
    #[test]
    fn mangled_segments_never_panic() {
        let mut sp = super_v4(&vec![3u8; 4200]);
        sp[33] = 0x10;
        let wire = segments_of(&sp, &vnet(VnetHeader::GSO_TCPV4, 20, 1400));
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut c = Coalescer::new();
        for _ in 0..20_000 {
            let mut p = wire[(rand() % 3) as usize].clone();
            for _ in 0..rand() % 4 {
                let i = (rand() as usize) % p.len();
                p[i] = rand() as u8;
            }
            if rand() % 4 == 0 {
                p.truncate((rand() as usize) % (p.len() + 1));
            }
            if !c.push(&p) && c.is_pending() {
                let out = c.take();
                assert!(out.len() >= VNET_HDR_LEN);
            }
        }
    }

    #[test]
    fn word_sums_agree_with_the_16_bit_definition() {
        let naive = |b: &[u8]| {
            let mut acc: u64 = 0;
            for (i, byte) in b.iter().enumerate() {
                acc += u64::from(*byte) << if i % 2 == 0 { 8 } else { 0 };
            }
            fold(acc)
        };
        let data: Vec<u8> = (0..1501u32).map(|i| (i * 131 % 256) as u8).collect();
        for len in [0, 1, 2, 3, 4, 5, 7, 8, 1499, 1500, 1501] {
            assert_eq!(fold(sum(&data[..len], 0)), naive(&data[..len]), "len {len}");
        }
        assert_eq!(fold(sum(&[0xff; 64], 0)), 0xffff);
    }

    #[test]
    fn a_computed_zero_udp_checksum_is_sent_as_ffff() {
        // Data whose sum is 0xffff makes the complemented checksum 0.
        let mut p = vec![0u8; 8];
        p.extend_from_slice(&[0xff, 0xff]);
        complete_checksum(&mut p, 0, 6).unwrap();
        assert_eq!(&p[6..8], &[0xff, 0xff]);
    }
}
