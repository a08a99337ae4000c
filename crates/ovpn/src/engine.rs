//! The request/reply engine over one [`Transport`]: numbers requests, sends
//! them, and collects what the kernel (or the daemon, byte for byte the same)
//! answers with that sequence number: data messages, then the ACK of a do
//! request or the `NLMSG_DONE` of a dump (kernel-behaviour §7; netlink's own
//! rules in `net/netlink/af_netlink.c`). An error or a failed DONE becomes an
//! [`Error::Rejected`] with the extended ACK's offsets turned into spec names.
//!
//! Messages that belong to no request (sequence number 0: notifications of
//! the `peers` group, the daemon's control packets) may arrive while a
//! request waits; they are queued and handed out by [`Engine::next_unsolicited`],
//! never dropped. Replies carrying another non-zero sequence number belong
//! to an earlier request that timed out and are discarded.
//!
//! Every wait is bounded by the engine's timeout.

use std::collections::VecDeque;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use ovpn_netlink::ack::ErrorReport;
use ovpn_netlink::nlmsg::{Messages, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN, NlMsg};
use ovpn_netlink::ovpnd::SockoptRequest;

use crate::error::{Error, Rejected, Result};
use crate::names::{self, Schema};
use crate::transport::{SockOpt, Transport};

/// How long a request waits for its complete answer unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// How a request's attributes are laid out, for naming what an extended ACK
/// points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Offset of the first attribute in the request message.
    pub(crate) attrs_start: usize,
    /// The attribute space of the request.
    pub(crate) schema: Schema,
}

/// One connection's request/reply state.
pub(crate) struct Engine {
    transport: Box<dyn Transport>,
    seq: u32,
    timeout: Duration,
    unsolicited: VecDeque<Vec<u8>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("seq", &self.seq)
            .field("timeout", &self.timeout)
            .field("queued", &self.unsolicited.len())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine over `transport` with the default timeout.
    pub(crate) fn new(transport: Box<dyn Transport>) -> Self {
        Self {
            transport,
            seq: 0,
            timeout: DEFAULT_TIMEOUT,
            unsolicited: VecDeque::new(),
        }
    }

    /// Sets how long one request may wait for its complete answer.
    pub(crate) fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The sequence number for the next request; never 0, which marks
    /// messages that answer no request.
    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    /// Sends the request `build` writes for the given sequence number, with
    /// `fds` attached where the transport carries descriptors, and returns
    /// the data messages of the answer (whole messages, header included).
    ///
    /// A do request must ask for an ACK, which ends its answer; a dump
    /// (`NLM_F_DUMP`) ends with `NLMSG_DONE`.
    ///
    /// # Errors
    ///
    /// [`Error::Rejected`] for an error reply, [`Error::Timeout`] when the
    /// answer is incomplete after the timeout, [`Error::Malformed`] for
    /// replies that do not parse, transport errors.
    pub(crate) fn request(
        &mut self,
        build: impl FnOnce(&mut Vec<u8>, u32),
        fds: &[BorrowedFd<'_>],
        layout: Layout,
    ) -> Result<Vec<Vec<u8>>> {
        let seq = self.next_seq();
        let mut request = Vec::new();
        build(&mut request, seq);
        self.transport.send(&request, fds)?;

        let deadline = Instant::now() + self.timeout;
        let mut replies = Vec::new();
        loop {
            let datagram = self.recv_until(deadline)?;
            for msg in Messages::new(&datagram) {
                let msg = msg?;
                match self.classify(&msg, seq) {
                    Route::Mine => {}
                    Route::Queued | Route::Stale => continue,
                }
                match msg.header.ty {
                    NLMSG_NOOP => {}
                    NLMSG_OVERRUN => return Err(Error::Unexpected("netlink overrun")),
                    NLMSG_ERROR | NLMSG_DONE => {
                        let report = ErrorReport::parse(&msg)?;
                        if report.is_ok() {
                            return Ok(replies);
                        }
                        return Err(rejected(&report, &request, layout).into());
                    }
                    // A do reply is followed by its ACK, dump parts by DONE.
                    _ => replies.push(msg.bytes.to_vec()),
                }
            }
        }
    }

    /// Applies a socket option: natively on a netlink socket, as an
    /// `OVPND_MSG_SOCKOPT` request (waiting for its ACK) to the daemon.
    ///
    /// # Errors
    ///
    /// The setsockopt or the request failing.
    pub(crate) fn set_option(&mut self, option: SockOpt, value: u32) -> Result<()> {
        if self.transport.set_option(option, value)? {
            return Ok(());
        }
        let req = SockoptRequest {
            option: option.number(),
            value,
        };
        let layout = Layout {
            attrs_start: 0,
            schema: Schema::Numbers,
        };
        self.request(|buf, seq| req.encode(buf, seq), &[], layout)
            .map(drop)
    }

    /// The next message that answers no request: a queued one first, else
    /// one received within `timeout`; `None` if none came.
    ///
    /// # Errors
    ///
    /// Transport errors, or a datagram that does not parse.
    pub(crate) fn next_unsolicited(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>> {
        if let Some(m) = self.unsolicited.pop_front() {
            return Ok(Some(m));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let Some(datagram) = self.transport.recv(remaining)? else {
                return Ok(None);
            };
            for msg in Messages::new(&datagram) {
                let msg = msg?;
                // No request is outstanding: everything with seq 0 is queued,
                // late replies of timed-out requests are dropped.
                let _ = self.classify(&msg, u32::MAX);
            }
            if let Some(m) = self.unsolicited.pop_front() {
                return Ok(Some(m));
            }
            if remaining.is_zero() {
                return Ok(None);
            }
        }
    }

    /// Receives one datagram before `deadline`.
    fn recv_until(&mut self, deadline: Instant) -> Result<Vec<u8>> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        self.transport
            .recv(remaining)?
            .ok_or(Error::Timeout(self.timeout))
    }

    /// Queues `msg` if it answers no request, tells whether it belongs to
    /// the request with sequence number `seq`.
    fn classify(&mut self, msg: &NlMsg<'_>, seq: u32) -> Route {
        if msg.header.seq == seq && seq != 0 {
            Route::Mine
        } else if msg.header.seq == 0 {
            self.unsolicited.push_back(msg.bytes.to_vec());
            Route::Queued
        } else {
            Route::Stale
        }
    }
}

/// Where a received message goes.
enum Route {
    /// An answer to the current request.
    Mine,
    /// Unsolicited, kept for [`Engine::next_unsolicited`].
    Queued,
    /// A late answer to an earlier request.
    Stale,
}

/// The library's form of an error report: names instead of offsets.
fn rejected(report: &ErrorReport, request: &[u8], layout: Layout) -> Rejected {
    let ext = &report.ext;
    let attribute = report
        .attribute_path(request, layout.attrs_start)
        .map(|p| names::path(layout.schema, &p));
    let missing = ext.miss_type.map(|ty| {
        let nest = report
            .missing_nest_path(request, layout.attrs_start)
            .unwrap_or_default();
        let ty = u16::try_from(ty).unwrap_or(u16::MAX);
        names::missing_path(layout.schema, &nest, ty)
    });
    Rejected {
        errno: report.errno,
        message: ext.message.clone(),
        attribute,
        missing,
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! An in-memory transport for tests: records what is sent, answers from
    //! a script of datagrams keyed by the request they follow.

    use std::collections::VecDeque;
    use std::os::fd::{AsRawFd, BorrowedFd};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use crate::error::Result;
    use crate::transport::{SockOpt, Transport};

    /// Builds the datagrams that answer one request (given the request, so
    /// it can echo the sequence number).
    pub(crate) type Answer = Box<dyn FnOnce(&[u8]) -> Vec<Vec<u8>> + Send>;

    /// What the fake saw and will answer; shared with the test.
    #[derive(Default)]
    pub(crate) struct Script {
        /// Datagrams sent, with the descriptor numbers attached.
        pub(crate) sent: Vec<(Vec<u8>, Vec<i32>)>,
        /// Per request sent, the datagrams to answer with. A reply builder
        /// gets the request so it can echo its sequence number.
        pub(crate) answers: VecDeque<Answer>,
        /// Datagrams waiting to be received.
        pub(crate) inbox: VecDeque<Vec<u8>>,
        /// Options applied natively.
        pub(crate) options: Vec<(SockOpt, u32)>,
        /// Whether options are native (kernel-like) or messages (daemon-like).
        pub(crate) native_options: bool,
    }

    /// The transport half of a [`Script`].
    pub(crate) struct Fake(pub(crate) Arc<Mutex<Script>>);

    impl Fake {
        pub(crate) fn new(native_options: bool) -> (Self, Arc<Mutex<Script>>) {
            let script = Arc::new(Mutex::new(Script {
                native_options,
                ..Script::default()
            }));
            (Self(script.clone()), script)
        }
    }

    impl Transport for Fake {
        fn send(&mut self, datagram: &[u8], fds: &[BorrowedFd<'_>]) -> Result<()> {
            let mut s = self.0.lock().unwrap();
            s.sent.push((
                datagram.to_vec(),
                fds.iter().map(|f| f.as_raw_fd()).collect(),
            ));
            if let Some(answer) = s.answers.pop_front() {
                let replies = answer(datagram);
                s.inbox.extend(replies);
            }
            Ok(())
        }

        fn recv(&mut self, _timeout: Duration) -> Result<Option<Vec<u8>>> {
            Ok(self.0.lock().unwrap().inbox.pop_front())
        }

        fn set_option(&mut self, option: SockOpt, value: u32) -> Result<bool> {
            let mut s = self.0.lock().unwrap();
            if s.native_options {
                s.options.push((option, value));
            }
            Ok(s.native_options)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::Fake;
    use super::*;
    use ovpn_netlink::ack::{AckOptions, ExtAck, encode_ack, encode_done, encode_error};
    use ovpn_netlink::errno;
    use ovpn_netlink::genl::GENL_ATTRS_OFFSET;
    use ovpn_netlink::nlmsg::{NLM_F_ACK, NLM_F_DUMP, NLM_F_MULTI, NLM_F_REQUEST, NlMsgHeader};
    use ovpn_netlink::ovpn::attrs::peer;
    use ovpn_netlink::ovpn::{DelPeerReason, OvpnMsg, Peer};

    const FAMILY: u16 = 0x1c;
    const EXT: AckOptions = AckOptions {
        ext_ack: true,
        cap_ack: true,
    };
    const OVPN: Layout = Layout {
        attrs_start: GENL_ATTRS_OFFSET,
        schema: Schema::Ovpn,
    };

    fn seq_of(request: &[u8]) -> u32 {
        NlMsgHeader::parse(request).unwrap().seq
    }

    fn ack(request: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_ack(&mut out, EXT, 9, request, &ExtAck::default()).unwrap();
        out
    }

    fn peer_reply(seq: u32, id: u32, flags: u16) -> Vec<u8> {
        let mut out = Vec::new();
        OvpnMsg::peer_get_reply(Peer::with_id(id)).encode(&mut out, FAMILY, flags, seq, 9);
        out
    }

    fn notification(id: u32) -> Vec<u8> {
        let mut out = Vec::new();
        OvpnMsg::peer_del_ntf(4, id, DelPeerReason::Expired).encode(&mut out, FAMILY, 0, 0, 0);
        out
    }

    fn peer_get(buf: &mut Vec<u8>, seq: u32) {
        OvpnMsg::peer_get(4, 1).encode(buf, FAMILY, NLM_F_REQUEST | NLM_F_ACK, seq, 0);
    }

    #[test]
    fn do_request_collects_reply_until_ack_and_numbers_requests() {
        let (fake, script) = Fake::new(true);
        for id in [1, 2] {
            script
                .lock()
                .unwrap()
                .answers
                .push_back(Box::new(move |req| {
                    vec![peer_reply(seq_of(req), id, 0), ack(req)]
                }));
        }
        let mut engine = Engine::new(Box::new(fake));
        let first = engine.request(peer_get, &[], OVPN).unwrap();
        let second = engine.request(peer_get, &[], OVPN).unwrap();
        assert_eq!(first.len(), 1);
        let msg = OvpnMsg::decode(&NlMsg::parse(&second[0]).unwrap()).unwrap();
        assert_eq!(msg.peer.unwrap().id, Some(2));
        let s = script.lock().unwrap();
        assert_eq!(seq_of(&s.sent[0].0), 1);
        assert_eq!(seq_of(&s.sent[1].0), 2);
    }

    #[test]
    fn dump_spans_datagrams_until_done() {
        let (fake, script) = Fake::new(true);
        script.lock().unwrap().answers.push_back(Box::new(|req| {
            let seq = seq_of(req);
            let mut two = peer_reply(seq, 1, NLM_F_MULTI);
            two.extend(peer_reply(seq, 2, NLM_F_MULTI));
            let mut done = Vec::new();
            encode_done(&mut done, EXT, 9, seq, 0, &ExtAck::default());
            vec![two, peer_reply(seq, 3, NLM_F_MULTI), done]
        }));
        let mut engine = Engine::new(Box::new(fake));
        let parts = engine
            .request(
                |buf, seq| {
                    OvpnMsg::peer_get_dump(4).encode(
                        buf,
                        FAMILY,
                        NLM_F_REQUEST | NLM_F_DUMP,
                        seq,
                        0,
                    )
                },
                &[],
                OVPN,
            )
            .unwrap();
        let ids: Vec<_> = parts
            .iter()
            .map(|p| {
                let m = OvpnMsg::decode(&NlMsg::parse(p).unwrap()).unwrap();
                m.peer.unwrap().id.unwrap()
            })
            .collect();
        assert_eq!(ids, [1, 2, 3]);
    }

    #[test]
    fn dump_error_in_done_is_rejected() {
        let (fake, script) = Fake::new(true);
        script.lock().unwrap().answers.push_back(Box::new(|req| {
            let mut done = Vec::new();
            let ext = ExtAck {
                message: Some("ovpn: ifindex does not match any interface".into()),
                ..ExtAck::default()
            };
            encode_done(&mut done, EXT, 9, seq_of(req), errno::ENODEV, &ext);
            vec![done]
        }));
        let mut engine = Engine::new(Box::new(fake));
        let err = engine
            .request(
                |buf, seq| {
                    OvpnMsg::peer_get_dump(4).encode(
                        buf,
                        FAMILY,
                        NLM_F_REQUEST | NLM_F_DUMP,
                        seq,
                        0,
                    )
                },
                &[],
                OVPN,
            )
            .unwrap_err();
        assert_eq!(err.errno(), Some(errno::ENODEV));
        assert_eq!(
            err.rejection().unwrap().message.as_deref(),
            Some("ovpn: ifindex does not match any interface")
        );
    }

    #[test]
    fn error_names_the_offending_and_the_missing_attribute() {
        let (fake, script) = Fake::new(true);
        script.lock().unwrap().answers.push_back(Box::new(|req| {
            // The remote-ipv6 attribute of the request below: ifindex (8
            // bytes) at 20, the peer nest header at 28, id at 32, then
            // remote-ipv4 at 40 and remote-ipv6 at 48.
            let ext = ExtAck {
                message: Some("ovpn: cannot give both remote IPv4 and IPv6".into()),
                bad_attr: Some(48),
                ..ExtAck::default()
            };
            let mut out = Vec::new();
            encode_error(&mut out, EXT, 9, req, errno::EINVAL, &ext).unwrap();
            vec![out]
        }));
        script.lock().unwrap().answers.push_back(Box::new(|req| {
            let ext = ExtAck {
                miss_type: Some(u32::from(peer::ID)),
                miss_nest: Some(28),
                ..ExtAck::default()
            };
            let mut out = Vec::new();
            encode_error(&mut out, EXT, 9, req, errno::EINVAL, &ext).unwrap();
            vec![out]
        }));
        let mut engine = Engine::new(Box::new(fake));
        let both = Peer {
            remote_ipv4: Some("198.18.0.1".parse().unwrap()),
            remote_ipv6: Some("2001:db8::1".parse().unwrap()),
            remote_port: Some(1),
            ..Peer::with_id(1)
        };
        let err = engine
            .request(
                |buf, seq| {
                    OvpnMsg::peer_set(4, both.clone()).encode(
                        buf,
                        FAMILY,
                        NLM_F_REQUEST | NLM_F_ACK,
                        seq,
                        0,
                    )
                },
                &[],
                OVPN,
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid argument (EINVAL): ovpn: cannot give both remote IPv4 and IPv6 \
             [attribute peer.remote-ipv6]"
        );

        let err = engine
            .request(
                |buf, seq| {
                    OvpnMsg::peer_set(4, Peer::default()).encode(
                        buf,
                        FAMILY,
                        NLM_F_REQUEST | NLM_F_ACK,
                        seq,
                        0,
                    )
                },
                &[],
                OVPN,
            )
            .unwrap_err();
        assert_eq!(err.rejection().unwrap().missing.as_deref(), Some("peer.id"));
    }

    #[test]
    fn notifications_during_a_request_are_queued_not_lost() {
        let (fake, script) = Fake::new(true);
        script.lock().unwrap().answers.push_back(Box::new(|req| {
            let seq = seq_of(req);
            // A notification before the reply, one in the same datagram as
            // the ACK, and a late reply of an older request (seq 77).
            let mut tail = notification(8);
            tail.extend(ack(req));
            vec![
                notification(7),
                peer_reply(77, 5, 0),
                peer_reply(seq, 1, 0),
                tail,
            ]
        }));
        let mut engine = Engine::new(Box::new(fake));
        let replies = engine.request(peer_get, &[], OVPN).unwrap();
        assert_eq!(replies.len(), 1);
        let mut ids = Vec::new();
        while let Some(m) = engine.next_unsolicited(Duration::ZERO).unwrap() {
            let msg = OvpnMsg::decode(&NlMsg::parse(&m).unwrap()).unwrap();
            ids.push(msg.peer.unwrap().id.unwrap());
        }
        assert_eq!(ids, [7, 8]);
    }

    #[test]
    fn missing_answer_times_out() {
        let (fake, _script) = Fake::new(true);
        let mut engine = Engine::new(Box::new(fake));
        engine.set_timeout(Duration::from_millis(10));
        let err = engine.request(peer_get, &[], OVPN).unwrap_err();
        assert!(matches!(err, Error::Timeout(_)), "{err}");
    }

    #[test]
    fn options_go_natively_or_as_daemon_requests() {
        let (fake, script) = Fake::new(true);
        let mut engine = Engine::new(Box::new(fake));
        engine.set_option(SockOpt::ExtAck, 1).unwrap();
        assert_eq!(script.lock().unwrap().options, [(SockOpt::ExtAck, 1)]);
        assert!(script.lock().unwrap().sent.is_empty());

        let (fake, script) = Fake::new(false);
        script
            .lock()
            .unwrap()
            .answers
            .push_back(Box::new(|req| vec![ack(req)]));
        let mut engine = Engine::new(Box::new(fake));
        engine.set_option(SockOpt::AddMembership, 3).unwrap();
        let s = script.lock().unwrap();
        let sent = NlMsg::parse(&s.sent[0].0).unwrap();
        let req = SockoptRequest::parse(&sent).unwrap();
        assert_eq!((req.option, req.value), (1, 3));
    }

    #[test]
    fn descriptors_travel_with_the_request() {
        let (fake, script) = Fake::new(false);
        script
            .lock()
            .unwrap()
            .answers
            .push_back(Box::new(|req| vec![ack(req)]));
        let mut engine = Engine::new(Box::new(fake));
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        use std::os::fd::{AsFd, AsRawFd};
        engine.request(peer_get, &[sock.as_fd()], OVPN).unwrap();
        assert_eq!(script.lock().unwrap().sent[0].1, [sock.as_raw_fd()]);
    }
}
