"""`kernel-vm setup`: installs the build machine's packages the harness needs,
only when one is missing, with one `apt-get update` before."""

from __future__ import annotations

import os
import shutil

from .common import log, run

# Debian package -> a file whose presence shows it is installed. QEMU boots
# the VM; kmod's depmod and modprobe resolve the module order; iproute2
# makes the --net namespace; busybox gives vm/test a `ping` on the host side.
# (The initramfs and .ko.xz handling are Python's own; the VM's userland
# comes from Debian packages fetched into the cache.)
HOST_PACKAGES = {
    "qemu-system-x86": "/usr/bin/qemu-system-x86_64",
    "kmod": "/usr/sbin/depmod",
    "iproute2": "/usr/sbin/ip",
    "busybox-static": "/bin/busybox",
}


def missing_packages() -> list[str]:
    """Packages whose marker file is absent."""
    return [pkg for pkg, marker in HOST_PACKAGES.items() if not os.path.exists(marker)]


def setup() -> int:
    """Installs what is missing; a no-op when everything is present."""
    missing = missing_packages()
    if not missing:
        log("host packages present: " + ", ".join(HOST_PACKAGES))
        return 0
    if shutil.which("apt-get") is None:
        log("missing packages and no apt-get: " + ", ".join(missing))
        return 1
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log("apt-get update")
    run(["apt-get", "update", "-q"], env=env, timeout=600)
    log("installing " + ", ".join(missing))
    run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
        env=env,
        timeout=1200,
    )
    still = missing_packages()
    if still:
        log("still missing after install: " + ", ".join(still))
        return 1
    return 0
