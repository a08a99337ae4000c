//! Shared test support: root check with an opt-in hard failure, a private
//! network namespace per test, and running `ip` inside it.

#![allow(dead_code, unreachable_pub)]

use std::process::Command;
use std::thread;

use ovpn_sys::netns;

/// Whether the test can run. Without root it is skipped with a message,
/// unless `OVPN_REQUIRE_ROOT=1`, which turns the skip into a failure (CI
/// runs as root and must not skip silently).
pub fn root_or_skip(test: &str) -> bool {
    if netns::is_root() {
        return true;
    }
    assert!(
        std::env::var("OVPN_REQUIRE_ROOT").as_deref() != Ok("1"),
        "{test}: needs root, and OVPN_REQUIRE_ROOT=1 forbids skipping"
    );
    eprintln!("skipping {test}: needs root (run as root, or set OVPN_REQUIRE_ROOT=1 to fail)");
    false
}

/// Runs `f` on a fresh thread inside a new network namespace with `lo` up.
///
/// The namespace has no name and nothing refers to it from outside, so it
/// disappears once the thread has ended and the descriptors created in it
/// are closed, on success and on panic alike. A panic inside `f` is passed
/// on to the caller.
pub fn in_netns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    thread::scope(|scope| {
        let handle = scope.spawn(|| {
            netns::unshare().expect("unshare(CLONE_NEWNET)");
            ovpn_sys::netdev::set_up("lo", true).expect("bring lo up");
            f()
        });
        match handle.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Runs `ip ARGS...` (in the calling thread's namespace) and returns its
/// standard output; panics with its error output if it fails.
pub fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The Internet checksum (RFC 1071) of `data`.
pub fn inet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4/UDP packet from `src` to `dst` carrying `payload`, with a valid
/// header checksum and no UDP checksum (allowed for IPv4).
pub fn ipv4_udp_packet(
    src: std::net::SocketAddrV4,
    dst: std::net::SocketAddrV4,
    payload: &[u8],
) -> Vec<u8> {
    let total = 20 + 8 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.ip().octets());
    p[16..20].copy_from_slice(&dst.ip().octets());
    let csum = inet_checksum(&p[..20]);
    p[10..12].copy_from_slice(&csum.to_be_bytes());
    p[20..22].copy_from_slice(&src.port().to_be_bytes());
    p[22..24].copy_from_slice(&dst.port().to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p[28..].copy_from_slice(payload);
    p
}

/// Waits (at most 5 s) until no IPv6 address of the namespace is still
/// tentative. Even with `nodad` the kernel clears the flag from a work queue,
/// and until then packets to the address are dropped; under load that takes
/// long enough to lose a test's first datagram.
pub fn wait_ipv6_ready() {
    for _ in 0..100 {
        if ip(&["-6", "-o", "addr", "show", "tentative"])
            .trim()
            .is_empty()
        {
            return;
        }
        thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("IPv6 addresses still tentative after 5 s");
}
