//! Generic netlink on `genl.sock`: `nlctrl` family lookup and policy
//! dump (`CTRL_CMD_GETPOLICY`), and every
//! operation of the `ovpn` family (kernel-behaviour §7), checked in the
//! kernel's order: the generic-netlink core and the op's policy
//! (`ovpn_netlink::ovpn::policy`), the pre-handler's device lookup, the
//! handler's own checks, then the device model's operation.
//!
//! The daemon follows the 6.16 policies (no `tx-id`, keepalive values
//! unbounded); the device model already follows later kernels where 6.16
//! has a bug (remote scope id stored, transport table re-keyed).
//!
//! PEER_GET replies carry `socket-netnsid` when the peer's socket lives in
//! another namespace than the asking client (`crate::nsid`).

use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use ovpn_netlink::ack::{self, ExtAck, Rejection};
use ovpn_netlink::ctrl::{self, FamilyInfo, FamilyQuery, GENL_ID_CTRL};
use ovpn_netlink::nlmsg::{NLM_F_MULTI, NlMsg};
use ovpn_netlink::ovpn::policy::{self, DeviceLookup, Profile, Request};
use ovpn_netlink::ovpn::{Cmd, OvpnMsg};
use ovpn_netlink::policy_dump::{self, CTRL_CMD_GETPOLICY};

use crate::convert;
use crate::server::{Conn, OVPN_FAMILY_ID, PEERS_GROUP_ID, Server};
use crate::transport::Attacher;

/// The kernel this daemon's policies reproduce.
const PROFILE: Profile = Profile::Linux6_16;
/// Dump replies are packed into datagrams of about this size, as the
/// kernel fills one receive buffer per dump round.
const DUMP_CHUNK: usize = 16 * 1024;

impl Server {
    pub(crate) fn handle_genl(&mut self, token: u64, msg: &NlMsg<'_>, fds: &mut Vec<OwnedFd>) {
        match msg.header.ty {
            GENL_ID_CTRL if msg.payload.first() == Some(&CTRL_CMD_GETPOLICY) => {
                self.get_policy(token, msg);
            }
            GENL_ID_CTRL => self.get_family(token, msg),
            OVPN_FAMILY_ID => self.ovpn_request(token, msg, fds),
            _ => {
                if let Some(conn) = self.conns.get(&token) {
                    conn.send_error(msg, &policy::reject::unknown_family());
                }
            }
        }
    }

    /// CTRL_CMD_GETFAMILY: only the `ovpn` family is known here.
    fn get_family(&self, token: u64, msg: &NlMsg<'_>) {
        let Some(conn) = self.conns.get(&token) else {
            return;
        };
        let info = FamilyInfo::ovpn(OVPN_FAMILY_ID, PEERS_GROUP_ID);
        match ctrl::parse_get_family(msg) {
            Err(rejection) => conn.send_error(msg, &rejection),
            Ok(FamilyQuery::Dump) => {
                let mut buf = Vec::new();
                info.encode(&mut buf, NLM_F_MULTI, msg.header.seq, conn.port_id);
                ack::encode_done(
                    &mut buf,
                    conn.ack,
                    conn.port_id,
                    msg.header.seq,
                    0,
                    &ExtAck::default(),
                );
                conn.send(&buf);
            }
            Ok(query) => {
                let found = match query {
                    FamilyQuery::ById(id) => id == OVPN_FAMILY_ID,
                    FamilyQuery::ByName(name) => name == info.name,
                    FamilyQuery::Dump => false,
                };
                if !found {
                    conn.send_error(msg, &ctrl::unknown_family());
                    return;
                }
                let mut buf = Vec::new();
                info.encode(&mut buf, 0, msg.header.seq, conn.port_id);
                conn.send(&buf);
                conn.send_ack(msg);
            }
        }
    }

    /// CTRL_CMD_GETPOLICY: the `ovpn` family's policies, from the tables
    /// the requests are validated with. A failure to start the dump is an
    /// `NLMSG_ERROR`, as in the kernel.
    ///
    /// TODO: the kernel also dumps nlctrl's own policies; this controller
    /// knows only `ovpn` and answers `ENOENT` for nlctrl. Describing nlctrl
    /// needs its GETFAMILY/GETPOLICY tables as `OpPolicies` in
    /// `ovpn_netlink::ctrl`.
    fn get_policy(&self, token: u64, msg: &NlMsg<'_>) {
        let Some(conn) = self.conns.get(&token) else {
            return;
        };
        let query = match policy_dump::parse_get_policy(msg) {
            Ok(query) => query,
            Err(rejection) => {
                conn.send_error(msg, &rejection);
                return;
            }
        };
        let found = match &query.family {
            FamilyQuery::ById(id) => *id == OVPN_FAMILY_ID,
            FamilyQuery::ByName(name) => name == ovpn_netlink::ovpn::attrs::FAMILY_NAME,
            FamilyQuery::Dump => false,
        };
        if !found {
            conn.send_error(msg, &ctrl::unknown_family());
            return;
        }
        let mut buf = Vec::new();
        let ops = policy::op_policies(PROFILE);
        let seq = msg.header.seq;
        if let Err(rejection) = policy_dump::encode_policy_dump(
            &mut buf,
            OVPN_FAMILY_ID,
            &ops,
            &query,
            seq,
            conn.port_id,
        ) {
            conn.send_error(msg, &rejection);
            return;
        }
        ack::encode_done(&mut buf, conn.ack, conn.port_id, seq, 0, &ExtAck::default());
        conn.send(&buf);
    }

    fn ovpn_request(&mut self, token: u64, msg: &NlMsg<'_>, fds: &mut Vec<OwnedFd>) {
        let Some(conn) = self.conns.get(&token) else {
            return;
        };
        let request = match policy::validate_request(msg, conn.admin, PROFILE) {
            Ok(request) => request,
            Err(rejection) => {
                conn.send_error(msg, &rejection);
                return;
            }
        };
        if request.dump {
            self.peer_dump(conn, msg, &request);
            return;
        }
        let mode = match request.pre_doit(|ifindex| self.lookup(ifindex)) {
            Ok(mode) => mode,
            Err(rejection) => {
                conn.send_error(msg, &rejection);
                return;
            }
        };
        let ifindex = request.ifindex().unwrap_or_default();
        let result = match request.cmd {
            Cmd::PeerNew => self.peer_new(token, &request, mode, ifindex, fds),
            Cmd::PeerGet => self.peer_get(token, msg, &request, mode, ifindex),
            cmd => self.simple_op(cmd, &request, mode, ifindex),
        };
        // The kernel multicasts PEER_DEL_NTF while it handles the request
        // (a P2P peer replaced by PEER_NEW, PEER_DEL), so subscribers, the
        // requester among them, read it before the ACK.
        self.drain_notifications();
        if let Some(conn) = self.conns.get(&token) {
            match result {
                Ok(Some(reply)) => {
                    let mut buf = Vec::new();
                    reply.encode(&mut buf, OVPN_FAMILY_ID, 0, msg.header.seq, conn.port_id);
                    conn.send(&buf);
                    conn.send_ack(msg);
                }
                Ok(None) => conn.send_ack(msg),
                Err(rejection) => conn.send_error(msg, &rejection),
            }
        }
    }

    /// What the pre-handler finds for an ifindex (§7.4).
    fn lookup(&self, ifindex: u32) -> DeviceLookup {
        if let Some(dev) = self.devices.get(&ifindex) {
            return DeviceLookup::Ovpn(dev.shared.mode);
        }
        match ovpn_sys::netdev::name(ifindex) {
            Ok(_) => DeviceLookup::NotOvpn,
            Err(_) => DeviceLookup::NotFound,
        }
    }

    fn peer_new(
        &mut self,
        token: u64,
        request: &Request<'_>,
        mode: ovpn_netlink::ovpn::Mode,
        ifindex: u32,
        fds: &mut Vec<OwnedFd>,
    ) -> Result<Option<OvpnMsg>, Rejection> {
        let args = request.peer_new(mode)?;
        let (Some(conn), Some(runtime)) = (self.conns.get(&token), self.devices.get(&ifindex))
        else {
            return Err(Rejection::bare(ovpn_netlink::errno::ENODEV));
        };
        let device = runtime.shared.clone();
        let sink = conn.sink.clone();
        let pid = conn.pid;
        let attrs = convert::peer_attrs(&args.peer);
        let remote_given = attrs.remote_ipv4.is_some() || attrs.remote_ipv6.is_some();
        let mut attacher =
            Attacher::new(fds, pid, remote_given, &mut self.transports, &device, &sink);
        device
            .core
            .peer_new(Some(&attrs), &mut attacher, Instant::now())
            .map_err(convert::rejection)?;
        tracing::info!(dev = %device.name, peer_id = args.peer.id.unwrap_or_default(), "peer added");
        Ok(None)
    }

    fn peer_get(
        &self,
        token: u64,
        _msg: &NlMsg<'_>,
        request: &Request<'_>,
        _mode: ovpn_netlink::ovpn::Mode,
        ifindex: u32,
    ) -> Result<Option<OvpnMsg>, Rejection> {
        let id = request.peer_get()?;
        let dev = self.device(ifindex)?;
        let peer = ovpn_netlink::ovpn::Peer::with_id(id);
        let info = dev
            .core
            .peer_get(Some(&convert::peer_attrs(&peer)))
            .map_err(convert::rejection)?;
        let mut reply = convert::peer_reply(&info, false);
        if let Some(conn) = self.conns.get(&token) {
            reply.socket_netnsid = self.socket_netnsid(conn, dev, &info);
        }
        Ok(Some(OvpnMsg::peer_get_reply(reply)))
    }

    /// `socket-netnsid` of a PEER_GET reply to `conn`: present only when
    /// the peer's socket lives in another namespace than the client
    /// (§7.7).
    fn socket_netnsid(
        &self,
        conn: &Conn,
        dev: &crate::device::DeviceShared,
        info: &ovpn_core::PeerInfo,
    ) -> Option<i32> {
        let transport = dev.transport(info.transport.id)?;
        let (ns_fd, socket_ns) = transport.netns.as_ref()?;
        let client_ns = conn.netns?;
        if client_ns == *socket_ns {
            return None;
        }
        crate::nsid::id_seen_from(conn.pid, client_ns == self.netns, ns_fd.as_fd())
    }

    /// PEER_SET, PEER_DEL and the key operations.
    fn simple_op(
        &self,
        cmd: Cmd,
        request: &Request<'_>,
        mode: ovpn_netlink::ovpn::Mode,
        ifindex: u32,
    ) -> Result<Option<OvpnMsg>, Rejection> {
        let dev = self.device(ifindex)?;
        let core = &dev.core;
        let now = Instant::now();
        match cmd {
            Cmd::PeerSet => {
                let peer = request.peer_set(mode)?;
                core.peer_set(Some(&convert::peer_attrs(&peer)), now)
                    .map_err(convert::rejection)?;
            }
            Cmd::PeerDel => {
                let id = request.peer_del()?;
                let peer = ovpn_netlink::ovpn::Peer::with_id(id);
                core.peer_del(Some(&convert::peer_attrs(&peer)))
                    .map_err(convert::rejection)?;
            }
            Cmd::KeyNew => {
                let kc = request.key_new()?;
                core.key_new(Some(convert::keyconf_attrs(&kc)))
                    .map_err(convert::rejection)?;
                tracing::info!(
                    dev = %dev.name,
                    peer_id = kc.peer_id.unwrap_or_default(),
                    key_id = kc.key_id.unwrap_or_default(),
                    slot = %kc.slot.map(|s| s.to_string()).unwrap_or_default(),
                    "key installed"
                );
            }
            Cmd::KeyGet => {
                let (peer_id, slot) = request.key_get()?;
                let kc = ovpn_netlink::ovpn::KeyConf {
                    peer_id: Some(peer_id),
                    slot: Some(slot),
                    ..Default::default()
                };
                let reply = core
                    .key_get(Some(&convert::keyconf_attrs(&kc)))
                    .map_err(convert::rejection)?;
                return Ok(Some(convert::key_get_reply(&reply)));
            }
            Cmd::KeySwap => {
                let peer_id = request.key_swap()?;
                let kc = ovpn_netlink::ovpn::KeyConf {
                    peer_id: Some(peer_id),
                    ..Default::default()
                };
                core.key_swap(Some(&convert::keyconf_attrs(&kc)))
                    .map_err(convert::rejection)?;
                tracing::info!(dev = %dev.name, peer_id, "keys swapped");
            }
            Cmd::KeyDel => {
                let (peer_id, slot) = request.key_del()?;
                let kc = ovpn_netlink::ovpn::KeyConf {
                    peer_id: Some(peer_id),
                    slot: Some(slot),
                    ..Default::default()
                };
                core.key_del(Some(&convert::keyconf_attrs(&kc)))
                    .map_err(convert::rejection)?;
                tracing::info!(dev = %dev.name, peer_id, slot = %slot, "key deleted");
            }
            _ => return Err(Rejection::bare(ovpn_netlink::errno::EOPNOTSUPP)),
        }
        Ok(None)
    }

    fn device(
        &self,
        ifindex: u32,
    ) -> Result<&std::sync::Arc<crate::device::DeviceShared>, Rejection> {
        self.devices
            .get(&ifindex)
            .map(|d| &d.shared)
            .ok_or(Rejection::bare(ovpn_netlink::errno::ENODEV))
    }

    /// PEER_GET dump: one message per peer, then NLMSG_DONE; errors of the
    /// device lookup travel in the DONE message, as the dump handler
    /// reports them (§7.5).
    fn peer_dump(&self, conn: &Conn, msg: &NlMsg<'_>, request: &Request<'_>) {
        let seq = msg.header.seq;
        let finish = |buf: &mut Vec<u8>, errno: i32, ext: &ExtAck| {
            ack::encode_done(buf, conn.ack, conn.port_id, seq, errno, ext);
            conn.send(buf);
        };
        let mut buf = Vec::new();
        if let Err(rejection) = request.pre_doit(|ifindex| self.lookup(ifindex)) {
            finish(&mut buf, rejection.errno, &rejection.ext);
            return;
        }
        let ifindex = request.ifindex().unwrap_or_default();
        let Ok(dev) = self.device(ifindex) else {
            finish(&mut buf, ovpn_netlink::errno::ENODEV, &ExtAck::default());
            return;
        };
        // Peers share transports: ask for each transport's namespace id once.
        let mut netnsids = std::collections::BTreeMap::new();
        for info in dev.core.peer_dump() {
            let mut peer = convert::peer_reply(&info, false);
            peer.socket_netnsid = *netnsids
                .entry(info.transport.id)
                .or_insert_with(|| self.socket_netnsid(conn, dev, &info));
            let reply = OvpnMsg::peer_get_reply(peer);
            reply.encode(&mut buf, OVPN_FAMILY_ID, NLM_F_MULTI, seq, conn.port_id);
            if buf.len() >= DUMP_CHUNK {
                conn.send(&buf);
                buf.clear();
            }
        }
        finish(&mut buf, 0, &ExtAck::default());
    }
}
