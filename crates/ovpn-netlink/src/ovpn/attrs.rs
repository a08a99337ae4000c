//! Numbers and enums of the `ovpn` generic-netlink family
//! (`spec/ovpn.yaml`, `include/uapi/linux/ovpn.h`; kernel-behaviour §7.1,
//! §7.2, §11 for the later `tx-id` and `peer-float-ntf`).

/// Family name to resolve through nlctrl.
pub const FAMILY_NAME: &str = "ovpn";
/// Family interface version.
pub const FAMILY_VERSION: u8 = 1;
/// The one multicast group.
pub const MCGRP_PEERS: &str = "peers";
/// `nonce-tail-size`: bytes of a nonce tail.
pub const NONCE_TAIL_SIZE: usize = 8;
/// Largest peer id (24 bits).
pub const PEER_ID_MAX: u32 = 0xFF_FFFF;

/// Top-level attributes (`OVPN_A_*`).
pub mod top {
    /// `ifindex`, u32.
    pub const IFINDEX: u16 = 1;
    /// `peer`, nest of [`super::peer`] attributes.
    pub const PEER: u16 = 2;
    /// `keyconf`, nest of [`super::keyconf`] attributes.
    pub const KEYCONF: u16 = 3;
}

/// Peer attributes (`OVPN_A_PEER_*`).
pub mod peer {
    /// `id`, u32 ≤ 0xFFFFFF.
    pub const ID: u16 = 1;
    /// `remote-ipv4`, be32.
    pub const REMOTE_IPV4: u16 = 2;
    /// `remote-ipv6`, 16 bytes.
    pub const REMOTE_IPV6: u16 = 3;
    /// `remote-ipv6-scope-id`, u32.
    pub const REMOTE_IPV6_SCOPE_ID: u16 = 4;
    /// `remote-port`, be16 ≥ 1.
    pub const REMOTE_PORT: u16 = 5;
    /// `socket`, u32 file descriptor.
    pub const SOCKET: u16 = 6;
    /// `socket-netnsid`, s32.
    pub const SOCKET_NETNSID: u16 = 7;
    /// `vpn-ipv4`, be32.
    pub const VPN_IPV4: u16 = 8;
    /// `vpn-ipv6`, 16 bytes.
    pub const VPN_IPV6: u16 = 9;
    /// `local-ipv4`, be32.
    pub const LOCAL_IPV4: u16 = 10;
    /// `local-ipv6`, 16 bytes.
    pub const LOCAL_IPV6: u16 = 11;
    /// `local-port`, be16 ≥ 1.
    pub const LOCAL_PORT: u16 = 12;
    /// `keepalive-interval`, u32 seconds.
    pub const KEEPALIVE_INTERVAL: u16 = 13;
    /// `keepalive-timeout`, u32 seconds.
    pub const KEEPALIVE_TIMEOUT: u16 = 14;
    /// `del-reason`, u32 enum [`super::DelPeerReason`].
    pub const DEL_REASON: u16 = 15;
    /// `vpn-rx-bytes`, uint.
    pub const VPN_RX_BYTES: u16 = 16;
    /// `vpn-tx-bytes`, uint.
    pub const VPN_TX_BYTES: u16 = 17;
    /// `vpn-rx-packets`, uint.
    pub const VPN_RX_PACKETS: u16 = 18;
    /// `vpn-tx-packets`, uint.
    pub const VPN_TX_PACKETS: u16 = 19;
    /// `link-rx-bytes`, uint.
    pub const LINK_RX_BYTES: u16 = 20;
    /// `link-tx-bytes`, uint.
    pub const LINK_TX_BYTES: u16 = 21;
    /// `link-rx-packets`, uint.
    pub const LINK_RX_PACKETS: u16 = 22;
    /// `link-tx-packets`, uint.
    pub const LINK_TX_PACKETS: u16 = 23;
    /// `tx-id`, u32 ≤ 0xFFFFFF (later kernels, §11).
    pub const TX_ID: u16 = 24;
}

/// Key configuration attributes (`OVPN_A_KEYCONF_*`).
pub mod keyconf {
    /// `peer-id`, u32 ≤ 0xFFFFFF.
    pub const PEER_ID: u16 = 1;
    /// `slot`, u32 enum [`super::KeySlot`].
    pub const SLOT: u16 = 2;
    /// `key-id`, u32 ≤ 7 (u16 in KEY_SWAP_NTF, §7.6).
    pub const KEY_ID: u16 = 3;
    /// `cipher-alg`, u32 enum [`super::CipherAlg`].
    pub const CIPHER_ALG: u16 = 4;
    /// `encrypt-dir`, nest of [`super::keydir`].
    pub const ENCRYPT_DIR: u16 = 5;
    /// `decrypt-dir`, nest of [`super::keydir`].
    pub const DECRYPT_DIR: u16 = 6;
}

/// Key direction attributes (`OVPN_A_KEYDIR_*`).
pub mod keydir {
    /// `cipher-key`, ≤ 256 bytes.
    pub const CIPHER_KEY: u16 = 1;
    /// `nonce-tail`, exactly 8 bytes.
    pub const NONCE_TAIL: u16 = 2;
}

/// Spec name of a peer attribute.
pub fn peer_attr_name(ty: u16) -> Option<&'static str> {
    const NAMES: [&str; 24] = [
        "id",
        "remote-ipv4",
        "remote-ipv6",
        "remote-ipv6-scope-id",
        "remote-port",
        "socket",
        "socket-netnsid",
        "vpn-ipv4",
        "vpn-ipv6",
        "local-ipv4",
        "local-ipv6",
        "local-port",
        "keepalive-interval",
        "keepalive-timeout",
        "del-reason",
        "vpn-rx-bytes",
        "vpn-tx-bytes",
        "vpn-rx-packets",
        "vpn-tx-packets",
        "link-rx-bytes",
        "link-tx-bytes",
        "link-rx-packets",
        "link-tx-packets",
        "tx-id",
    ];
    NAMES.get(usize::from(ty).checked_sub(1)?).copied()
}

/// Spec name of a keyconf attribute.
pub fn keyconf_attr_name(ty: u16) -> Option<&'static str> {
    const NAMES: [&str; 6] = [
        "peer-id",
        "slot",
        "key-id",
        "cipher-alg",
        "encrypt-dir",
        "decrypt-dir",
    ];
    NAMES.get(usize::from(ty).checked_sub(1)?).copied()
}

/// Spec name of a keydir attribute.
pub fn keydir_attr_name(ty: u16) -> Option<&'static str> {
    match ty {
        keydir::CIPHER_KEY => Some("cipher-key"),
        keydir::NONCE_TAIL => Some("nonce-tail"),
        _ => None,
    }
}

/// Spec name of a top-level attribute.
pub fn top_attr_name(ty: u16) -> Option<&'static str> {
    match ty {
        top::IFINDEX => Some("ifindex"),
        top::PEER => Some("peer"),
        top::KEYCONF => Some("keyconf"),
        _ => None,
    }
}

/// Declares a u32-backed spec enum that keeps unknown values.
macro_rules! spec_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $val:literal => $spec:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $var,)+
            /// A value this crate does not know (a newer kernel's).
            Unknown(u32),
        }

        impl $name {
            /// The enum for a wire value.
            pub fn from_u32(v: u32) -> Self {
                match v {
                    $($val => Self::$var,)+
                    other => Self::Unknown(other),
                }
            }

            /// The wire value.
            pub fn to_u32(self) -> u32 {
                match self {
                    $(Self::$var => $val,)+
                    Self::Unknown(v) => v,
                }
            }

            /// The spec's name for the value, `None` for unknown values.
            pub fn spec_name(self) -> Option<&'static str> {
                match self {
                    $(Self::$var => Some($spec),)+
                    Self::Unknown(_) => None,
                }
            }

            /// The value for a spec name.
            pub fn from_spec_name(name: &str) -> Option<Self> {
                match name {
                    $($spec => Some(Self::$var),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self.spec_name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "{}", self.to_u32()),
                }
            }
        }
    };
}

spec_enum! {
    /// `cipher-alg`.
    CipherAlg {
        /// No encryption (rejected by KEY_NEW).
        None = 0 => "none",
        /// AES-GCM.
        AesGcm = 1 => "aes-gcm",
        /// ChaCha20-Poly1305.
        Chacha20Poly1305 = 2 => "chacha20-poly1305",
    }
}

spec_enum! {
    /// `del-peer-reason`.
    DelPeerReason {
        /// The device went away.
        Teardown = 0 => "teardown",
        /// PEER_DEL from userspace.
        Userspace = 1 => "userspace",
        /// Keepalive timeout.
        Expired = 2 => "expired",
        /// Transport error.
        TransportError = 3 => "transport-error",
        /// Transport socket closed or disconnected.
        TransportDisconnect = 4 => "transport-disconnect",
    }
}

spec_enum! {
    /// `key-slot`.
    KeySlot {
        /// The slot used to encrypt.
        Primary = 0 => "primary",
        /// The other slot.
        Secondary = 1 => "secondary",
    }
}

/// Device mode, `IFLA_OVPN_MODE` (u8, `include/uapi/linux/if_link.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// 0, peer-to-peer (client): at most one peer.
    #[default]
    P2p,
    /// 1, multi-peer (server).
    Mp,
}

impl Mode {
    /// The mode for a wire value, `None` above 1.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::P2p),
            1 => Some(Self::Mp),
            _ => None,
        }
    }

    /// The wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            Self::P2p => 0,
            Self::Mp => 1,
        }
    }

    /// The name `ip link` and the YNL spec use: `p2p` or `mp`.
    pub fn name(self) -> &'static str {
        match self {
            Self::P2p => "p2p",
            Self::Mp => "mp",
        }
    }
}

/// Spec names for a path of attribute types as returned by
/// [`crate::ack::ErrorReport::attribute_path`] for an ovpn request, e.g.
/// `[2, 5]` → `["peer", "remote-port"]`. Unknown types become `attr-N`.
pub fn path_names(path: &[u16]) -> Vec<String> {
    let mut out = Vec::with_capacity(path.len());
    let name_at = |ty: u16, depth: usize| -> Option<&'static str> {
        match (depth, path) {
            (0, _) => top_attr_name(ty),
            (1, [top::PEER, ..]) => peer_attr_name(ty),
            (1, [top::KEYCONF, ..]) => keyconf_attr_name(ty),
            (
                2,
                [
                    top::KEYCONF,
                    keyconf::ENCRYPT_DIR | keyconf::DECRYPT_DIR,
                    ..,
                ],
            ) => keydir_attr_name(ty),
            _ => None,
        }
    };
    for (depth, &ty) in path.iter().enumerate() {
        let name = name_at(ty, depth);
        out.push(name.map_or_else(|| format!("attr-{ty}"), str::to_owned));
    }
    out
}
