//! The control operations of a device: PEER_NEW, PEER_SET, PEER_GET (do and
//! dump), PEER_DEL, KEY_NEW, KEY_GET, KEY_SWAP, KEY_DEL (kernel-behaviour.md
//! §6, §7.5, §7.7).
//!
//! Input is the attributes the netlink layer parsed and checked against the
//! op's policy (types, sizes, ranges); everything the kernel's *handlers*
//! check happens here, in the kernel's order, so that the first failing
//! check gives the kernel's errno and extack text. Errors are
//! [`ControlError`] values the daemon serializes as NLMSG_ERROR + extack.
//!
//! Where 6.16 has a bug that later kernels fixed, the later kernel is
//! followed and the spot says so (remote scope id stored, transport table
//! re-keyed on PEER_SET).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::Arc;
use std::time::Instant;

use zeroize::Zeroizing;

use super::{Device, Mode};
use crate::aead::CipherAlg;
use crate::keys::{KeyConfig, KeyDir, KeyError, KeyInfo, KeySlot};
use crate::notify::Notification;
use crate::peer::table::PeerTable;
use crate::peer::{Bind, DelReason, Peer, PeerInfo, Transport, TransportKind, VpnAddrs};

/// Attribute type numbers of `ovpn.yaml`, for missing-attribute reports and
/// "unexpected attribute N" messages.
pub mod attr {
    /// `OVPN_A_PEER` (top level).
    pub const PEER: u16 = 2;
    /// `OVPN_A_KEYCONF` (top level).
    pub const KEYCONF: u16 = 3;

    /// Inside `OVPN_A_PEER`.
    pub mod peer {
        /// `id`.
        pub const ID: u16 = 1;
        /// `remote-ipv4`.
        pub const REMOTE_IPV4: u16 = 2;
        /// `remote-ipv6`.
        pub const REMOTE_IPV6: u16 = 3;
        /// `remote-ipv6-scope-id`.
        pub const REMOTE_IPV6_SCOPE_ID: u16 = 4;
        /// `remote-port`.
        pub const REMOTE_PORT: u16 = 5;
        /// `socket`.
        pub const SOCKET: u16 = 6;
        /// `vpn-ipv4`.
        pub const VPN_IPV4: u16 = 8;
        /// `vpn-ipv6`.
        pub const VPN_IPV6: u16 = 9;
        /// `local-ipv4`.
        pub const LOCAL_IPV4: u16 = 10;
        /// `local-ipv6`.
        pub const LOCAL_IPV6: u16 = 11;
        /// `keepalive-interval`.
        pub const KEEPALIVE_INTERVAL: u16 = 13;
        /// `keepalive-timeout`.
        pub const KEEPALIVE_TIMEOUT: u16 = 14;
        /// `tx-id` (later kernels).
        pub const TX_ID: u16 = 24;
    }

    /// Inside `OVPN_A_KEYCONF`.
    pub mod keyconf {
        /// `peer-id`.
        pub const PEER_ID: u16 = 1;
        /// `slot`.
        pub const SLOT: u16 = 2;
        /// `key-id`.
        pub const KEY_ID: u16 = 3;
        /// `cipher-alg`.
        pub const CIPHER_ALG: u16 = 4;
        /// `encrypt-dir`.
        pub const ENCRYPT_DIR: u16 = 5;
        /// `decrypt-dir`.
        pub const DECRYPT_DIR: u16 = 6;
    }

    /// Inside `encrypt-dir` / `decrypt-dir`.
    pub mod keydir {
        /// `cipher-key`.
        pub const CIPHER_KEY: u16 = 1;
        /// `nonce-tail`.
        pub const NONCE_TAIL: u16 = 2;
    }
}

/// The errno values the handlers return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Errno {
    /// `EINVAL` (22).
    Inval,
    /// `ENOENT` (2).
    NoEnt,
    /// `EEXIST` (17).
    Exist,
    /// `ENOTSOCK` (88).
    NotSock,
    /// `ENOMEM` (12).
    NoMem,
}

impl Errno {
    /// The positive Linux errno value.
    pub fn code(self) -> i32 {
        match self {
            Self::Inval => 22,
            Self::NoEnt => 2,
            Self::Exist => 17,
            Self::NotSock => 88,
            Self::NoMem => 12,
        }
    }

    /// The C name, for messages and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Inval => "EINVAL",
            Self::NoEnt => "ENOENT",
            Self::Exist => "EEXIST",
            Self::NotSock => "ENOTSOCK",
            Self::NoMem => "ENOMEM",
        }
    }
}

/// The nest a missing attribute belongs in (extack `NLMSGERR_ATTR_MISS_NEST`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Nest {
    /// The top level of the request (no nest).
    Top,
    /// `OVPN_A_PEER`.
    Peer,
    /// `OVPN_A_KEYCONF`.
    Keyconf,
    /// `OVPN_A_KEYCONF_ENCRYPT_DIR`.
    EncryptDir,
    /// `OVPN_A_KEYCONF_DECRYPT_DIR`.
    DecryptDir,
}

/// A required attribute that was absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MissingAttr {
    /// Where it should have been.
    pub nest: Nest,
    /// Its type number (see [`attr`]).
    pub attr: u16,
}

/// A control operation failed: the errno and the extack content the kernel
/// would return.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ControlError {
    /// The error number.
    pub errno: Errno,
    /// The extack message, with the kernel's `ovpn: ` module prefix.
    pub message: Option<String>,
    /// The missing attribute, for "missing attribute" errors.
    pub missing: Option<MissingAttr>,
}

impl ControlError {
    /// An error with an extack message (`text` without the module prefix).
    pub fn new(errno: Errno, text: impl fmt::Display) -> Self {
        Self {
            errno,
            message: Some(format!("ovpn: {text}")),
            missing: None,
        }
    }

    /// EINVAL for a missing attribute (no message, as in the kernel).
    pub fn missing(nest: Nest, attr: u16) -> Self {
        Self {
            errno: Errno::Inval,
            message: None,
            missing: Some(MissingAttr { nest, attr }),
        }
    }

    fn inval(text: impl fmt::Display) -> Self {
        Self::new(Errno::Inval, text)
    }
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.errno.name())?;
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        if let Some(missing) = &self.missing {
            write!(
                f,
                ": missing attribute {} in {:?}",
                missing.attr, missing.nest
            )?;
        }
        Ok(())
    }
}

/// The attributes of an `OVPN_A_PEER` nest, as parsed by the netlink layer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerAttrs {
    /// `id`.
    pub id: Option<u32>,
    /// `tx-id` (later kernels; the netlink layer decides whether to accept
    /// it).
    pub tx_id: Option<u32>,
    /// `remote-ipv4`.
    pub remote_ipv4: Option<Ipv4Addr>,
    /// `remote-ipv6`.
    pub remote_ipv6: Option<Ipv6Addr>,
    /// `remote-ipv6-scope-id`.
    pub remote_ipv6_scope_id: Option<u32>,
    /// `remote-port`.
    pub remote_port: Option<u16>,
    /// `socket`: a descriptor number in the requester's process.
    pub socket: Option<u32>,
    /// `vpn-ipv4`.
    pub vpn_ipv4: Option<Ipv4Addr>,
    /// `vpn-ipv6`.
    pub vpn_ipv6: Option<Ipv6Addr>,
    /// `local-ipv4`.
    pub local_ipv4: Option<Ipv4Addr>,
    /// `local-ipv6`.
    pub local_ipv6: Option<Ipv6Addr>,
    /// `keepalive-interval` (seconds).
    pub keepalive_interval: Option<u32>,
    /// `keepalive-timeout` (seconds).
    pub keepalive_timeout: Option<u32>,
    /// The lowest type number of any other attribute present in the nest
    /// (output-only ones such as `del-reason` or counters, which PEER_GET's
    /// policy lets through and its handler refuses).
    pub other_attr: Option<u16>,
}

impl PeerAttrs {
    fn remote_given(&self) -> bool {
        self.remote_ipv4.is_some() || self.remote_ipv6.is_some()
    }

    /// Type numbers of the attributes present, other than `id`, lowest
    /// first.
    fn present_except_id(&self) -> Option<u16> {
        use attr::peer::*;
        let fields = [
            (REMOTE_IPV4, self.remote_ipv4.is_some()),
            (REMOTE_IPV6, self.remote_ipv6.is_some()),
            (REMOTE_IPV6_SCOPE_ID, self.remote_ipv6_scope_id.is_some()),
            (REMOTE_PORT, self.remote_port.is_some()),
            (SOCKET, self.socket.is_some()),
            (VPN_IPV4, self.vpn_ipv4.is_some()),
            (VPN_IPV6, self.vpn_ipv6.is_some()),
            (LOCAL_IPV4, self.local_ipv4.is_some()),
            (LOCAL_IPV6, self.local_ipv6.is_some()),
            (KEEPALIVE_INTERVAL, self.keepalive_interval.is_some()),
            (KEEPALIVE_TIMEOUT, self.keepalive_timeout.is_some()),
            (TX_ID, self.tx_id.is_some()),
        ];
        fields
            .iter()
            .filter(|(_, present)| *present)
            .map(|(ty, _)| *ty)
            .chain(self.other_attr)
            .min()
    }
}

/// The attributes of an `encrypt-dir` / `decrypt-dir` nest. Key material is
/// zeroized on drop and redacted in `Debug`.
#[derive(Clone, Default)]
pub struct KeydirAttrs {
    /// `cipher-key`.
    pub cipher_key: Option<Zeroizing<Vec<u8>>>,
    /// `nonce-tail` (the policy checked its 8 bytes).
    pub nonce_tail: Option<[u8; 8]>,
}

impl fmt::Debug for KeydirAttrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeydirAttrs")
            .field(
                "cipher_key",
                &self
                    .cipher_key
                    .as_ref()
                    .map(|key| format!("<{} bytes redacted>", key.len())),
            )
            .field("nonce_tail", &self.nonce_tail.map(|_| "<redacted>"))
            .finish()
    }
}

/// The attributes of an `OVPN_A_KEYCONF` nest.
#[derive(Debug, Clone, Default)]
pub struct KeyconfAttrs {
    /// `peer-id`.
    pub peer_id: Option<u32>,
    /// `slot`.
    pub slot: Option<KeySlot>,
    /// `key-id` (the policy checked it is at most 7).
    pub key_id: Option<u8>,
    /// `cipher-alg`.
    pub cipher_alg: Option<CipherAlg>,
    /// `encrypt-dir`.
    pub encrypt_dir: Option<KeydirAttrs>,
    /// `decrypt-dir`.
    pub decrypt_dir: Option<KeydirAttrs>,
}

/// KEY_GET's answer (§7.5: peer-id, slot, key-id, cipher-alg).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyGetReply {
    /// The peer id.
    pub peer_id: u32,
    /// The slot asked for.
    pub slot: KeySlot,
    /// Key id and cipher alg of the key in that slot.
    pub key: KeyInfo,
}

/// How PEER_NEW gets hold of the transport socket: the daemon resolves the
/// `socket` descriptor in the requester's process and attaches it to this
/// device. Split in steps so that each failure happens at the kernel's point
/// in the sequence (§7.5 PEER_NEW steps 6–8, 11).
pub trait SocketAttach {
    /// Resolves descriptor `fd` to a socket and tells its protocol.
    ///
    /// # Errors
    ///
    /// ENOTSOCK with the text `cannot lookup peer socket (fd=N): -E` when it
    /// is not a socket or not a descriptor.
    fn lookup(&mut self, fd: u32) -> Result<TransportKind, ControlError>;

    /// Attaches the socket found by [`lookup`](Self::lookup).
    ///
    /// # Errors
    ///
    /// ENOTSOCK with the text `cannot encapsulate socket: -E` when the socket
    /// is busy, in the wrong state or of an unsupported protocol.
    fn attach(&mut self) -> Result<Transport, ControlError>;

    /// Gives back what [`attach`](Self::attach) took: the peer could not be
    /// added after all.
    fn release(&mut self, transport: Transport);
}

impl Device {
    /// PEER_NEW (§7.5): adds a peer, or in P2P replaces the current one
    /// (which is removed with reason `teardown`).
    ///
    /// # Errors
    ///
    /// The kernel's errno and extack for the first failing check; the socket
    /// is released again if it was attached.
    pub fn peer_new(
        &self,
        peer: Option<&PeerAttrs>,
        sockets: &mut dyn SocketAttach,
        now: Instant,
    ) -> Result<(), ControlError> {
        let attrs = peer.ok_or(ControlError::missing(Nest::Top, attr::PEER))?;
        self.precheck_peer(attrs)?;
        let fd = attrs
            .socket
            .ok_or(ControlError::missing(Nest::Peer, attr::peer::SOCKET))?;
        if self.mode() == Mode::Mp && attrs.vpn_ipv4.is_none() && attrs.vpn_ipv6.is_none() {
            return Err(ControlError::inval("VPN IP must be provided in MP mode"));
        }
        let id = attrs
            .id
            .ok_or(ControlError::missing(Nest::Peer, attr::peer::ID))?;

        match (sockets.lookup(fd)?, attrs.remote_given()) {
            (TransportKind::Udp, false) => {
                return Err(ControlError::inval(
                    "missing remote IP address for UDP socket",
                ));
            }
            (TransportKind::Tcp, true) => {
                return Err(ControlError::inval(
                    "unexpected remote IP address with TCP socket",
                ));
            }
            _ => {}
        }
        let transport = sockets.attach()?;

        let peer = Arc::new(Peer::new(id, transport));
        let keepalive = self.modify_peer(&peer, attrs, now);
        if let Err(error) = self.insert_peer(&peer) {
            sockets.release(transport);
            return Err(error);
        }
        // Arm the timer only now that the worker can see the peer (6.16
        // kicks it before insertion and may miss the peer, §2.7).
        if keepalive {
            self.timer().arm(self.secs(now));
        }
        Ok(())
    }

    /// PEER_SET (§7.5): changes remote endpoint, VPN addresses, keepalive or
    /// tx id of an existing peer.
    ///
    /// # Errors
    ///
    /// The kernel's errno and extack for the first failing check.
    pub fn peer_set(&self, peer: Option<&PeerAttrs>, now: Instant) -> Result<(), ControlError> {
        let attrs = peer.ok_or(ControlError::missing(Nest::Top, attr::PEER))?;
        self.precheck_peer(attrs)?;
        if attrs.socket.is_some() {
            return Err(ControlError::inval("socket cannot be modified"));
        }
        let id = attrs
            .id
            .ok_or(ControlError::missing(Nest::Peer, attr::peer::ID))?;
        let peer = self.find_peer(id, || format!("cannot find peer with id {id}"))?;
        if peer.transport.kind == TransportKind::Tcp && attrs.remote_given() {
            return Err(ControlError::inval(
                "unexpected remote IP address with TCP socket",
            ));
        }

        let writer = self.lock_writer();
        let old_vpn = peer.vpn();
        let keepalive = self.modify_peer(&peer, attrs, now);
        let vpn_changed = attrs.vpn_ipv4.is_some() || attrs.vpn_ipv6.is_some();
        // 6.16 leaves the transport-address table keyed by the old remote;
        // later kernels re-key it, and so do we (§7.5 PEER_SET step 4).
        let remote_changed = attrs.remote_given();
        if self.table().contains(&peer) && (vpn_changed || remote_changed) {
            self.publish(&writer, |table| {
                if let PeerTable::Mp(mp) = table {
                    if vpn_changed {
                        mp.rehash_vpn(&peer, old_vpn);
                    }
                    if remote_changed {
                        mp.rehash_endpoint(&peer);
                    }
                }
            });
        }
        drop(writer);

        if keepalive {
            self.timer().arm(self.secs(now));
        }
        Ok(())
    }

    /// PEER_GET do (§7.5, §7.7).
    ///
    /// # Errors
    ///
    /// EINVAL for a missing nest or id or any other attribute, ENOENT for an
    /// unknown peer.
    pub fn peer_get(&self, peer: Option<&PeerAttrs>) -> Result<PeerInfo, ControlError> {
        let attrs = peer.ok_or(ControlError::missing(Nest::Top, attr::PEER))?;
        let id = attrs
            .id
            .ok_or(ControlError::missing(Nest::Peer, attr::peer::ID))?;
        if let Some(other) = attrs.present_except_id() {
            return Err(ControlError::inval(format_args!(
                "unexpected attribute {other}"
            )));
        }
        Ok(self
            .find_peer(id, || format!("cannot find peer with id {id}"))?
            .info())
    }

    /// PEER_GET dump: every peer, in the kernel's order (the walk of its id
    /// hash table, §2.3; clients must not depend on it, but it is what
    /// Linux sends).
    pub fn peer_dump(&self) -> Vec<PeerInfo> {
        self.table().peers().map(|p| p.info()).collect()
    }

    /// PEER_DEL (§7.5): removes a peer with reason `userspace`.
    ///
    /// # Errors
    ///
    /// EINVAL for a missing nest or id, ENOENT for an unknown peer (also if
    /// it disappears concurrently).
    pub fn peer_del(&self, peer: Option<&PeerAttrs>) -> Result<(), ControlError> {
        let attrs = peer.ok_or(ControlError::missing(Nest::Top, attr::PEER))?;
        let id = attrs
            .id
            .ok_or(ControlError::missing(Nest::Peer, attr::peer::ID))?;
        let peer = self.find_peer(id, || format!("cannot find peer with id {id}"))?;
        if self.remove_peer(&peer, DelReason::Userspace) {
            Ok(())
        } else {
            Err(ControlError::new(
                Errno::NoEnt,
                format_args!("cannot find peer with id {id}"),
            ))
        }
    }

    /// KEY_NEW (§6.2, §7.5): installs a key into a slot, replacing what was
    /// there.
    ///
    /// # Errors
    ///
    /// EINVAL for missing attributes or cipher `none`, ENOENT for an unknown
    /// peer, EINVAL for a key the cipher cannot take.
    pub fn key_new(&self, keyconf: Option<KeyconfAttrs>) -> Result<(), ControlError> {
        let attrs = keyconf.ok_or(ControlError::missing(Nest::Top, attr::KEYCONF))?;
        let missing = |attr| ControlError::missing(Nest::Keyconf, attr);
        let peer_id = attrs.peer_id.ok_or(missing(attr::keyconf::PEER_ID))?;
        let slot = attrs.slot.ok_or(missing(attr::keyconf::SLOT))?;
        let key_id = attrs.key_id.ok_or(missing(attr::keyconf::KEY_ID))?;
        let cipher = attrs.cipher_alg.ok_or(missing(attr::keyconf::CIPHER_ALG))?;
        let encrypt = attrs
            .encrypt_dir
            .ok_or(missing(attr::keyconf::ENCRYPT_DIR))?;
        let decrypt = attrs
            .decrypt_dir
            .ok_or(missing(attr::keyconf::DECRYPT_DIR))?;
        let encrypt = key_dir(encrypt, cipher, Nest::EncryptDir)?;
        let decrypt = key_dir(decrypt, cipher, Nest::DecryptDir)?;

        let peer = self.find_peer(peer_id, || {
            format!("no peer with id {peer_id} to set key for")
        })?;
        let config = KeyConfig {
            key_id,
            cipher,
            encrypt,
            decrypt,
        };
        peer.keys.install(slot, config).map_err(|error| {
            ControlError::new(
                key_error_errno(&error),
                format_args!("cannot install new key for peer {peer_id}"),
            )
        })
    }

    /// KEY_GET (§6.5, §7.5): key id and cipher alg of a slot.
    ///
    /// # Errors
    ///
    /// EINVAL for a missing nest, peer id or slot or an unexpected attribute,
    /// ENOENT for an unknown peer or an empty slot.
    pub fn key_get(&self, keyconf: Option<&KeyconfAttrs>) -> Result<KeyGetReply, ControlError> {
        let attrs = keyconf.ok_or(ControlError::missing(Nest::Top, attr::KEYCONF))?;
        let missing = |attr| ControlError::missing(Nest::Keyconf, attr);
        let peer_id = attrs.peer_id.ok_or(missing(attr::keyconf::PEER_ID))?;
        let slot = attrs.slot.ok_or(missing(attr::keyconf::SLOT))?;
        let unexpected = [
            (attr::keyconf::KEY_ID, attrs.key_id.is_some()),
            (attr::keyconf::CIPHER_ALG, attrs.cipher_alg.is_some()),
            (attr::keyconf::ENCRYPT_DIR, attrs.encrypt_dir.is_some()),
            (attr::keyconf::DECRYPT_DIR, attrs.decrypt_dir.is_some()),
        ];
        if let Some((other, _)) = unexpected.iter().find(|(_, present)| *present) {
            return Err(ControlError::inval(format_args!(
                "unexpected attribute {other}"
            )));
        }

        let peer = self.find_peer(peer_id, || format!("cannot find peer with id {peer_id}"))?;
        let key = peer.keys.info(slot).ok_or_else(|| {
            ControlError::new(
                Errno::NoEnt,
                format_args!(
                    "cannot extract key from slot {} for peer {peer_id}",
                    slot_number(slot)
                ),
            )
        })?;
        Ok(KeyGetReply { peer_id, slot, key })
    }

    /// KEY_SWAP (§6.3): flips primary and secondary.
    ///
    /// # Errors
    ///
    /// EINVAL for a missing nest or peer id, ENOENT for an unknown peer.
    pub fn key_swap(&self, keyconf: Option<&KeyconfAttrs>) -> Result<(), ControlError> {
        let attrs = keyconf.ok_or(ControlError::missing(Nest::Top, attr::KEYCONF))?;
        let peer_id = attrs
            .peer_id
            .ok_or(ControlError::missing(Nest::Keyconf, attr::keyconf::PEER_ID))?;
        let peer = self.find_peer(peer_id, || {
            format!("no peer with id {peer_id} to swap keys for")
        })?;
        peer.keys.swap();
        Ok(())
    }

    /// KEY_DEL (§6.4): empties a slot; an empty slot is no error.
    ///
    /// # Errors
    ///
    /// EINVAL for a missing nest, peer id or slot, ENOENT for an unknown
    /// peer.
    pub fn key_del(&self, keyconf: Option<&KeyconfAttrs>) -> Result<(), ControlError> {
        let attrs = keyconf.ok_or(ControlError::missing(Nest::Top, attr::KEYCONF))?;
        let missing = |attr| ControlError::missing(Nest::Keyconf, attr);
        let peer_id = attrs.peer_id.ok_or(missing(attr::keyconf::PEER_ID))?;
        let slot = attrs.slot.ok_or(missing(attr::keyconf::SLOT))?;
        let peer = self.find_peer(peer_id, || {
            format!("no peer with id {peer_id} to delete key for")
        })?;
        peer.keys.delete(slot);
        Ok(())
    }

    /// The handlers' common peer checks (§7.5 "common peer pre-checks").
    fn precheck_peer(&self, attrs: &PeerAttrs) -> Result<(), ControlError> {
        if attrs.id.is_none() {
            return Err(ControlError::missing(Nest::Peer, attr::peer::ID));
        }
        if attrs.remote_ipv4.is_some() && attrs.remote_ipv6.is_some() {
            return Err(ControlError::inval(
                "cannot specify both remote IPv4 or IPv6 address",
            ));
        }
        if !attrs.remote_given() && attrs.remote_port.is_some() {
            return Err(ControlError::inval(
                "cannot specify remote port without IP address",
            ));
        }
        if attrs.remote_given() && attrs.remote_port.is_none() {
            return Err(ControlError::inval(
                "cannot specify remote IP address without port",
            ));
        }
        if attrs.remote_ipv4.is_none() && attrs.local_ipv4.is_some() {
            return Err(ControlError::inval(
                "cannot specify local IPv4 address without remote",
            ));
        }
        if attrs.remote_ipv6.is_none() && attrs.local_ipv6.is_some() {
            return Err(ControlError::inval(
                "cannot specify local IPV6 address without remote",
            ));
        }
        let local = family(attrs.local_ipv4, attrs.local_ipv6);
        let remote = family(attrs.remote_ipv4, attrs.remote_ipv6);
        if local.is_some() && remote.is_some() && local != remote {
            return Err(ControlError::inval(
                "mismatching local and remote address families",
            ));
        }
        if remote != Some(Family::V6) && attrs.remote_ipv6_scope_id.is_some() {
            return Err(ControlError::inval(
                "cannot specify scope id without remote IPv6 address",
            ));
        }
        if self.mode() == Mode::P2p && (attrs.vpn_ipv4.is_some() || attrs.vpn_ipv6.is_some()) {
            return Err(ControlError::inval("unexpected VPN IP in P2P mode"));
        }
        if attrs.keepalive_interval.is_some() != attrs.keepalive_timeout.is_some() {
            return Err(ControlError::inval(
                "keepalive interval and timeout are required together",
            ));
        }
        Ok(())
    }

    /// The kernel's "modify" step for PEER_NEW and PEER_SET. Returns whether
    /// a keepalive was configured (the caller re-arms the timer).
    fn modify_peer(&self, peer: &Peer, attrs: &PeerAttrs, now: Instant) -> bool {
        if let Some(remote) = remote_addr(attrs) {
            let local = local_addr(attrs, &remote);
            // A new bind: the learned local address is forgotten unless
            // given here.
            peer.set_bind(Bind { remote, local });
        }
        if let Some(tx_id) = attrs.tx_id {
            peer.set_tx_id(tx_id);
        }
        if attrs.vpn_ipv4.is_some() || attrs.vpn_ipv6.is_some() {
            let old = peer.vpn();
            peer.set_vpn(VpnAddrs {
                ipv4: attrs.vpn_ipv4.unwrap_or(old.ipv4),
                ipv6: attrs.vpn_ipv6.unwrap_or(old.ipv6),
            });
        }
        match (attrs.keepalive_interval, attrs.keepalive_timeout) {
            (Some(interval), Some(timeout)) => {
                peer.keepalive.set(interval, timeout, self.secs(now));
                peer.keepalive.enabled()
            }
            _ => false,
        }
    }

    /// §7.5 PEER_NEW step 10 and §2.2: MP refuses a taken id, P2P replaces.
    fn insert_peer(&self, peer: &Arc<Peer>) -> Result<(), ControlError> {
        let writer = self.lock_writer();
        let table = self.table();
        match &**table {
            PeerTable::Mp(mp) if mp.contains_id(peer.id) => {
                return Err(ControlError::new(
                    Errno::Exist,
                    format_args!("cannot add new peer (id={}) to hashtable: -17", peer.id),
                ));
            }
            PeerTable::Mp(_) => self.publish(&writer, |table| {
                if let PeerTable::Mp(mp) = table {
                    mp.insert(peer);
                }
            }),
            PeerTable::P2p(old) => {
                let old = old.clone();
                self.publish(&writer, |table| *table = PeerTable::P2p(Some(peer.clone())));
                if let Some(old) = old {
                    old.mark_removed(DelReason::Teardown);
                    self.notify(Notification::PeerDeleted {
                        peer_id: old.id,
                        reason: DelReason::Teardown,
                        transport: old.transport.id,
                    });
                }
                if !self.carrier.swap(true, std::sync::atomic::Ordering::AcqRel) {
                    self.notify(Notification::Carrier { on: true });
                }
            }
        }
        Ok(())
    }

    /// The peer with id `id`, or ENOENT with the op's own wording.
    fn find_peer(
        &self,
        id: u32,
        not_found: impl FnOnce() -> String,
    ) -> Result<Arc<Peer>, ControlError> {
        self.table()
            .by_id(id)
            .cloned()
            .ok_or_else(|| ControlError::new(Errno::NoEnt, not_found()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

/// The family of an address pair, counting v4-mapped IPv6 as IPv4.
fn family(v4: Option<Ipv4Addr>, v6: Option<Ipv6Addr>) -> Option<Family> {
    match (v4, v6) {
        (Some(_), _) => Some(Family::V4),
        (None, Some(v6)) if v6.to_ipv4_mapped().is_some() => Some(Family::V4),
        (None, Some(_)) => Some(Family::V6),
        (None, None) => None,
    }
}

/// The remote endpoint of the attributes, v4-mapped turned into IPv4.
///
/// 6.16 validates the scope id but never stores it; later kernels store it,
/// and so do we (§7.5 "modify", §12.4).
fn remote_addr(attrs: &PeerAttrs) -> Option<SocketAddr> {
    let port = attrs.remote_port?;
    if let Some(v4) = attrs.remote_ipv4 {
        return Some(SocketAddr::new(v4.into(), port));
    }
    let v6 = attrs.remote_ipv6?;
    Some(match v6.to_ipv4_mapped() {
        Some(v4) => SocketAddr::new(v4.into(), port),
        None => SocketAddr::V6(SocketAddrV6::new(
            v6,
            port,
            0,
            attrs.remote_ipv6_scope_id.unwrap_or(0),
        )),
    })
}

/// The local address of the attributes (v4-mapped turned into IPv4), or the
/// unspecified address of the remote's family.
fn local_addr(attrs: &PeerAttrs, remote: &SocketAddr) -> IpAddr {
    let given = attrs
        .local_ipv4
        .map(IpAddr::V4)
        .or_else(|| attrs.local_ipv6.map(|v6| IpAddr::V6(v6).to_canonical()));
    given.unwrap_or(match remote {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    })
}

/// One key direction of KEY_NEW (§7.5 KEY_NEW step 3).
fn key_dir(attrs: KeydirAttrs, cipher: CipherAlg, nest: Nest) -> Result<KeyDir, ControlError> {
    match cipher {
        CipherAlg::AesGcm | CipherAlg::ChaCha20Poly1305 => {
            let cipher_key = attrs
                .cipher_key
                .ok_or(ControlError::missing(nest, attr::keydir::CIPHER_KEY))?;
            let nonce_tail = attrs
                .nonce_tail
                .ok_or(ControlError::missing(nest, attr::keydir::NONCE_TAIL))?;
            Ok(KeyDir {
                cipher_key,
                nonce_tail,
            })
        }
        CipherAlg::None => Err(ControlError::inval("unsupported cipher")),
    }
}

fn key_error_errno(error: &KeyError) -> Errno {
    // Every key setup failure we can have is EINVAL in the kernel; ENOMEM
    // would need an allocation failure, which Rust aborts on.
    match error {
        KeyError::UnsupportedCipher { .. }
        | KeyError::InvalidKeyLength { .. }
        | KeyError::InvalidKeyId { .. }
        | KeyError::Backend { .. } => Errno::Inval,
    }
}

fn slot_number(slot: KeySlot) -> u32 {
    match slot {
        KeySlot::Primary => 0,
        KeySlot::Secondary => 1,
    }
}

#[cfg(test)]
mod tests;
