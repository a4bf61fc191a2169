#!/bin/sh
# Deploy (or update) the swarm-autoscaler stack with the values in charts/values.env.
#
#   charts/deploy.sh [--values FILE]... [extra `docker stack deploy` options]
#
# charts/values.env is read first, then each --values FILE in order: a later file wins over
# an earlier one (an override file lists only what it changes, e.g. values-netns-lab.env).
# Variables already set in the environment win over every file. Talks to the Swarm manager
# that $DOCKER_HOST (or the local socket) points at.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
nl='
'
files="$here/values.env"
while [ "${1:-}" = "--values" ]; do
    [ $# -ge 2 ] || { echo "deploy.sh: --values needs a file name" >&2; exit 2; }
    files="$2$nl$files"  # newest first: see below
    shift 2
done

# Newest file first, each setting only what is not set yet: so the environment wins over
# every file, and a later --values file over an earlier one and over values.env.
old_ifs="$IFS"; IFS="$nl"
for values in $files; do
    IFS="$old_ifs"
    [ -f "$values" ] || { echo "deploy.sh: values file $values not found" >&2; exit 2; }
    while IFS= read -r line; do
        case "$line" in ''|'#'*) continue ;; esac
        name="${line%%=*}"
        eval "[ -n \"\${$name+set}\" ]" || export "$line"
    done < "$values"
done
IFS="$old_ifs"

# Swarm configs cannot change: name each after its content so an edit makes a new one.
hash() { sha256sum "$1" | cut -c1-12; }
export HASH_PROMETHEUS_CONFIG="$(hash "$here/prometheus/prometheus.yml")"
export HASH_PROMETHEUS_ALERTS="$(hash "$here/prometheus/alerts.yml")"
export HASH_EXAMPLE_WEB_APP="$(hash "$here/../lab/swarm_lab/assets/web/app.py")"
export HASH_EXAMPLE_LOAD_APP="$(hash "$here/../lab/swarm_lab/assets/loadgen/loadgen.py")"

cd "$here"
exec docker stack deploy --prune --resolve-image "$RESOLVE_IMAGE" -c stack.yml "$@" "$STACK_NAME"
