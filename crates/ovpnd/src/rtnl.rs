//! rtnetlink on `rtnl.sock`: RTM_NEWLINK, RTM_DELLINK and RTM_GETLINK for
//! links of kind `ovpn` (kernel-behaviour §1.1, §1.4).
//!
//! The daemon answers for its own devices only. Other interfaces of the
//! namespace are not ours to create, change, delete or report: a request
//! naming one is refused (`EOPNOTSUPP` to change or delete it, `ENODEV` to
//! get it) and dumps list only `ovpn` devices. Use the kernel's rtnetlink
//! (`ip link`) for everything else.

use ovpn_netlink::ack::{ExtAck, Rejection};
use ovpn_netlink::errno::{EEXIST, EINVAL, ENODEV, EOPNOTSUPP, EPERM};
use ovpn_netlink::link::{
    self, LinkMsg, RTM_DELLINK, RTM_GETLINK, RTM_NEWLINK, validate_link_request,
};
use ovpn_netlink::nlmsg::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_MULTI, NlMsg};
use ovpn_netlink::ovpn::Mode;

use crate::device::{DeviceRuntime, MAX_MTU, MIN_MTU};
use crate::server::{Conn, Server};

/// The name rtnetlink gives a new link of kind `ovpn` without `IFLA_IFNAME`.
const DEFAULT_NAME: &str = "ovpn%d";

/// Where a link request points.
enum Target {
    /// One of our devices.
    Ours(u32),
    /// An interface that is not ours.
    Foreign,
    /// Nothing by that index or name.
    Missing,
}

impl Server {
    pub(crate) fn handle_rtnl(&mut self, token: u64, msg: &NlMsg<'_>) {
        let Some(conn) = self.conns.get(&token) else {
            return;
        };
        let admin = conn.admin;
        let request = match msg.header.ty {
            RTM_NEWLINK | RTM_DELLINK | RTM_GETLINK => validate_link_request(msg),
            _ => Err(Rejection::bare(EOPNOTSUPP)),
        };
        let request = match request {
            Ok(r) => r,
            Err(rejection) => {
                conn.send_error(msg, &rejection);
                return;
            }
        };
        if msg.header.ty == RTM_GETLINK {
            self.get_link(conn, msg, &request);
            return;
        }
        if !admin {
            conn.send_error(msg, &Rejection::bare(EPERM));
            return;
        }
        let result = if msg.header.ty == RTM_NEWLINK {
            self.new_link(msg, &request)
        } else {
            self.del_link(&request)
        };
        if let Some(conn) = self.conns.get(&token) {
            conn.finish(msg, result);
        }
        self.drain_notifications();
    }

    fn target(&self, request: &LinkMsg) -> Target {
        let index = u32::try_from(request.info.index).unwrap_or(0);
        let index = if index != 0 {
            Some(index)
        } else {
            request
                .name
                .as_deref()
                .and_then(|name| ovpn_sys::netdev::index(name).ok())
        };
        match index {
            Some(i) if self.devices.contains_key(&i) => Target::Ours(i),
            Some(i) if ovpn_sys::netdev::name(i).is_ok() => Target::Foreign,
            _ => Target::Missing,
        }
    }

    fn new_link(&mut self, msg: &NlMsg<'_>, request: &LinkMsg) -> Result<(), Rejection> {
        let flags = msg.header.flags;
        match self.target(request) {
            Target::Ours(_) | Target::Foreign if flags & NLM_F_EXCL != 0 => {
                Err(Rejection::bare(EEXIST))
            }
            Target::Ours(ifindex) => self.change_link(ifindex, request),
            Target::Foreign => Err(Rejection::bare(EOPNOTSUPP)),
            Target::Missing if flags & NLM_F_CREATE == 0 => Err(Rejection::bare(ENODEV)),
            Target::Missing => self.create_link(request),
        }
    }

    fn create_link(&mut self, request: &LinkMsg) -> Result<(), Rejection> {
        if request.kind.as_deref() != Some(link::KIND_OVPN) {
            return Err(Rejection::bare(EOPNOTSUPP));
        }
        if request.info.index != 0 {
            // TODO: rtnetlink lets the creator choose the new ifindex; a TUN
            // interface cannot be given one, so such a request is refused.
            return Err(Rejection::msg(
                EOPNOTSUPP,
                "ovpnd: cannot choose the ifindex",
            ));
        }
        let mode = request.mode.unwrap_or(Mode::P2p);
        let name = request.name.as_deref().unwrap_or(DEFAULT_NAME);
        let runtime = DeviceRuntime::create(
            name,
            mode,
            self.threads,
            (self.tso, self.gso, self.gro),
            self.wake.clone(),
        )
        .map_err(|error| {
            tracing::error!(%error, name, "cannot create the TUN interface");
            Rejection::bare(error.raw_os_error().unwrap_or(EINVAL))
        })?;
        let dev = runtime.shared.clone();
        if let Some(mtu) = request.mtu {
            if let Err(rejection) = set_mtu(&dev.tun, mtu) {
                runtime.stop_workers();
                return Err(rejection);
            }
        }
        self.devices.insert(dev.ifindex, runtime);
        if let Some(routes) = &mut self.routes {
            routes.resync(&self.devices);
        }
        tracing::info!(dev = %dev.name, ifindex = dev.ifindex, mode = mode.name(), "device created");
        Ok(())
    }

    /// RTM_NEWLINK on an existing device without `NLM_F_EXCL`: the MTU may
    /// change; the mode may not (ovpn has no changelink, §1.1).
    fn change_link(&mut self, ifindex: u32, request: &LinkMsg) -> Result<(), Rejection> {
        if request.mode.is_some() {
            return Err(Rejection::bare(EOPNOTSUPP));
        }
        let dev = &self.devices[&ifindex].shared;
        if let Some(mtu) = request.mtu {
            set_mtu(&dev.tun, mtu)?;
        }
        Ok(())
    }

    fn del_link(&mut self, request: &LinkMsg) -> Result<(), Rejection> {
        match self.target(request) {
            Target::Ours(ifindex) => {
                self.remove_device(ifindex);
                Ok(())
            }
            Target::Foreign => Err(Rejection::bare(EOPNOTSUPP)),
            Target::Missing => Err(Rejection::bare(ENODEV)),
        }
    }

    fn get_link(&self, conn: &Conn, msg: &NlMsg<'_>, request: &LinkMsg) {
        let seq = msg.header.seq;
        if msg.header.is_dump() {
            let mut buf = Vec::new();
            for &ifindex in self.devices.keys() {
                if let Some(reply) = self.link_reply(ifindex) {
                    reply.encode(&mut buf, RTM_NEWLINK, NLM_F_MULTI, seq, conn.port_id);
                }
            }
            ovpn_netlink::ack::encode_done(
                &mut buf,
                conn.ack,
                conn.port_id,
                seq,
                0,
                &ExtAck::default(),
            );
            conn.send(&buf);
            return;
        }
        match self.target(request) {
            Target::Ours(ifindex) => match self.link_reply(ifindex) {
                Some(reply) => {
                    let mut buf = Vec::new();
                    reply.encode(&mut buf, RTM_NEWLINK, 0, seq, conn.port_id);
                    conn.send(&buf);
                    conn.send_ack(msg);
                }
                None => conn.send_error(msg, &Rejection::bare(ENODEV)),
            },
            Target::Foreign | Target::Missing => conn.send_error(msg, &Rejection::bare(ENODEV)),
        }
    }

    fn link_reply(&self, ifindex: u32) -> Option<LinkMsg> {
        let dev = &self.devices.get(&ifindex)?.shared;
        let flags = ovpn_sys::netdev::flags_by_index(ifindex).ok()?.0;
        let mtu = dev.tun.mtu().ok()?;
        let index = i32::try_from(ifindex).ok()?;
        Some(LinkMsg::ovpn_reply(index, flags, &dev.name, mtu, dev.mode))
    }
}

fn set_mtu(tun: &ovpn_sys::tun::Tun, mtu: u32) -> Result<(), Rejection> {
    if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
        let text = if mtu < MIN_MTU {
            "mtu less than device minimum"
        } else {
            "mtu greater than device maximum"
        };
        return Err(Rejection::msg(EINVAL, text));
    }
    tun.set_mtu(mtu)
        .map_err(|e| Rejection::bare(e.raw_os_error().unwrap_or(EINVAL)))
}
