//! The command line: every command, argument and example `--help` shows.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Control ovpn devices (OpenVPN data channel offload), in the kernel or in
/// the ovpnd daemon.
#[derive(Debug, Parser)]
#[command(
    name = "ovpn",
    version,
    after_help = "Examples:\n  \
        ovpn link add ovpn0 --mode mp\n  \
        ovpn peer new ovpn0 --id 1 --udp --bind 1194 --remote 198.18.0.2:1194 --vpn-ipv4 198.19.0.2\n  \
        ovpn key new ovpn0 --peer 1 --slot primary --key-id 0 --cipher aes-gcm --key-file data64.key\n  \
        ovpn --json peer get ovpn0 | jq '.[].peer.\"vpn-rx-bytes\"'\n  \
        ovpn monitor --json"
)]
pub(crate) struct Cli {
    /// Which implementation to talk to: the kernel module, the ovpnd daemon,
    /// or auto (the kernel if it has the ovpn family, else the daemon).
    #[arg(long, value_enum, default_value_t = BackendArg::Auto, global = true)]
    pub(crate) backend: BackendArg,

    /// The daemon's run directory, holding genl.sock and rtnl.sock
    /// [default: $OVPND_DIR, else /run/ovpnd/net-<netns inode>].
    #[arg(long, value_name = "DIR", global = true)]
    pub(crate) daemon_dir: Option<PathBuf>,

    /// Print JSON with the spec's attribute names (as the kernel's YNL tool
    /// does) instead of aligned text.
    #[arg(long, global = true)]
    pub(crate) json: bool,

    /// Seconds to wait for each answer of the kernel or daemon.
    #[arg(long, value_name = "SECONDS", default_value_t = 5, global = true)]
    pub(crate) timeout: u64,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BackendArg {
    /// The kernel if it has the ovpn family, else the daemon.
    Auto,
    /// The kernel module, over netlink.
    Kernel,
    /// The ovpnd daemon, over its Unix sockets.
    Daemon,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create, delete and list ovpn interfaces.
    #[command(subcommand)]
    Link(LinkCmd),
    /// Add, change, show and remove peers.
    #[command(subcommand)]
    Peer(PeerCmd),
    /// Install, show, swap and remove data-channel keys.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Print notifications (peer deleted, key swap needed, peer floated) as
    /// they arrive.
    #[command(
        after_help = "Examples:\n  ovpn monitor\n  ovpn monitor --json --duration 40 | jq .msg.peer.id"
    )]
    Monitor(MonitorArgs),
    /// Decode netlink messages given in hex (debugging aid).
    #[command(after_help = "Examples:\n  \
        ovpn decode 28000000220005000100000000000000030100000800010002000000\
        0c0002800800010005000000\n  \
        ovpn decode 24000000020000010100000000000000000000001c000000220005000100000000000000\n  \
        xxd -p capture.bin | ovpn decode --json -")]
    Decode(DecodeArgs),
    /// Build two namespaces, run an MP server and a P2P client on ovpnd,
    /// pass traffic through the tunnel and show the peer statistics.
    #[command(after_help = "Example:\n  sudo ovpn demo --ovpnd ./target/debug/ovpnd")]
    Demo(DemoArgs),
}

#[derive(Debug, Subcommand)]
pub(crate) enum LinkCmd {
    /// Create an ovpn interface.
    #[command(after_help = "Example:\n  ovpn link add ovpn0 --mode mp")]
    Add {
        /// Name of the new interface.
        name: String,
        /// p2p (one peer, a client) or mp (many peers, a server); without it
        /// the device's default, p2p, applies.
        #[arg(long, value_enum)]
        mode: Option<ModeArg>,
    },
    /// Delete an ovpn interface (other kinds of interfaces are refused).
    #[command(after_help = "Example:\n  ovpn link del ovpn0")]
    Del {
        /// Name of the interface.
        name: String,
    },
    /// Show one or all ovpn interfaces.
    #[command(after_help = "Examples:\n  ovpn link show\n  ovpn --json link show ovpn0")]
    Show {
        /// Name of the interface; all ovpn interfaces without it.
        name: Option<String>,
    },
}

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ModeArg {
    /// Peer to peer: at most one peer.
    P2p,
    /// Multi-peer: a server with many peers.
    Mp,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PeerCmd {
    /// Add a peer with its transport socket. A socket the command creates
    /// itself is held open in the foreground until the command is killed
    /// (closing it deletes the peer), or in the background with --detach.
    #[command(after_help = "Examples:\n  \
        ovpn peer new ovpn0 --id 1 --udp --bind 1 --remote 198.18.0.1:1\n  \
        ovpn peer new ovpn0 --id 2 --udp --remote [2001:db8::2]:1194 --vpn-ipv4 198.19.0.3 --detach --pidfile /run/peer2.pid\n  \
        ovpn peer new ovpn0 --id 1 --tcp-connect 198.18.0.1:443 --keepalive 10:60\n  \
        ovpn peer new ovpn0 --id 7 --socket-fd 3 --remote 198.18.0.9:1194 --vpn-ipv4 198.19.0.7")]
    New(Box<PeerNewArgs>),
    /// Add many peers on one UDP socket from a peers file (the kernel
    /// selftests' udp_peers.txt): one line per peer,
    /// `ID LOCAL_ADDR LOCAL_PORT REMOTE_ADDR REMOTE_PORT VPN_ADDR`, or with a
    /// TX_ID column after ID. The local columns are ignored.
    #[command(
        after_help = "Example:\n  ovpn peer new-multi ovpn0 --udp --bind 1 --peers-file udp_peers.txt --detach --pidfile server.pid"
    )]
    NewMulti(Box<PeerNewMultiArgs>),
    /// Change a peer's endpoint, VPN addresses or keepalive.
    #[command(
        after_help = "Examples:\n  ovpn peer set ovpn0 --id 1 --keepalive 60:120\n  ovpn peer set ovpn0 --id 1 --remote 198.18.0.3:1"
    )]
    Set(PeerSetArgs),
    /// Show one peer, or all peers of the interface.
    #[command(after_help = "Examples:\n  ovpn peer get ovpn0\n  ovpn --json peer get ovpn0 --id 1")]
    Get {
        /// The ovpn interface.
        ifname: String,
        /// Peer id; all peers without it.
        #[arg(long)]
        id: Option<u32>,
    },
    /// Remove a peer.
    #[command(after_help = "Example:\n  ovpn peer del ovpn0 --id 1")]
    Del {
        /// The ovpn interface.
        ifname: String,
        /// Peer id.
        #[arg(long)]
        id: u32,
    },
}

/// Attributes PEER_NEW and PEER_SET share.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct PeerAttrs {
    /// The peer's transport endpoint, ADDR:PORT ([ADDR%SCOPE]:PORT for
    /// link-local IPv6); UDP only.
    #[arg(long, value_name = "ADDR:PORT")]
    pub(crate) remote: Option<SocketAddr>,
    /// Our address towards the peer (must be of the remote's family).
    #[arg(long, value_name = "ADDR")]
    pub(crate) local: Option<IpAddr>,
    /// The peer's IPv4 address inside the tunnel (MP only).
    #[arg(long, value_name = "ADDR")]
    pub(crate) vpn_ipv4: Option<Ipv4Addr>,
    /// The peer's IPv6 address inside the tunnel (MP only).
    #[arg(long, value_name = "ADDR")]
    pub(crate) vpn_ipv6: Option<Ipv6Addr>,
    /// Keepalive: send a ping after INTERVAL idle seconds, drop the peer
    /// after TIMEOUT seconds without traffic; 0:0 switches it off.
    #[arg(long, value_name = "INTERVAL:TIMEOUT", value_parser = parse_keepalive)]
    pub(crate) keepalive: Option<(u32, u32)>,
    /// Peer id written into packets we send, when it differs from --id
    /// (later kernels).
    #[arg(long, value_name = "ID")]
    pub(crate) tx_id: Option<u32>,
}

#[derive(Debug, Args)]
pub(crate) struct PeerNewArgs {
    /// The ovpn interface.
    pub(crate) ifname: String,
    /// Peer id (0 to 16777215), the one packets from the peer carry.
    #[arg(long)]
    pub(crate) id: u32,
    #[command(flatten)]
    pub(crate) attrs: PeerAttrs,
    #[command(flatten)]
    pub(crate) transport: TransportArgs,
    /// Local address for --udp: ADDR:PORT, or just PORT for [::]:PORT.
    /// [default: [::]:0, any port]
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_bind,
          conflicts_with_all = ["socket_fd", "tcp_connect", "tcp_listen"])]
    pub(crate) bind: Option<SocketAddr>,
    /// Seconds --tcp-listen waits for the connection, --tcp-connect for the
    /// handshake.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub(crate) connect_timeout: u64,
    #[command(flatten)]
    pub(crate) hold: HoldArgs,
}

/// Where the peer's transport socket comes from: exactly one of these.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct TransportArgs {
    /// Use this inherited socket descriptor; the command exits after adding
    /// the peer, so the descriptor must stay open elsewhere. With ovpnd the
    /// peer lives as long as the process that handed the socket over: add
    /// --detach (or --print-control) to keep this command holding it.
    #[arg(long, value_name = "N")]
    pub(crate) socket_fd: Option<i32>,
    /// Create a UDP socket: IPv6 dual-stack, SO_REUSEADDR and SO_REUSEPORT,
    /// bound to --bind.
    #[arg(long)]
    pub(crate) udp: bool,
    /// Create a TCP connection to ADDR:PORT.
    #[arg(long, value_name = "ADDR:PORT")]
    pub(crate) tcp_connect: Option<SocketAddr>,
    /// Listen on ADDR:PORT and accept one TCP connection.
    #[arg(long, value_name = "ADDR:PORT")]
    pub(crate) tcp_listen: Option<SocketAddr>,
}

/// What to do after adding peers on a socket the command created.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct HoldArgs {
    /// While holding the socket, print the control (non-data) packets that
    /// arrive on it.
    #[arg(long, conflicts_with = "detach")]
    pub(crate) print_control: bool,
    /// Hold the socket in a background process and return once the peers
    /// are added.
    #[arg(long)]
    pub(crate) detach: bool,
    /// Write the pid of the process holding the socket to FILE.
    #[arg(long, value_name = "FILE")]
    pub(crate) pidfile: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct PeerNewMultiArgs {
    /// The ovpn interface (MP).
    pub(crate) ifname: String,
    /// Create one UDP socket for all peers (the only transport this command
    /// supports).
    #[arg(long, required = true)]
    pub(crate) udp: bool,
    /// Local address: ADDR:PORT, or just PORT for [::]:PORT.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_bind)]
    pub(crate) bind: SocketAddr,
    /// The peers file.
    #[arg(long, value_name = "FILE")]
    pub(crate) peers_file: PathBuf,
    #[command(flatten)]
    pub(crate) hold: HoldArgs,
}

#[derive(Debug, Args)]
pub(crate) struct PeerSetArgs {
    /// The ovpn interface.
    pub(crate) ifname: String,
    /// Peer id.
    #[arg(long)]
    pub(crate) id: u32,
    #[command(flatten)]
    pub(crate) attrs: PeerAttrs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeyCmd {
    /// Install a key in a slot (key material from a file or stdin).
    ///
    /// Key material is read from a file or standard input, never from the
    /// command line, in one of three layouts:
    ///
    /// base64 (the kernel selftests' data64.key): at least 72 bytes once
    /// decoded, key A (0..32), key B (32..64), nonce tail (64..72);
    ///
    /// named hex: lines "key-a HEX", "key-b HEX", "nonce-tail HEX" with
    /// 16-, 24- or 32-byte keys and an 8-byte nonce tail ('#' comments);
    ///
    /// raw binary: key A, key B, nonce tail, 40, 56 or 72 bytes in all.
    ///
    /// --key-dir 0 encrypts with key A and decrypts with key B (server),
    /// 1 the other way round (client).
    #[command(after_help = "Examples:\n  \
        ovpn key new ovpn0 --peer 1 --slot primary --key-id 0 --cipher aes-gcm --key-file data64.key --key-dir 1\n  \
        ovpn key new ovpn0 --peer 1 --slot secondary --key-id 1 --cipher chacha20-poly1305 --key-file - < keys.hex")]
    New(KeyNewArgs),
    /// Show the key id and cipher in a slot (never key material).
    #[command(after_help = "Example:\n  ovpn key get ovpn0 --peer 1 --slot primary")]
    Get {
        /// The ovpn interface.
        ifname: String,
        /// Peer id.
        #[arg(long)]
        peer: u32,
        /// The slot.
        #[arg(long, value_enum)]
        slot: SlotArg,
    },
    /// Swap the primary and secondary slots.
    #[command(after_help = "Example:\n  ovpn key swap ovpn0 --peer 1")]
    Swap {
        /// The ovpn interface.
        ifname: String,
        /// Peer id.
        #[arg(long)]
        peer: u32,
    },
    /// Remove the key in a slot.
    #[command(after_help = "Example:\n  ovpn key del ovpn0 --peer 1 --slot secondary")]
    Del {
        /// The ovpn interface.
        ifname: String,
        /// Peer id.
        #[arg(long)]
        peer: u32,
        /// The slot.
        #[arg(long, value_enum)]
        slot: SlotArg,
    },
}

#[derive(Debug, Args)]
pub(crate) struct KeyNewArgs {
    /// The ovpn interface.
    pub(crate) ifname: String,
    /// Peer id.
    #[arg(long)]
    pub(crate) peer: u32,
    /// The slot: primary (used to encrypt) or secondary.
    #[arg(long, value_enum)]
    pub(crate) slot: SlotArg,
    /// Key id (0 to 7) carried in every data packet.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=7))]
    pub(crate) key_id: u32,
    /// The AEAD cipher.
    #[arg(long, value_enum)]
    pub(crate) cipher: CipherArg,
    /// Key file, or - for standard input.
    #[arg(long, value_name = "FILE|-")]
    pub(crate) key_file: PathBuf,
    /// 0: encrypt with key A (server); 1: encrypt with key B (client).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub(crate) key_dir: u8,
}

/// `--slot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SlotArg {
    /// The slot used to encrypt.
    Primary,
    /// The other slot.
    Secondary,
}

/// `--cipher`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CipherArg {
    /// AES-GCM (key size picks AES-128/192/256).
    AesGcm,
    /// ChaCha20-Poly1305 (32-byte keys).
    #[value(name = "chacha20-poly1305")]
    Chacha20Poly1305,
}

#[derive(Debug, Args)]
pub(crate) struct MonitorArgs {
    /// Stop after this many notifications.
    #[arg(long, value_name = "N")]
    pub(crate) count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub(crate) duration: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct DecodeArgs {
    /// Hex bytes of one or more netlink messages (whitespace and ':' are
    /// ignored), or - to read them from standard input.
    #[arg(default_value = "-")]
    pub(crate) hex: String,
    /// The bytes are rtnetlink (NETLINK_ROUTE) messages, not generic netlink.
    #[arg(long)]
    pub(crate) route: bool,
    /// The ovpn family's id; without it any generic-netlink type other than
    /// nlctrl's is decoded as ovpn.
    #[arg(long, value_name = "ID")]
    pub(crate) family_id: Option<u16>,
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// The ovpnd binary [default: next to this executable].
    #[arg(long, value_name = "PATH")]
    pub(crate) ovpnd: Option<PathBuf>,
}

/// `INTERVAL:TIMEOUT` in seconds.
pub(crate) fn parse_keepalive(s: &str) -> Result<(u32, u32), String> {
    let (i, t) = s
        .split_once(':')
        .ok_or_else(|| "expected INTERVAL:TIMEOUT, e.g. 10:60".to_owned())?;
    let num = |v: &str| {
        v.trim()
            .parse::<u32>()
            .map_err(|_| format!("{v:?} is not a number of seconds"))
    };
    Ok((num(i)?, num(t)?))
}

/// `ADDR:PORT`, or a bare `PORT` meaning `[::]:PORT`.
pub(crate) fn parse_bind(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port));
    }
    s.parse()
        .map_err(|_| format!("{s:?} is neither ADDR:PORT nor a port"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ovpn").chain(args.iter().copied()))
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_has_help_for_every_argument() {
        fn walk(cmd: &clap::Command, path: &str) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                assert!(arg.get_help().is_some(), "{path}: --{id} has no help");
            }
            for sub in cmd.get_subcommands() {
                let p = format!("{path} {}", sub.get_name());
                assert!(sub.get_about().is_some(), "{p} has no description");
                if sub.get_subcommands().next().is_none() {
                    let after = sub.get_after_help().map(|s| s.to_string());
                    assert!(
                        after.is_some_and(|a| a.contains("ovpn ")),
                        "{p} has no example"
                    );
                }
                walk(sub, &p);
            }
        }
        walk(&Cli::command(), "ovpn");
    }

    #[test]
    fn peer_new_udp() {
        let cli = parse(&[
            "peer",
            "new",
            "ovpn0",
            "--id",
            "1",
            "--udp",
            "--bind",
            "1",
            "--remote",
            "198.18.0.1:1",
            "--keepalive",
            "10:60",
            "--detach",
            "--pidfile",
            "/tmp/p",
        ])
        .unwrap();
        let Command::Peer(PeerCmd::New(a)) = cli.command else {
            panic!("peer new")
        };
        assert_eq!(a.id, 1);
        assert!(a.transport.udp);
        assert_eq!(a.bind, Some("[::]:1".parse().unwrap()));
        assert_eq!(a.attrs.remote, Some("198.18.0.1:1".parse().unwrap()));
        assert_eq!(a.attrs.keepalive, Some((10, 60)));
        assert!(a.hold.detach);
    }

    #[test]
    fn transport_is_required_and_exclusive() {
        assert!(parse(&["peer", "new", "ovpn0", "--id", "1"]).is_err());
        assert!(
            parse(&[
                "peer",
                "new",
                "ovpn0",
                "--id",
                "1",
                "--udp",
                "--socket-fd",
                "3"
            ])
            .is_err()
        );
        assert!(parse(&["peer", "new", "ovpn0", "--id", "1", "--socket-fd", "3"]).is_ok());
        // --bind only makes sense with --udp.
        assert!(
            parse(&[
                "peer",
                "new",
                "ovpn0",
                "--id",
                "1",
                "--socket-fd",
                "3",
                "--bind",
                "1"
            ])
            .is_err()
        );
        // Printing control packets needs the foreground.
        assert!(
            parse(&[
                "peer",
                "new",
                "ovpn0",
                "--id",
                "1",
                "--udp",
                "--print-control",
                "--detach"
            ])
            .is_err()
        );
    }

    #[test]
    fn key_new_limits() {
        let base = [
            "key", "new", "ovpn0", "--peer", "1", "--slot", "primary", "--cipher",
        ];
        let ok = [&base[..], &["aes-gcm", "--key-id", "7", "--key-file", "-"]].concat();
        assert!(parse(&ok).is_ok());
        let bad_id = [&base[..], &["aes-gcm", "--key-id", "8", "--key-file", "-"]].concat();
        assert!(parse(&bad_id).is_err());
        let chacha = [
            &base[..],
            &[
                "chacha20-poly1305",
                "--key-id",
                "0",
                "--key-file",
                "k",
                "--key-dir",
                "1",
            ],
        ]
        .concat();
        let Command::Key(KeyCmd::New(k)) = parse(&chacha).unwrap().command else {
            panic!("key new")
        };
        assert_eq!(k.cipher, CipherArg::Chacha20Poly1305);
        assert_eq!(k.key_dir, 1);
        let bad_dir = [
            &base[..],
            &[
                "aes-gcm",
                "--key-id",
                "0",
                "--key-file",
                "k",
                "--key-dir",
                "2",
            ],
        ]
        .concat();
        assert!(parse(&bad_dir).is_err());
        // Key material on the command line is not an option.
        assert!(
            parse(&[&base[..], &["aes-gcm", "--key-id", "0", "--key", "abc"]].concat()).is_err()
        );
    }

    #[test]
    fn value_parsers() {
        assert_eq!(parse_keepalive("0:0"), Ok((0, 0)));
        assert!(parse_keepalive("10").is_err());
        assert!(parse_keepalive("a:1").is_err());
        assert_eq!(parse_bind("1194"), Ok("[::]:1194".parse().unwrap()));
        assert_eq!(
            parse_bind("198.18.0.1:5"),
            Ok("198.18.0.1:5".parse().unwrap())
        );
        assert!(parse_bind("nowhere").is_err());
    }

    #[test]
    fn globals_anywhere() {
        let cli = parse(&["peer", "get", "ovpn0", "--json", "--backend", "daemon"]).unwrap();
        assert!(cli.json);
        assert_eq!(cli.backend, BackendArg::Daemon);
    }
}
