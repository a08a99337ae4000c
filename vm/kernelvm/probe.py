"""`kernel-vm build-probe`: builds nlprobe (vm/probe) as a static binary, so
it runs in the VM without any library. musl when that target is installed,
else glibc with a static C runtime."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from . import common
from .common import HarnessError, log, run

PROBE_DIR = common.HARNESS_DIR.parent / "probe"


def static_target() -> tuple[str, dict[str, str]]:
    """The target triple to use and the extra environment for it."""
    musl = "x86_64-unknown-linux-musl"
    libdir = run(["rustc", "--print", "target-libdir", "--target", musl], check=False)
    if libdir.returncode == 0 and Path(libdir.stdout.strip()).is_dir():
        return musl, {}
    gnu = "x86_64-unknown-linux-gnu"
    flags = (os.environ.get("RUSTFLAGS", "") + " -C target-feature=+crt-static").strip()
    return gnu, {"RUSTFLAGS": flags}


def build_probe() -> Path:
    """Builds the probe; returns the binary's path."""
    target, extra = static_target()
    target_dir = common.cache_dir() / "probe-target"
    env = dict(os.environ, **extra)
    log(f"building nlprobe for {target} (static)")
    run(["cargo", "build", "--release", "--locked", "--quiet",
         "--manifest-path", str(PROBE_DIR / "Cargo.toml"),
         "--target", target, "--target-dir", str(target_dir)],
        env=env, timeout=900)
    binary = target_dir / target / "release" / "nlprobe"
    ldd = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
    if "statically linked" not in ldd.stdout + ldd.stderr and \
            "not a dynamic executable" not in ldd.stdout + ldd.stderr:
        raise HarnessError(f"{binary} is not static: {ldd.stdout.strip()}")
    return binary
