"""`kernel-vm fetch`: the reference kernel, its modules in load order, and the
VM's userland `ip`, all through a side apt configuration under the cache
(own sources list, lists, archives; the machine's apt setup is never read or
changed). Idempotent: a complete manifest short-cuts everything.

Layout under the cache:
    apt/                  side apt configuration, lists and archives
    debs/                 downloaded packages
    kernel/<package>/     unpacked image, decompressed modules, load order
    userland/<version>/   unpacked iproute2 and the libraries it needs
    manifest.json         what `run` uses
"""

from __future__ import annotations

import json
import lzma
import os
import re
import shutil
from pathlib import Path

from . import common
from .common import HarnessError, log, run

MANIFEST_VERSION = 2


class SideApt:
    """apt-get and apt-cache confined to a directory of their own."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "apt.conf"
        for sub in ("lists/partial", "archives/partial", "parts", "prefs"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        keys = ",".join(k for k in common.KEYRINGS if Path(k).exists())
        suites = (common.KERNEL_SUITE, common.USERLAND_SUITE)
        (root / "sources.list").write_text(
            "".join(f"deb [signed-by={keys}] {common.DEBIAN_MIRROR} {s} main\n" for s in suites)
        )
        # Read through APT_CONFIG, before the machine's apt.conf.d would be:
        # pointing `parts` and `main` away keeps the host's settings out.
        self.config.write_text(
            "\n".join(
                [
                    f'Dir::Etc::SourceList "{root}/sources.list";',
                    'Dir::Etc::SourceParts "/dev/null";',
                    f'Dir::Etc::Parts "{root}/parts";',
                    'Dir::Etc::Main "/dev/null";',
                    'Dir::Etc::Preferences "/dev/null";',
                    f'Dir::Etc::PreferencesParts "{root}/prefs";',
                    f'Dir::State::Lists "{root}/lists";',
                    'Dir::State::Status "/dev/null";',
                    f'Dir::Cache "{root}/cache";',
                    f'Dir::Cache::Archives "{root}/archives";',
                    'Dir::Cache::pkgcache "";',
                    'Dir::Cache::srcpkgcache "";',
                    'APT::Architecture "amd64";',
                    'APT::Architectures { "amd64"; };',
                    'Acquire::Languages "none";',
                    # The mirror may serve a frozen snapshot older than the
                    # Release files' validity window.
                    'Acquire::Check-Valid-Until "false";',
                    'Acquire::Check-Date "false";',
                    'Acquire::IndexTargets::deb::DEP-11::DefaultEnabled "false";',
                    'Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled "false";',
                    'Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled "false";',
                    'Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled "false";',
                    "",
                ]
            )
        )
        (root / "cache").mkdir(exist_ok=True)
        self.env = {"APT_CONFIG": str(self.config), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}

    def has_lists(self) -> bool:
        """Whether both suites' package lists are present."""
        lists = [p.name for p in (self.root / "lists").glob("*Packages*")]
        return all(any(f"_{s}_" in name for name in lists) for s in
                   (common.KERNEL_SUITE, common.USERLAND_SUITE))

    def update(self) -> None:
        """Downloads the package lists of the side sources."""
        log(f"apt-get update ({common.KERNEL_SUITE}, {common.USERLAND_SUITE}; side configuration)")
        run(["apt-get", "update", "-q"], env=self.env, timeout=600)

    def version(self, package: str) -> str | None:
        """The candidate version of `package`, or None if unknown."""
        return self.versions([package]).get(package)

    def versions(self, packages: list[str]) -> dict[str, str]:
        """Candidate versions of the known ones among `packages` (one
        apt-cache call: each call parses every list again)."""
        proc = run(["apt-cache", "policy", *packages], env=self.env, check=False)
        found = {}
        current = None
        for line in (proc.stdout or "").splitlines():
            if line and not line[0].isspace() and line.endswith(":"):
                current = line[:-1]
            match = re.match(r"\s+Candidate:\s*(\S+)", line)
            if current and match and match.group(1) != "(none)":
                found[current] = match.group(1)
        return found

    def package_names(self, prefix: str) -> list[str]:
        """Names of packages starting with `prefix`."""
        proc = run(["apt-cache", "pkgnames", prefix], env=self.env, check=False)
        return (proc.stdout or "").split()

    def library_closure(self, packages: tuple[str, ...]) -> list[str]:
        """`packages` and the shared-library packages they depend on,
        recursively. Other dependencies (debconf and the like) are not
        needed to run binaries and are not followed."""
        names = set(packages)
        frontier = list(packages)
        for _ in range(20):  # dependency depth is far below this
            if not frontier:
                break
            proc = run(["apt-cache", "depends", "--no-recommends", "--no-suggests",
                        "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances",
                        *frontier], env=self.env)
            frontier = []
            for line in proc.stdout.splitlines():
                match = re.match(r"\s+\|?(?:Pre)?Depends:\s+(\S+)", line)
                if not match:
                    continue
                dep = match.group(1).split(":")[0]
                if _is_library_package(dep) and dep not in names:
                    names.add(dep)
                    frontier.append(dep)
        return sorted(names)

    def download(self, packages: list[str], dest: Path) -> list[Path]:
        """Downloads the candidate .deb of each package into `dest` (kept
        across runs); returns their paths."""
        dest.mkdir(parents=True, exist_ok=True)
        wanted = []
        versions = self.versions(packages)
        for pkg in packages:
            version = versions.get(pkg)
            if version is None:
                raise HarnessError(f"package {pkg} is not in the side apt sources")
            file_version = version.replace(":", "%3a")
            wanted.append((pkg, dest / f"{pkg}_{file_version}_amd64.deb", version))
        todo = [f"{pkg}={version}" for pkg, path, version in wanted
                if not path.exists() and not _all_arch(path).exists()]
        if todo:
            log(f"downloading {len(todo)} package(s): " + " ".join(todo))
            run(["apt-get", "download", "-q", *todo], env=self.env, cwd=dest, timeout=900)
        paths = []
        for _, path, _ in wanted:
            found = path if path.exists() else _all_arch(path)
            if not found.exists():
                raise HarnessError(f"apt-get download did not produce {path.name}")
            paths.append(found)
        return paths


def _is_library_package(name: str) -> bool:
    if name == "zlib1g":
        return True
    return name.startswith("lib") and not name.endswith(("-bin", "-dev", "-doc"))


def _all_arch(path: Path) -> Path:
    return path.with_name(path.name.replace("_amd64.deb", "_all.deb"))


def fetch(refresh: bool = False) -> dict:
    """Makes sure kernel, modules and userland are in the cache; returns the
    manifest."""
    cache = common.cache_dir()
    manifest_path = cache / "manifest.json"
    if not refresh:
        manifest = load_manifest()
        if manifest is not None:
            return manifest

    apt = SideApt(cache / "apt")
    if refresh or not apt.has_lists():
        apt.update()

    manifest = {"format": MANIFEST_VERSION, "wanted": wanted()}
    manifest.update(fetch_kernel(apt, cache))
    manifest.update(fetch_userland(apt, cache))
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    log(f"cached in {cache}: kernel {manifest['release']}, iproute2 {manifest['iproute2']}")
    return manifest


def wanted() -> dict:
    """The settings a manifest was made for; a change makes it stale."""
    return {
        "kernel": [common.KERNEL_PACKAGE, common.KERNEL_SUITE],
        "userland": [common.USERLAND_SUITE, *common.USERLAND_PACKAGES],
        "tools": list(common.USERLAND_TOOLS),
        "modules": [*common.REQUIRED_MODULES, *common.CRYPTO_MODULES],
    }


def load_manifest() -> dict | None:
    """The cached manifest if it is complete and its files exist."""
    path = common.cache_dir() / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("format") != MANIFEST_VERSION or manifest.get("wanted") != wanted():
        return None
    files = [manifest["vmlinuz"], *(m["path"] for m in manifest["modules"])]
    files += [str(Path(manifest["userland"]) / f) for f in manifest["userland_files"]]
    return manifest if all(Path(f).exists() for f in files) else None


def fetch_kernel(apt: SideApt, cache: Path) -> dict:
    """Downloads and unpacks the kernel image; resolves the module order."""
    package = kernel_package(apt)
    deb = apt.download([package], cache / "debs")[0]
    base = cache / "kernel" / package
    root = base / "root"
    if not (base / ".unpacked").exists():
        shutil.rmtree(base, ignore_errors=True)
        root.mkdir(parents=True)
        log(f"unpacking {deb.name}")
        run(["dpkg-deb", "-x", str(deb), str(root)], timeout=300)
        (base / ".unpacked").touch()

    release_dirs = list((root / "usr/lib/modules").iterdir())
    if len(release_dirs) != 1:
        raise HarnessError(f"expected one module tree in {deb.name}, found {len(release_dirs)}")
    release = release_dirs[0].name
    vmlinuz = root / "boot" / f"vmlinuz-{release}"
    run(["depmod", "-b", str(root / "usr"), release], timeout=300)
    modules = module_order(root / "usr", release, base / "modules")
    return {
        "kernel_package": package,
        "kernel_version": apt.version(package),
        "release": release,
        "vmlinuz": str(vmlinuz),
        "modules": modules,
    }


def kernel_package(apt: SideApt) -> str:
    """The pinned image, or the newest image of the same series when Debian
    no longer carries it."""
    if apt.version(common.KERNEL_PACKAGE) is not None:
        return common.KERNEL_PACKAGE
    pattern = re.compile(
        rf"linux-image-{re.escape(common.KERNEL_SERIES)}\.(\d+)\+deb\d+-cloud-amd64"
    )
    found = [(int(m.group(1)), name) for name in apt.package_names("linux-image-")
             if (m := pattern.fullmatch(name))]
    if not found:
        raise HarnessError(f"no {common.KERNEL_SERIES} cloud kernel in {common.KERNEL_SUITE}")
    chosen = max(found)[1]
    log(f"WARNING: {common.KERNEL_PACKAGE} is gone from {common.KERNEL_SUITE}; using {chosen}")
    return chosen


def module_order(usr: Path, release: str, out: Path) -> list[dict]:
    """Every module needed for the wanted set, dependencies first, decompressed
    into `out` so busybox insmod can load them."""
    out.mkdir(parents=True, exist_ok=True)
    order: list[dict] = []
    seen: dict[str, dict] = {}
    for root_module in (*common.REQUIRED_MODULES, *common.CRYPTO_MODULES):
        required = root_module in common.REQUIRED_MODULES
        proc = run(["modprobe", "-d", str(usr), "-S", release, "--show-depends", root_module],
                   check=False)
        if proc.returncode != 0:
            if required:
                raise HarnessError(f"module {root_module} not in {release}: {proc.stderr.strip()}")
            log(f"module {root_module} not in {release}; skipped")
            continue
        for line in proc.stdout.splitlines():
            words = line.split()
            if len(words) < 2 or words[0] != "insmod":
                continue  # "builtin NAME": nothing to load
            source = Path(words[1])
            name = source.name.split(".ko")[0]
            if name in seen:
                seen[name]["required"] |= required
                continue
            dest = out / f"{name}.ko"
            if not dest.exists():
                decompress(source, dest)
            entry = {"name": name, "path": str(dest), "required": required}
            seen[name] = entry
            order.append(entry)
    return order


def decompress(source: Path, dest: Path) -> None:
    """Writes the plain ELF of a module (.ko, .ko.xz) to `dest` atomically."""
    tmp = dest.with_suffix(f".{os.getpid()}.tmp")
    if source.suffix == ".xz":
        with lzma.open(source) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
    else:
        shutil.copyfile(source, tmp)
    tmp.rename(dest)


def fetch_userland(apt: SideApt, cache: Path) -> dict:
    """iproute2 and busybox from the userland suite with their libraries,
    checked to run and to know the ovpn link kind."""
    versions = apt.versions(list(common.USERLAND_PACKAGES))
    missing = [p for p in common.USERLAND_PACKAGES if p not in versions]
    if missing:
        raise HarnessError(f"{', '.join(missing)} not found in {common.USERLAND_SUITE}")
    label = "+".join(f"{p}-{versions[p]}" for p in common.USERLAND_PACKAGES)
    base = cache / "userland" / label.replace(":", "_")
    root = base / "root"
    if not (base / ".unpacked").exists():
        debs = apt.download(apt.library_closure(common.USERLAND_PACKAGES), cache / "debs")
        shutil.rmtree(base, ignore_errors=True)
        root.mkdir(parents=True)
        for deb in debs:
            run(["dpkg-deb", "-x", str(deb), str(root)], timeout=300)
        (base / ".unpacked").touch()

    loader = root / "usr/lib64/ld-linux-x86-64.so.2"
    if not loader.exists():
        raise HarnessError(f"no dynamic loader in the unpacked {common.USERLAND_SUITE} libc6")
    files = {"usr/lib64/ld-linux-x86-64.so.2"}
    for tool in common.USERLAND_TOOLS:
        files.add(tool)
        files.update(library_files(root, loader, root / tool))
    check_ovpn_kind(root, loader)
    return {
        "iproute2": versions["iproute2"],
        "busybox": versions["busybox"],
        "userland": str(root),
        "userland_files": sorted(files),
    }


def library_path(root: Path) -> str:
    return f"{root}/usr/lib/x86_64-linux-gnu:{root}/lib/x86_64-linux-gnu"


def library_files(root: Path, loader: Path, binary: Path) -> list[str]:
    """The libraries `binary` loads, as paths inside `root`. A library that
    only the build machine has is an error: the VM would not have it."""
    proc = run([str(loader), "--inhibit-cache", "--library-path", library_path(root),
                "--list", str(binary)])
    found = []
    for line in proc.stdout.splitlines():
        match = re.match(r"\s*(\S+) => (\S+)", line)
        if not match:
            continue
        soname, path = match.groups()
        if path == "not" or not path.startswith(str(root) + "/"):
            raise HarnessError(f"{binary.name} needs {soname}, which the unpacked packages lack")
        found.append(str(Path(path).relative_to(root)))
    return found


def check_ovpn_kind(root: Path, loader: Path) -> None:
    """`ip link help ovpn` of the unpacked iproute2 must describe the mode."""
    proc = run([str(loader), "--library-path", library_path(root), str(root / "usr/bin/ip"),
                "link", "help", "ovpn"], check=False)
    text = (proc.stdout or "") + (proc.stderr or "")
    if "p2p | mp" not in text:
        raise HarnessError("the fetched iproute2 does not know `type ovpn mode`: " + text[:200])
