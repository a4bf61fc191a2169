#!/bin/sh
# Deploy (or update) the swarm-autoscaler stack with the values in charts/values.env.
#
#   charts/deploy.sh [--values FILE] [extra `docker stack deploy` options]
#
# Variables already set in the environment win over the values file. Talks to the Swarm
# manager that $DOCKER_HOST (or the local socket) points at.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
values="$here/values.env"
if [ "${1:-}" = "--values" ]; then values="$2"; shift 2; fi
[ -f "$values" ] || { echo "deploy.sh: values file $values not found" >&2; exit 2; }

# Only set what the environment does not already set.
while IFS= read -r line; do
    case "$line" in ''|'#'*) continue ;; esac
    name="${line%%=*}"
    eval "[ -n \"\${$name+set}\" ]" || export "$line"
done < "$values"

# Swarm configs cannot change: name each after its content so an edit makes a new one.
hash() { sha256sum "$1" | cut -c1-12; }
export HASH_PROMETHEUS_CONFIG="$(hash "$here/prometheus/prometheus.yml")"
export HASH_PROMETHEUS_ALERTS="$(hash "$here/prometheus/alerts.yml")"
export HASH_EXAMPLE_WEB_APP="$(hash "$here/../lab/swarm_lab/assets/web/app.py")"
export HASH_EXAMPLE_LOAD_APP="$(hash "$here/../lab/swarm_lab/assets/loadgen/loadgen.py")"

cd "$here"
exec docker stack deploy --prune --resolve-image "$RESOLVE_IMAGE" -c stack.yml "$@" "$STACK_NAME"
