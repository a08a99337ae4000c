//! [`Client`]: every operation on `ovpn` devices, the same for the kernel
//! module and for `ovpnd`. The backend is chosen once, at construction; after
//! that the two differ only inside [`crate::transport`].
//!
//! Links go over rtnetlink (kernel-behaviour §1.1), peers and keys over the
//! `ovpn` generic-netlink family (§7.5), whose id and `peers` group id are
//! resolved with `CTRL_CMD_GETFAMILY` on first use.

use std::env;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ovpn_netlink::ctrl::{FamilyInfo, encode_get_family};
use ovpn_netlink::errno;
use ovpn_netlink::genl::GENL_ATTRS_OFFSET;
use ovpn_netlink::link::{LINK_ATTRS_OFFSET, LinkMsg, RTM_DELLINK, RTM_GETLINK, RTM_NEWLINK};
use ovpn_netlink::nlmsg::{NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NlMsg};
use ovpn_netlink::ovpn::attrs::{FAMILY_NAME, MCGRP_PEERS};
use ovpn_netlink::ovpn::{KeyConf, KeySlot, Mode, OvpnMsg, Peer};
use ovpn_netlink::ovpnd::{ControlPacket, ControlSend, OVPND_MSG_CONTROL_PACKET};
use ovpn_sys::netlink::Protocol;

use crate::engine::{DEFAULT_TIMEOUT, Engine, Layout};
use crate::error::{Error, Result};
use crate::names::Schema;
use crate::notify::Subscription;
use crate::transport::{DaemonTransport, KernelTransport, SockOpt, Transport};

/// Environment variable that overrides the daemon directory.
pub const DAEMON_DIR_ENV: &str = "OVPND_DIR";

/// Which implementation of `ovpn` devices to talk to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Backend {
    /// The kernel if it has the `ovpn` family, else the daemon in its
    /// default directory.
    #[default]
    Auto,
    /// The kernel module, over `AF_NETLINK`.
    Kernel,
    /// `ovpnd`, over the Unix sockets in `dir`.
    Daemon {
        /// The daemon's run directory (holding `genl.sock` and `rtnl.sock`).
        dir: PathBuf,
    },
}

impl Backend {
    /// The daemon directory a client uses when given none: `$OVPND_DIR`, else
    /// `/run/ovpnd/net-<N>` with `N` the inode of the calling thread's
    /// network namespace (`docs/control-transport.md`, "Endpoints").
    ///
    /// # Errors
    ///
    /// `/proc` is not readable.
    pub fn default_daemon_dir() -> Result<PathBuf> {
        if let Some(dir) = env::var_os(DAEMON_DIR_ENV).filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(dir));
        }
        let ns = ovpn_sys::netns::current_id()
            .map_err(|e| Error::io("reading the network namespace", e))?;
        Ok(PathBuf::from(format!("/run/ovpnd/net-{ns}")))
    }
}

/// The backend a client ended up with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// The kernel module.
    Kernel,
    /// The daemon in this directory.
    Daemon(PathBuf),
}

/// An `ovpn` interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub ifindex: u32,
    /// Interface name.
    pub name: String,
    /// Link kind (`ovpn` for ours).
    pub kind: Option<String>,
    /// P2P or MP; `None` when the reply did not say.
    pub mode: Option<Mode>,
    /// MTU.
    pub mtu: Option<u32>,
    /// `IFF_*` flags.
    pub flags: u32,
}

impl Link {
    /// Whether the interface is administratively up (`IFF_UP`).
    pub fn is_up(&self) -> bool {
        self.flags & 1 != 0
    }

    fn from_msg(msg: LinkMsg) -> Option<Self> {
        Some(Self {
            ifindex: u32::try_from(msg.info.index).ok()?,
            name: msg.name?,
            kind: msg.kind,
            mode: msg.mode,
            mtu: msg.mtu,
            flags: msg.info.flags,
        })
    }
}

/// How a client (re)opens connections of its backend.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Opener {
    Kernel,
    Daemon(PathBuf),
}

impl Opener {
    fn open(&self, route: bool) -> Result<Box<dyn Transport>> {
        Ok(match (self, route) {
            (Self::Kernel, false) => Box::new(KernelTransport::open(Protocol::Generic)?),
            (Self::Kernel, true) => Box::new(KernelTransport::open(Protocol::Route)?),
            (Self::Daemon(dir), false) => {
                Box::new(DaemonTransport::connect(&dir.join("genl.sock"))?)
            }
            (Self::Daemon(dir), true) => {
                Box::new(DaemonTransport::connect(&dir.join("rtnl.sock"))?)
            }
        })
    }

    /// A connection with extended ACK and capped errors switched on.
    fn engine(&self, route: bool, timeout: Duration) -> Result<Engine> {
        let mut engine = Engine::new(self.open(route)?);
        engine.set_timeout(timeout);
        engine.set_option(SockOpt::ExtAck, 1)?;
        engine.set_option(SockOpt::CapAck, 1)?;
        Ok(engine)
    }
}

const GENL: Layout = Layout {
    attrs_start: GENL_ATTRS_OFFSET,
    schema: Schema::Ovpn,
};
const ROUTE: Layout = Layout {
    attrs_start: LINK_ATTRS_OFFSET,
    schema: Schema::Link,
};
const PLAIN: Layout = Layout {
    attrs_start: GENL_ATTRS_OFFSET,
    schema: Schema::Numbers,
};

/// A control-plane client of `ovpn` devices.
#[derive(Debug)]
pub struct Client {
    opener: Opener,
    timeout: Duration,
    genl: Option<Engine>,
    route: Option<Engine>,
    family: Option<FamilyInfo>,
}

impl Client {
    /// Connects to `backend`. `Auto` asks the kernel for the `ovpn` family
    /// and falls back to the daemon's default directory.
    ///
    /// # Errors
    ///
    /// [`Error::NoFamily`] for `Kernel` without the module;
    /// [`Error::NoBackend`] for `Auto` with neither; I/O errors connecting.
    pub fn connect(backend: Backend) -> Result<Self> {
        match backend {
            Backend::Kernel => {
                let mut client = Self::with_opener(Opener::Kernel);
                client.family()?;
                Ok(client)
            }
            Backend::Daemon { dir } => {
                let mut client = Self::with_opener(Opener::Daemon(dir));
                client.genl()?;
                Ok(client)
            }
            Backend::Auto => {
                let mut kernel = Self::with_opener(Opener::Kernel);
                match kernel.family() {
                    Ok(_) => return Ok(kernel),
                    Err(Error::NoFamily) => {}
                    Err(e) => return Err(e),
                }
                let dir = Backend::default_daemon_dir()?;
                if !dir.join("genl.sock").exists() {
                    return Err(Error::NoBackend { dir });
                }
                Self::connect(Backend::Daemon { dir })
            }
        }
    }

    fn with_opener(opener: Opener) -> Self {
        Self {
            opener,
            timeout: DEFAULT_TIMEOUT,
            genl: None,
            route: None,
            family: None,
        }
    }

    /// Which backend this client talks to.
    pub fn resolved(&self) -> Resolved {
        match &self.opener {
            Opener::Kernel => Resolved::Kernel,
            Opener::Daemon(dir) => Resolved::Daemon(dir.clone()),
        }
    }

    /// Sets how long each request waits for its complete answer (default 5 s).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
        for engine in [&mut self.genl, &mut self.route].into_iter().flatten() {
            engine.set_timeout(timeout);
        }
    }

    // ---- links (rtnetlink) ----

    /// Creates an `ovpn` interface; without a mode the kernel's default
    /// (P2P) applies.
    ///
    /// # Errors
    ///
    /// [`Error::Rejected`] (`EEXIST` if the name is taken), transport errors.
    pub fn link_add(&mut self, name: &str, mode: Option<Mode>) -> Result<()> {
        let msg = LinkMsg {
            mode,
            ..LinkMsg::new_ovpn(name, mode.unwrap_or_default())
        };
        let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        self.route()?
            .request(
                |buf, seq| msg.encode(buf, RTM_NEWLINK, flags, seq, 0),
                &[],
                ROUTE,
            )
            .map(drop)
    }

    /// Deletes the `ovpn` interface `name`; refuses other kinds of links.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchLink`], [`Error::NotOvpn`], [`Error::Rejected`].
    pub fn link_del(&mut self, name: &str) -> Result<()> {
        let link = self.link(name)?;
        let msg = LinkMsg::by_index(i32::try_from(link.ifindex).unwrap_or(i32::MAX));
        self.route()?
            .request(
                |buf, seq| msg.encode(buf, RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, seq, 0),
                &[],
                ROUTE,
            )
            .map(drop)
    }

    /// The `ovpn` interface `name`.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchLink`] if no interface has that name, [`Error::NotOvpn`]
    /// if it is of another kind.
    pub fn link(&mut self, name: &str) -> Result<Link> {
        let link = self
            .all_links()?
            .into_iter()
            .find(|l| l.name == name)
            .ok_or_else(|| Error::NoSuchLink(name.to_owned()))?;
        if link.kind.as_deref() != Some(ovpn_netlink::link::KIND_OVPN) {
            return Err(Error::NotOvpn(name.to_owned()));
        }
        Ok(link)
    }

    /// All `ovpn` interfaces, in index order.
    ///
    /// # Errors
    ///
    /// Transport errors, [`Error::Rejected`].
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let mut links: Vec<Link> = self
            .all_links()?
            .into_iter()
            .filter(|l| l.kind.as_deref() == Some(ovpn_netlink::link::KIND_OVPN))
            .collect();
        links.sort_by_key(|l| l.ifindex);
        Ok(links)
    }

    /// The interface index of the `ovpn` interface `name`.
    ///
    /// # Errors
    ///
    /// As for [`Client::link`].
    pub fn ifindex(&mut self, name: &str) -> Result<u32> {
        self.link(name).map(|l| l.ifindex)
    }

    fn all_links(&mut self) -> Result<Vec<Link>> {
        let req = LinkMsg::by_index(0);
        let parts = self.route()?.request(
            |buf, seq| req.encode(buf, RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq, 0),
            &[],
            ROUTE,
        )?;
        let mut links = Vec::new();
        for part in parts {
            let msg = NlMsg::parse(&part)?;
            if msg.header.ty != RTM_NEWLINK {
                return Err(Error::Unexpected(
                    "a link dump part that is not RTM_NEWLINK",
                ));
            }
            links.extend(Link::from_msg(LinkMsg::decode(&msg)?));
        }
        Ok(links)
    }

    // ---- peers ----

    /// PEER_NEW: adds `peer` to the device, with `socket` as its transport.
    /// The `socket` attribute is set to the descriptor's number; the daemon
    /// also gets the descriptor itself.
    ///
    /// # Errors
    ///
    /// [`Error::Rejected`] with the kernel's reasons (§7.5), transport errors.
    pub fn peer_new(&mut self, ifindex: u32, peer: &Peer, socket: BorrowedFd<'_>) -> Result<()> {
        let fd = u32::try_from(socket.as_raw_fd())
            .map_err(|_| Error::Unexpected("negative descriptor"))?;
        let peer = Peer {
            socket: Some(fd),
            ..peer.clone()
        };
        self.ovpn_do(&OvpnMsg::peer_new(ifindex, peer), &[socket])
            .map(drop)
    }

    /// PEER_SET: changes the attributes present in `peer` (its id must be set).
    ///
    /// # Errors
    ///
    /// [`Error::Rejected`] (`ENOENT` for an unknown peer), transport errors.
    pub fn peer_set(&mut self, ifindex: u32, peer: &Peer) -> Result<()> {
        self.ovpn_do(&OvpnMsg::peer_set(ifindex, peer.clone()), &[])
            .map(drop)
    }

    /// PEER_GET for one peer.
    ///
    /// # Errors
    ///
    /// [`Error::Rejected`] (`ENOENT` for an unknown peer), transport errors.
    pub fn peer_get(&mut self, ifindex: u32, peer_id: u32) -> Result<Peer> {
        let mut replies = self.ovpn_do(&OvpnMsg::peer_get(ifindex, peer_id), &[])?;
        let reply = replies
            .pop()
            .ok_or(Error::Unexpected("PEER_GET answered without a peer"))?;
        reply
            .peer
            .ok_or(Error::Unexpected("PEER_GET reply without a peer nest"))
    }

    /// PEER_GET dump: every peer of the device.
    ///
    /// # Errors
    ///
    /// [`Error::Rejected`] (`ENODEV`, `EINVAL` for a non-ovpn device),
    /// transport errors.
    pub fn peer_dump(&mut self, ifindex: u32) -> Result<Vec<Peer>> {
        let family = self.family()?.id;
        let req = OvpnMsg::peer_get_dump(ifindex);
        let parts = self.genl()?.request(
            |buf, seq| req.encode(buf, family, NLM_F_REQUEST | NLM_F_DUMP, seq, 0),
            &[],
            GENL,
        )?;
        parts
            .iter()
            .map(|p| {
                decode_ovpn(p, family)?
                    .peer
                    .ok_or(Error::Unexpected("PEER_GET dump part without a peer nest"))
            })
            .collect()
    }

    /// PEER_DEL.
    ///
    /// # Errors
    ///
    /// [`Error::Rejected`] (`ENOENT` for an unknown peer), transport errors.
    pub fn peer_del(&mut self, ifindex: u32, peer_id: u32) -> Result<()> {
        self.ovpn_do(&OvpnMsg::peer_del(ifindex, peer_id), &[])
            .map(drop)
    }

    // ---- keys ----

    /// KEY_NEW: installs `keyconf` (peer id, slot, key id, cipher and both
    /// directions).
    ///
    /// # Errors
    ///
    /// [`Error::Rejected`], transport errors.
    pub fn key_new(&mut self, ifindex: u32, keyconf: &KeyConf) -> Result<()> {
        self.ovpn_do(&OvpnMsg::key_new(ifindex, keyconf.clone()), &[])
            .map(drop)
    }

    /// KEY_GET: the key id and cipher in a slot (never key material).
    ///
    /// # Errors
    ///
    /// [`Error::Rejected`] (`ENOENT` for an empty slot), transport errors.
    pub fn key_get(&mut self, ifindex: u32, peer_id: u32, slot: KeySlot) -> Result<KeyConf> {
        let mut replies = self.ovpn_do(&OvpnMsg::key_get(ifindex, peer_id, slot), &[])?;
        replies
            .pop()
            .and_then(|m| m.keyconf)
            .ok_or(Error::Unexpected("KEY_GET answered without a keyconf"))
    }

    /// KEY_SWAP: exchanges the primary and secondary slots.
    ///
    /// # Errors
    ///
    /// [`Error::Rejected`], transport errors.
    pub fn key_swap(&mut self, ifindex: u32, peer_id: u32) -> Result<()> {
        self.ovpn_do(&OvpnMsg::key_swap(ifindex, peer_id), &[])
            .map(drop)
    }

    /// KEY_DEL: empties a slot.
    ///
    /// # Errors
    ///
    /// [`Error::Rejected`], transport errors.
    pub fn key_del(&mut self, ifindex: u32, peer_id: u32, slot: KeySlot) -> Result<()> {
        self.ovpn_do(&OvpnMsg::key_del(ifindex, peer_id, slot), &[])
            .map(drop)
    }

    // ---- notifications ----

    /// A new connection that has joined the `peers` multicast group.
    ///
    /// # Errors
    ///
    /// The family has no `peers` group, connection or option errors.
    pub fn subscribe(&mut self) -> Result<Subscription> {
        let family = self.family()?.clone();
        let group = family
            .group_id(MCGRP_PEERS)
            .ok_or(Error::Unexpected("the ovpn family has no peers group"))?;
        let mut engine = self.opener.engine(false, self.timeout)?;
        engine.set_option(SockOpt::AddMembership, group)?;
        Ok(Subscription::new(engine, family.id))
    }

    // ---- control packets (daemon) ----

    /// Asks for the control packets of the transports this client hands over
    /// from now on. `Ok(false)` means the backend leaves them on the socket
    /// for the caller to read (the kernel).
    ///
    /// # Errors
    ///
    /// The daemon refusing the option, transport errors.
    pub fn enable_control_packets(&mut self) -> Result<bool> {
        match self.genl()?.set_option(SockOpt::ControlPackets, 1) {
            Ok(()) => Ok(true),
            Err(Error::Unsupported(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The next control packet the daemon handed back, waiting at most
    /// `timeout`. Other unsolicited messages on this connection are skipped.
    ///
    /// # Errors
    ///
    /// Transport errors, a malformed message.
    pub fn next_control_packet(&mut self, timeout: Duration) -> Result<Option<ControlPacket>> {
        let engine = self.genl()?;
        loop {
            let Some(bytes) = engine.next_unsolicited(timeout)? else {
                return Ok(None);
            };
            let msg = NlMsg::parse(&bytes)?;
            if msg.header.ty == OVPND_MSG_CONTROL_PACKET {
                return Ok(Some(ControlPacket::parse(&msg)?));
            }
        }
    }

    /// Has the daemon write a TCP control frame (`frame` with its 2-byte
    /// length prefix) on the transport handed over as `socket`.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] with the kernel (write to the socket instead);
    /// [`Error::Rejected`] (`ENOENT`, `EAGAIN`, `EIO`).
    pub fn control_send(&mut self, socket: u32, frame: &[u8]) -> Result<()> {
        if self.opener == Opener::Kernel {
            return Err(Error::Unsupported(
                "with the kernel, write control frames to the socket itself",
            ));
        }
        let req = ControlSend {
            socket,
            frame: frame.to_vec(),
        };
        self.genl()?
            .request(|buf, seq| req.encode(buf, seq), &[], PLAIN)
            .map(drop)
    }

    // ---- plumbing ----

    fn genl(&mut self) -> Result<&mut Engine> {
        if self.genl.is_none() {
            self.genl = Some(self.opener.engine(false, self.timeout)?);
        }
        self.genl
            .as_mut()
            .ok_or(Error::Unexpected("generic netlink connection missing"))
    }

    fn route(&mut self) -> Result<&mut Engine> {
        if self.route.is_none() {
            self.route = Some(self.opener.engine(true, self.timeout)?);
        }
        self.route
            .as_mut()
            .ok_or(Error::Unexpected("rtnetlink connection missing"))
    }

    /// The `ovpn` family, resolved once.
    fn family(&mut self) -> Result<&FamilyInfo> {
        if self.family.is_none() {
            let replies = self
                .genl()?
                .request(
                    |buf, seq| {
                        encode_get_family(buf, FAMILY_NAME, NLM_F_REQUEST | NLM_F_ACK, seq, 0)
                    },
                    &[],
                    PLAIN,
                )
                .map_err(|e| match e.errno() {
                    Some(errno::ENOENT) => Error::NoFamily,
                    _ => e,
                })?;
            let reply = replies.first().ok_or(Error::Unexpected(
                "CTRL_CMD_GETFAMILY answered without a family",
            ))?;
            self.family = Some(FamilyInfo::decode(&NlMsg::parse(reply)?)?);
        }
        self.family
            .as_ref()
            .ok_or(Error::Unexpected("family missing after lookup"))
    }

    /// Sends a do request of the family and decodes its replies.
    fn ovpn_do(&mut self, msg: &OvpnMsg, fds: &[BorrowedFd<'_>]) -> Result<Vec<OvpnMsg>> {
        let family = self.family()?.id;
        let parts = self.genl()?.request(
            |buf, seq| msg.encode(buf, family, NLM_F_REQUEST | NLM_F_ACK, seq, 0),
            fds,
            GENL,
        )?;
        parts.iter().map(|p| decode_ovpn(p, family)).collect()
    }
}

/// Decodes a message that must be of the `ovpn` family.
fn decode_ovpn(bytes: &[u8], family: u16) -> Result<OvpnMsg> {
    let msg = NlMsg::parse(bytes)?;
    if msg.header.ty != family {
        return Err(Error::Unexpected("a reply of another netlink family"));
    }
    Ok(OvpnMsg::decode(&msg)?)
}

/// Whether a daemon appears to listen in `dir` (its generic socket exists).
pub fn daemon_present(dir: &Path) -> bool {
    dir.join("genl.sock").exists()
}

#[cfg(test)]
mod tests {
    //! The kernel transport against the running kernel's rtnetlink and
    //! nlctrl, which every Linux has (the `ovpn` module itself is exercised
    //! in the kernel VM). Each test runs in a fresh network namespace on its
    //! own thread; without root they are skipped unless `OVPN_REQUIRE_ROOT=1`.

    use super::*;

    fn in_fresh_netns(test: impl FnOnce() + Send + 'static) {
        if !ovpn_sys::netns::is_root() {
            assert_ne!(
                std::env::var("OVPN_REQUIRE_ROOT").as_deref(),
                Ok("1"),
                "OVPN_REQUIRE_ROOT=1 but not root"
            );
            eprintln!("skipped: needs root for a network namespace");
            return;
        }
        std::thread::spawn(move || {
            ovpn_sys::netns::unshare().expect("unshare a network namespace");
            test();
        })
        .join()
        .expect("test thread");
    }

    #[test]
    fn kernel_links_and_rejections_come_back_typed() {
        in_fresh_netns(|| {
            let mut client = Client::with_opener(Opener::Kernel);
            // A fresh namespace has only `lo`, which is not an ovpn link.
            assert!(client.links().unwrap().is_empty());
            assert!(matches!(client.link("lo"), Err(Error::NotOvpn(_))));
            assert!(matches!(client.link("nope0"), Err(Error::NoSuchLink(_))));

            // A name longer than IFNAMSIZ breaks the kernel's policy: the
            // extended ACK points at the attribute, which we name.
            let err = client
                .link_add("a-name-far-too-long", Some(Mode::P2p))
                .unwrap_err();
            let r = err.rejection().expect("a kernel rejection");
            assert_eq!(r.errno, errno::ERANGE, "{err}");
            assert_eq!(r.attribute.as_deref(), Some("ifname"), "{err}");
        });
    }

    #[test]
    fn kernel_family_lookup() {
        in_fresh_netns(|| {
            let mut client = Client::with_opener(Opener::Kernel);
            match client.family() {
                // The module is loaded or loadable here: a real family.
                Ok(f) => assert!(f.group_id(MCGRP_PEERS).is_some()),
                Err(e) => assert!(matches!(e, Error::NoFamily), "{e}"),
            }
        });
    }
}
