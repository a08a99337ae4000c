#!/usr/bin/env python3
"""Host side of interop/run: drives a kernel `ovpn` peer inside the VM and an
`ovpnd` peer on the host, cell by cell, and writes what it saw.

Runs inside the harness's namespace (`vm/kernel-vm run --net --host-cmd`),
where the tap's host end is 198.18.0.1 / 2001:db8:0:1::1 and the VM is .2 /
::2. The VM runs `vm-agent.sh`, which executes shell scripts sent to TCP port
7000 and answers with their output and status; every kernel-side action goes
through that channel and the `ovpn` CLI with `--backend kernel`, every
daemon-side action through the same CLI with `--backend daemon`.

A cell is one device pair (`ovkN` in the VM, `ovdN` on the host) with its own
cipher, transport, underlay family, port and tunnel subnet. All cells are set
up first; pings, bulk transfers and a key rotation then run cell by cell; the
keepalive, counter and expiry checks run for all cells at once (their waits
are timer-bound, so sharing them keeps the run short).

`driver.py render` turns the JSON results into the table interop/run prints.
Standard library only.
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import http.server
import json
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

AGENT_PORT = 7000
HTTP_PORT = 8080
KEEPALIVE = (2, 6)
KEEPALIVE_ARG = f"{KEEPALIVE[0]}:{KEEPALIVE[1]}"
# Longer than the keepalive timeout plus one interval: a peer that only
# lives on keepalives must survive it.
QUIET_SECONDS = 9
# Bytes each bulk transfer moves in each direction (a multiple of 64 KiB).
BULK_BYTES = 2 << 20
# Rotation traffic: this many echo requests this far apart.
ROTATION_PINGS = (140, 0.05)
VM_DIR = "/tmp/interop"

CIPHERS = {"aes-gcm": "AES-256-GCM", "chacha20-poly1305": "ChaCha20-Poly1305"}
COLUMNS = ["ping", "bulk", "keepalive", "rotation", "counters"]


class StepError(Exception):
    """A step of a cell failed; the message says which and why."""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------
# The two sides


class Vm:
    """The command channel to vm-agent.sh: one connection, kept open, that
    runs one script at a time. A command that fails to answer drops the
    connection; the next command opens a fresh one (and a fresh agent)."""

    def __init__(self, addr: str) -> None:
        self.addr = addr
        self.sock: socket.socket | None = None
        self.buf = b""
        self.timings = open(os.devnull, "w")

    def wait_ready(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                self.run("true", timeout=10)
                return
            except (OSError, StepError) as e:
                if time.monotonic() > deadline:
                    raise StepError(f"the VM agent did not answer within {seconds:.0f} s: {e}")
                time.sleep(0.5)

    def run(self, script: str, timeout: float = 60, check: bool = True) -> tuple[int, str]:
        """Runs `script` with the VM's sh; returns (status, output)."""
        start = time.monotonic()
        try:
            rc, out = self.exchange(script, start + timeout)
        except (OSError, StepError):
            self.close()
            raise
        self.timings.write(f"{time.monotonic() - start:6.2f} s rc={rc} "
                           f"{script.strip().splitlines()[0][:120] if script.strip() else ''}\n")
        if check and rc != 0:
            raise StepError(f"VM: `{script.strip()[:300]}` failed ({rc}): {out.strip()[-800:]}")
        return rc, out

    def exchange(self, script: str, deadline: float) -> tuple[int, str]:
        if self.sock is None:
            self.sock = socket.create_connection((self.addr, AGENT_PORT), timeout=10)
            self.buf = b""
        self.sock.settimeout(10)
        self.sock.sendall(base64.b64encode(script.encode()) + b"\n")
        while True:
            m = re.search(rb"(?:^|\n)@@rc (\d+)\n", self.buf)
            if m:
                out, self.buf = self.buf[: m.start()], self.buf[m.end():]
                return int(m.group(1)), out.decode(errors="replace")
            left = deadline - time.monotonic()
            if left <= 0:
                raise StepError(f"VM command timed out: {script.strip()[:200]!r}")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise StepError(f"VM agent closed without a status: {self.buf[-500:]!r}")
            self.buf += chunk

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class Host:
    """Commands on the host side, in the harness's namespace."""

    def __init__(self, work: Path, ovpn: str, daemon_dir: Path) -> None:
        self.work = work
        self.ovpn_bin = ovpn
        self.daemon_dir = daemon_dir
        self.pidfile = work / "pids"

    def run(self, args: list[str], timeout: float = 30, check: bool = True) -> tuple[int, str]:
        try:
            p = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=timeout, text=True)
        except subprocess.TimeoutExpired as e:
            raise StepError(f"host: `{shlex.join(args)}` timed out after {timeout} s") from e
        if check and p.returncode != 0:
            raise StepError(f"host: `{shlex.join(args)}` failed ({p.returncode}): "
                            f"{p.stdout.strip()[-800:]}")
        return p.returncode, p.stdout

    def ovpn(self, *args: str, timeout: float = 30, check: bool = True) -> tuple[int, str]:
        return self.run(self.ovpn_cmd(*args), timeout=timeout, check=check)

    def ovpn_cmd(self, *args: str) -> list[str]:
        return [self.ovpn_bin, "--backend", "daemon", "--daemon-dir", str(self.daemon_dir), *args]

    def remember(self, pid: int) -> None:
        """Records a process of ours that outlives its command, so interop/run
        can stop it even if this driver is killed."""
        with open(self.pidfile, "a") as f:
            f.write(f"{pid}\n")

    def remember_pidfile(self, path: Path) -> None:
        self.remember(int(path.read_text().split()[0]))


class DualStackServer(http.server.ThreadingHTTPServer):
    """Serves the host's blob on every address of the namespace."""

    address_family = socket.AF_INET6
    daemon_threads = True

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base's name)
        pass


def kernel(*args: str) -> str:
    """A kernel-backend `ovpn` command line for a VM script."""
    return shlex.join(["ovpn", "--backend", "kernel", *args])


# --------------------------------------------------------------------------
# Cells


@dataclass
class Cell:
    index: int
    cipher: str
    proto: str
    family: int
    results: dict = field(default_factory=dict)
    details: list = field(default_factory=list)
    seconds: float = 0.0
    alive: bool = True

    @property
    def name(self) -> str:
        return f"{CIPHERS[self.cipher]} {self.proto.upper()} IPv{self.family}"

    @property
    def peer_id(self) -> int:
        return 100 + self.index

    @property
    def kdev(self) -> str:
        return f"ovk{self.index}"

    @property
    def ddev(self) -> str:
        return f"ovd{self.index}"

    @property
    def port(self) -> int:
        return 20000 + self.index

    def tun(self, side: str, family: int) -> str:
        host = side == "host"
        if family == 4:
            return f"198.19.{self.index}.{1 if host else 2}"
        return f"2001:db8:10:{self.index}::{1 if host else 2}"

    def underlay(self, side: str) -> str:
        var = f"OVPNVM_{'HOST' if side == 'host' else 'VM'}_IP{self.family}"
        return os.environ[var]

    def endpoint(self, side: str) -> str:
        addr = self.underlay(side)
        return f"[{addr}]:{self.port}" if self.family == 6 else f"{addr}:{self.port}"

    def set(self, column: str, ok: bool, text: str) -> None:
        self.results[column] = {"ok": ok, "text": text}

    def fail(self, column: str, err: Exception) -> None:
        self.set(column, False, "FAIL")
        self.details.append(f"{column}: {err}")
        log(f"{self.name}: {column} FAILED: {err}")


def all_cells() -> list[Cell]:
    cells = []
    for cipher in CIPHERS:
        for proto in ("udp", "tcp"):
            for family in (4, 6):
                cells.append(Cell(len(cells), cipher, proto, family))
    return cells


# --------------------------------------------------------------------------
# The run


class Interop:
    def __init__(self, work: Path, ovpn: str, ovpnd: str, cells: list[Cell]) -> None:
        self.work = work
        self.ovpnd_bin = ovpnd
        self.cells = cells
        self.vm = Vm(os.environ["OVPNVM_VM_IP4"])
        self.host = Host(work, ovpn, work / "ovpnd")
        self.phases: dict[str, float] = {}
        self.notes: list[str] = []
        self.daemon: subprocess.Popen | None = None
        self.monitor: subprocess.Popen | None = None
        self.http: http.server.ThreadingHTTPServer | None = None
        self.blob_sha = {"host": "", "vm": ""}

    def live(self) -> list[Cell]:
        return [c for c in self.cells if c.alive]

    # -- setup ------------------------------------------------------------

    def start(self) -> None:
        """The VM agent, both monitors, the daemon, and a blob to transfer on
        each side with an HTTP server for it (busybox httpd in the VM)."""
        self.vm.wait_ready(120)
        self.vm.timings = open(self.work / "vm-commands.log", "w", buffering=1)
        log("VM agent answers")
        _, out = self.vm.run(
            f"set -e; mkdir -p {VM_DIR}/www\n"
            f"{kernel('monitor', '--json')} >{VM_DIR}/monitor.json 2>&1 </dev/null &\n"
            f"dd if=/dev/urandom of={VM_DIR}/www/blob bs=65536 count={BULK_BYTES >> 16} "
            f"2>/dev/null\n"
            f"sha256sum {VM_DIR}/www/blob\n"
            f"httpd -p {HTTP_PORT} -h {VM_DIR}/www\n")
        self.blob_sha["vm"] = out.split()[0]

        www = self.work / "www"
        www.mkdir()
        blob = secrets.token_bytes(BULK_BYTES)
        (www / "blob").write_bytes(blob)
        self.blob_sha["host"] = hashlib.sha256(blob).hexdigest()
        self.http = DualStackServer(("::", HTTP_PORT), functools.partial(QuietHandler,
                                                                          directory=str(www)))
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

        run_dir = self.work / "ovpnd"
        with open(self.work / "ovpnd.log", "wb") as logf:
            self.daemon = subprocess.Popen([self.ovpnd_bin, "--run-dir", str(run_dir)],
                                           stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
        self.host.remember(self.daemon.pid)
        deadline = time.monotonic() + 15
        while not (run_dir / "genl.sock").exists():
            if self.daemon.poll() is not None or time.monotonic() > deadline:
                raise StepError("ovpnd did not start; see ovpnd.log")
            time.sleep(0.05)
        with open(self.work / "monitor.json", "wb") as mon:
            self.monitor = subprocess.Popen(self.host.ovpn_cmd("monitor", "--json"),
                                            stdin=subprocess.DEVNULL, stdout=mon,
                                            stderr=subprocess.STDOUT)
        self.host.remember(self.monitor.pid)
        time.sleep(0.3)

    def setup(self) -> None:
        """Every cell's device pair, peers and primary keys, then the links
        up and keepalive on. Steps are batched over cells (a VM round trip
        costs about a second under TCG); a failing batch fails its cells."""
        self.batch(self.cells, self.links)
        self.batch([c for c in self.live() if c.proto == "udp"], self.udp_peers)
        self.batch([c for c in self.live() if c.proto == "tcp" and c.family == 4],
                   self.tcp_vm_listens)
        self.batch([c for c in self.live() if c.proto == "tcp" and c.family == 6],
                   self.tcp_host_listens)
        self.batch(self.live(), self.primary_keys)
        # Up only once both ends hold the key, so nothing is dropped for
        # want of one (vpn-tx counts such packets, vpn-rx never would).
        self.batch(self.live(), self.links_up)
        self.batch(self.live(), lambda cells: self.keepalive_all(KEEPALIVE_ARG, cells))

    def batch(self, cells: list[Cell], step) -> None:
        if not cells:
            return
        try:
            step(cells)
        except (StepError, OSError, ValueError) as e:
            for c in cells:
                c.alive = False
                c.details.append(f"setup: {e}")
                for col in COLUMNS:
                    c.set(col, False, "setup FAIL")
            log(f"setup of {', '.join(c.name for c in cells)} FAILED: {e}")

    def links(self, cells: list[Cell]) -> None:
        # No IPv6 link-local address (addrgenmode none): no duplicate
        # address detection, no router solicitations, only our traffic.
        self.vm.run("set -e\n" + "".join(
            kernel("link", "add", c.kdev, "--mode", "p2p") + "\n"
            f"ip link set {c.kdev} addrgenmode none\n"
            f"ip addr add {c.tun('vm', 4)}/24 dev {c.kdev}\n"
            f"ip addr add {c.tun('vm', 6)}/64 dev {c.kdev} nodad\n" for c in cells))
        for c in cells:
            self.host.ovpn("link", "add", c.ddev, "--mode", "p2p")
            self.host.run(["ip", "link", "set", c.ddev, "addrgenmode", "none"])
            self.host.run(["ip", "addr", "add", f"{c.tun('host', 4)}/24", "dev", c.ddev])
            self.host.run(["ip", "addr", "add", f"{c.tun('host', 6)}/64", "dev", c.ddev,
                           "nodad"])
        # Fresh data64.key-style files (kernel-behaviour §9.2): "a" for the
        # start, "b" for the rotation.
        script = ["set -e"]
        for c in cells:
            for name in ("a", "b"):
                text = base64.b64encode(secrets.token_bytes(72)).decode()
                (self.work / f"{c.kdev}-{name}.key").write_text(text + "\n")
                script.append(f"printf '%s\\n' {text} >{VM_DIR}/{c.kdev}-{name}.key")
        self.vm.run("\n".join(script) + "\n")

    def key_paths(self, cell: Cell, name: str) -> tuple[str, str]:
        return f"{VM_DIR}/{cell.kdev}-{name}.key", str(self.work / f"{cell.kdev}-{name}.key")

    def vm_pidfile(self, cell: Cell) -> str:
        return f"{VM_DIR}/{cell.kdev}.holder.pid"

    def host_pidfile(self, cell: Cell) -> Path:
        return self.work / f"{cell.ddev}.holder.pid"

    def udp_peers(self, cells: list[Cell]) -> None:
        self.vm.run("set -e\n" + "".join(
            kernel("peer", "new", c.kdev, "--id", str(c.peer_id), "--udp", "--bind",
                   c.endpoint("vm"), "--remote", c.endpoint("host"), "--detach",
                   "--pidfile", self.vm_pidfile(c)) + "\n" for c in cells))
        for c in cells:
            self.host.ovpn("peer", "new", c.ddev, "--id", str(c.peer_id), "--udp", "--bind",
                           c.endpoint("host"), "--remote", c.endpoint("vm"), "--detach",
                           "--pidfile", str(self.host_pidfile(c)))
            self.host.remember_pidfile(self.host_pidfile(c))

    def tcp_vm_listens(self, cells: list[Cell]) -> None:
        """The kernel side accepts, the daemon side connects."""
        script = []
        for c in cells:
            script.append(
                kernel("peer", "new", c.kdev, "--id", str(c.peer_id), "--tcp-listen",
                       c.endpoint("vm"), "--connect-timeout", "30", "--detach", "--pidfile",
                       self.vm_pidfile(c))
                + f" >{VM_DIR}/{c.kdev}.listen.log 2>&1 </dev/null &")
        for c in cells:
            script.append(f"i=0; until ss -Htln 'sport = :{c.port}' | grep -q .; do\n"
                          f"  i=$((i + 1)); [ $i -lt 100 ] || exit 1; sleep 0.1; done")
        self.vm.run("\n".join(script) + "\n")
        for c in cells:
            self.host.ovpn("peer", "new", c.ddev, "--id", str(c.peer_id), "--tcp-connect",
                           c.endpoint("vm"), "--connect-timeout", "10", "--detach",
                           "--pidfile", str(self.host_pidfile(c)))
            self.host.remember_pidfile(self.host_pidfile(c))
        self.vm.run("\n".join(
            f"i=0; until [ -s {self.vm_pidfile(c)} ]; do\n"
            f"  i=$((i + 1)); [ $i -lt 100 ] || {{ cat {VM_DIR}/{c.kdev}.listen.log; exit 1; }}\n"
            f"  sleep 0.1; done" for c in cells) + "\n")

    def tcp_host_listens(self, cells: list[Cell]) -> None:
        """The daemon side accepts, the kernel side connects."""
        listeners = []
        try:
            for c in cells:
                with open(self.work / f"{c.ddev}.listen.log", "wb") as out:
                    p = subprocess.Popen(
                        self.host.ovpn_cmd("peer", "new", c.ddev, "--id", str(c.peer_id),
                                           "--tcp-listen", c.endpoint("host"),
                                           "--connect-timeout", "30", "--detach",
                                           "--pidfile", str(self.host_pidfile(c))),
                        stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
                self.host.remember(p.pid)
                listeners.append((c, p))
            deadline = time.monotonic() + 10
            for c, p in listeners:
                while not self.host.run(["ss", "-Htln", f"sport = :{c.port}"])[1].strip():
                    if p.poll() is not None or time.monotonic() > deadline:
                        raise StepError(f"host TCP listener on {c.endpoint('host')} not up")
                    time.sleep(0.05)
            self.vm.run("set -e\n" + "".join(
                kernel("peer", "new", c.kdev, "--id", str(c.peer_id), "--tcp-connect",
                       c.endpoint("host"), "--connect-timeout", "10", "--detach",
                       "--pidfile", self.vm_pidfile(c)) + "\n" for c in cells))
            for c, p in listeners:
                if p.wait(timeout=30) != 0:
                    raise StepError("host TCP listener failed: "
                                    + (self.work / f"{c.ddev}.listen.log").read_text())
                self.host.remember_pidfile(self.host_pidfile(c))
        finally:
            for _, p in listeners:
                if p.poll() is None:
                    p.kill()
                    p.wait()

    def primary_keys(self, cells: list[Cell]) -> None:
        """Key id 0 in the primary slot; the kernel is the server (key dir
        0: encrypts with key A), the daemon the client (key dir 1)."""
        def args(c: Cell) -> list[str]:
            return ["--peer", str(c.peer_id), "--slot", "primary", "--key-id", "0",
                    "--cipher", c.cipher, "--key-file"]
        self.vm.run("set -e\n" + "".join(
            kernel("key", "new", c.kdev, *args(c), self.key_paths(c, "a")[0],
                   "--key-dir", "0") + "\n" for c in cells))
        for c in cells:
            self.host.ovpn("key", "new", c.ddev, *args(c), self.key_paths(c, "a")[1],
                           "--key-dir", "1")

    def links_up(self, cells: list[Cell]) -> None:
        self.vm.run("set -e\n" + "".join(f"ip link set {c.kdev} up\n" for c in cells))
        for c in cells:
            self.host.run(["ip", "link", "set", c.ddev, "up"])

    def keepalive_all(self, value: str, cells: list[Cell], side: str = "both",
                      check: bool = True) -> None:
        """PEER_SET keepalive on the chosen side(s) of `cells` (PEER_SET
        rather than PEER_NEW: kernel-behaviour §2.7's quirk). Cell by cell,
        daemon right after kernel: a side whose timeout runs must hear from
        the other well within it, and a VM round trip can take a second or
        two under TCG, so a batch over all kernel peers first would let the
        first ones expire before the daemon sends anything."""
        for c in cells:
            if not c.alive:
                continue
            if side in ("both", "kernel"):
                self.vm.run(kernel("peer", "set", c.kdev, "--id", str(c.peer_id),
                                   "--keepalive", value), check=check)
            if side in ("both", "daemon"):
                self.host.ovpn("peer", "set", c.ddev, "--id", str(c.peer_id),
                               "--keepalive", value, check=check)

    # -- per-cell checks --------------------------------------------------

    def ping(self, cell: Cell) -> None:
        """Three echo requests each way, IPv4 and IPv6 inside the tunnel,
        small and as large as the device MTU (1416) allows: 1388 + 8 + 20 and
        1368 + 8 + 40. The host's pings forbid fragmentation."""
        sizes = {4: (56, 1388), 6: (56, 1368)}
        got = []
        for fam in (4, 6):
            for size in sizes[fam]:
                _, out = self.host.run(["ping", f"-{fam}", "-M", "do", "-c", "3", "-i", "0.2",
                                        "-W", "3", "-s", str(size), cell.tun("vm", fam)],
                                       timeout=30, check=False)
                got.append((f"host->vm v{fam} {size}", ping_counts(out)))
        script = "".join(
            f"echo '@@ v{fam} {size}'; ping -{fam} -c 3 -i 0.2 -W 3 -w 15 -s {size} "
            f"{cell.tun('host', fam)}\n"
            for fam in (4, 6) for size in sizes[fam])
        _, out = self.vm.run(script, timeout=90, check=False)
        for part in out.split("@@ ")[1:]:
            label, _, body = part.partition("\n")
            got.append((f"vm->host {label}", ping_counts(body)))
        bad = [f"{label}: {r}/{t}" for label, (t, r) in got if t == 0 or r != t]
        if bad or len(got) != 8:
            raise StepError("ping loss: " + ", ".join(bad or ["missing results"]))
        sent = sum(t for _, (t, _) in got)
        cell.set("ping", True, f"ok {sent}/{sent}")

    def bulk(self, cell: Cell) -> None:
        """A random blob each way over TCP inside the tunnel, checked by
        SHA-256: the VM fetches the host's over inner IPv4 (busybox wget),
        the host fetches the VM's over inner IPv6."""
        t = time.monotonic()
        url = f"http://{cell.tun('host', 4)}:{HTTP_PORT}/blob"
        _, out = self.vm.run(f"rm -f {VM_DIR}/got\n"
                             f"wget -q -T 30 -O {VM_DIR}/got {url}\n"
                             f"sha256sum {VM_DIR}/got; rm -f {VM_DIR}/got", timeout=120)
        h2v = time.monotonic() - t
        if out.split()[:1] != [self.blob_sha["host"]]:
            raise StepError(f"host -> VM blob damaged or missing: {out.strip()[-300:]}")
        t = time.monotonic()
        url = f"http://[{cell.tun('vm', 6)}]:{HTTP_PORT}/blob"
        with urllib.request.urlopen(url, timeout=30) as reply:
            data = reply.read()
        v2h = time.monotonic() - t
        if hashlib.sha256(data).hexdigest() != self.blob_sha["vm"]:
            raise StepError(f"VM -> host blob damaged: {len(data)} of {BULK_BYTES} bytes")
        cell.set("bulk", True, f"ok {mib(BULK_BYTES)}+{mib(len(data))} MiB")
        cell.details.append(f"bulk: {BULK_BYTES} B host->vm (IPv4) in {h2v:.1f} s, "
                            f"vm->host (IPv6) in {v2h:.1f} s, SHA-256 equal")

    def rotate(self, cell: Cell) -> None:
        """kernel-behaviour §6: key id 1 into the secondary slot on both
        ends, swap on both, delete the old key on both, while echo requests
        flow; none may be lost and no packet dropped."""
        vm_key, host_key = self.key_paths(cell, "b")
        count, interval = ROTATION_PINGS
        drops_before = self.drops(cell)
        traffic = subprocess.Popen(
            ["ping", "-4", "-q", "-c", str(count), "-i", str(interval), "-W", "3",
             cell.tun("vm", 4)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.host.remember(traffic.pid)
        try:
            time.sleep(1.0)
            new = ["--peer", str(cell.peer_id), "--slot", "secondary", "--key-id", "1",
                   "--cipher", cell.cipher]
            peer = ["--peer", str(cell.peer_id)]
            self.vm.run(kernel("key", "new", cell.kdev, *new, "--key-file", vm_key,
                               "--key-dir", "0"))
            self.host.ovpn("key", "new", cell.ddev, *new, "--key-file", host_key,
                           "--key-dir", "1")
            self.vm.run(kernel("key", "swap", cell.kdev, *peer))
            self.host.ovpn("key", "swap", cell.ddev, *peer)
            # Packets sealed with the old key before the other side swapped
            # may still be in flight; give them a moment before deleting it.
            time.sleep(0.5)
            self.vm.run(kernel("key", "del", cell.kdev, *peer, "--slot", "secondary"))
            self.host.ovpn("key", "del", cell.ddev, *peer, "--slot", "secondary")
            during = traffic.poll() is None
            out, _ = traffic.communicate(timeout=count * interval + 30)
        finally:
            if traffic.poll() is None:
                traffic.kill()
                traffic.wait()
        _, kout = self.vm.run(
            kernel("--json", "key", "get", cell.kdev, *peer, "--slot", "primary") + "\n"
            + kernel("key", "get", cell.kdev, *peer, "--slot", "secondary")
            + " >/dev/null 2>&1 && echo '@@secondary present' || echo '@@secondary empty'\n")
        _, dout = self.host.ovpn("--json", "key", "get", cell.ddev, *peer, "--slot", "primary")
        drc, _ = self.host.ovpn("key", "get", cell.ddev, *peer, "--slot", "secondary",
                                check=False)
        ids = (json.loads(kout.split("@@")[0])["keyconf"]["key-id"],
               json.loads(dout)["keyconf"]["key-id"])
        sent, received = ping_counts(out)
        drops_after = self.drops(cell)
        dropped = {k: drops_after[k] - drops_before[k] for k in drops_after}
        cell.details.append(f"rotation: {received}/{sent} echo replies, primary key ids "
                            f"(kernel, daemon) {ids}, rx_dropped deltas {dropped}")
        problems = []
        if not during:
            problems.append("traffic ended before the rotation did")
        if sent != count or received != sent:
            problems.append(f"{sent - received} of {sent} echo requests lost")
        if ids != (1, 1):
            problems.append(f"primary key ids after rotation {ids}, not (1, 1)")
        if "@@secondary empty" not in kout or drc == 0:
            problems.append("the old key is still in a secondary slot")
        if any(dropped.values()):
            problems.append(f"packets dropped during the rotation: {dropped}")
        if problems:
            raise StepError("; ".join(problems))
        cell.set("rotation", True, f"ok {received}/{sent}")

    def drops(self, cell: Cell) -> dict[str, int]:
        """rx_dropped of both devices."""
        _, k = self.vm.run(f"ip -j -s link show dev {cell.kdev}")
        _, d = self.host.run(["ip", "-j", "-s", "link", "show", "dev", cell.ddev])
        return {"kernel": json.loads(k)[0]["stats64"]["rx"]["dropped"],
                "daemon": json.loads(d)[0]["stats64"]["rx"]["dropped"]}

    # -- all-cell checks --------------------------------------------------

    def peers(self, cells: list[Cell]) -> tuple[dict, dict]:
        """PEER_GET of every cell's peer on both sides: ({index: peer}, ...);
        a missing peer maps to None."""
        script = "".join(
            f"echo '@@cell {c.index}'; {kernel('--json', 'peer', 'get', c.kdev, '--id', str(c.peer_id))}"
            f" 2>/dev/null\n" for c in cells)
        _, out = self.vm.run(script, check=False)
        kpeers = {}
        for part in out.split("@@cell ")[1:]:
            idx, _, body = part.partition("\n")
            kpeers[int(idx)] = parse_peer(body)
        dpeers = {}
        for c in cells:
            rc, out = self.host.ovpn("--json", "peer", "get", c.ddev, "--id", str(c.peer_id),
                                     check=False)
            dpeers[c.index] = parse_peer(out) if rc == 0 else None
        return kpeers, dpeers

    def keepalive_quiet(self) -> None:
        live = [c for c in self.cells if c.alive]
        k0, d0 = self.peers(live)
        time.sleep(QUIET_SECONDS)
        k1, d1 = self.peers(live)
        for c in live:
            try:
                kb, ka, db, da = k0[c.index], k1[c.index], d0[c.index], d1[c.index]
                if ka is None or da is None:
                    raise StepError(f"peer gone after {QUIET_SECONDS} s of keepalive only "
                                    f"(kernel {'present' if ka else 'gone'}, daemon "
                                    f"{'present' if da else 'gone'})")
                # Keepalives count in link-rx but not in vpn-rx (§2.7, §8).
                kka = keepalives(kb, ka)
                dka = keepalives(db, da)
                want = QUIET_SECONDS // KEEPALIVE[0] - 1
                c.details.append(f"keepalive: between two reads at least {QUIET_SECONDS} s apart "
                                 f"with no traffic, kernel received "
                                 f"{kka} keepalives, daemon {dka}")
                if kka < want or dka < want:
                    raise StepError(f"too few keepalives in {QUIET_SECONDS} s: kernel got "
                                    f"{kka}, daemon got {dka} (want >= {want})")
                conf = [(p["keepalive-interval"], p["keepalive-timeout"]) for p in (ka, da)]
                if conf != [KEEPALIVE, KEEPALIVE]:
                    raise StepError(f"keepalive settings read back as {conf}")
                c.results["keepalive"] = {"ok": True, "text": f"alive ({kka}/{dka} ka)"}
            except (StepError, KeyError, TypeError) as e:
                c.fail("keepalive", e)

    def counters(self) -> None:
        live = [c for c in self.cells if c.alive]
        # With keepalive off no packet moves, so two reads of each side that
        # agree with themselves bracket a consistent picture.
        # A peer already gone shows up in the reads below.
        self.keepalive_all("0:0", live, check=False)
        time.sleep(1.0)
        stable: dict[int, tuple] = {}
        gone: set[int] = set()
        for _ in range(5):
            k0, d0 = self.peers(live)
            k1, d1 = self.peers(live)
            for c in live:
                snaps = (k0.get(c.index), d0.get(c.index), k1.get(c.index), d1.get(c.index))
                if any(s is None for s in snaps):
                    gone.add(c.index)
                    continue
                if snaps[0] == snaps[2] and snaps[1] == snaps[3]:
                    stable.setdefault(c.index, (snaps[0], snaps[1]))
            if all(c.index in stable or c.index in gone for c in live):
                break
            time.sleep(1.0)
        losses = self.losses(live)
        for c in live:
            if c.index in gone:
                c.fail("counters", StepError("a peer is gone, nothing to compare"))
                continue
            if c.index not in stable:
                c.fail("counters", StepError("counters never held still"))
                continue
            k, d = stable[c.index]
            try:
                compare_counters(c, k, d, losses[c.index])
            except StepError as e:
                c.fail("counters", e)

    def losses(self, cells: list[Cell]) -> dict[int, dict[str, int]]:
        """Where a packet counted in link-tx may vanish before the other
        side's link-rx, per cell and sending side: over TCP the sender's
        device tx_dropped (kernel-behaviour §3.4: a frame dropped after it
        was counted), over UDP the receiving socket's drops column in
        /proc/net/udp{,6} (its receive buffer overflowed)."""
        _, kout = self.vm.run("ip -j -s link show; echo '@@udp'; cat /proc/net/udp /proc/net/udp6")
        klinks, _, kudp = kout.partition("@@udp")
        _, dlinks = self.host.run(["ip", "-j", "-s", "link", "show"])
        dudp = Path("/proc/net/udp").read_text() + Path("/proc/net/udp6").read_text()
        ktx = {l["ifname"]: l["stats64"]["tx"]["dropped"] for l in json.loads(klinks)}
        dtx = {l["ifname"]: l["stats64"]["tx"]["dropped"] for l in json.loads(dlinks)}
        kdrops, ddrops = udp_drops(kudp), udp_drops(dudp)
        out = {}
        for c in cells:
            if c.proto == "tcp":
                out[c.index] = {"kernel": ktx.get(c.kdev, 0), "daemon": dtx.get(c.ddev, 0)}
            else:
                out[c.index] = {"kernel": ddrops.get(c.port, 0), "daemon": kdrops.get(c.port, 0)}
        return out

    def expiry(self) -> None:
        """Silences one side of each cell (keepalive stays off there) and
        lets the other, with keepalive back on, expire the peer: the kernel
        expires in even cells, the daemon in odd ones."""
        live = [c for c in self.cells if c.alive]
        before = self.deletions()
        if any(before.values()):
            self.notes.append(f"peer deletions before the expiry phase: {before}")
            for side, events in before.items():
                for peer_id, reason in events:
                    for c in live:
                        if c.peer_id == peer_id:
                            c.fail("keepalive", StepError(f"{side} deleted the peer early "
                                                          f"({reason})"))
        # Only cells whose peers lived through the quiet phase can expire now.
        live = [c for c in live if c.results.get("keepalive", {}).get("ok")]
        if not live:
            return
        value = KEEPALIVE_ARG
        self.keepalive_all(value, [c for c in live if c.index % 2 == 0], side="kernel",
                           check=False)
        self.keepalive_all(value, [c for c in live if c.index % 2 == 1], side="daemon",
                           check=False)
        start = time.monotonic()
        deadline = start + KEEPALIVE[1] + 10
        while time.monotonic() < deadline:
            time.sleep(1.0)
            seen = self.deletions()
            if all(any(pid == c.peer_id for pid, _ in seen[watcher(c)]) for c in live):
                break
        waited = time.monotonic() - start
        kpeers, dpeers = self.peers(live)
        seen = self.deletions()
        for c in live:
            if not c.results.get("keepalive", {}).get("ok"):
                continue
            side = watcher(c)
            reasons = [r for pid, r in seen[side] if pid == c.peer_id]
            silent_has = (dpeers if side == "kernel" else kpeers)[c.index] is not None
            watcher_has = (kpeers if side == "kernel" else dpeers)[c.index] is not None
            c.details.append(f"expiry: {side} side, reasons {reasons}, silent side still has "
                             f"the peer: {silent_has}")
            if reasons != ["expired"] or watcher_has or not silent_has:
                c.fail("keepalive", StepError(
                    f"{side} should have expired the peer alone: notifications {reasons}, "
                    f"{side} still has it: {watcher_has}, silent side has it: {silent_has}"))
            else:
                c.results["keepalive"]["text"] += f", {side} expired"
        self.phases["expiry wait"] = waited

    def deletions(self) -> dict[str, list[tuple[int, str]]]:
        """PEER_DEL_NTFs each side's monitor has printed so far."""
        _, kout = self.vm.run(f"cat {VM_DIR}/monitor.json", check=False)
        dout = (self.work / "monitor.json").read_text(errors="replace")
        return {"kernel": parse_deletions(kout), "daemon": parse_deletions(dout)}

    # -- driving ----------------------------------------------------------

    def run(self) -> None:
        t = time.monotonic()
        self.start()
        self.phases["boot and start"] = time.monotonic() - t
        t = time.monotonic()
        self.setup()
        self.phases["setup"] = time.monotonic() - t
        self.log_counters("after setup")
        log(f"setup done in {self.phases['setup']:.1f} s")

        for c in self.live():
            t = time.monotonic()
            for column, step in (("ping", self.ping), ("bulk", self.bulk),
                                 ("rotation", self.rotate)):
                if c.results.get("ping", {"ok": True})["ok"] is False:
                    # No tunnel: the later steps would only wait out their limits.
                    c.set(column, False, "skipped")
                    continue
                try:
                    step(c)
                except (StepError, OSError, KeyError, ValueError) as e:
                    c.fail(column, e)
            c.seconds = time.monotonic() - t
            log(f"{c.name}: {', '.join(c.results[k]['text'] for k in c.results)} "
                f"({c.seconds:.1f} s)")

        for name, phase in (("keepalive quiet", self.keepalive_quiet),
                            ("counters", self.counters), ("expiry", self.expiry)):
            t = time.monotonic()
            try:
                phase()
            except (StepError, OSError) as e:
                self.notes.append(f"{name}: {e}")
                for c in self.live():
                    col = {"counters": "counters"}.get(name, "keepalive")
                    if col not in c.results or c.results[col]["ok"]:
                        c.fail(col, e)
            self.phases[name] = time.monotonic() - t
            log(f"{name} done in {self.phases[name]:.1f} s")

    def log_counters(self, when: str) -> None:
        """One line per cell into the driver's log: link packets both sides."""
        kpeers, dpeers = self.peers(self.live())
        for c in self.live():
            k, d = kpeers.get(c.index), dpeers.get(c.index)
            show = lambda p: (f"tx {p['link-tx-packets']} rx {p['link-rx-packets']}"
                              if p else "no peer")
            log(f"{when}: {c.name}: kernel {show(k)}, daemon {show(d)}")

    def finish(self) -> None:
        """Collects the VM's logs, stops the agent, and our own processes."""
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
        try:
            self.vm.run(f"ip -s -d link show >{VM_DIR}/links.txt 2>&1; "
                        f"touch /tmp/interop-done", timeout=20)
        except (StepError, OSError) as e:
            log(f"could not stop the VM agent: {e}")
        for p in (self.monitor, self.daemon):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    def results(self) -> dict:
        return {
            "cells": [{"name": c.name, "results": c.results, "details": c.details,
                       "seconds": round(c.seconds, 1)} for c in self.cells],
            "phases": {k: round(v, 1) for k, v in self.phases.items()},
            "notes": self.notes,
        }


# --------------------------------------------------------------------------
# Parsing and comparison


def ping_counts(out: str) -> tuple[int, int]:
    """(transmitted, received) from iputils' or busybox's ping summary."""
    m = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", out)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def parse_peer(out: str) -> dict | None:
    out = out.strip()
    if not out.startswith("{"):
        return None
    try:
        return json.loads(out)["peer"]
    except (json.JSONDecodeError, KeyError):
        return None


def parse_deletions(out: str) -> list[tuple[int, str]]:
    events = []
    for line in out.splitlines():
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if msg.get("name") == "peer-del-ntf":
            peer = msg["msg"]["peer"]
            events.append((peer["id"], peer.get("del-reason", "?")))
    return events


def keepalives(before: dict, after: dict) -> int:
    link = after["link-rx-packets"] - before["link-rx-packets"]
    vpn = after["vpn-rx-packets"] - before["vpn-rx-packets"]
    return link - vpn


def watcher(cell: Cell) -> str:
    return "kernel" if cell.index % 2 == 0 else "daemon"


def compare_counters(cell: Cell, k: dict, d: dict, lost: dict[str, int]) -> None:
    """Both directions, link and vpn counters (kernel-behaviour §8): what one
    side counts as sent the other counts as received, except for packets
    `lost` names (by sending side). Those may be data or keepalives, so the
    vpn counters may differ by at most as many packets."""
    lines, bad = [], []
    for tx, rx, sender, t, r in (("kernel", "daemon", "kernel", k, d),
                                 ("daemon", "kernel", "daemon", d, k)):
        way = f"{tx}->{rx}"
        link = (t["link-tx-packets"] - r["link-rx-packets"],
                t["link-tx-bytes"] - r["link-rx-bytes"])
        vpn = (t["vpn-tx-packets"] - r["vpn-rx-packets"],
               t["vpn-tx-bytes"] - r["vpn-rx-bytes"])
        gone = lost[sender]
        lines.append(f"{way}: link tx {t['link-tx-packets']} pkts/{t['link-tx-bytes']} B, "
                     f"rx {r['link-rx-packets']}/{r['link-rx-bytes']}; vpn tx "
                     f"{t['vpn-tx-packets']}/{t['vpn-tx-bytes']}, rx "
                     f"{r['vpn-rx-packets']}/{r['vpn-rx-bytes']}; lost on the way {gone}")
        if link[0] != gone or (link[1] == 0) != (gone == 0):
            bad.append(f"{way} link counters differ by {link[0]} pkts/{link[1]} B, "
                       f"{gone} accounted for")
        if not (0 <= vpn[0] <= gone) or (gone == 0 and vpn[1] != 0) or vpn[1] > link[1]:
            bad.append(f"{way} vpn counters differ by {vpn[0]} pkts/{vpn[1]} B "
                       f"with {gone} packets lost")
    cell.details.append("counters: " + "; ".join(lines))
    if bad:
        raise StepError("; ".join(bad))
    text = f"ok {k['link-tx-packets']}/{d['link-tx-packets']} pkts"
    if lost["kernel"] or lost["daemon"]:
        text += f" ({lost['kernel']}/{lost['daemon']} lost)"
    cell.set("counters", True, text)


def udp_drops(table: str) -> dict[int, int]:
    """Drops per local port from /proc/net/udp and udp6 (last column)."""
    drops: dict[int, int] = {}
    for line in table.splitlines():
        fields = line.split()
        if len(fields) < 13 or ":" not in fields[1] or fields[0] == "sl":
            continue
        port = int(fields[1].rsplit(":", 1)[1], 16)
        drops[port] = drops.get(port, 0) + int(fields[-1])
    return drops


def mib(n: int) -> str:
    return f"{n / (1 << 20):g}"


# --------------------------------------------------------------------------
# Rendering


def render(results: dict, total: float | None) -> tuple[str, bool]:
    cells = results["cells"]
    head = ["cell", *COLUMNS, "time"]
    rows = []
    ok = bool(cells)
    for c in cells:
        row = [c["name"]]
        for col in COLUMNS:
            r = c["results"].get(col)
            ok &= bool(r and r["ok"])
            row.append(r["text"] if r else "not run")
        row.append(f"{c['seconds']:.1f} s")
        rows.append(row)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    fmt = lambda r: "| " + " | ".join(v.ljust(w) for v, w in zip(r, widths)) + " |"
    lines = [fmt(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += [fmt(r) for r in rows]
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in results.get("phases", {}).items())
    lines.append("")
    lines.append(f"Shared phases: {phases}.")
    if total is not None:
        lines.append(f"Whole run (VM boot to cleanup): {total:.0f} s.")
    lines.append(f"Verdict: {'all cells pass' if ok else 'FAILURES'}.")
    details = []
    for c in cells:
        for d in c["details"]:
            details.append(f"- {c['name']}: {d}")
    for n in results.get("notes", []):
        details.append(f"- note: {n}")
    if details:
        lines += ["", "Details:", "", *details]
    return "\n".join(lines) + "\n", ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("drive", help="run the matrix (inside the harness namespace)")
    d.add_argument("--work", type=Path, required=True)
    d.add_argument("--ovpn", required=True)
    d.add_argument("--ovpnd", required=True)
    d.add_argument("--cells", help="comma-separated cell indices (default: all 8)")
    r = sub.add_parser("render", help="print the results table")
    r.add_argument("results", type=Path)
    r.add_argument("--total", type=float)
    args = ap.parse_args()

    if args.cmd == "render":
        text, ok = render(json.loads(args.results.read_text()), args.total)
        sys.stdout.write(text)
        return 0 if ok else 1

    cells = all_cells()
    if args.cells:
        wanted = {int(i) for i in args.cells.split(",")}
        cells = [c for c in cells if c.index in wanted]
    run = Interop(args.work, args.ovpn, args.ovpnd, cells)
    # SIGTERM (interop/run stopping us) unwinds like Ctrl-C, through finish().
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        run.run()
    except (StepError, OSError) as e:
        run.notes.append(f"aborted: {e}")
        log(f"ABORTED: {e}")
    finally:
        run.finish()
        (args.work / "results.json").write_text(json.dumps(run.results(), indent=1) + "\n")
    _, ok = render(run.results(), None)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
