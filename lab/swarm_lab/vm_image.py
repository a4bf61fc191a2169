"""The VM node's image: Debian's kernel and a trimmed userland, built once and cached.

One mmdebstrap rootfs holds both: ``boot/vmlinuz-*`` is the kernel, and the whole tree
(packed as an uncompressed ``cpio -H newc``) is the initramfs, so the guest needs no block
device or disk image. Uncompressed because under TCG the kernel's decompressor is the
slowest part of unpacking. The cache directory name hashes the recipe and the trim lists,
so changing either builds a new image and an unchanged one is reused. ``/init`` is a second,
tiny cpio appended to the cached one (the kernel unpacks concatenated archives in turn), so
editing it costs a copy, not a rebuild.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from swarm_lab import host, vm_layout
from swarm_lab.errors import LabError
from swarm_lab.vm_init import INIT_SCRIPT

PACKAGES = (
    "linux-image-amd64",
    "kmod",
    "iproute2",
    "iptables",
    "ipvsadm",
    "docker.io",
    "busybox-static",
    "procps",
    "python3",
    "qemu-guest-agent",
)
RECIPE = (
    "mmdebstrap",
    "--variant=minbase",
    "--format=directory",
    "--quiet",
    "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
    f"--include={','.join(PACKAGES)}",
    *(f"--dpkgopt=path-exclude=/usr/share/{d}/*" for d in ("doc", "man", "locale", "info")),
    "bookworm",
)
# Kernel modules kept (paths under lib/modules/KVER/kernel, directory prefixes or files), and
# everything they depend on: networking (IPVS, netfilter, bridge, VXLAN), overlayfs, 9p and
# virtio. The other ~350 MB (GPU, sound, wireless, storage...) would only slow the boot.
KEEP_MODULES = (
    "net/",
    "lib/",
    "crypto/",
    "arch/x86/crypto/",
    "fs/overlayfs/",
    "fs/9p/",
    "fs/netfs/",
    "fs/fscache/",
    "drivers/virtio/",
    "drivers/net/virtio_net.ko",
    "drivers/net/net_failover.ko",
    "drivers/net/vxlan/",
    "drivers/net/veth.ko",
    "drivers/net/dummy.ko",
    "drivers/net/macvlan.ko",
    "drivers/net/ipvlan/",
    "drivers/net/tun.ko",
    "drivers/char/virtio_console.ko",
    "drivers/char/hw_random/",
)
# Files of no use in the guest: the host's docker CLI drives it over TCP; dnet and ctr are
# debugging tools; the v1 shims are unused by dockerd 20.10; the Debian initrd is replaced.
DROP_PATHS = (
    "usr/bin/docker",
    "usr/bin/ctr",
    "usr/bin/dnet",
    "usr/bin/containerd-shim",
    "usr/bin/containerd-shim-runc-v1",
    "var/cache/apt",
    "var/lib/apt/lists",
    "usr/share/zsh",
    "usr/share/bash-completion",
)


@dataclass(frozen=True)
class VmImage:
    kernel: Path
    initramfs: Path
    python: str  # "3.11": the guest's python3, which must run the host venv's pure-Python deps


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:12]


def image_dir() -> Path:
    return vm_layout.CACHE_DIR / f"vm-bookworm-{_key(RECIPE, KEEP_MODULES, DROP_PATHS)}"


def _log(message: str) -> None:
    print(f"lab: {message}", flush=True)


def ensure_image() -> VmImage:
    """The cached kernel + initramfs, built first if the cache lacks this recipe's."""
    out = image_dir()
    meta = out / "image.json"
    if not meta.exists():
        _build(out)
    info = json.loads(meta.read_text())
    return VmImage(kernel=out / "vmlinuz", initramfs=_with_init(out), python=info["python"])


def _with_init(out: Path) -> Path:
    """The cached rootfs with this checkout's ``/init`` appended as a second archive."""
    target = out / f"initramfs-{_key(INIT_SCRIPT)}.cpio"
    if target.exists():
        return target
    for stale in out.glob("initramfs-*.cpio"):
        stale.unlink()
    with tempfile.TemporaryDirectory(prefix="swv-init-") as work:
        (Path(work) / "init").write_text(INIT_SCRIPT)
        (Path(work) / "init").chmod(0o755)
        _pack(Path(work), Path(work) / "init.cpio", ["./init"])
        partial = target.with_suffix(".partial")
        with partial.open("wb") as sink:
            for part in (out / "rootfs.cpio", Path(work) / "init.cpio"):
                with part.open("rb") as source:
                    shutil.copyfileobj(source, sink, 1 << 20)
        partial.rename(target)
    return target


def _build(out: Path) -> None:
    if not shutil.which("cpio"):
        raise LabError("cpio is not installed: run scripts/install.sh (or apt-get install -y cpio)")
    started = time.monotonic()
    _log(f"building the VM node image with mmdebstrap (once, ~2 min; cached in {out})")
    vm_layout.CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="swv-image-", dir=vm_layout.CACHE_DIR) as work:
        root = Path(work) / "root"
        cmd = [*RECIPE, str(root)]
        sources = Path("/etc/apt/sources.list.d/debian.sources")
        if sources.exists():
            cmd.append(str(sources))  # the host's mirror, as for the netns lab's rootfs
        host.run(cmd, step="building the VM rootfs (mmdebstrap)")
        kernels = sorted((root / "boot").glob("vmlinuz-*"))
        if len(kernels) != 1:
            raise LabError(f"expected one kernel in the VM rootfs, found {[k.name for k in kernels]}")
        release = kernels[0].name.removeprefix("vmlinuz-")
        _trim(root, release)
        python = host.run(
            ["chroot", str(root), "python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            step="asking the VM rootfs for its Python version",
        ).strip()
        partial = Path(work) / "image"
        partial.mkdir()
        shutil.copy2(kernels[0], partial / "vmlinuz")
        (root / "boot").joinpath(kernels[0].name).unlink()
        _pack(root, partial / "rootfs.cpio")
        (partial / "image.json").write_text(json.dumps({"kernel": release, "python": python}))
        for stale in vm_layout.CACHE_DIR.glob("vm-bookworm-*"):
            shutil.rmtree(stale, ignore_errors=True)
        partial.rename(out)
    size = (out / "rootfs.cpio").stat().st_size / 2**20
    _log(f"VM image built in {time.monotonic() - started:.0f}s ({size:.0f} MiB initramfs)")


def _trim(root: Path, release: str) -> None:
    modules = root / "usr/lib/modules" / release
    kernel = modules / "kernel"
    wanted = {p for p in _all_modules(modules) if p.startswith(KEEP_MODULES)}
    deps = _module_deps(modules)
    pending = list(wanted)
    while pending:  # the closure: a kept module's dependencies are kept too
        for dep in deps.get(pending.pop(), ()):
            if dep not in wanted:
                wanted.add(dep)
                pending.append(dep)
    for path in list(kernel.rglob("*.ko*")):
        if str(path.relative_to(modules)).removeprefix("kernel/") not in wanted:
            path.unlink()
    host.run(["chroot", str(root), "depmod", release], step="indexing the kept kernel modules")
    for initrd in (root / "boot").glob("initrd.img-*"):
        initrd.unlink()
    for rel in DROP_PATHS:
        target = root / rel
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)


def _all_modules(modules: Path) -> list[str]:
    return [str(p.relative_to(modules / "kernel")) for p in (modules / "kernel").rglob("*.ko*")]


def _module_deps(modules: Path) -> dict[str, list[str]]:
    """modules.dep: ``kernel/a.ko: kernel/b.ko kernel/c.ko``, paths relative to kernel/."""
    deps = {}
    for line in (modules / "modules.dep").read_text().splitlines():
        name, _, rest = line.partition(":")
        deps[name.removeprefix("kernel/")] = [d.removeprefix("kernel/") for d in rest.split()]
    return deps


def _pack(root: Path, out: Path, names: list[str] | None = None) -> None:
    if names is None:
        files = subprocess.run(["find", ".", "-print0"], cwd=root, capture_output=True, check=True).stdout
    else:
        files = b"".join(n.encode() + b"\0" for n in names)
    with out.open("wb") as sink:
        proc = subprocess.run(
            ["cpio", "--null", "--create", "--format=newc", "--quiet"],
            cwd=root,
            input=files,
            stdout=sink,
            stderr=subprocess.PIPE,
            check=False,
        )
    if proc.returncode != 0:
        raise LabError(f"packing the VM initramfs failed: {proc.stderr.decode(errors='replace')[-500:]}")
