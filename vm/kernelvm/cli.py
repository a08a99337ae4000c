"""Command line of `kernel-vm`: setup, fetch, build-probe, run."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from . import boot, fetch, hostpkgs, probe
from .common import HarnessError, log


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="kernel-vm",
        description="Boot Debian's 6.16 kernel with the real ovpn module under QEMU.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help="install missing host packages (apt-get)")
    f = sub.add_parser("fetch", help="download kernel, modules and the VM userland (cached)")
    f.add_argument("--refresh", action="store_true", help="update the side apt lists first")
    sub.add_parser("build-probe", help="build vm/probe statically; print its path")
    r = sub.add_parser("run", help="boot the VM and run a scenario script in it")
    r.add_argument("--scenario", required=True, type=Path, help="shell script run by init")
    r.add_argument("--bin", action="append", default=[], type=Path,
                   help="host binary to ship to /usr/local/bin (with its libraries)")
    r.add_argument("--file", action="append", default=[], metavar="SRC[=DEST]",
                   help="host file to ship (default destination /files/NAME)")
    r.add_argument("--timeout", type=float, default=120, help="wall-clock limit, seconds")
    r.add_argument("--net", action="store_true", help="attach the VM to a tap in a namespace")
    r.add_argument("--host-cmd", help="shell command run in that namespace while the VM runs")
    r.add_argument("--out", type=Path, help="host directory receiving the VM's /out")
    r.add_argument("--memory", type=int, default=1024, help="VM memory, MiB")
    r.add_argument("--cpus", type=int, default=2, help="VM CPUs")
    r.add_argument("--keep", action="store_true", help="keep the run's work directory")
    args = parser.parse_args(argv)
    if args.command == "run" and args.host_cmd and not args.net:
        parser.error("--host-cmd needs --net")
    return args


def file_spec(spec: str) -> tuple[Path, str]:
    source, _, dest = spec.partition("=")
    path = Path(source)
    return path, dest or f"/files/{path.name}"


def _terminate(signum: int, _frame) -> None:
    # Unwinds through every `finally`, so the VM, the host command and the
    # namespace are cleaned up on SIGTERM and SIGHUP as on SIGINT.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    try:
        if args.command == "setup":
            return hostpkgs.setup()
        if args.command == "fetch":
            fetch.fetch(refresh=args.refresh)
            return 0
        if args.command == "build-probe":
            print(probe.build_probe())
            return 0
        options = boot.RunOptions(
            scenario=args.scenario,
            binaries=args.bin,
            files=[file_spec(s) for s in args.file],
            timeout=args.timeout,
            net=args.net,
            host_cmd=args.host_cmd,
            out=args.out,
            memory_mb=args.memory,
            cpus=args.cpus,
            keep=args.keep,
        )
        return boot.run_vm(options)
    except HarnessError as exc:
        log(f"error: {exc}")
        return boot.STATUS_HARNESS
    except KeyboardInterrupt:
        log("interrupted")
        return 130
