"""The VM's initramfs: a newc cpio writer, the cached base archive (busybox,
modules, the userland `ip`, the init script) and the per-run archive (the
scenario, project binaries with their libraries, extra files). The kernel
unpacks both when they are concatenated."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from . import common
from .common import HarnessError, run

LIB_DIR = "usr/lib/x86_64-linux-gnu"
MODULE_DIR = "usr/lib/modules/ovpnvm"
INIT_SCRIPT = common.HARNESS_DIR / "init.sh"
# Bumped when the base layout changes in a way the inputs do not show.
BASE_LAYOUT = 3


@dataclass
class Tree:
    """Files of an archive in memory: directories, symlinks, and files
    whose content is a host path or bytes."""

    entries: dict[str, tuple] = field(default_factory=dict)

    def add_dir(self, path: str) -> None:
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if sub and sub not in self.entries:
                self.entries[sub] = ("dir",)

    def add_file(self, path: str, source: Path | bytes, mode: int = 0o644) -> None:
        path = path.strip("/")
        self.add_dir(str(Path(path).parent))
        self.entries[path] = ("file", source, mode)

    def add_symlink(self, path: str, target: str) -> None:
        path = path.strip("/")
        self.add_dir(str(Path(path).parent))
        self.entries[path] = ("symlink", target)

    def has(self, path: str) -> bool:
        return path.strip("/") in self.entries

    def write_cpio(self, out: Path) -> None:
        """Writes the tree as a newc cpio archive (owner root, mtime 0)."""
        with open(out, "wb") as f:
            ino = 1000
            for path in sorted(self.entries, key=lambda p: (p.count("/"), p)):
                ino += 1
                entry = self.entries[path]
                if entry[0] == "dir":
                    _cpio_entry(f, ino, path, stat.S_IFDIR | 0o755, b"", nlink=2)
                elif entry[0] == "symlink":
                    _cpio_entry(f, ino, path, stat.S_IFLNK | 0o777, entry[1].encode())
                else:
                    source, mode = entry[1], entry[2]
                    data = source if isinstance(source, bytes) else Path(source).read_bytes()
                    _cpio_entry(f, ino, path, stat.S_IFREG | mode, data)
            _cpio_entry(f, 0, "TRAILER!!!", 0, b"", nlink=1)


def _cpio_entry(f, ino: int, name: str, mode: int, data: bytes, nlink: int = 1) -> None:
    name_bytes = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name_bytes), 0]
    header = b"070701" + b"".join(b"%08X" % v for v in fields)
    f.write(header + name_bytes)
    f.write(b"\0" * (-(len(header) + len(name_bytes)) % 4))
    f.write(data)
    f.write(b"\0" * (-len(data) % 4))


def base_archive(manifest: dict) -> Path:
    """The cached base archive for `manifest`, built when missing."""
    key_material = json.dumps(
        {
            "layout": BASE_LAYOUT,
            "manifest": manifest,
            "init": INIT_SCRIPT.read_text(),
            "builder": Path(__file__).read_text(),
        },
        sort_keys=True,
    )
    key = hashlib.sha256(key_material.encode()).hexdigest()[:16]
    out = common.cache_dir() / "initramfs" / f"base-{key}.cpio"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob("base-*.cpio"):
        stale.unlink(missing_ok=True)
    tree = base_tree(manifest)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    tree.write_cpio(tmp)
    tmp.rename(out)
    return out


def base_tree(manifest: dict) -> Tree:
    """Busybox, the userland, the modules and `/init`."""
    tree = Tree()
    for d in ("proc", "sys", "dev", "run", "tmp", "out", "etc", "root", "sbin", "usr/local/bin"):
        tree.add_dir(d)
    # Merged /usr, as Debian's own userland expects.
    tree.add_symlink("lib", "usr/lib")
    tree.add_symlink("lib64", "usr/lib64")

    userland = Path(manifest["userland"])
    for rel in manifest["userland_files"]:
        tree.add_file(rel, userland / rel, mode=0o755)

    provided = {Path(rel).name for rel in manifest["userland_files"]}
    for applet in busybox_applets(userland):
        if applet not in provided and re.fullmatch(r"[A-Za-z0-9_.\[\]-]+", applet):
            tree.add_symlink(f"bin/{applet}", "/usr/bin/busybox")

    order = []
    for module in manifest["modules"]:
        file_name = Path(module["path"]).name
        tree.add_file(f"{MODULE_DIR}/{file_name}", Path(module["path"]))
        need = "required" if module["required"] else "optional"
        order.append(f"{module['name']} {file_name} {need}\n")
    tree.add_file(f"{MODULE_DIR}/load-order", "".join(order).encode())
    tree.add_file("etc/ovpnvm-release", f"{manifest['release']}\n".encode())
    tree.add_file("init", INIT_SCRIPT, mode=0o755)
    return tree


def busybox_applets(userland: Path) -> list[str]:
    """Applet names of the userland's busybox, asked through its own loader."""
    loader = userland / "usr/lib64/ld-linux-x86-64.so.2"
    libs = f"{userland}/usr/lib/x86_64-linux-gnu"
    proc = run([str(loader), "--library-path", libs, str(userland / "usr/bin/busybox"), "--list"])
    return proc.stdout.split()


def run_archive(
    out: Path,
    manifest: dict,
    scenario: Path,
    env: dict[str, str],
    binaries: list[Path],
    files: list[tuple[Path, str]],
) -> None:
    """The per-run archive: scenario, settings, binaries and files."""
    tree = Tree()
    tree.add_file("scenario", scenario, mode=0o755)
    settings = "".join(f"{k}={_shell_quote(v)}\n" for k, v in sorted(env.items()))
    tree.add_file("etc/ovpnvm.env", settings.encode())

    provided = {Path(rel).name for rel in manifest["userland_files"]}
    for binary in binaries:
        if not binary.is_file():
            raise HarnessError(f"--bin {binary}: no such file")
        tree.add_file(f"usr/local/bin/{binary.name}", binary, mode=0o755)
        for soname, path in host_libraries(binary):
            if soname not in provided and not tree.has(f"{LIB_DIR}/{soname}"):
                tree.add_file(f"{LIB_DIR}/{soname}", path, mode=0o755)
    for source, dest in files:
        if not source.is_file():
            raise HarnessError(f"--file {source}: no such file")
        tree.add_file(dest, source, mode=source.stat().st_mode & 0o777)
    tree.write_cpio(out)


def host_libraries(binary: Path) -> list[tuple[str, Path]]:
    """(soname, host path) of every library `ldd` lists for a host binary;
    nothing for a static one. The loader itself is the VM's."""
    proc = run(["ldd", str(binary)], check=False)
    text = (proc.stdout or "") + (proc.stderr or "")
    if "not a dynamic executable" in text or "statically linked" in text:
        return []
    if proc.returncode != 0:
        raise HarnessError(f"ldd {binary}: {text.strip()}")
    libs = []
    for line in text.splitlines():
        match = re.match(r"\s*(\S+) => (\S+)", line)
        if not match:
            continue
        soname, path = match.groups()
        if path == "not":
            raise HarnessError(f"{binary.name} needs {soname}, which this machine lacks")
        libs.append((soname, Path(path).resolve()))
    return libs


def _shell_quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"
