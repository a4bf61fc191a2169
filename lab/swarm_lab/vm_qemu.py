"""One VM node: its tap on the lab bridge and its QEMU process.

Nested KVM is probed once per host boot (a short boot that must print the kernel banner);
where it does not run a guest, TCG (``thread=multi``) is used. The guest's root is its
initramfs, so a node that is killed and booted again comes back as a new, empty engine.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from swarm_lab import host, vm_layout
from swarm_lab.errors import LabError
from swarm_lab.vm_image import VmImage
from swarm_lab.vm_layout import VmNode

REPO = Path(__file__).resolve().parents[2]
BOOT_BANNER = "Linux version"
KVM_PROBE_SECONDS = 20.0


def ensure_tap(node: VmNode) -> None:
    if not host.link_exists(node.tap):
        host.run(["ip", "tuntap", "add", "dev", node.tap, "mode", "tap"], step=f"creating tap {node.tap}")
        host.run(["ip", "link", "set", node.tap, "master", vm_layout.BRIDGE], step="attaching the tap")
    host.run(["ip", "link", "set", node.tap, "up"], step=f"bringing {node.tap} up")


def remove_tap(node: VmNode) -> None:
    if host.link_exists(node.tap):
        host.run(["ip", "link", "del", node.tap], step=f"deleting tap {node.tap}")


def set_link(node: VmNode, up: bool) -> None:
    state = "up" if up else "down"
    host.run(["ip", "link", "set", node.tap, state], step=f"setting {node.tap} {state}")


def link_up(node: VmNode) -> bool:
    out = host.run(["ip", "-o", "link", "show", "dev", node.tap], step="reading link", check=False)
    return ",UP" in out.split(">")[0] or "<UP" in out


def qemu_pid(node: VmNode) -> int | None:
    pid = host.read_pidfile(node.pidfile)
    return pid if pid is not None and host.is_alive(pid) else None


@dataclass(frozen=True)
class GuestSource:
    """The checkout a guest reads the project's code from (9p, read-only, at the same path) and
    where the agent's code and dependencies are inside it. Every node of a lab reads the same
    one: the checkout that ran ``lab up``, also for a node booted again later from another."""

    checkout: str
    pythonpath: str

    @staticmethod
    def here() -> GuestSource:
        """This process's checkout and venv."""
        inside = [p for p in sys.path if p.startswith(str(REPO) + "/") or p == str(REPO)]
        for extra in (REPO / "lab", REPO):
            if extra.is_dir() and str(extra) not in inside:
                inside.insert(0, str(extra))
        if not any("site-packages" in p for p in inside):
            raise LabError(
                f"the Python environment running the lab ({sys.prefix}) is not inside the checkout "
                f"{REPO}: the VM reads the agent's dependencies from the checkout's .venv "
                "(scripts/install.sh makes it); run the lab from that venv"
            )
        return GuestSource(str(REPO), ":".join(inside))

    @staticmethod
    def of_running(node: VmNode) -> GuestSource | None:
        """What ``node``'s running QEMU was booted with (None: not running)."""
        pid = qemu_pid(node)
        if pid is None:
            return None
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            return None
        words = dict(w.split("=", 1) for a in argv for w in a.split() if w.startswith("swl."))
        if "swl.src" not in words or "swl.pythonpath" not in words:
            return None
        return GuestSource(words["swl.src"], words["swl.pythonpath"])


def _command(node: VmNode, image: VmImage, accel: str, source: GuestSource) -> list[str]:
    cmdline = " ".join(
        [
            "console=ttyS0",
            "panic=-1",
            "quiet" if accel == "tcg" else "",
            f"swl.ip={node.ip}/{vm_layout.PREFIX_LEN}",
            f"swl.gw={vm_layout.BRIDGE_IP}",
            f"swl.hostname={node.hostname}",
            f"swl.src={source.checkout}",
            f"swl.pythonpath={source.pythonpath}",
        ]
    )
    machine = (
        ["-accel", "tcg,thread=multi,tb-size=256"] if accel == "tcg" else ["-accel", "kvm", "-cpu", "host"]
    )
    return [
        "qemu-system-x86_64",
        "-name",
        node.hostname,
        *machine,
        "-smp",
        str(vm_layout.VCPUS),
        "-m",
        str(vm_layout.MEMORY_MIB),
        "-nodefaults",
        "-no-user-config",
        "-no-reboot",
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        f"file:{node.console_log}",
        "-kernel",
        str(image.kernel),
        "-initrd",
        str(image.initramfs),
        "-append",
        cmdline,
        "-netdev",
        f"tap,id=n0,ifname={node.tap},script=no,downscript=no",
        "-device",
        f"virtio-net-pci,netdev=n0,mac={node.mac}",
        "-virtfs",
        f"local,path={source.checkout},mount_tag=src,security_model=none,readonly=on",
        "-chardev",
        f"socket,id=qga,path={node.guest_agent_socket},server=on,wait=off",
        "-device",
        "virtio-serial-pci",
        "-device",
        "virtserialport,chardev=qga,name=org.qemu.guest_agent.0",
        "-device",
        "virtio-rng-pci",
        "-pidfile",
        str(node.pidfile),
    ]


def start(node: VmNode, image: VmImage, accel: str, source: GuestSource) -> None:
    """Boot the node's VM unless it runs (returns once QEMU has started, not the guest)."""
    if qemu_pid(node) is not None:
        return
    node.run_dir.mkdir(parents=True, exist_ok=True)
    node.pidfile.unlink(missing_ok=True)
    node.guest_agent_socket.unlink(missing_ok=True)
    with (node.run_dir / "qemu.log").open("ab") as log:
        subprocess.Popen(
            _command(node, image, accel, source),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + 10.0
    while qemu_pid(node) is None:
        if time.monotonic() > deadline:
            raise LabError(f"QEMU for node {node.index} did not start: {_tail(node.run_dir / 'qemu.log')}")
        time.sleep(0.05)


def stop(node: VmNode) -> None:
    pid = qemu_pid(node)
    if pid is not None and host.kill_and_wait([pid], signal.SIGKILL, timeout=15.0):
        raise LabError(f"QEMU of node {node.index} (pid {pid}) survived SIGKILL")
    node.pidfile.unlink(missing_ok=True)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"(no {path.name})"


def console_tail(node: VmNode, lines: int = 20) -> str:
    return _tail(node.console_log, lines)


def choose_accel(image: VmImage) -> str:
    """ "kvm" if a probe boot under KVM prints the kernel banner in time, else "tcg" (cached per boot)."""
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    cached = vm_layout.CACHE_DIR / "vm-accel"
    if cached.exists() and cached.read_text().startswith(boot_id + " "):
        return cached.read_text().split()[1]
    accel = "kvm" if Path("/dev/kvm").exists() and _kvm_boots(image) else "tcg"
    cached.write_text(f"{boot_id} {accel}\n")
    return accel


def _kvm_boots(image: VmImage) -> bool:
    probe = vm_layout.RUN_DIR / "kvm-probe"
    probe.mkdir(parents=True, exist_ok=True)
    console = probe / "console.log"
    console.unlink(missing_ok=True)
    cmd = [
        "qemu-system-x86_64",
        "-accel",
        "kvm",
        "-cpu",
        "host",
        "-m",
        "256",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-serial",
        f"file:{console}",
        "-kernel",
        str(image.kernel),
        "-append",
        "console=ttyS0 panic=-1",
        "-no-reboot",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + KVM_PROBE_SECONDS
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if console.exists() and BOOT_BANNER in console.read_text(errors="replace"):
                return True
            time.sleep(0.2)
        return False
    finally:
        proc.kill()
        proc.wait()
