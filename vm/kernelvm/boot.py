"""`kernel-vm run`: boots the reference kernel under QEMU's software
emulation with a per-run initramfs, bounded by a wall-clock limit, and
brings back the scenario's stdout, stderr, exit status and output files.

The VM's console (ttyS0) only goes to a log; results travel on ttyS1 as a
base64 tar between markers carrying a per-run token, so kernel messages can
never corrupt them."""

from __future__ import annotations

import base64
import contextlib
import gzip
import io
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import common, fetch, rootfs
from .common import HarnessError, log
from .netns import TapNamespace

# Exit statuses of the harness itself, when the scenario's is not known.
STATUS_TIMEOUT = 124
STATUS_HARNESS = 125


@dataclass
class RunOptions:
    """What `kernel-vm run` was asked to do."""

    scenario: Path
    binaries: list[Path] = field(default_factory=list)
    files: list[tuple[Path, str]] = field(default_factory=list)
    timeout: float = 120
    net: bool = False
    host_cmd: str | None = None
    out: Path | None = None
    memory_mb: int = 1024
    cpus: int = 2
    keep: bool = False


@dataclass
class Outcome:
    """What came back from one run."""

    status: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    modules_log: bytes = b""
    timed_out: bool = False
    host_status: int | None = None
    seconds: float = 0.0


def run_vm(options: RunOptions) -> int:
    """Runs one scenario; prints its output; returns the exit status to use."""
    if not options.scenario.is_file():
        raise HarnessError(f"--scenario {options.scenario}: no such file")
    manifest = fetch.fetch()
    base = rootfs.base_archive(manifest)
    runs = common.cache_dir() / "runs"
    runs.mkdir(exist_ok=True)
    for attempt in range(1, BOOT_ATTEMPTS + 1):
        work = Path(tempfile.mkdtemp(prefix="run-", dir=runs))
        try:
            outcome = boot(manifest, base, work, options)
            if outcome.status is None and attempt < BOOT_ATTEMPTS and panicked(work):
                # Under TCG the guest kernel now and then dies while it
                # patches its own code at boot (an int3 Oops in early
                # code); nothing of the scenario ran, so boot again.
                log(f"the VM's kernel panicked (attempt {attempt}); booting once more")
                for line in console_tail(work, 8):
                    print(f"  console.log: {line}", file=sys.stderr)
                continue
            report(outcome, work, options)
            return exit_status(outcome)
        finally:
            if options.keep:
                log(f"kept {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)
    raise HarnessError("unreachable: no boot attempt reported")


# Boots per run: one more when the guest kernel panics before returning
# results.
BOOT_ATTEMPTS = 2


def panicked(work: Path) -> bool:
    """Whether the guest kernel panicked, by its console."""
    try:
        return b"Kernel panic - not syncing" in (work / "console.log").read_bytes()
    except OSError:
        return False


def console_tail(work: Path, lines: int) -> list[str]:
    try:
        text = (work / "console.log").read_text(errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


def scenario_limit(timeout: float) -> int:
    """Seconds the scenario may take inside the VM: the wall-clock limit
    less room for booting and sending results back (booting alone took up
    to 25 s under TCG on a loaded 2-core machine)."""
    return max(5, int(timeout - max(40.0, timeout * 0.3)))


def boot(manifest: dict, base: Path, work: Path, options: RunOptions) -> Outcome:
    token = secrets.token_hex(8)
    env = {
        "OVPNVM_TOKEN": token,
        "OVPNVM_NET": "1" if options.net else "0",
        "OVPNVM_SCENARIO_TIMEOUT": str(scenario_limit(options.timeout)),
        "OVPNVM_OUT": "/out",
        "OVPNVM_RELEASE": manifest["release"],
        "OVPNVM_VM_IP4": common.VM_IP4,
        "OVPNVM_HOST_IP4": common.HOST_IP4,
        "OVPNVM_IP4_PREFIX": str(common.IP4_PREFIX),
        "OVPNVM_VM_IP6": common.VM_IP6,
        "OVPNVM_HOST_IP6": common.HOST_IP6,
        "OVPNVM_IP6_PREFIX": str(common.IP6_PREFIX),
    }
    run_cpio = work / "run.cpio"
    rootfs.run_archive(run_cpio, manifest, options.scenario, env, options.binaries, options.files)
    initrd = work / "initrd.cpio"
    with open(initrd, "wb") as dst:
        for part in (base, run_cpio):
            with open(part, "rb") as src:
                shutil.copyfileobj(src, dst)

    with contextlib.ExitStack() as stack:
        prefix: list[str] = []
        host_env = dict(os.environ)
        if options.net:
            ns = stack.enter_context(TapNamespace())
            prefix = ns.exec_prefix()
            host_env.update(ns.env())
        cmd = prefix + qemu_command(manifest, initrd, work, options)
        return supervise(cmd, prefix, host_env, work, token, options)


def qemu_command(manifest: dict, initrd: Path, work: Path, options: RunOptions) -> list[str]:
    cmd = [
        "qemu-system-x86_64",
        "-accel", "tcg",
        "-cpu", "max",
        "-m", str(options.memory_mb),
        "-smp", str(options.cpus),
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-kernel", manifest["vmlinuz"],
        "-initrd", str(initrd),
        "-append", "console=ttyS0 quiet loglevel=3 panic=-1 oops=panic",
        "-serial", f"file:{work / 'console.log'}",
        "-serial", f"file:{work / 'result.log'}",
    ]
    if options.net:
        cmd += [
            "-netdev", f"tap,id=n0,ifname={common.TAP_NAME},script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=n0,mac={common.VM_MAC}",
        ]
    return cmd


def supervise(
    cmd: list[str],
    prefix: list[str],
    host_env: dict[str, str],
    work: Path,
    token: str,
    options: RunOptions,
) -> Outcome:
    """Starts QEMU (and the host command), enforces the deadline, and kills
    whatever is left, on every path."""
    start = time.monotonic()
    deadline = start + options.timeout
    outcome = Outcome()
    vm = host = None
    try:
        with open(work / "qemu.log", "wb") as qlog:
            vm = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=qlog,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        if options.host_cmd:
            with open(work / "host-cmd.log", "wb") as hlog:
                host = subprocess.Popen(prefix + ["sh", "-c", options.host_cmd], env=host_env,
                                        stdin=subprocess.DEVNULL, stdout=hlog,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        outcome.timed_out = not wait_until(vm, deadline)
        if host is not None and not outcome.timed_out and panicked(work):
            # Nothing will answer the host command any more.
            log("the VM's kernel panicked; host command stopped")
            stop(host)
            outcome.host_status = STATUS_HARNESS
            host = None
        if host is not None:
            # The host command gets what is left of the limit, at least a
            # moment to notice the VM is gone.
            if wait_until(host, max(deadline, time.monotonic() + 5)):
                outcome.host_status = host.returncode
            else:
                log("host command still running at the deadline; killed")
                outcome.host_status = STATUS_TIMEOUT
    finally:
        for proc in (host, vm):
            stop(proc)
    outcome.seconds = time.monotonic() - start
    collect(outcome, work, token, options.out)
    return outcome


def wait_until(proc: subprocess.Popen, deadline: float) -> bool:
    """Waits for `proc` until `deadline`; False if it was still running."""
    try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        return True
    except subprocess.TimeoutExpired:
        return False


def stop(proc: subprocess.Popen | None) -> None:
    """Kills the process group of a child we started, if it still runs."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def collect(outcome: Outcome, work: Path, token: str, out: Path | None) -> None:
    """Reads the result block from ttyS1's log, if one arrived whole."""
    try:
        text = (work / "result.log").read_bytes().decode("ascii", "replace")
    except OSError:
        return
    begin, end = f"@@OVPNVM-BEGIN {token}@@", f"@@OVPNVM-END {token}@@"
    if begin not in text or end not in text.split(begin, 1)[1]:
        return
    payload = text.split(begin, 1)[1].split(end, 1)[0]
    try:
        data = gzip.decompress(base64.b64decode("".join(payload.split()), validate=True))
        read_results(outcome, data, out)
    except (ValueError, OSError, EOFError, tarfile.TarError) as exc:
        log(f"the VM's result block is damaged: {exc}")
        outcome.status = None


def read_results(outcome: Outcome, data: bytes, out: Path | None) -> None:
    """Fills `outcome` from the result tar; copies /out to `out`."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}

        def member(name: str) -> bytes:
            m = members.get(name)
            f = tar.extractfile(m) if m is not None else None
            return f.read() if f is not None else b""

        outcome.stdout = member("stdout")
        outcome.stderr = member("stderr")
        outcome.modules_log = member("modules.log")
        status = member("status").strip()
        outcome.status = int(status) if status.isdigit() else STATUS_HARNESS
        if out is not None:
            extract_out(tar, out)


def extract_out(tar: tarfile.TarFile, out: Path) -> None:
    """Copies the VM's /out into `out`, refusing anything that would land
    outside it."""
    out.mkdir(parents=True, exist_ok=True)
    root = out.resolve()
    for m in tar.getmembers():
        if not (m.name == "out" or m.name.startswith("out/")):
            continue
        rel = m.name[len("out"):].lstrip("/")
        if not rel:
            continue
        dest = (root / rel).resolve()
        if root not in dest.parents or not (m.isfile() or m.isdir()):
            log(f"skipped {m.name} from the VM's /out")
            continue
        if m.isdir():
            dest.mkdir(parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        src = tar.extractfile(m)
        if src is not None:
            dest.write_bytes(src.read())


def report(outcome: Outcome, work: Path, options: RunOptions) -> None:
    """Prints the scenario's output and keeps the logs under --out."""
    sys.stdout.buffer.write(outcome.stdout)
    sys.stdout.flush()
    sys.stderr.buffer.write(outcome.stderr)
    sys.stderr.flush()
    if options.out is not None:
        logs = options.out / ".kernel-vm"
        logs.mkdir(parents=True, exist_ok=True)
        for name in ("console.log", "qemu.log", "host-cmd.log"):
            if (work / name).exists():
                shutil.copyfile(work / name, logs / name)
        (logs / "modules.log").write_bytes(outcome.modules_log)
        (logs / "stdout").write_bytes(outcome.stdout)
        (logs / "stderr").write_bytes(outcome.stderr)
        (logs / "status").write_text(f"{outcome.status}\n")
    if options.host_cmd and (work / "host-cmd.log").exists():
        host_log = (work / "host-cmd.log").read_text(errors="replace")
        for line in host_log.splitlines():
            print(f"host-cmd: {line}", file=sys.stderr)
    if outcome.status is None:
        why = "wall-clock timeout" if outcome.timed_out else "the VM stopped"
        log(f"no results from the VM ({why} after {outcome.seconds:.0f} s); console tail:")
        for name in ("console.log", "qemu.log"):
            path = work / name
            if path.exists():
                for line in path.read_text(errors="replace").splitlines()[-30:]:
                    print(f"  {name}: {line}", file=sys.stderr)
    else:
        log(f"scenario status {outcome.status} after {outcome.seconds:.1f} s")
    if b"FAILED" in outcome.modules_log:
        failed = [ln for ln in outcome.modules_log.decode(errors="replace").splitlines()
                  if ln.startswith("FAILED")]
        log("module load failures: " + "; ".join(failed))


def exit_status(outcome: Outcome) -> int:
    if outcome.status is None:
        return STATUS_TIMEOUT if outcome.timed_out else STATUS_HARNESS
    if outcome.status == 0 and outcome.host_status not in (None, 0):
        log(f"host command failed with status {outcome.host_status}")
        return outcome.host_status
    return outcome.status
