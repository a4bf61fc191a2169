#!/usr/bin/env bash
# The main job, on a fresh Debian 12 machine as root: install what is needed, bring up a
# local 3-node Swarm with Prometheus and a sample web service, run the autoscaler against
# it, drive a traffic spike, and print the decisions it took. Then remove the lab
# (pass --keep to leave it running and explore: swarm-autoscaler lab status).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/swarm-autoscaler lab demo "$@"
