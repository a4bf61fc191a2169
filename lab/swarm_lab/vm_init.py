"""The VM node's ``/init``: PID 1 of a guest booted with its whole rootfs as the initramfs.

Kept in its own module because it is part of the image (its text is in the cache key) and is
read more often than the build code. Everything the host decides per node comes on the
kernel command line as ``swl.NAME=VALUE``: ``ip`` (ADDR/PREFIX), ``gw``, ``hostname``,
``src`` (the checkout, shared read-only over 9p at the same path as on the host) and
``pythonpath`` (where the agent's code and dependencies are in that checkout).
"""

from __future__ import annotations

INIT_SCRIPT = r"""#!/bin/sh
# PID 1 of a swarm-autoscaler lab VM node (written by lab/swarm_lab/vm_init.py).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
say() { echo "swl-init: $*" >/dev/console; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /run /tmp /var/log
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs -o mode=0755 tmpfs /run
ln -sfn /run /var/run
# cgroup v1, one hierarchy per controller, as dockerd 20.10 with cgroupfs expects.
mount -t tmpfs -o mode=0755 cgroup /sys/fs/cgroup
for c in cpuset cpu,cpuacct blkio memory devices freezer net_cls,net_prio perf_event hugetlb pids; do
  mkdir -p "/sys/fs/cgroup/$c" && mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c"
done
for arg in $(cat /proc/cmdline); do
  case "$arg" in swl.*=*) name=${arg%%=*}; export "swl_${name#swl.}=${arg#*=}" ;; esac
done
addr=${swl_ip%/*}
# The routing mesh and overlay networking: IPVS, VXLAN, bridges, iptables (the rest
# autoloads); 9p for the checkout; virtio-serial for the guest agent.
modprobe -a virtio_pci virtio_net virtio_console virtio-rng 9pnet_virtio 9p overlay \
  br_netfilter veth vxlan ip_vs ip_vs_rr nf_conntrack ip_tables iptable_filter iptable_nat \
  iptable_mangle xt_mark xt_ipvs || say "some modules failed to load"
# iptables-legacy, not Debian's default nft backend: every iptables-nft call reads the whole
# ruleset back, and dockerd makes dozens per task; under TCG that held tasks in Preparing
# for minutes ("xtables contention detected" in dockerd's log).
for tool in iptables ip6tables; do
  update-alternatives --quiet --set "$tool" "/usr/sbin/$tool-legacy"
done
hostname "$swl_hostname"
ip link set lo up
ip addr add "$swl_ip" dev eth0
ip link set eth0 up
ip route add default via "$swl_gw"
say "network $swl_ip up"
for port in /sys/class/virtio-ports/*; do
  if [ "$(cat "$port/name" 2>/dev/null)" = org.qemu.guest_agent.0 ]; then
    qemu-ga --daemonize --method=virtio-serial --path="/dev/${port##*/}" --statedir=/run
  fi
done
mkdir -p "$swl_src"
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 src "$swl_src" || say "9p mount failed"
mkdir -p /etc/docker
cat >/etc/docker/daemon.json <<EOF
{"metrics-addr": "$addr:9323", "experimental": true, "log-opts": {"max-size": "5m", "max-file": "1"}}
EOF
# DOCKER_RAMDISK: runc cannot pivot_root out of an initramfs. PREFER_OFFLINE: no registry.
# A script, so `lab node-up` can start dockerd again after `node-down --mode stop`.
mkdir -p /usr/local/sbin
printf '%s\n' '#!/bin/sh' 'pidof dockerd >/dev/null && exit 0' \
  "DOCKER_RAMDISK=true DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 setsid dockerd \
-H unix:///var/run/docker.sock -H tcp://$addr:2375 </dev/null >>/var/log/dockerd.log 2>&1 &" \
  >/usr/local/sbin/swl-start-dockerd
chmod 755 /usr/local/sbin/swl-start-dockerd
swl-start-dockerd
say "dockerd started"
# The project's IPVS agent, from the shared checkout; restarted if it exits. A read costs
# ~0.5 s of a TCG vCPU (Docker inspects, iptables-save forks): reads are shared for 2 s.
(
  cd /
  while :; do
    PYTHONPATH="$swl_pythonpath" python3 -m autoscaler ipvs-agent --listen "$addr:9105" \
      --node-name "$swl_hostname" --min-interval 2 >>/var/log/ipvs-agent.log 2>&1
    sleep 2
  done
) &
say "ready for the host"
# tini as PID 1 reaps the orphans containers leave behind; the loop keeps the node up
# whatever happens to dockerd (node-down --mode stop).
exec tini -s -- sh -c 'while :; do sleep 3600; done'
"""
