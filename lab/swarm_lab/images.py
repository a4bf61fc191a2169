"""Lab images without a registry: built once on the manager, cached as one bundle, loaded everywhere.

``lab/busybox`` (static busybox), ``lab/python`` (Debian minbase + python3, from a cached
mmdebstrap tarball), and on top of it ``lab/web``, ``lab/loadgen``, ``lab/prometheus``.
The bundle (``docker save`` of all five) is keyed by a hash of its inputs, so a warm
``lab up`` only runs ``docker load`` on each node.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from swarm_lab import daemons, host, layout
from swarm_lab.errors import LabError

ASSETS = layout.ASSETS
BUSYBOX = "lab/busybox"
PYTHON = "lab/python"
WEB = "lab/web"
LOADGEN = "lab/loadgen"
PROMETHEUS = "lab/prometheus"
ALL = (BUSYBOX, PYTHON, WEB, LOADGEN, PROMETHEUS)
IMAGE_CONTEXTS = {WEB: "web", LOADGEN: "loadgen", PROMETHEUS: "prometheus"}  # dirs under ASSETS
BUNDLE_LABEL = "swl.bundle"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def _log(message: str) -> None:
    print(f"lab: {message}", flush=True)


def busybox_rootfs() -> Path:
    """A rootfs tarball of static busybox with RELATIVE applet links (absolute ones break on import)."""
    binary = Path(shutil.which("busybox") or "/bin/busybox")
    out = layout.CACHE_DIR / f"busybox-{binary.stat().st_size}.tar"
    if out.exists():
        return out
    applets = host.run([str(binary), "--list-full"], step="listing busybox applets").split()
    partial = out.with_suffix(".partial")
    with tarfile.open(partial, "w") as tar:
        for directory in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "tmp", "root"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        tar.add(binary, arcname="bin/busybox")
        for applet in applets:
            if applet == "bin/busybox":
                continue
            link = tarfile.TarInfo(applet)
            link.type = tarfile.SYMTYPE
            link.linkname = "../" * applet.count("/") + "bin/busybox"
            tar.addfile(link)
        passwd = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        tar.addfile(info, io.BytesIO(passwd))
    partial.rename(out)
    return out


def python_rootfs() -> Path:
    """Debian bookworm minbase + python3, with the host CA bundle (outbound TLS is re-signed here).

    Docs, man pages and translations are left out (~45 MB of 170): every node loads this
    image, so its size is lab-up time and tmpfs memory. The cache name hashes the recipe.
    """
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    recipe = [
        "mmdebstrap",
        "--variant=minbase",
        "--format=tar",
        "--quiet",
        "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
        "--include=python3,ca-certificates",
        *(f"--dpkgopt=path-exclude=/usr/share/{d}/*" for d in ("doc", "man", "locale", "info")),
        f"--customize-hook=upload {CA_BUNDLE} /etc/ssl/certs/ca-certificates.crt",
        "bookworm",
    ]
    out = (
        layout.CACHE_DIR / f"python-bookworm-{hashlib.sha256(' '.join(recipe).encode()).hexdigest()[:12]}.tar"
    )
    if out.exists():
        return out
    _log(f"building the Python rootfs with mmdebstrap (once, ~30 s; cached in {layout.CACHE_DIR})")
    partial = out.with_suffix(".partial")
    cmd = [*recipe, str(partial)]
    if sources.exists():
        cmd.append(str(sources))  # same mirror as the host's apt
    host.run(cmd, step="building the Python rootfs (mmdebstrap)")
    for stale in layout.CACHE_DIR.glob("python-bookworm*.tar"):
        stale.unlink()
    partial.rename(out)
    return out


def bundle_key() -> str:
    digest = hashlib.sha256()
    prometheus = Path(shutil.which("prometheus") or "/usr/bin/prometheus")
    # Only what goes into images: build contexts, minus the Prometheus config template
    # (a Swarm config, not baked in); other assets (the demo policy...) do not count.
    baked = (
        p
        for context in IMAGE_CONTEXTS.values()
        for p in (ASSETS / context).rglob("*")
        if p.is_file() and p.suffix not in (".tmpl", ".md", ".pyc")
    )
    for path in sorted(baked):
        digest.update(str(path.relative_to(ASSETS)).encode() + path.read_bytes())
    for path in (busybox_rootfs(), python_rootfs(), prometheus):
        stat = path.stat()
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _build_on(node: layout.Node, key: str) -> None:
    docker_cli = ["docker", "-H", node.docker_url]
    host.run([*docker_cli, "import", str(busybox_rootfs()), BUSYBOX], step="importing lab/busybox")
    host.run(
        [*docker_cli, "import", "--change", 'CMD ["python3"]', str(python_rootfs()), PYTHON],
        step="importing lab/python",
    )
    with daemons.client(node, timeout=300) as client:
        for image, asset in IMAGE_CONTEXTS.items():
            with tempfile.TemporaryDirectory(prefix="swl-build-") as context:
                shutil.copytree(ASSETS / asset, context, dirs_exist_ok=True)
                if asset == "prometheus":
                    shutil.copy2(
                        shutil.which("prometheus") or "/usr/bin/prometheus", Path(context) / "prometheus"
                    )
                try:
                    client.images.build(path=context, tag=image, labels={BUNDLE_LABEL: key}, rm=True)
                except Exception as exc:  # docker.errors.BuildError carries the build log
                    log = "".join(str(c.get("stream", "")) for c in getattr(exc, "build_log", []))
                    raise LabError(f"building {image} failed: {exc}\n{log[-2000:]}") from exc


def has_bundle(node: layout.Node, key: str) -> bool:
    with daemons.client(node) as client:
        try:
            labels = client.images.get(PROMETHEUS).labels or {}
            for image in ALL:
                client.images.get(image)
        except Exception:  # image missing (or daemon hiccup): load again
            return False
    return bool(labels.get(BUNDLE_LABEL) == key)


def _load(node: layout.Node, bundle: Path) -> None:
    with bundle.open("rb") as data:
        proc = subprocess.run(
            ["docker", "-H", node.docker_url, "load", "-q"], stdin=data, capture_output=True, check=False
        )
    if proc.returncode != 0:
        raise LabError(f"loading images into {node.name} failed: {proc.stderr.decode(errors='replace')}")


def ensure_images(nodes: list[layout.Node]) -> None:
    """Make every lab image present on every node, building the bundle if the cache lacks it."""
    layout.CACHE_DIR.mkdir(parents=True, exist_ok=True)
    key = bundle_key()
    bundle = layout.CACHE_DIR / f"images-{key}.tar"
    missing = [n for n in nodes if not has_bundle(n, key)]
    if not missing:
        return
    started = time.monotonic()
    if not bundle.exists():
        _log("building lab images on the manager")
        builder = nodes[0]
        _build_on(builder, key)
        for stale in layout.CACHE_DIR.glob("images-*.tar"):
            stale.unlink()
        partial = bundle.with_suffix(".partial")
        host.run(
            ["docker", "-H", builder.docker_url, "save", "-o", str(partial), *ALL], step="saving lab images"
        )
        partial.rename(bundle)
        missing = [n for n in missing if n != builder]
    with ThreadPoolExecutor(max_workers=max(1, len(missing))) as pool:
        list(pool.map(lambda n: _load(n, bundle), missing))
    _log(f"images ready on {len(nodes)} nodes in {time.monotonic() - started:.1f}s")
