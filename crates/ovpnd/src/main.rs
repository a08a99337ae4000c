//! `ovpnd`: Linux `ovpn` devices in userspace.
//!
//! The daemon serves the network namespace it runs in. It listens on two
//! Unix `SOCK_SEQPACKET` sockets (`genl.sock`, `rtnl.sock`) that carry the
//! kernel's own generic-netlink and rtnetlink messages
//! (`docs/control-transport.md`), implements each `ovpn` device as a TUN
//! interface driven by the sans-IO device model of `ovpn-core`, and moves
//! packets between the TUN device and the transport sockets its clients
//! hand over in worker threads (`DESIGN.md`, "Data path").
//!
//! Modules: [`server`] (control loop, connections, notifications), [`genl`]
//! (nlctrl and the `ovpn` family), [`rtnl`] (links of kind `ovpn`),
//! [`device`] (a device's TUN and workers), [`transport`] (attached
//! sockets, close detection), [`datapath`] (the worker loops), [`routes`]
//! (the MP route mirror), [`convert`] (netlink values to device-model
//! values and back).
#![forbid(unsafe_code)]

mod convert;
mod datapath;
mod device;
mod genl;
mod nsid;
mod offload;
mod routes;
mod rtnl;
mod server;
mod transport;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use tracing_subscriber::EnvFilter;

/// Userspace `ovpn` devices (OpenVPN data channel offload), controlled with
/// the kernel's own netlink messages over Unix sockets.
///
/// The daemon serves the network namespace it is started in. Clients find
/// it through the run directory, which by default is derived from that
/// namespace, so `ip netns exec NS ovpnd` and `ip netns exec NS <client>`
/// meet without further configuration.
#[derive(Debug, Parser)]
#[command(name = "ovpnd", version, about, long_about)]
pub(crate) struct Options {
    /// Directory for the control sockets `genl.sock` and `rtnl.sock`
    /// (created with mode 0700; removed again on exit). Default:
    /// `/run/ovpnd/net-<N>`, N being the inode number of the network
    /// namespace the daemon runs in (`stat -L -c %i /proc/self/ns/net`).
    #[arg(long, value_name = "DIR")]
    pub(crate) run_dir: Option<PathBuf>,

    /// Log filter when `RUST_LOG` is not set: a level (`error`, `warn`,
    /// `info`, `debug`, `trace`) or a full filter such as
    /// `ovpnd=debug,ovpn_sys=info`. Per-packet events never log above
    /// `debug`; dropped packets are counted, not logged.
    #[arg(long, value_name = "FILTER", default_value = "info")]
    pub(crate) log_level: String,

    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Full)]
    pub(crate) log_format: LogFormat,

    /// Worker threads reading each device's TUN interface (one TUN queue
    /// each; 1 if the kernel lacks multi-queue TUN). Each UDP socket and each
    /// TCP stream gets its own receiving thread in addition.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub(crate) threads: u16,

    /// Send PEER_FLOAT_NTF when a UDP peer floats to a new address, as
    /// kernels after 6.16 do. Off by default: Linux 6.16 sends nothing.
    #[arg(long)]
    pub(crate) float_notifications: bool,

    /// Switch TCP segmentation offload off on the TUN interfaces: the host
    /// then segments TCP itself and every read is one packet. On by default:
    /// 64 KiB TCP super-packets are read at once and segmented here, as the
    /// kernel's ovpn device segments them (it has GSO).
    #[arg(long)]
    pub(crate) no_tso: bool,

    /// Switch UDP segmentation offload off for sending: the segments of a
    /// super-packet then go out as separate datagrams of one `sendmmsg`
    /// instead of one `UDP_SEGMENT` send. What the peer receives is the same.
    #[arg(long)]
    pub(crate) no_gso: bool,

    /// Do not join received TCP segments into super-packets for the TUN
    /// interface (one write per packet instead). Joining, as the host's GRO
    /// would, needs TSO (the TUN interface's vnet header); every segment's
    /// checksums are verified before it joins.
    #[arg(long)]
    pub(crate) no_gro: bool,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines with timestamps and fields.
    Full,
    /// Shorter human-readable lines.
    Compact,
    /// One JSON object per line.
    Json,
}

fn main() -> ExitCode {
    let options = Options::parse();
    init_logging(&options);
    match server::run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "ovpnd: stopped by a fatal error");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(options: &Options) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&options.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only for a person watching: a log file or a journal gets
    // plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match options.log_format {
        LogFormat::Full => builder.init(),
        LogFormat::Compact => builder.compact().init(),
        LogFormat::Json => builder.json().init(),
    }
}
