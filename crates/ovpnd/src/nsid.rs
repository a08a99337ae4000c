//! `socket-netnsid` (kernel-behaviour §3.1, §7.7): when a peer's socket
//! lives in another network namespace than the client asking for the peer,
//! the kernel reports the socket namespace's id as seen from the client's
//! namespace, giving it one if it has none. The daemon asks the kernel the
//! same question over rtnetlink (RTM_GETNSID, RTM_NEWNSID), from a netlink
//! socket in the client's namespace.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use ovpn_netlink::ack::ErrorReport;
use ovpn_netlink::nlmsg::{Messages, NLMSG_ERROR};
use ovpn_netlink::nsid::{self, NSID_NOT_ASSIGNED};
use ovpn_sys::netlink::{NetlinkSocket, Protocol};

/// How long one answer of the kernel may take.
const ANSWER: Duration = Duration::from_secs(1);

/// The id of the namespace behind `target` (a namespace descriptor of this
/// process) as seen from the network namespace of process `pid`, assigned
/// if it has none; `None` if the kernel would not tell.
pub(crate) fn id_seen_from(
    pid: i32,
    in_own_namespace: bool,
    target: BorrowedFd<'_>,
) -> Option<i32> {
    let socket = if in_own_namespace {
        NetlinkSocket::open(Protocol::Route)
    } else {
        // A socket stays in the namespace it was made in: make it in a
        // thread that enters the client's namespace.
        let path = ovpn_sys::netns::path_of(pid);
        std::thread::scope(|s| {
            s.spawn(|| {
                ovpn_sys::netns::enter(&path)?;
                NetlinkSocket::open(Protocol::Route)
            })
            .join()
            .unwrap_or_else(|_| {
                Err(ovpn_sys::Error::InvalidArgument {
                    call: "netns thread",
                    reason: "panicked",
                })
            })
        })
    };
    let socket = match socket {
        Ok(s) => s,
        Err(error) => {
            tracing::debug!(%error, pid, "no rtnetlink socket for socket-netnsid");
            return None;
        }
    };
    socket.set_recv_timeout(Some(ANSWER)).ok()?;
    let fd = u32::try_from(target.as_raw_fd()).ok()?;
    let id = ask(&socket, 1, fd, false)?;
    if id != NSID_NOT_ASSIGNED {
        return Some(id);
    }
    // EEXIST if someone assigned one meanwhile: read it either way.
    let _ = ask(&socket, 2, fd, true);
    ask(&socket, 3, fd, false).filter(|&id| id != NSID_NOT_ASSIGNED)
}

/// Sends RTM_GETNSID (or, with `assign`, RTM_NEWNSID) and returns the id
/// of the reply (`Some(0)` for the ACK of an assignment).
fn ask(socket: &NetlinkSocket, seq: u32, fd: u32, assign: bool) -> Option<i32> {
    let mut buf = Vec::new();
    if assign {
        nsid::encode_assign(&mut buf, seq, fd);
    } else {
        nsid::encode_get(&mut buf, seq, fd);
    }
    socket.send(&buf).ok()?;
    let mut answer = Vec::new();
    // Bounded: each receive waits at most ANSWER, and a few stray messages
    // are all a fresh socket can hold.
    for _ in 0..4 {
        socket.recv_vec(&mut answer).ok()?;
        for msg in Messages::new(&answer) {
            let msg = msg.ok()?;
            if msg.header.seq != seq {
                continue;
            }
            if msg.header.ty == NLMSG_ERROR {
                let ok = ErrorReport::parse(&msg).is_ok_and(|r| r.is_ok());
                return (assign && ok).then_some(0);
            }
            return nsid::decode_nsid(&msg);
        }
    }
    None
}
