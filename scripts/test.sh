#!/usr/bin/env bash
# Install everything, start what the tests need, run every check and test, clean up.
# This is README's test command and exactly what .ci/run calls. Debian 12, as root.
set -uo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

bash scripts/install.sh || { echo "test.sh: install failed" >&2; exit 1; }
export PATH="$PWD/.venv/bin:$PATH"

failed=()
step() {
  local name=$1; shift
  echo "== $name: $*"
  local t0; t0=$(date +%s)
  if "$@"; then echo "== $name ok ($(( $(date +%s) - t0 )) s)"
  else echo "== $name FAILED ($(( $(date +%s) - t0 )) s)"; failed+=("$name"); fi
}

step ruff        ruff check .
step format      ruff format --check .
step mypy        mypy autoscaler ipvs_agent lab/swarm_lab
step imports     lint-imports
step policies    swarm-autoscaler validate examples/policies/

# The labs: a real 3-node Swarm in network namespaces, Prometheus, the sample app; and the VM
# lab, two QEMU nodes with a real kernel so Swarm's routing mesh (IPVS) runs across nodes
# (the first run builds its image, ~3 min, cached after). Brought up here (not lazily by the first test) so
# their cost shows in the log, and torn down on every exit path so nothing is left behind.
trap 'swarm-autoscaler lab down >/dev/null 2>&1 || true
      swarm-autoscaler lab down --backend vm --force >/dev/null 2>&1 || true' EXIT
step lab         swarm-autoscaler lab up --nodes 3
step vm-lab      swarm-autoscaler lab up --backend vm --nodes 2
step pytest      pytest -ra -p no:cacheprovider

echo "== total $(( $(date +%s) - started )) s"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all checks passed"
