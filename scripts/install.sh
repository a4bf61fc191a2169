#!/usr/bin/env bash
# Install everything swarm-autoscaler, its lab and its tests need, on Debian 12 as root.
# Idempotent: a second run only checks. Python packages go to .venv/ in the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (it installs Debian packages and the lab needs root)" >&2
  exit 1
fi

# Debian packages: the engine (dockerd, containerd, runc), the lab's tools, Prometheus, and
# for the VM lab (real kernel, IPVS) QEMU and cpio (its initramfs).
DEB_PACKAGES=(docker.io iptables iproute2 busybox-static mmdebstrap prometheus jq curl ca-certificates
              python3 python3-venv python3-pip qemu-system-x86 cpio)
missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install.sh: installing Debian packages: ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Python >= 3.11: the first python3 on PATH that is new enough.
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "install.sh: $PY is $("$PY" --version 2>&1); swarm-autoscaler needs Python >= 3.11" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'
# The lab (swarm-autoscaler lab ...) is its own distribution: tests and the demo need it.
.venv/bin/python -m pip install -q -e ./lab
echo "install.sh: ok ($(.venv/bin/python --version), $(dockerd --version 2>/dev/null | head -1), prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}'))"
