"""The --net link: a network namespace of the harness's own
(`ovpnvm-<pid>`) holding a persistent tap device that QEMU attaches the VM's
virtio NIC to. Host processes run in the namespace reach the VM over it."""

from __future__ import annotations

import os
import re

from . import common
from .common import HarnessError, log, run


class TapNamespace:
    """Context manager: creates the namespace and tap on entry, removes both
    on exit, whatever happened in between."""

    def __init__(self) -> None:
        self.name = f"ovpnvm-{os.getpid()}"
        self.tap = common.TAP_NAME
        self.created = False

    def __enter__(self) -> TapNamespace:
        remove_orphans()
        ns = self.name
        run(["ip", "netns", "add", ns])
        self.created = True
        try:
            for cmd in (
                ["link", "set", "lo", "up"],
                ["tuntap", "add", "dev", self.tap, "mode", "tap"],
                ["addr", "add", f"{common.HOST_IP4}/{common.IP4_PREFIX}", "dev", self.tap],
                ["-6", "addr", "add", f"{common.HOST_IP6}/{common.IP6_PREFIX}", "dev",
                 self.tap, "nodad"],
                ["link", "set", self.tap, "up"],
            ):
                run(["ip", "-n", ns, *cmd])
        except HarnessError:
            self.remove()
            raise
        log(f"namespace {ns}: tap {self.tap} {common.HOST_IP4}, {common.HOST_IP6}")
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def exec_prefix(self) -> list[str]:
        """Prefix that runs a command inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def env(self) -> dict[str, str]:
        """Variables describing the link, for the scenario and host command."""
        return {
            "OVPNVM_NS": self.name,
            "OVPNVM_TAP": self.tap,
            "OVPNVM_HOST_IP4": common.HOST_IP4,
            "OVPNVM_HOST_IP6": common.HOST_IP6,
            "OVPNVM_VM_IP4": common.VM_IP4,
            "OVPNVM_VM_IP6": common.VM_IP6,
        }

    def remove(self) -> None:
        """Deletes the tap and the namespace; safe to call twice."""
        if not self.created:
            return
        run(["ip", "-n", self.name, "link", "del", self.tap], check=False, timeout=30)
        proc = run(["ip", "netns", "del", self.name], check=False, timeout=30)
        if proc.returncode != 0:
            log(f"WARNING: could not delete namespace {self.name}: {proc.stderr.strip()}")
        self.created = False


def remove_orphans() -> None:
    """Deletes namespaces left by a harness that was killed outright
    (SIGKILL leaves no chance to clean up): `ovpnvm-<pid>` whose pid is gone.
    A VM still running in one keeps it alive until it powers itself off."""
    proc = run(["ip", "netns", "list"], check=False, timeout=30)
    for line in (proc.stdout or "").splitlines():
        name = line.split()[0] if line.split() else ""
        match = re.fullmatch(r"ovpnvm-(\d+)", name)
        if match and not os.path.exists(f"/proc/{match.group(1)}"):
            log(f"removing namespace {name} left by a killed harness")
            run(["ip", "netns", "del", name], check=False, timeout=30)
