#!/usr/bin/env bash
# A private single-node swarm for bench_pass_scaling.py at 10,000 services.
#
#   bash bench/private_engine.sh up     # dockerd in netns s10k, swarm init, lab/busybox loaded
#   bash bench/private_engine.sh down   # stop it and remove everything it made
#
# Its own dockerd (data and exec roots under /tmp/s10k, cgroups under /s10k) in its own
# network namespace on a veth, so 10,000 services never touch the labs' engines or the
# host's. The socket is unix:///tmp/s10k/run/docker.sock. lab/busybox comes from the netns
# lab's cached rootfs (`swarm-autoscaler lab up` builds it once).
set -euo pipefail

ROOT=/tmp/s10k
NS=s10k
SOCK="$ROOT/run/docker.sock"
ROOTFS_GLOB=/var/cache/swarm-autoscaler-lab/busybox-*.tar

up() {
    if [ -S "$SOCK" ] && docker -H "unix://$SOCK" info >/dev/null 2>&1; then
        echo "already up: unix://$SOCK"
        return
    fi
    local rootfs
    rootfs=$(ls $ROOTFS_GLOB 2>/dev/null | head -1) || true
    [ -n "$rootfs" ] || { echo "no busybox rootfs in /var/cache/swarm-autoscaler-lab: run 'swarm-autoscaler lab up' once" >&2; exit 1; }
    mkdir -p "$ROOT/data" "$ROOT/exec" "$ROOT/run"
    ip netns add "$NS" 2>/dev/null || true
    if ! ip link show s10kh >/dev/null 2>&1; then
        ip link add s10kh type veth peer name s10kn
        ip link set s10kn netns "$NS"
        ip addr add 10.78.0.1/24 dev s10kh
        ip link set s10kh up
        ip netns exec "$NS" ip addr add 10.78.0.2/24 dev s10kn
        ip netns exec "$NS" ip link set s10kn up
        ip netns exec "$NS" ip link set lo up
    fi
    # nsenter, not `ip netns exec`: the latter remounts /sys and hides the cgroup tree.
    # Without DOCKER_SERVICE_PREFER_OFFLINE_IMAGE Swarm asks a registry for every task's image.
    DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 nsenter --net="/run/netns/$NS" \
        dockerd --data-root "$ROOT/data" --exec-root "$ROOT/exec" \
        --pidfile "$ROOT/run/dockerd.pid" -H "unix://$SOCK" \
        --exec-opt=native.cgroupdriver=cgroupfs --cgroup-parent=/s10k \
        >"$ROOT/dockerd.log" 2>&1 &
    for _ in $(seq 120); do
        docker -H "unix://$SOCK" info >/dev/null 2>&1 && break
        sleep 0.5  # polling the daemon's socket until it answers, with a deadline
    done
    docker -H "unix://$SOCK" info >/dev/null
    if [ "$(docker -H "unix://$SOCK" info -f '{{.Swarm.LocalNodeState}}')" != active ]; then
        docker -H "unix://$SOCK" swarm init --advertise-addr 10.78.0.2 >/dev/null
    fi
    docker -H "unix://$SOCK" image inspect lab/busybox >/dev/null 2>&1 \
        || docker -H "unix://$SOCK" import "$rootfs" lab/busybox >/dev/null
    echo "up: unix://$SOCK"
}

down() {
    if [ -f "$ROOT/run/dockerd.pid" ]; then
        local pid
        pid=$(cat "$ROOT/run/dockerd.pid")  # read once: dockerd removes it as it exits
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 120); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5  # waiting for dockerd to exit, with a deadline
        done
    fi
    pkill -f "containerd-shim.*$ROOT" 2>/dev/null || true
    { grep " $ROOT" /proc/mounts || true; } | awk '{print $2}' | sort -r | xargs -r umount -l
    ip netns del "$NS" 2>/dev/null || true
    ip link del s10kh 2>/dev/null || true
    rm -rf "$ROOT"
    echo "down"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
