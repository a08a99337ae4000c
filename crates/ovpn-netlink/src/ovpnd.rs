//! The messages of ours that `ovpnd`'s control transport adds to the
//! kernel's protocol (`docs/control-transport.md`): socket options as a
//! request ([`SockoptRequest`]), control packets handed back to the control
//! plane ([`ControlPacket`]) and TCP control frames to send
//! ([`ControlSend`]). Their netlink types are below `NLMSG_MIN_TYPE`, a
//! range the kernel leaves unused, so they never collide with a family id
//! or an rtnetlink type.
//!
//! ```text
//! OVPND_MSG_SOCKOPT (14):        nlmsghdr | u32 option | u32 value
//! OVPND_MSG_CONTROL_PACKET (15): nlmsghdr | CP_* attributes
//! OVPND_MSG_CONTROL_SEND (13):   nlmsghdr | CP_SOCKET, CP_PAYLOAD
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::DecodeError;
use crate::attr::{self, Attrs};
use crate::nlmsg::{MessageBuilder, NLM_F_ACK, NLM_F_REQUEST, NLMSG_HDRLEN, NlMsg};

/// `OVPND_MSG_CONTROL_SEND`: the client asks the daemon to write a TCP
/// control frame.
pub const OVPND_MSG_CONTROL_SEND: u16 = 13;
/// `OVPND_MSG_SOCKOPT`: a `SOL_NETLINK` socket option as a request.
pub const OVPND_MSG_SOCKOPT: u16 = 14;
/// `OVPND_MSG_CONTROL_PACKET`: a non-data packet from a remote, handed back.
pub const OVPND_MSG_CONTROL_PACKET: u16 = 15;

/// `NETLINK_ADD_MEMBERSHIP`.
pub const SO_ADD_MEMBERSHIP: u32 = 1;
/// `NETLINK_DROP_MEMBERSHIP`.
pub const SO_DROP_MEMBERSHIP: u32 = 2;
/// `NETLINK_CAP_ACK`.
pub const SO_CAP_ACK: u32 = 10;
/// `NETLINK_EXT_ACK`.
pub const SO_EXT_ACK: u32 = 11;
/// `NETLINK_GET_STRICT_CHK`.
pub const SO_GET_STRICT_CHK: u32 = 12;
/// `OVPND_SO_CONTROL_PACKETS`: opt in to control packets.
pub const OVPND_SO_CONTROL_PACKETS: u32 = 0x100;

/// Attributes of the control-packet messages (`CP_*`).
pub mod cp {
    /// u32: the `socket` number the client used when handing the socket over.
    pub const SOCKET: u16 = 1;
    /// u32: the device.
    pub const IFINDEX: u16 = 2;
    /// be32: the packet's source address (IPv4).
    pub const REMOTE_IPV4: u16 = 3;
    /// 16 bytes: the packet's source address (IPv6).
    pub const REMOTE_IPV6: u16 = 4;
    /// be16: the packet's source port.
    pub const REMOTE_PORT: u16 = 5;
    /// be32: the address the packet arrived on (UDP).
    pub const LOCAL_IPV4: u16 = 6;
    /// 16 bytes: the address the packet arrived on (UDP).
    pub const LOCAL_IPV6: u16 = 7;
    /// Binary: the UDP payload, or the TCP frame with its 2-byte prefix.
    pub const PAYLOAD: u16 = 8;
}

/// A socket option carried as `OVPND_MSG_SOCKOPT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockoptRequest {
    /// The option number (`SO_*` / `OVPND_SO_*` above).
    pub option: u32,
    /// Its value: 0 / 1 for flags, the group id for memberships.
    pub value: u32,
}

impl SockoptRequest {
    /// Appends the request (`NLM_F_REQUEST | NLM_F_ACK`, pid 0).
    pub fn encode(&self, buf: &mut Vec<u8>, seq: u32) {
        let msg = MessageBuilder::start(buf, OVPND_MSG_SOCKOPT, NLM_F_REQUEST | NLM_F_ACK, seq, 0);
        buf.extend_from_slice(&self.option.to_ne_bytes());
        buf.extend_from_slice(&self.value.to_ne_bytes());
        msg.finish(buf);
    }

    /// Parses an `OVPND_MSG_SOCKOPT` message.
    ///
    /// # Errors
    ///
    /// [`DecodeError::Unexpected`] for another type, [`DecodeError::Truncated`]
    /// when the payload is shorter than 8 bytes.
    pub fn parse(msg: &NlMsg<'_>) -> Result<Self, DecodeError> {
        if msg.header.ty != OVPND_MSG_SOCKOPT {
            return Err(DecodeError::Unexpected("not an OVPND_MSG_SOCKOPT message"));
        }
        let p = msg
            .payload
            .get(..8)
            .ok_or(DecodeError::Truncated("ovpnd sockopt"))?;
        Ok(Self {
            option: u32::from_ne_bytes([p[0], p[1], p[2], p[3]]),
            value: u32::from_ne_bytes([p[4], p[5], p[6], p[7]]),
        })
    }
}

/// A control packet the daemon hands back (`OVPND_MSG_CONTROL_PACKET`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPacket {
    /// The `socket` number the client used when it handed the socket over.
    pub socket: u32,
    /// The device the transport belongs to.
    pub ifindex: Option<u32>,
    /// Source address and port of the packet.
    pub remote: Option<SocketAddr>,
    /// The local address it arrived on (UDP only).
    pub local: Option<IpAddr>,
    /// The UDP payload, or the TCP frame with its 2-byte length prefix.
    pub payload: Vec<u8>,
}

impl ControlPacket {
    /// Appends the message as the daemon sends it: flags 0, seq 0, pid 0.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        let msg = MessageBuilder::start(buf, OVPND_MSG_CONTROL_PACKET, 0, 0, 0);
        attr::put_u32(buf, cp::SOCKET, self.socket);
        if let Some(i) = self.ifindex {
            attr::put_u32(buf, cp::IFINDEX, i);
        }
        if let Some(remote) = self.remote {
            match remote.ip() {
                IpAddr::V4(a) => attr::put(buf, cp::REMOTE_IPV4, &a.octets()),
                IpAddr::V6(a) => attr::put(buf, cp::REMOTE_IPV6, &a.octets()),
            }
            attr::put_be16(buf, cp::REMOTE_PORT, remote.port());
        }
        match self.local {
            Some(IpAddr::V4(a)) => attr::put(buf, cp::LOCAL_IPV4, &a.octets()),
            Some(IpAddr::V6(a)) => attr::put(buf, cp::LOCAL_IPV6, &a.octets()),
            None => {}
        }
        attr::put(buf, cp::PAYLOAD, &self.payload);
        msg.finish(buf);
    }

    /// Parses an `OVPND_MSG_CONTROL_PACKET` message; unknown attributes are
    /// skipped.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] for another type, malformed attributes, or a message
    /// without `CP_SOCKET` or `CP_PAYLOAD`.
    pub fn parse(msg: &NlMsg<'_>) -> Result<Self, DecodeError> {
        if msg.header.ty != OVPND_MSG_CONTROL_PACKET {
            return Err(DecodeError::Unexpected(
                "not an OVPND_MSG_CONTROL_PACKET message",
            ));
        }
        let mut socket = None;
        let mut ifindex = None;
        let mut remote_ip: Option<IpAddr> = None;
        let mut remote_port = None;
        let mut local = None;
        let mut payload = None;
        for a in Attrs::new(msg.payload, NLMSG_HDRLEN) {
            let a = a?;
            match a.ty() {
                cp::SOCKET => socket = Some(a.u32()?),
                cp::IFINDEX => ifindex = Some(a.u32()?),
                cp::REMOTE_IPV4 => remote_ip = Some(IpAddr::V4(a.ipv4()?)),
                cp::REMOTE_IPV6 => remote_ip = Some(IpAddr::V6(a.ipv6()?)),
                cp::REMOTE_PORT => remote_port = Some(a.be16()?),
                cp::LOCAL_IPV4 => local = Some(IpAddr::V4(a.ipv4()?)),
                cp::LOCAL_IPV6 => local = Some(IpAddr::V6(a.ipv6()?)),
                cp::PAYLOAD => payload = Some(a.payload().to_vec()),
                _ => {}
            }
        }
        Ok(Self {
            socket: socket.ok_or(DecodeError::MissingAttr { what: "CP_SOCKET" })?,
            ifindex,
            remote: remote_ip.map(|ip| SocketAddr::new(ip, remote_port.unwrap_or(0))),
            local,
            payload: payload.ok_or(DecodeError::MissingAttr { what: "CP_PAYLOAD" })?,
        })
    }
}

/// A TCP control frame to write (`OVPND_MSG_CONTROL_SEND`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlSend {
    /// The `socket` number the client used when it handed the socket over.
    pub socket: u32,
    /// The frame with its 2-byte big-endian length prefix.
    pub frame: Vec<u8>,
}

impl ControlSend {
    /// Appends the request (`NLM_F_REQUEST | NLM_F_ACK`, pid 0).
    pub fn encode(&self, buf: &mut Vec<u8>, seq: u32) {
        let msg = MessageBuilder::start(
            buf,
            OVPND_MSG_CONTROL_SEND,
            NLM_F_REQUEST | NLM_F_ACK,
            seq,
            0,
        );
        attr::put_u32(buf, cp::SOCKET, self.socket);
        attr::put(buf, cp::PAYLOAD, &self.frame);
        msg.finish(buf);
    }

    /// Parses an `OVPND_MSG_CONTROL_SEND` message.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] for another type, malformed attributes, or a missing
    /// `CP_SOCKET` / `CP_PAYLOAD`.
    pub fn parse(msg: &NlMsg<'_>) -> Result<Self, DecodeError> {
        if msg.header.ty != OVPND_MSG_CONTROL_SEND {
            return Err(DecodeError::Unexpected(
                "not an OVPND_MSG_CONTROL_SEND message",
            ));
        }
        let mut socket = None;
        let mut frame = None;
        for a in Attrs::new(msg.payload, NLMSG_HDRLEN) {
            let a = a?;
            match a.ty() {
                cp::SOCKET => socket = Some(a.u32()?),
                cp::PAYLOAD => frame = Some(a.payload().to_vec()),
                _ => {}
            }
        }
        Ok(Self {
            socket: socket.ok_or(DecodeError::MissingAttr { what: "CP_SOCKET" })?,
            frame: frame.ok_or(DecodeError::MissingAttr { what: "CP_PAYLOAD" })?,
        })
    }
}

/// The unspecified address of a family, for a `local` the daemon did not know.
pub fn unspecified(v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockopt_bytes() {
        let mut buf = Vec::new();
        SockoptRequest {
            option: OVPND_SO_CONTROL_PACKETS,
            value: 1,
        }
        .encode(&mut buf, 7);
        assert_eq!(
            buf,
            [
                24, 0, 0, 0, 14, 0, 5, 0, 7, 0, 0, 0, 0, 0, 0, 0, // header
                0, 1, 0, 0, 1, 0, 0, 0, // option 0x100, value 1
            ]
        );
        let r = SockoptRequest::parse(&NlMsg::parse(&buf).unwrap()).unwrap();
        assert_eq!(r.option, OVPND_SO_CONTROL_PACKETS);
        assert_eq!(r.value, 1);
        buf.truncate(20);
        buf[0] = 20;
        assert!(SockoptRequest::parse(&NlMsg::parse(&buf).unwrap()).is_err());
    }

    #[test]
    fn control_packet_round_trip_and_layout() {
        let p = ControlPacket {
            socket: 5,
            ifindex: Some(3),
            remote: Some("198.18.0.2:1194".parse().unwrap()),
            local: Some("198.18.0.1".parse().unwrap()),
            payload: vec![0x38, 1, 2],
        };
        let mut buf = Vec::new();
        p.encode(&mut buf);
        assert_eq!(&buf[4..8], &[15, 0, 0, 0]);
        assert_eq!(&buf[16..24], &[8, 0, 1, 0, 5, 0, 0, 0]); // CP_SOCKET 5
        assert_eq!(&buf[32..40], &[8, 0, 3, 0, 198, 18, 0, 2]); // CP_REMOTE_IPV4
        assert_eq!(&buf[40..48], &[6, 0, 5, 0, 0x04, 0xaa, 0, 0]); // port 1194 be16
        assert_eq!(&buf[56..63], &[7, 0, 8, 0, 0x38, 1, 2]); // payload
        assert_eq!(
            ControlPacket::parse(&NlMsg::parse(&buf).unwrap()).unwrap(),
            p
        );
    }

    #[test]
    fn control_packet_needs_socket_and_payload() {
        let mut buf = Vec::new();
        let m = MessageBuilder::start(&mut buf, OVPND_MSG_CONTROL_PACKET, 0, 0, 0);
        attr::put_u32(&mut buf, cp::SOCKET, 1);
        m.finish(&mut buf);
        assert_eq!(
            ControlPacket::parse(&NlMsg::parse(&buf).unwrap()),
            Err(DecodeError::MissingAttr { what: "CP_PAYLOAD" })
        );
    }

    #[test]
    fn control_send_round_trip() {
        let s = ControlSend {
            socket: 9,
            frame: vec![0, 2, 0x38, 0],
        };
        let mut buf = Vec::new();
        s.encode(&mut buf, 4);
        assert_eq!(&buf[4..8], &[13, 0, 5, 0]);
        assert_eq!(ControlSend::parse(&NlMsg::parse(&buf).unwrap()).unwrap(), s);
    }
}
