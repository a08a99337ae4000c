//! The kernel's validation of `ovpn` requests, server side, step by step
//! in the kernel's order (kernel-behaviour §7.3–§7.5).
//!
//! 1. [`validate_request`]: the generic-netlink core
//!    (`net/netlink/genetlink.c`, `genl_family_rcv_msg`): header length
//!    (`EINVAL`), operation lookup by command and `NLM_F_DUMP` (unknown
//!    command, notification-only command, or a dump of a non-dump op →
//!    `EOPNOTSUPP`), `admin-perm` (`EPERM`), then strict validation of the
//!    whole attribute tree against the op's policy (`netlink-gen.c`,
//!    `lib/nlattr.c`, see [`crate::validate`]). For a dump these errors
//!    are sent as `NLMSG_ERROR`, because the core validates before the
//!    dump starts.
//! 2. [`Request::pre_doit`]: the ovpn pre-handler (`netlink.c`,
//!    `ovpn_get_dev_from_attrs`): missing ifindex, no such device, not an
//!    ovpn device. The PEER_GET dump runs the same checks inside the dump,
//!    so there the daemon must report a failure with
//!    [`crate::ack::encode_done`], not as `NLMSG_ERROR`.
//! 3. The handler's own checks (`netlink.c`, `ovpn_nl_*_doit`):
//!    [`Request::peer_new`], [`Request::peer_set`], … They need only the
//!    device mode; checks that need more state (does the peer exist, is the
//!    socket UDP or TCP) are the functions in [`reject`] and
//!    [`check_transport`], which the daemon calls at the same point in the
//!    sequence as the kernel.
//!
//! Messages carry the module prefix `ovpn: ` exactly as the kernel's
//! `NL_SET_ERR_MSG_MOD` adds it.
//!
//! [`Profile`] selects the kernel: `Linux6_16` is the baseline; `Later`
//! follows the newest kernel (tx-id accepted, keepalive ≤ 86400, VPN IP
//! checks of §11).

use super::attrs::{CipherAlg, KeySlot, Mode, keyconf as kc, keydir as kd, peer as pa, top};
use super::key::{KeyConf, KeyDir, Secret};
use super::msg::Cmd;
use super::peer::Peer;
use crate::ack::Rejection;
use crate::attr::{Attr, Attrs};
use crate::errno::{EINVAL, ENOENT, ENOTSOCK, EOPNOTSUPP, EPERM};
use crate::genl::GENL_ATTRS_OFFSET;
use crate::nlmsg::{NlMsg, NlMsgHeader};
use crate::policy_dump::OpPolicies;
use crate::validate::{Pol, PolicySet, Strictness, validate};

/// Which kernel's policy to reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// Linux 6.16, the baseline of kernel-behaviour.md.
    #[default]
    Linux6_16,
    /// The newest kernel described in §11.
    Later,
}

/// What the daemon found for a request's ifindex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceLookup {
    /// No interface with that index in the requester's namespace.
    NotFound,
    /// An interface, but not an ovpn device.
    NotOvpn,
    /// An ovpn device in this mode.
    Ovpn(Mode),
}

/// The transport of a peer's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP socket.
    Udp,
    /// TCP socket.
    Tcp,
}

/// A request that passed the generic-netlink layer.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The netlink header.
    pub header: NlMsgHeader,
    /// The command.
    pub cmd: Cmd,
    /// Whether this is the PEER_GET dump.
    pub dump: bool,
    profile: Profile,
    ifindex: Option<Attr<'a>>,
    peer: Option<Attr<'a>>,
    keyconf: Option<Attr<'a>>,
}

/// PEER_NEW arguments after the handler's checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerNewArgs {
    /// The peer as requested (id, endpoint, VPN addresses, keepalive, …).
    pub peer: Peer,
    /// The socket file descriptor number.
    pub socket: u32,
}

/// Step 1: the generic-netlink core's checks and the op's attribute
/// policy. `cap_net_admin` is whether the requester holds `CAP_NET_ADMIN`
/// (in the initial user namespace, for the kernel).
///
/// # Errors
///
/// The kernel's errno and extended ACK for the first violation.
pub fn validate_request<'a>(
    msg: &NlMsg<'a>,
    cap_net_admin: bool,
    profile: Profile,
) -> Result<Request<'a>, Rejection> {
    let Some(genl) = msg.payload.first() else {
        return Err(Rejection::bare(EINVAL));
    };
    if msg.payload.len() < 4 {
        return Err(Rejection::bare(EINVAL));
    }
    let cmd = Cmd::from_u8(*genl);
    let dump = msg.header.is_dump();
    let set = op_policy(cmd, dump, profile).ok_or(Rejection::bare(EOPNOTSUPP))?;
    // Every op of the family is admin-perm.
    if !cap_net_admin {
        return Err(Rejection::bare(EPERM));
    }
    let attrs = &msg.payload[4..];
    validate(attrs, GENL_ATTRS_OFFSET, set, Strictness::Strict)?;

    let mut req = Request {
        header: msg.header,
        cmd,
        dump,
        profile,
        ifindex: None,
        peer: None,
        keyconf: None,
    };
    for a in Attrs::new(attrs, GENL_ATTRS_OFFSET).flatten() {
        match a.ty() {
            top::IFINDEX => req.ifindex = Some(a),
            top::PEER => req.peer = Some(a),
            top::KEYCONF => req.keyconf = Some(a),
            _ => {}
        }
    }
    Ok(req)
}

impl<'a> Request<'a> {
    /// The requested ifindex.
    ///
    /// # Errors
    ///
    /// Missing ifindex: `EINVAL`, missing type 1 at the top level.
    pub fn ifindex(&self) -> Result<u32, Rejection> {
        let a = self.ifindex.ok_or(Rejection::missing(top::IFINDEX, None))?;
        Ok(a.u32().unwrap_or_default())
    }

    /// Step 2: ifindex present, and `lookup` (called with it) finds an
    /// ovpn device; returns its mode.
    ///
    /// # Errors
    ///
    /// Missing ifindex (`EINVAL`), no device (`ENODEV`), not ovpn
    /// (`EINVAL`, pointing at ifindex).
    pub fn pre_doit(&self, lookup: impl FnOnce(u32) -> DeviceLookup) -> Result<Mode, Rejection> {
        let ifindex = self.ifindex()?;
        match lookup(ifindex) {
            DeviceLookup::Ovpn(mode) => Ok(mode),
            DeviceLookup::NotFound => Err(Rejection::msg(
                crate::errno::ENODEV,
                "ovpn: ifindex does not match any interface",
            )),
            DeviceLookup::NotOvpn => {
                let off = self.ifindex.map_or(0, |a| a.offset());
                Err(Rejection::msg(EINVAL, "ovpn: specified interface is not ovpn").at(off))
            }
        }
    }

    fn peer_nest(&self) -> Result<(Attr<'a>, [Option<Attr<'a>>; 25]), Rejection> {
        let nest = self.peer.ok_or(Rejection::missing(top::PEER, None))?;
        Ok((nest, table(nest)))
    }

    fn keyconf_nest(&self) -> Result<(Attr<'a>, [Option<Attr<'a>>; 7]), Rejection> {
        let nest = self.keyconf.ok_or(Rejection::missing(top::KEYCONF, None))?;
        Ok((nest, table(nest)))
    }

    /// Step 3 of PEER_NEW, up to what needs the socket: peer nest, common
    /// pre-checks, socket present, VPN IP in MP mode.
    ///
    /// # Errors
    ///
    /// The kernel's rejection for the first failed check.
    pub fn peer_new(&self, mode: Mode) -> Result<PeerNewArgs, Rejection> {
        let (nest, t) = self.peer_nest()?;
        peer_precheck(nest, &t, mode)?;
        let socket = t[usize::from(pa::SOCKET)]
            .ok_or(Rejection::missing(pa::SOCKET, Some(nest.offset())))?;
        if mode == Mode::Mp {
            let v4 = t[usize::from(pa::VPN_IPV4)];
            let v6 = t[usize::from(pa::VPN_IPV6)];
            match self.profile {
                Profile::Linux6_16 if v4.is_none() && v6.is_none() => {
                    return Err(Rejection::msg(
                        EINVAL,
                        "ovpn: VPN IP must be provided in MP mode",
                    ));
                }
                Profile::Later => {
                    let zero4 = v4.is_none_or(|a| a.payload() == [0; 4]);
                    let zero6 = v6.is_none_or(|a| a.payload() == [0; 16]);
                    if zero4 && zero6 {
                        return Err(mp_needs_vpn_ip());
                    }
                }
                Profile::Linux6_16 => {}
            }
        }
        Ok(PeerNewArgs {
            peer: decode_peer(nest),
            socket: socket.u32().unwrap_or_default(),
        })
    }

    /// Step 3 of PEER_SET up to the peer lookup: peer nest and common
    /// pre-checks. Then the daemon calls [`reject::peer_not_found`] and
    /// [`check_transport`] (with `new_peer: false`).
    ///
    /// # Errors
    ///
    /// The kernel's rejection for the first failed check.
    pub fn peer_set(&self, mode: Mode) -> Result<Peer, Rejection> {
        let (nest, t) = self.peer_nest()?;
        peer_precheck(nest, &t, mode)?;
        if t[usize::from(pa::SOCKET)].is_some() {
            // Unreachable through the policy (socket is not in
            // peer-set-input), kept because the handler checks it.
            return Err(Rejection::msg(EINVAL, "ovpn: socket cannot be modified"));
        }
        Ok(decode_peer(nest))
    }

    /// PEER_GET (do): the peer id; any other peer attribute is refused.
    ///
    /// # Errors
    ///
    /// Missing nest or id, or "unexpected attribute N" (lowest N first).
    pub fn peer_get(&self) -> Result<u32, Rejection> {
        let (nest, t) = self.peer_nest()?;
        let id = require(&t, pa::ID, nest)?;
        only(&t, &[pa::ID])?;
        Ok(id.u32().unwrap_or_default())
    }

    /// PEER_DEL: the peer id.
    ///
    /// # Errors
    ///
    /// Missing nest or id.
    pub fn peer_del(&self) -> Result<u32, Rejection> {
        let (nest, t) = self.peer_nest()?;
        Ok(require(&t, pa::ID, nest)?.u32().unwrap_or_default())
    }

    /// KEY_NEW: every keyconf attribute in the kernel's order, then both
    /// directions (key and nonce tail each) for a supported cipher.
    ///
    /// # Errors
    ///
    /// Missing attributes (with type and nest) or "unsupported cipher".
    pub fn key_new(&self) -> Result<KeyConf, Rejection> {
        let (nest, t) = self.keyconf_nest()?;
        for ty in [
            kc::PEER_ID,
            kc::SLOT,
            kc::KEY_ID,
            kc::CIPHER_ALG,
            kc::ENCRYPT_DIR,
            kc::DECRYPT_DIR,
        ] {
            require(&t, ty, nest)?;
        }
        let cipher = CipherAlg::from_u32(u32_of(&t, kc::CIPHER_ALG));
        let mut dirs = Vec::with_capacity(2);
        for ty in [kc::ENCRYPT_DIR, kc::DECRYPT_DIR] {
            let dir_nest = t[usize::from(ty)].ok_or(Rejection::missing(ty, Some(nest.offset())))?;
            dirs.push(key_dir(dir_nest, cipher)?);
        }
        let decrypt_dir = dirs.pop();
        let encrypt_dir = dirs.pop();
        Ok(KeyConf {
            peer_id: Some(u32_of(&t, kc::PEER_ID)),
            slot: Some(KeySlot::from_u32(u32_of(&t, kc::SLOT))),
            key_id: Some(u32_of(&t, kc::KEY_ID)),
            cipher_alg: Some(cipher),
            encrypt_dir,
            decrypt_dir,
            unknown: Vec::new(),
        })
    }

    /// KEY_GET: peer id and slot; key-id or cipher-alg are refused.
    ///
    /// # Errors
    ///
    /// Missing attributes or "unexpected attribute N".
    pub fn key_get(&self) -> Result<(u32, KeySlot), Rejection> {
        let (nest, t) = self.keyconf_nest()?;
        require(&t, kc::PEER_ID, nest)?;
        require(&t, kc::SLOT, nest)?;
        only(&t, &[kc::PEER_ID, kc::SLOT])?;
        Ok((
            u32_of(&t, kc::PEER_ID),
            KeySlot::from_u32(u32_of(&t, kc::SLOT)),
        ))
    }

    /// KEY_SWAP: the peer id.
    ///
    /// # Errors
    ///
    /// Missing nest or peer id.
    pub fn key_swap(&self) -> Result<u32, Rejection> {
        let (nest, t) = self.keyconf_nest()?;
        Ok(require(&t, kc::PEER_ID, nest)?.u32().unwrap_or_default())
    }

    /// KEY_DEL: peer id and slot.
    ///
    /// # Errors
    ///
    /// Missing nest, peer id or slot.
    pub fn key_del(&self) -> Result<(u32, KeySlot), Rejection> {
        let (nest, t) = self.keyconf_nest()?;
        require(&t, kc::PEER_ID, nest)?;
        require(&t, kc::SLOT, nest)?;
        Ok((
            u32_of(&t, kc::PEER_ID),
            KeySlot::from_u32(u32_of(&t, kc::SLOT)),
        ))
    }
}

/// The checks PEER_NEW and PEER_SET share (`ovpn_nl_peer_precheck`).
fn peer_precheck(nest: Attr<'_>, t: &[Option<Attr<'_>>; 25], mode: Mode) -> Result<(), Rejection> {
    require(t, pa::ID, nest)?;
    let has = |ty: u16| t[usize::from(ty)].is_some();
    let (r4, r6) = (has(pa::REMOTE_IPV4), has(pa::REMOTE_IPV6));
    let fail = |m: &str| Err(Rejection::msg(EINVAL, format!("ovpn: {m}")));
    if r4 && r6 {
        return fail("cannot specify both remote IPv4 or IPv6 address");
    }
    if !r4 && !r6 && has(pa::REMOTE_PORT) {
        return fail("cannot specify remote port without IP address");
    }
    if (r4 || r6) && !has(pa::REMOTE_PORT) {
        return fail("cannot specify remote IP address without port");
    }
    if !r4 && has(pa::LOCAL_IPV4) {
        return fail("cannot specify local IPv4 address without remote");
    }
    if !r6 && has(pa::LOCAL_IPV6) {
        return fail("cannot specify local IPV6 address without remote");
    }
    let local = family(
        t[usize::from(pa::LOCAL_IPV4)],
        t[usize::from(pa::LOCAL_IPV6)],
    );
    let remote = family(
        t[usize::from(pa::REMOTE_IPV4)],
        t[usize::from(pa::REMOTE_IPV6)],
    );
    if local.is_some() && remote.is_some() && local != remote {
        return fail("mismatching local and remote address families");
    }
    if remote != Some(Family::V6) && has(pa::REMOTE_IPV6_SCOPE_ID) {
        return fail("cannot specify scope id without remote IPv6 address");
    }
    if mode == Mode::P2p && (has(pa::VPN_IPV4) || has(pa::VPN_IPV6)) {
        return fail("unexpected VPN IP in P2P mode");
    }
    if has(pa::KEEPALIVE_INTERVAL) != has(pa::KEEPALIVE_TIMEOUT) {
        return fail("keepalive interval and timeout are required together");
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

/// Address family of a v4/v6 attribute pair; v4-mapped IPv6 counts as v4.
fn family(v4: Option<Attr<'_>>, v6: Option<Attr<'_>>) -> Option<Family> {
    if v4.is_some() {
        return Some(Family::V4);
    }
    let v6 = v6?.ipv6().ok()?;
    Some(if v6.to_ipv4_mapped().is_some() {
        Family::V4
    } else {
        Family::V6
    })
}

fn key_dir(nest: Attr<'_>, cipher: CipherAlg) -> Result<KeyDir, Rejection> {
    let t: [Option<Attr<'_>>; 3] = table(nest);
    match cipher {
        CipherAlg::AesGcm | CipherAlg::Chacha20Poly1305 => {
            let key = require(&t, kd::CIPHER_KEY, nest)?;
            let tail = require(&t, kd::NONCE_TAIL, nest)?;
            Ok(KeyDir {
                cipher_key: Some(Secret::from_slice(key.payload())),
                nonce_tail: Some(Secret::from_slice(tail.payload())),
                unknown: Vec::new(),
            })
        }
        _ => Err(Rejection::msg(EINVAL, "ovpn: unsupported cipher")),
    }
}

/// Indexes a nest's children by type, later duplicates winning, as
/// `nla_parse` does. Types beyond the table were already refused by the
/// policy.
fn table<'a, const N: usize>(nest: Attr<'a>) -> [Option<Attr<'a>>; N] {
    let mut t = [None; N];
    for a in nest.nested().flatten() {
        if let Some(slot) = t.get_mut(usize::from(a.ty())) {
            *slot = Some(a);
        }
    }
    t
}

fn require<'a>(t: &[Option<Attr<'a>>], ty: u16, nest: Attr<'_>) -> Result<Attr<'a>, Rejection> {
    t.get(usize::from(ty))
        .copied()
        .flatten()
        .ok_or(Rejection::missing(ty, Some(nest.offset())))
}

/// The open-coded "unexpected attribute" loop of PEER_GET and KEY_GET:
/// scans types from 0 upwards, so the lowest offending type is reported.
fn only(t: &[Option<Attr<'_>>], allowed: &[u16]) -> Result<(), Rejection> {
    for (i, a) in t.iter().enumerate() {
        let allowed_here = u16::try_from(i).is_ok_and(|i| allowed.contains(&i));
        if a.is_some() && !allowed_here {
            return Err(Rejection::msg(
                EINVAL,
                format!("ovpn: unexpected attribute {i}"),
            ));
        }
    }
    Ok(())
}

fn u32_of(t: &[Option<Attr<'_>>], ty: u16) -> u32 {
    t.get(usize::from(ty))
        .copied()
        .flatten()
        .and_then(|a| a.u32().ok())
        .unwrap_or_default()
}

fn decode_peer(nest: Attr<'_>) -> Peer {
    // The policy already checked every size, so decoding cannot fail.
    Peer::decode(nest.nested()).unwrap_or_default()
}

/// The transport checks of PEER_NEW (after the socket lookup) and PEER_SET
/// (after the peer lookup): a UDP peer needs a remote address (PEER_NEW
/// only), a TCP peer must not have one.
///
/// # Errors
///
/// `EINVAL` with the kernel's message.
pub fn check_transport(peer: &Peer, transport: Transport, new_peer: bool) -> Result<(), Rejection> {
    let has_remote = peer.remote_ipv4.is_some() || peer.remote_ipv6.is_some();
    match transport {
        Transport::Udp if new_peer && !has_remote => Err(Rejection::msg(
            EINVAL,
            "ovpn: missing remote IP address for UDP socket",
        )),
        Transport::Tcp if has_remote => Err(Rejection::msg(
            EINVAL,
            "ovpn: unexpected remote IP address with TCP socket",
        )),
        _ => Ok(()),
    }
}

fn mp_needs_vpn_ip() -> Rejection {
    Rejection::msg(
        EINVAL,
        "ovpn: at least one VPN IP must be configured in MP mode",
    )
}

/// Rejections for the checks that need device state, with the kernel's
/// errno and message (`drivers/net/ovpn/netlink.c`). Errno arguments are
/// positive; messages show them negative, as the kernel prints them.
pub mod reject {
    use super::*;

    /// Which operation looked for the peer (the message differs).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum PeerLookup {
        /// PEER_SET, PEER_GET, PEER_DEL, KEY_GET.
        Generic,
        /// KEY_NEW.
        KeyNew,
        /// KEY_SWAP.
        KeySwap,
        /// KEY_DEL.
        KeyDel,
    }

    /// No peer with this id: `ENOENT`.
    pub fn peer_not_found(id: u32, op: PeerLookup) -> Rejection {
        let m = match op {
            PeerLookup::Generic => format!("ovpn: cannot find peer with id {id}"),
            PeerLookup::KeyNew => format!("ovpn: no peer with id {id} to set key for"),
            PeerLookup::KeySwap => format!("ovpn: no peer with id {id} to swap keys for"),
            PeerLookup::KeyDel => format!("ovpn: no peer with id {id} to delete key for"),
        };
        Rejection::msg(ENOENT, m)
    }

    /// PEER_NEW could not allocate the peer (`err`, e.g. `ENOMEM`).
    pub fn peer_alloc_failed(id: u32, err: i32) -> Rejection {
        Rejection::msg(
            err,
            format!(
                "ovpn: cannot create new peer object for peer {id}: {}",
                -err
            ),
        )
    }

    /// The socket fd does not resolve to a socket: always `ENOTSOCK`, the
    /// lookup's own error (`EBADF`, `ENOTSOCK`) only in the message.
    pub fn socket_lookup_failed(fd: u32, err: i32) -> Rejection {
        Rejection::msg(
            ENOTSOCK,
            format!("ovpn: cannot lookup peer socket (fd={fd}): {}", -err),
        )
    }

    /// Attaching the socket failed: always `ENOTSOCK` (§12.1).
    pub fn attach_failed(err: i32) -> Rejection {
        Rejection::msg(
            ENOTSOCK,
            format!("ovpn: cannot encapsulate socket: {}", -err),
        )
    }

    /// Setting the peer's endpoint failed with `err`.
    pub fn sockaddr_failed(err: i32) -> Rejection {
        Rejection::msg(err, format!("ovpn: cannot set peer sockaddr: {}", -err))
    }

    /// Inserting the new peer failed with `err` (`EEXIST` in MP).
    pub fn peer_add_failed(id: u32, err: i32) -> Rejection {
        Rejection::msg(
            err,
            format!("ovpn: cannot add new peer (id={id}) to hashtable: {}", -err),
        )
    }

    /// Later kernels: PEER_SET's VPN address belongs to another peer.
    pub fn vpn_ip_conflict() -> Rejection {
        Rejection::msg(
            crate::errno::EADDRINUSE,
            "ovpn: VPN IP is already assigned to another peer",
        )
    }

    /// Later kernels: after PEER_SET an MP peer would have no VPN address.
    pub fn mp_needs_vpn_ip() -> Rejection {
        super::mp_needs_vpn_ip()
    }

    /// KEY_NEW could not install the key (`err`, e.g. `EINVAL` for a bad
    /// key length).
    pub fn key_install_failed(id: u32, err: i32) -> Rejection {
        Rejection::msg(err, format!("ovpn: cannot install new key for peer {id}"))
    }

    /// KEY_GET on an empty slot: `ENOENT`.
    pub fn key_slot_empty(slot: KeySlot, id: u32) -> Rejection {
        Rejection::msg(
            ENOENT,
            format!(
                "ovpn: cannot extract key from slot {} for peer {id}",
                slot.to_u32()
            ),
        )
    }

    /// PEER_GET found the peer without a socket: `EINVAL`, no message.
    pub fn peer_without_socket() -> Rejection {
        Rejection::bare(EINVAL)
    }

    /// A message whose type is no registered family: `ENOENT`
    /// (`genl_rcv_msg`).
    pub fn unknown_family() -> Rejection {
        Rejection::bare(ENOENT)
    }
}

// ---------------------------------------------------------------------
// Policy tables (`drivers/net/ovpn/netlink-gen.c`).

const ID: Pol = Pol::U32 {
    min: 0,
    max: super::attrs::PEER_ID_MAX,
};
const U32: Pol = Pol::U32 {
    min: 0,
    max: u32::MAX,
};
const PORT: Pol = Pol::Be16 {
    min: 1,
    max: u16::MAX,
};
const ADDR6: Pol = Pol::BinaryLen { min: 16, max: 16 };
const KEEPALIVE_LATER: Pol = Pol::U32 { min: 0, max: 86400 };
const UN: Pol = Pol::Unspec;

/// `ovpn_peer_nl_policy`, 6.16: attributes 1..=23.
static PEER_6_16: PolicySet = PolicySet {
    entries: &[
        UN,
        ID,
        Pol::Be32,
        ADDR6,
        U32,
        PORT,
        U32,
        Pol::S32,
        Pol::Be32,
        ADDR6,
        Pol::Be32,
        ADDR6,
        PORT,
        U32,
        U32,
        Pol::U32 { min: 0, max: 4 },
        Pol::Uint,
        Pol::Uint,
        Pol::Uint,
        Pol::Uint,
        Pol::Uint,
        Pol::Uint,
        Pol::Uint,
        Pol::Uint,
    ],
};

/// `ovpn_peer_nl_policy`, later: keepalive range and tx-id (24).
static PEER_LATER: PolicySet = PolicySet {
    entries: &[
        UN,
        ID,
        Pol::Be32,
        ADDR6,
        U32,
        PORT,
        U32,
        Pol::S32,
        Pol::Be32,
        ADDR6,
        Pol::Be32,
        ADDR6,
        PORT,
        KEEPALIVE_LATER,
        KEEPALIVE_LATER,
        Pol::U32 { min: 0, max: 4 },
        Pol::Uint,
        Pol::Uint,
        Pol::Uint,
        Pol::Uint,
        Pol::Uint,
        Pol::Uint,
        Pol::Uint,
        Pol::Uint,
        ID,
    ],
};

/// `ovpn_peer_new_input_nl_policy`, 6.16: up to keepalive-timeout (14).
static PEER_NEW_6_16: PolicySet = PolicySet {
    entries: &[
        UN,
        ID,
        Pol::Be32,
        ADDR6,
        U32,
        PORT,
        U32,
        UN,
        Pol::Be32,
        ADDR6,
        Pol::Be32,
        ADDR6,
        UN,
        U32,
        U32,
    ],
};

/// `ovpn_peer_set_input_nl_policy`, 6.16: as PEER_NEW without socket.
static PEER_SET_6_16: PolicySet = PolicySet {
    entries: &[
        UN,
        ID,
        Pol::Be32,
        ADDR6,
        U32,
        PORT,
        UN,
        UN,
        Pol::Be32,
        ADDR6,
        Pol::Be32,
        ADDR6,
        UN,
        U32,
        U32,
    ],
};

/// `ovpn_peer_new_input_nl_policy`, later: up to tx-id (24).
static PEER_NEW_LATER: PolicySet = PolicySet {
    entries: &[
        UN,
        ID,
        Pol::Be32,
        ADDR6,
        U32,
        PORT,
        U32,
        UN,
        Pol::Be32,
        ADDR6,
        Pol::Be32,
        ADDR6,
        UN,
        KEEPALIVE_LATER,
        KEEPALIVE_LATER,
        UN,
        UN,
        UN,
        UN,
        UN,
        UN,
        UN,
        UN,
        UN,
        ID,
    ],
};

/// `ovpn_peer_set_input_nl_policy`, later.
static PEER_SET_LATER: PolicySet = PolicySet {
    entries: &[
        UN,
        ID,
        Pol::Be32,
        ADDR6,
        U32,
        PORT,
        UN,
        UN,
        Pol::Be32,
        ADDR6,
        Pol::Be32,
        ADDR6,
        UN,
        KEEPALIVE_LATER,
        KEEPALIVE_LATER,
        UN,
        UN,
        UN,
        UN,
        UN,
        UN,
        UN,
        UN,
        UN,
        ID,
    ],
};

/// `ovpn_peer_del_input_nl_policy`.
static PEER_DEL: PolicySet = PolicySet { entries: &[UN, ID] };

/// `ovpn_keydir_nl_policy`.
static KEYDIR: PolicySet = PolicySet {
    entries: &[
        UN,
        Pol::BinaryMax { max: 256 },
        Pol::BinaryLen { min: 8, max: 8 },
    ],
};

const SLOT: Pol = Pol::U32 { min: 0, max: 1 };
const KEY_ID: Pol = Pol::U32 { min: 0, max: 7 };
const CIPHER: Pol = Pol::U32 { min: 0, max: 2 };

/// `ovpn_keyconf_nl_policy`.
static KEYCONF: PolicySet = PolicySet {
    entries: &[
        UN,
        ID,
        SLOT,
        KEY_ID,
        CIPHER,
        Pol::Nested(&KEYDIR),
        Pol::Nested(&KEYDIR),
    ],
};

/// `ovpn_keyconf_get_nl_policy`.
static KEYCONF_GET: PolicySet = PolicySet {
    entries: &[UN, ID, SLOT, KEY_ID, CIPHER],
};

/// `ovpn_keyconf_swap_input_nl_policy`.
static KEYCONF_SWAP: PolicySet = PolicySet { entries: &[UN, ID] };

/// `ovpn_keyconf_del_input_nl_policy`.
static KEYCONF_DEL: PolicySet = PolicySet {
    entries: &[UN, ID, SLOT],
};

macro_rules! peer_op {
    ($name:ident, $inner:expr) => {
        static $name: PolicySet = PolicySet {
            entries: &[UN, U32, Pol::Nested($inner)],
        };
    };
}
macro_rules! key_op {
    ($name:ident, $inner:expr) => {
        static $name: PolicySet = PolicySet {
            entries: &[UN, U32, UN, Pol::Nested($inner)],
        };
    };
}

peer_op!(OP_PEER_NEW_6_16, &PEER_NEW_6_16);
peer_op!(OP_PEER_SET_6_16, &PEER_SET_6_16);
peer_op!(OP_PEER_GET_6_16, &PEER_6_16);
peer_op!(OP_PEER_NEW_LATER, &PEER_NEW_LATER);
peer_op!(OP_PEER_SET_LATER, &PEER_SET_LATER);
peer_op!(OP_PEER_GET_LATER, &PEER_LATER);
peer_op!(OP_PEER_DEL, &PEER_DEL);
key_op!(OP_KEY_NEW, &KEYCONF);
key_op!(OP_KEY_GET, &KEYCONF_GET);
key_op!(OP_KEY_SWAP, &KEYCONF_SWAP);
key_op!(OP_KEY_DEL, &KEYCONF_DEL);

/// `ovpn_peer_get_dump_nl_policy`: ifindex only.
static OP_PEER_GET_DUMP: PolicySet = PolicySet {
    entries: &[UN, U32],
};

/// The family's operations with their policies, in command order, for
/// `CTRL_CMD_GETPOLICY` ([`crate::policy_dump`]): the same tables
/// [`validate_request`] applies.
pub fn op_policies(profile: Profile) -> Vec<OpPolicies> {
    [
        Cmd::PeerNew,
        Cmd::PeerSet,
        Cmd::PeerGet,
        Cmd::PeerDel,
        Cmd::KeyNew,
        Cmd::KeyGet,
        Cmd::KeySwap,
        Cmd::KeyDel,
    ]
    .into_iter()
    .map(|cmd| OpPolicies {
        cmd: cmd.to_u8(),
        doit: op_policy(cmd, false, profile),
        dumpit: op_policy(cmd, true, profile),
    })
    .collect()
}

/// The op table: the policy for (command, dump), `None` where the kernel
/// has no such op.
fn op_policy(cmd: Cmd, dump: bool, profile: Profile) -> Option<&'static PolicySet> {
    let later = profile == Profile::Later;
    Some(match (cmd, dump) {
        (Cmd::PeerGet, true) => &OP_PEER_GET_DUMP,
        (_, true) => return None,
        (Cmd::PeerNew, _) if later => &OP_PEER_NEW_LATER,
        (Cmd::PeerNew, _) => &OP_PEER_NEW_6_16,
        (Cmd::PeerSet, _) if later => &OP_PEER_SET_LATER,
        (Cmd::PeerSet, _) => &OP_PEER_SET_6_16,
        (Cmd::PeerGet, _) if later => &OP_PEER_GET_LATER,
        (Cmd::PeerGet, _) => &OP_PEER_GET_6_16,
        (Cmd::PeerDel, _) => &OP_PEER_DEL,
        (Cmd::KeyNew, _) => &OP_KEY_NEW,
        (Cmd::KeyGet, _) => &OP_KEY_GET,
        (Cmd::KeySwap, _) => &OP_KEY_SWAP,
        (Cmd::KeyDel, _) => &OP_KEY_DEL,
        _ => return None,
    })
}
