//! The `ovpn` commands: each turns its arguments into library calls and
//! prints the result (`output`), human-readable or as JSON.

pub(crate) mod args;
mod decode;
mod demo;
mod hold;
mod output;
mod sockets;

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use ovpn::keyfile::{self, KeyDirection, KeyMaterial};
use ovpn::{Backend, CipherAlg, Client, KeyConf, KeySlot, Mode};
use serde_json::Value as Json;

use args::{BackendArg, Cli, Command, KeyCmd, KeyNewArgs, LinkCmd, ModeArg, PeerCmd, SlotArg};

/// What a failed command prints after `ovpn: <command>: `.
#[derive(Debug)]
pub(crate) struct Failure(String);

impl Failure {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<ovpn::Error> for Failure {
    fn from(e: ovpn::Error) -> Self {
        Self(e.to_string())
    }
}

/// The global options every command uses.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub(crate) backend: Backend,
    pub(crate) json: bool,
    pub(crate) timeout: Duration,
}

impl Ctx {
    fn from_cli(cli: &Cli) -> Result<Self, Failure> {
        let backend = match (cli.backend, &cli.daemon_dir) {
            (BackendArg::Kernel, _) => Backend::Kernel,
            (BackendArg::Daemon, Some(dir)) | (BackendArg::Auto, Some(dir)) => {
                Backend::Daemon { dir: dir.clone() }
            }
            (BackendArg::Daemon, None) => Backend::Daemon {
                dir: Backend::default_daemon_dir()?,
            },
            (BackendArg::Auto, None) => Backend::Auto,
        };
        Ok(Self {
            backend,
            json: cli.json,
            timeout: Duration::from_secs(cli.timeout.max(1)),
        })
    }

    /// A connected client with the requested timeout.
    pub(crate) fn client(&self) -> Result<Client, Failure> {
        let mut client = Client::connect(self.backend.clone())?;
        client.set_timeout(self.timeout);
        Ok(client)
    }
}

/// The command's name as error messages show it, e.g. `peer new`.
pub(crate) fn command_name(cli: &Cli) -> &'static str {
    match &cli.command {
        Command::Link(LinkCmd::Add { .. }) => "link add",
        Command::Link(LinkCmd::Del { .. }) => "link del",
        Command::Link(LinkCmd::Show { .. }) => "link show",
        Command::Peer(PeerCmd::New(_)) => "peer new",
        Command::Peer(PeerCmd::NewMulti(_)) => "peer new-multi",
        Command::Peer(PeerCmd::Set(_)) => "peer set",
        Command::Peer(PeerCmd::Get { .. }) => "peer get",
        Command::Peer(PeerCmd::Del { .. }) => "peer del",
        Command::Key(KeyCmd::New(_)) => "key new",
        Command::Key(KeyCmd::Get { .. }) => "key get",
        Command::Key(KeyCmd::Swap { .. }) => "key swap",
        Command::Key(KeyCmd::Del { .. }) => "key del",
        Command::Monitor(_) => "monitor",
        Command::Decode(_) => "decode",
        Command::Demo(_) => "demo",
    }
}

/// Runs the parsed command line.
pub(crate) fn run(cli: &Cli) -> Result<(), Failure> {
    let ctx = Ctx::from_cli(cli)?;
    match &cli.command {
        Command::Link(cmd) => link(&ctx, cmd),
        Command::Peer(cmd) => peer(&ctx, cmd),
        Command::Key(cmd) => key(&ctx, cmd),
        Command::Monitor(a) => monitor(&ctx, a.count, a.duration),
        Command::Decode(a) => decode::run(&ctx, a),
        Command::Demo(a) => demo::run(&ctx, a),
    }
}

fn link(ctx: &Ctx, cmd: &LinkCmd) -> Result<(), Failure> {
    let mut client = ctx.client()?;
    match cmd {
        LinkCmd::Add { name, mode } => {
            let mode = mode.map(|m| match m {
                ModeArg::P2p => Mode::P2p,
                ModeArg::Mp => Mode::Mp,
            });
            client.link_add(name, mode)?;
            if !ctx.json {
                println!("created {name}");
            }
        }
        LinkCmd::Del { name } => {
            client.link_del(name)?;
            if !ctx.json {
                println!("deleted {name}");
            }
        }
        LinkCmd::Show { name: Some(name) } => {
            let link = client.link(name)?;
            if ctx.json {
                print_json(&output::link_json(&link));
            } else {
                print!("{}", output::links_table(&[link]));
            }
        }
        LinkCmd::Show { name: None } => {
            let links = client.links()?;
            if ctx.json {
                print_json(&Json::Array(links.iter().map(output::link_json).collect()));
            } else {
                print!("{}", output::links_table(&links));
            }
        }
    }
    Ok(())
}

fn peer(ctx: &Ctx, cmd: &PeerCmd) -> Result<(), Failure> {
    match cmd {
        PeerCmd::New(a) => hold::peer_new(ctx, a),
        PeerCmd::NewMulti(a) => hold::peer_new_multi(ctx, a),
        PeerCmd::Set(a) => {
            let mut client = ctx.client()?;
            let ifindex = client.ifindex(&a.ifname)?;
            client.peer_set(ifindex, &hold::peer_from(a.id, &a.attrs))?;
            done(ctx, &format!("peer {} on {} changed", a.id, a.ifname));
            Ok(())
        }
        PeerCmd::Get { ifname, id } => {
            let mut client = ctx.client()?;
            let ifindex = client.ifindex(ifname)?;
            let peers = match id {
                Some(id) => vec![client.peer_get(ifindex, *id)?],
                None => client.peer_dump(ifindex)?,
            };
            if ctx.json {
                let all: Vec<Json> = peers
                    .iter()
                    .map(|p| output::peer_json(ifindex, p))
                    .collect();
                match (id, all.as_slice()) {
                    (Some(_), [one]) => print_json(one),
                    _ => print_json(&Json::Array(all)),
                }
            } else if peers.is_empty() {
                println!("no peers on {ifname}");
            } else {
                let blocks: Vec<String> =
                    peers.iter().map(|p| output::peer_text(ifname, p)).collect();
                print!("{}", blocks.join("\n"));
            }
            Ok(())
        }
        PeerCmd::Del { ifname, id } => {
            let mut client = ctx.client()?;
            let ifindex = client.ifindex(ifname)?;
            client.peer_del(ifindex, *id)?;
            done(ctx, &format!("peer {id} deleted from {ifname}"));
            Ok(())
        }
    }
}

fn slot(s: SlotArg) -> KeySlot {
    match s {
        SlotArg::Primary => KeySlot::Primary,
        SlotArg::Secondary => KeySlot::Secondary,
    }
}

/// Confirms a request that has no reply, in human output only (with
/// `--json`, success prints nothing, as YNL does).
fn done(ctx: &Ctx, what: &str) {
    if !ctx.json {
        println!("{what}");
    }
}

fn key(ctx: &Ctx, cmd: &KeyCmd) -> Result<(), Failure> {
    match cmd {
        KeyCmd::New(a) => {
            let keyconf = keyconf_from(a)?;
            let mut client = ctx.client()?;
            let ifindex = client.ifindex(&a.ifname)?;
            client.key_new(ifindex, &keyconf)?;
            done(
                ctx,
                &format!(
                    "key {} installed in the {} slot of peer {} on {}",
                    a.key_id,
                    slot(a.slot),
                    a.peer,
                    a.ifname
                ),
            );
        }
        KeyCmd::Get {
            ifname,
            peer,
            slot: s,
        } => {
            let mut client = ctx.client()?;
            let ifindex = client.ifindex(ifname)?;
            let k = client.key_get(ifindex, *peer, slot(*s))?;
            if ctx.json {
                print_json(&output::keyconf_json(ifindex, &k));
            } else {
                print!("{}", output::keyconf_text(ifname, &k));
            }
        }
        KeyCmd::Swap { ifname, peer } => {
            let mut client = ctx.client()?;
            let ifindex = client.ifindex(ifname)?;
            client.key_swap(ifindex, *peer)?;
            done(ctx, &format!("keys of peer {peer} on {ifname} swapped"));
        }
        KeyCmd::Del {
            ifname,
            peer,
            slot: s,
        } => {
            let mut client = ctx.client()?;
            let ifindex = client.ifindex(ifname)?;
            client.key_del(ifindex, *peer, slot(*s))?;
            done(
                ctx,
                &format!("{} key of peer {peer} on {ifname} deleted", slot(*s)),
            );
        }
    }
    Ok(())
}

/// KEY_NEW's keyconf from the arguments and the key file.
fn keyconf_from(a: &KeyNewArgs) -> Result<KeyConf, Failure> {
    let raw = if a.key_file.as_os_str() == "-" {
        keyfile::read_all(io::stdin().lock())
    } else {
        File::open(&a.key_file).and_then(keyfile::read_all)
    }
    .map_err(|e| Failure::new(format!("{}: {e}", a.key_file.display())))?;
    let material = KeyMaterial::parse(&raw)
        .map_err(|e| Failure::new(format!("{}: {e}", a.key_file.display())))?;
    let direction = KeyDirection::from_number(a.key_dir)
        .ok_or_else(|| Failure::new("--key-dir must be 0 or 1"))?;
    let (encrypt, decrypt) = material.directions(direction);
    Ok(KeyConf {
        peer_id: Some(a.peer),
        slot: Some(slot(a.slot)),
        key_id: Some(a.key_id),
        cipher_alg: Some(match a.cipher {
            args::CipherArg::AesGcm => CipherAlg::AesGcm,
            args::CipherArg::Chacha20Poly1305 => CipherAlg::Chacha20Poly1305,
        }),
        encrypt_dir: Some(encrypt),
        decrypt_dir: Some(decrypt),
        ..KeyConf::default()
    })
}

/// `monitor`: notifications until killed, or until `count` / `duration`.
fn monitor(ctx: &Ctx, count: Option<u64>, duration: Option<u64>) -> Result<(), Failure> {
    let mut client = ctx.client()?;
    let mut sub = client.subscribe()?;
    let deadline = duration.map(|d| Instant::now() + Duration::from_secs(d));
    let mut seen = 0u64;
    let mut out = io::stdout();
    while count.is_none_or(|c| seen < c) {
        let wait = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                left.min(Duration::from_secs(1))
            }
            None => Duration::from_secs(1),
        };
        let Some(n) = sub.next(wait)? else { continue };
        seen += 1;
        let line = if ctx.json {
            output::notification_json(&n).to_string()
        } else {
            output::notification_text(&n)
        };
        // A closed pipe (e.g. `| head`) ends the command quietly.
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            break;
        }
    }
    Ok(())
}

fn print_json(v: &Json) {
    println!("{v}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn ctx(args: &[&str]) -> Ctx {
        let cli = Cli::try_parse_from(std::iter::once("ovpn").chain(args.iter().copied())).unwrap();
        Ctx::from_cli(&cli).unwrap()
    }

    #[test]
    fn backend_selection() {
        assert_eq!(ctx(&["link", "show"]).backend, Backend::Auto);
        assert_eq!(
            ctx(&["--backend", "kernel", "link", "show"]).backend,
            Backend::Kernel
        );
        assert_eq!(
            ctx(&["--daemon-dir", "/tmp/x", "link", "show"]).backend,
            Backend::Daemon {
                dir: "/tmp/x".into()
            }
        );
    }

    #[test]
    fn key_material_from_file() {
        use base64::Engine as _;
        let dir = std::env::temp_dir().join(format!("ovpn-cli-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("data64.key");
        let raw: Vec<u8> = (0u8..72).collect();
        std::fs::write(
            &path,
            base64::engine::general_purpose::STANDARD.encode(&raw),
        )
        .unwrap();
        let cli = Cli::try_parse_from([
            "ovpn",
            "key",
            "new",
            "ovpn0",
            "--peer",
            "3",
            "--slot",
            "secondary",
            "--key-id",
            "1",
            "--cipher",
            "aes-gcm",
            "--key-dir",
            "1",
            "--key-file",
            path.to_str().unwrap(),
        ])
        .unwrap();
        let Command::Key(KeyCmd::New(a)) = &cli.command else {
            panic!("key new")
        };
        let kc = keyconf_from(a).unwrap();
        assert_eq!(kc.peer_id, Some(3));
        assert_eq!(kc.slot, Some(KeySlot::Secondary));
        let enc = kc.encrypt_dir.unwrap();
        assert_eq!(enc.cipher_key.unwrap().expose(), &raw[32..64]);
        std::fs::write(&path, "c2hvcnQ=\n").unwrap();
        let err = keyconf_from(a).unwrap_err().to_string();
        assert!(err.contains("too short"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
