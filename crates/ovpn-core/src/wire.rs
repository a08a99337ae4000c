//! The OpenVPN data-channel packet format: the DATA_V2 header, its field
//! ranges, the AEAD nonce and additional data built from it, and the
//! classification of a received datagram by its first byte.
//!
//! Implements `kernel-behaviour.md` §4.1–§4.4 and `openvpn-interop.md` §2.1–§2.2:
//!
//! ```text
//! offset  size  field
//! 0       1     opcode (high 5 bits) | key id (low 3 bits)
//! 1       3     peer id, 24-bit big-endian
//! 4       4     packet id, 32-bit big-endian
//! 8       16    AEAD tag
//! 24      n     ciphertext (as long as the plaintext)
//! ```
//!
//! [`DataPacket`] is a zero-copy view over any byte buffer; once
//! [`DataPacket::new_checked`] has accepted a buffer no accessor can panic.
//! [`DataHeader`] is the parsed form of the first eight bytes.

use std::ops::{Range, RangeFrom};

/// Opcode of `P_DATA_V1` (no peer id; the kernel never accepts it).
pub const OPCODE_DATA_V1: u8 = 6;
/// Opcode of `P_DATA_V2`, the only data format the kernel sends and accepts.
pub const OPCODE_DATA_V2: u8 = 9;
/// Highest key id: the key id is the low three bits of byte 0.
pub const KEY_ID_MAX: u8 = 7;
/// Highest peer id that fits the 24-bit wire field.
pub const PEER_ID_MAX: u32 = 0x00FF_FFFF;
/// The wire peer id meaning "undefined" (OpenVPN clients without one).
pub const PEER_ID_UNDEF: u32 = PEER_ID_MAX;

/// Length of the additional authenticated data: opcode/key id, peer id, packet id.
pub const AAD_LEN: usize = 8;
/// Length of the AEAD authentication tag, sent before the ciphertext.
pub const TAG_LEN: usize = 16;
/// Length of the per-direction nonce tail ("implicit IV").
pub const NONCE_TAIL_LEN: usize = 8;
/// Length of the AEAD nonce: packet id followed by the nonce tail.
pub const NONCE_LEN: usize = 12;
/// Length of everything before the ciphertext: AAD and tag.
pub const HEADER_LEN: usize = AAD_LEN + TAG_LEN;
/// Bytes a DATA_V2 packet adds to its plaintext (no padding with AEAD).
pub const OVERHEAD: usize = HEADER_LEN;
/// A UDP payload shorter than this is dropped before its opcode is read (§4.4).
pub const MIN_DATAGRAM_LEN: usize = 4;

/// The OpenVPN keepalive ("ping") plaintext (§2.7); on the wire it makes a
/// 40-byte DATA_V2 packet.
pub const KEEPALIVE_PAYLOAD: [u8; 16] = [
    0x2a, 0x18, 0x7b, 0xf3, 0x64, 0x1e, 0xb4, 0xcb, 0x07, 0xed, 0x2d, 0x0a, 0x98, 0x1f, 0xc7, 0x48,
];

/// Byte ranges of the DATA_V2 fields.
pub mod field {
    use super::{Range, RangeFrom};

    /// Opcode (high 5 bits) and key id (low 3 bits).
    pub const OPCODE_KEY_ID: usize = 0;
    /// 24-bit big-endian peer id.
    pub const PEER_ID: Range<usize> = 1..4;
    /// 32-bit big-endian packet id; also the first four nonce bytes.
    pub const PACKET_ID: Range<usize> = 4..8;
    /// The additional authenticated data, exactly as on the wire.
    pub const AAD: Range<usize> = 0..8;
    /// The AEAD tag.
    pub const TAG: Range<usize> = 8..24;
    /// The ciphertext, or the plaintext once opened in place.
    pub const PAYLOAD: RangeFrom<usize> = 24..;
}

/// Errors of the wire layer; all of them mean malformed input from the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The datagram is shorter than the format needs.
    #[error("packet too short: {len} bytes, need at least {min}")]
    Truncated {
        /// Length received.
        len: usize,
        /// Length required.
        min: usize,
    },
    /// The opcode is not DATA_V2.
    #[error("not a DATA_V2 packet: opcode {opcode}")]
    NotDataV2 {
        /// Opcode found in byte 0.
        opcode: u8,
    },
}

/// What a received datagram is, judged by its first byte (§4.1, interop §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// `P_DATA_V2`: for the data channel.
    DataV2,
    /// `P_DATA_V1`: a data packet the kernel drops (`rx_dropped`).
    DataV1,
    /// Any other opcode: a control packet, handed to the control plane unchanged.
    Control,
}

impl PacketKind {
    /// Classifies a packet by its first byte.
    pub fn of_first_byte(first: u8) -> Self {
        match opcode(first) {
            OPCODE_DATA_V2 => Self::DataV2,
            OPCODE_DATA_V1 => Self::DataV1,
            _ => Self::Control,
        }
    }

    /// Classifies a received UDP payload or TCP frame.
    ///
    /// # Errors
    ///
    /// [`WireError::Truncated`] if it is shorter than [`MIN_DATAGRAM_LEN`]; the
    /// kernel drops those before looking at the opcode.
    pub fn of_datagram(datagram: &[u8]) -> Result<Self, WireError> {
        match datagram {
            [first, _, _, _, ..] => Ok(Self::of_first_byte(*first)),
            _ => Err(WireError::Truncated {
                len: datagram.len(),
                min: MIN_DATAGRAM_LEN,
            }),
        }
    }
}

/// The opcode in a packet's first byte.
pub fn opcode(first: u8) -> u8 {
    first >> 3
}

/// The key id in a packet's first byte.
pub fn key_id(first: u8) -> u8 {
    first & KEY_ID_MAX
}

/// The AEAD nonce for `packet_id` with a direction's nonce tail (§4.2).
#[inline]
pub fn nonce(packet_id: u32, nonce_tail: &[u8; NONCE_TAIL_LEN]) -> [u8; NONCE_LEN] {
    // Built from two whole words rather than byte copies: the AEAD reads the
    // nonce back with wide loads, and a wide load over several narrow stores
    // stalls the CPU (store forwarding fails), which showed in profiles.
    let [t0, t1, t2, t3, t4, t5, t6, t7] = *nonce_tail;
    let head = (u64::from(packet_id) << 32) | u64::from(u32::from_be_bytes([t0, t1, t2, t3]));
    let [h0, h1, h2, h3, h4, h5, h6, h7] = head.to_be_bytes();
    [h0, h1, h2, h3, h4, h5, h6, h7, t4, t5, t6, t7]
}

/// A zero-copy view of a DATA_V2 packet in a byte buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> DataPacket<T> {
    /// Wraps a buffer without checking it; accessors may panic on a buffer
    /// that [`check`](Self::check) would refuse.
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps a buffer after checking that it holds a DATA_V2 header and tag.
    ///
    /// # Errors
    ///
    /// [`WireError::Truncated`] below [`HEADER_LEN`] bytes,
    /// [`WireError::NotDataV2`] for another opcode.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = Self::new_unchecked(buffer);
        packet.check()?;
        Ok(packet)
    }

    /// Checks the length and the opcode.
    ///
    /// # Errors
    ///
    /// As [`new_checked`](Self::new_checked).
    pub fn check(&self) -> Result<(), WireError> {
        let bytes = self.buffer.as_ref();
        if bytes.len() < HEADER_LEN {
            return Err(WireError::Truncated {
                len: bytes.len(),
                min: HEADER_LEN,
            });
        }
        let opcode = opcode(bytes[field::OPCODE_KEY_ID]);
        if opcode != OPCODE_DATA_V2 {
            return Err(WireError::NotDataV2 { opcode });
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Length of the whole packet.
    pub fn len(&self) -> usize {
        self.buffer.as_ref().len()
    }

    /// Whether the buffer is empty (never true for a checked packet).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The opcode (high five bits of byte 0).
    pub fn opcode(&self) -> u8 {
        opcode(self.buffer.as_ref()[field::OPCODE_KEY_ID])
    }

    /// The key id (low three bits of byte 0).
    pub fn key_id(&self) -> u8 {
        key_id(self.buffer.as_ref()[field::OPCODE_KEY_ID])
    }

    /// The 24-bit peer id.
    pub fn peer_id(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::PEER_ID];
        u32::from_be_bytes([0, b[0], b[1], b[2]])
    }

    /// The packet id.
    pub fn packet_id(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::PACKET_ID];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The additional authenticated data (the first eight bytes).
    pub fn aad(&self) -> [u8; AAD_LEN] {
        let mut aad = [0; AAD_LEN];
        aad.copy_from_slice(&self.buffer.as_ref()[field::AAD]);
        aad
    }

    /// The authentication tag.
    pub fn tag(&self) -> [u8; TAG_LEN] {
        let mut tag = [0; TAG_LEN];
        tag.copy_from_slice(&self.buffer.as_ref()[field::TAG]);
        tag
    }

    /// The ciphertext (or, after opening in place, the plaintext).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> DataPacket<T> {
    /// Writes opcode DATA_V2 and `key_id` into byte 0 (only its low 3 bits).
    pub fn set_key_id(&mut self, key_id: u8) {
        self.buffer.as_mut()[field::OPCODE_KEY_ID] = (OPCODE_DATA_V2 << 3) | (key_id & KEY_ID_MAX);
    }

    /// Writes the peer id (only its low 24 bits).
    pub fn set_peer_id(&mut self, peer_id: u32) {
        let b = peer_id.to_be_bytes();
        self.buffer.as_mut()[field::PEER_ID].copy_from_slice(&b[1..]);
    }

    /// Writes the packet id.
    pub fn set_packet_id(&mut self, packet_id: u32) {
        self.buffer.as_mut()[field::PACKET_ID].copy_from_slice(&packet_id.to_be_bytes());
    }

    /// Writes the first eight bytes (see [`DataHeader::to_bytes`]).
    pub fn set_aad(&mut self, aad: &[u8; AAD_LEN]) {
        self.buffer.as_mut()[field::AAD].copy_from_slice(aad);
    }

    /// Writes the authentication tag.
    pub fn set_tag(&mut self, tag: &[u8; TAG_LEN]) {
        self.buffer.as_mut()[field::TAG].copy_from_slice(tag);
    }

    /// The payload, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

/// The parsed first eight bytes of a DATA_V2 packet (the AAD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataHeader {
    /// Key id, 0..=7.
    pub key_id: u8,
    /// Peer id, 24 bits.
    pub peer_id: u32,
    /// Packet id.
    pub packet_id: u32,
}

impl DataHeader {
    /// Reads the header of a packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &DataPacket<T>) -> Self {
        Self {
            key_id: packet.key_id(),
            peer_id: packet.peer_id(),
            packet_id: packet.packet_id(),
        }
    }

    /// Writes this header into a packet (key id and peer id truncated to
    /// their field widths).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut DataPacket<T>) {
        packet.set_aad(&self.to_bytes());
    }

    /// The header's bytes as they appear on the wire, which are also the AAD
    /// (key id and peer id truncated to their field widths).
    #[inline]
    pub fn to_bytes(&self) -> [u8; AAD_LEN] {
        // One 64-bit word, for the same reason as in [`nonce`].
        let first = (u32::from(OPCODE_DATA_V2) << 27)
            | (u32::from(self.key_id & KEY_ID_MAX) << 24)
            | (self.peer_id & PEER_ID_MAX);
        ((u64::from(first) << 32) | u64::from(self.packet_id)).to_be_bytes()
    }

    /// Length of a packet carrying `payload_len` bytes of plaintext
    /// (saturating, so that an absurd length cannot overflow).
    pub fn buffer_len(payload_len: usize) -> usize {
        payload_len.saturating_add(HEADER_LEN)
    }
}

/// A packet buffer split into the parts an in-place AEAD works on.
#[derive(Debug)]
pub struct Parts<'a> {
    /// The additional authenticated data (bytes 0..8).
    pub aad: &'a [u8; AAD_LEN],
    /// The tag (bytes 8..24).
    pub tag: &'a [u8; TAG_LEN],
    /// The ciphertext or plaintext (bytes 24..).
    pub payload: &'a mut [u8],
}

/// Splits a packet buffer into AAD, tag and payload.
///
/// # Errors
///
/// [`WireError::Truncated`] below [`HEADER_LEN`] bytes.
pub fn split_mut(packet: &mut [u8]) -> Result<Parts<'_>, WireError> {
    let truncated = WireError::Truncated {
        len: packet.len(),
        min: HEADER_LEN,
    };
    let (aad, rest) = packet.split_first_chunk_mut::<AAD_LEN>().ok_or(truncated)?;
    let (tag, payload) = rest.split_first_chunk_mut::<TAG_LEN>().ok_or(truncated)?;
    Ok(Parts { aad, tag, payload })
}

/// The byte range of the payload in a packet of `len` bytes (empty if `len`
/// is below the header length).
pub fn payload_range(len: usize) -> Range<usize> {
    HEADER_LEN.min(len)..len
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Key id 0, peer id 5, first packet id (interop §2.2 example), tag and a
    /// 3-byte payload of recognisable filler.
    const PACKET: [u8; 27] = [
        0x48, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x01, //
        0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, //
        0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf, //
        0x01, 0x02, 0x03,
    ];

    #[test]
    fn parses_the_interop_example() {
        let packet = DataPacket::new_checked(&PACKET[..]).unwrap();
        assert_eq!(packet.opcode(), OPCODE_DATA_V2);
        assert_eq!(
            DataHeader::parse(&packet),
            DataHeader {
                key_id: 0,
                peer_id: 5,
                packet_id: 1
            }
        );
        assert_eq!(packet.aad(), PACKET[..8]);
        assert_eq!(packet.tag()[0], 0xa0);
        assert_eq!(packet.tag()[15], 0xaf);
        assert_eq!(packet.payload(), [1, 2, 3]);
    }

    #[test]
    fn emits_byte_for_byte() {
        let mut buf = [0u8; 27];
        buf[8..].copy_from_slice(&PACKET[8..]);
        let mut packet = DataPacket::new_unchecked(&mut buf[..]);
        DataHeader {
            key_id: 0,
            peer_id: 5,
            packet_id: 1,
        }
        .emit(&mut packet);
        assert_eq!(buf, PACKET);
    }

    #[test]
    fn header_fields_use_their_whole_width() {
        let header = DataHeader {
            key_id: 7,
            peer_id: 0x00AB_CDEF,
            packet_id: 0xFFFF_FFFE,
        };
        let bytes = header.to_bytes();
        assert_eq!(bytes, [0x4F, 0xAB, 0xCD, 0xEF, 0xFF, 0xFF, 0xFF, 0xFE]);
        let mut buf = [0u8; HEADER_LEN];
        buf[..8].copy_from_slice(&bytes);
        assert_eq!(
            DataHeader::parse(&DataPacket::new_checked(&buf[..]).unwrap()),
            header
        );
    }

    #[test]
    fn out_of_range_ids_are_truncated_to_the_field() {
        let header = DataHeader {
            key_id: 9,
            peer_id: 0x1234_5678,
            packet_id: 0,
        };
        assert_eq!(header.to_bytes()[..4], [0x49, 0x34, 0x56, 0x78]);
    }

    #[test]
    fn header_only_packet_is_accepted_with_empty_payload() {
        let packet = DataPacket::new_checked(&PACKET[..HEADER_LEN]).unwrap();
        assert!(packet.payload().is_empty());
    }

    #[test]
    fn short_packets_are_refused() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                DataPacket::new_checked(&PACKET[..len]),
                Err(WireError::Truncated {
                    len,
                    min: HEADER_LEN
                })
            );
            assert!(split_mut(&mut { PACKET }[..len]).is_err());
        }
    }

    #[test]
    fn other_opcodes_are_refused() {
        let mut buf = PACKET;
        buf[0] = 0x30; // DATA_V1, key id 0
        assert_eq!(
            DataPacket::new_checked(&buf[..]),
            Err(WireError::NotDataV2 { opcode: 6 })
        );
    }

    #[test]
    fn classifies_first_bytes() {
        let cases = [
            (0x48, PacketKind::DataV2),
            (0x4F, PacketKind::DataV2),
            (0x30, PacketKind::DataV1),
            (0x37, PacketKind::DataV1),
            (0x18, PacketKind::Control), // P_CONTROL_SOFT_RESET_V1
            (0x20, PacketKind::Control), // P_CONTROL_V1
            (0x28, PacketKind::Control), // P_ACK_V1
            (0x38, PacketKind::Control), // P_CONTROL_HARD_RESET_CLIENT_V2
            (0x40, PacketKind::Control), // P_CONTROL_HARD_RESET_SERVER_V2
            (0x50, PacketKind::Control), // P_CONTROL_HARD_RESET_CLIENT_V3
            (0x58, PacketKind::Control), // P_CONTROL_WKC_V1
            (0x00, PacketKind::Control),
            (0xFF, PacketKind::Control),
        ];
        for (first, kind) in cases {
            assert_eq!(PacketKind::of_first_byte(first), kind, "{first:#04x}");
        }
    }

    #[test]
    fn datagrams_below_four_bytes_are_not_classified() {
        assert!(PacketKind::of_datagram(&[0x48, 0, 0]).is_err());
        assert_eq!(
            PacketKind::of_datagram(&[0x48, 0, 0, 1]),
            Ok(PacketKind::DataV2)
        );
    }

    #[test]
    fn nonce_is_packet_id_then_tail() {
        let tail = [0xE0, 0xE1, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7];
        assert_eq!(
            nonce(0x0102_0304, &tail),
            [1, 2, 3, 4, 0xE0, 0xE1, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7]
        );
    }

    #[test]
    fn split_yields_the_three_fields() {
        let mut buf = PACKET;
        let parts = split_mut(&mut buf).unwrap();
        assert_eq!(parts.aad[..], PACKET[..8]);
        assert_eq!(parts.tag[..], PACKET[8..24]);
        assert_eq!(parts.payload, [1, 2, 3]);
    }

    #[test]
    fn keepalive_makes_a_forty_byte_packet() {
        assert_eq!(DataHeader::buffer_len(KEEPALIVE_PAYLOAD.len()), 40);
    }
}
