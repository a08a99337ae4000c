"""Shared pieces of the kernel-VM harness: the cache location, the pinned
versions, logging, and a bounded subprocess runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# The reference kernel (spec/kernel-vm.md). Pinned: a different build could
# change the behaviour the project is measured against. When Debian drops it
# from the suite, `fetch` falls back to the newest 6.16 cloud image there and
# says so.
KERNEL_PACKAGE = "linux-image-6.16.12+deb13-cloud-amd64"
KERNEL_SERIES = "6.16"
KERNEL_SUITE = "trixie-backports"

# iproute2 learned `type ovpn mode p2p|mp` in 7.3 (the build machine has
# 6.1, Debian testing 7.2), so the VM's `ip` and the libraries it needs come
# from Debian unstable. Checked after unpacking: `ip link help ovpn` must
# mention the mode. Busybox comes from there too: Debian's busybox-static
# runs its own applets before anything on PATH (so `ip` would be busybox's),
# the dynamically linked build does not.
USERLAND_SUITE = "sid"
USERLAND_PACKAGES = ("iproute2", "busybox")
USERLAND_TOOLS = ("usr/bin/ip", "usr/bin/ss", "usr/bin/busybox")

DEBIAN_MIRROR = "http://deb.debian.org/debian"
KEYRINGS = (
    "/usr/share/keyrings/debian-archive-trixie-stable.gpg",
    "/usr/share/keyrings/debian-archive-trixie-automatic.gpg",
    "/usr/share/keyrings/debian-archive-bookworm-automatic.gpg",
)

# Modules loaded at boot, in this order, with their dependencies first.
# Required ones must load or the run fails; the crypto set is loaded when it
# can be (the generic AES and the built-in templates still work without).
REQUIRED_MODULES = ("ovpn", "veth", "tun", "virtio_net")
CRYPTO_MODULES = (
    "gcm",
    "ghash-generic",
    "ghash-clmulni-intel",
    "aesni-intel",
    "chacha",
    "chacha-x86_64",
    "poly1305-x86_64",
    "chacha20poly1305",
)

# Addresses of the --net link: the tap end in the harness's namespace and the
# VM's virtio NIC (198.18.0.0/15 and 2001:db8::/32 only).
HOST_IP4 = "198.18.0.1"
VM_IP4 = "198.18.0.2"
IP4_PREFIX = 24
HOST_IP6 = "2001:db8:0:1::1"
VM_IP6 = "2001:db8:0:1::2"
IP6_PREFIX = 64
TAP_NAME = "ovpnvm0"
VM_MAC = "52:54:00:4f:56:01"

HARNESS_DIR = Path(__file__).resolve().parent


class HarnessError(Exception):
    """A failure of the harness itself (not of a scenario)."""


def cache_dir() -> Path:
    """The cache root, from OVPN_VM_CACHE or next to the checkout."""
    default = HARNESS_DIR.parent.parent / ".cache" / "kernel-vm"
    path = Path(os.environ.get("OVPN_VM_CACHE", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


def log(message: str) -> None:
    """A progress line on stderr, so stdout stays the scenario's."""
    print(f"kernel-vm: {message}", file=sys.stderr, flush=True)


def run(
    cmd: list[str],
    *,
    timeout: float = 600,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    capture: bool = True,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Runs a command with a time bound; raises HarnessError on failure when
    `check` is set."""
    try:
        proc = subprocess.run(
            cmd,
            text=True,
            capture_output=capture,
            timeout=timeout,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"{cmd[0]} took longer than {timeout} s") from exc
    except FileNotFoundError as exc:
        raise HarnessError(f"{cmd[0]} is not installed (try: kernel-vm setup)") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or "").strip().splitlines()[-5:] if capture else []
        raise HarnessError(
            f"{' '.join(cmd[:4])} failed with status {proc.returncode}: " + " | ".join(detail)
        )
    return proc
