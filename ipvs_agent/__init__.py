"""Swarm's IPVS load-balancer counters: read per node, mapped to services, served to the controller.

``procfs`` and ``netlink`` read the kernel's tables, ``mangle`` maps fwmarks to Swarm services,
``netns`` enters Swarm's load-balancer namespaces, ``agent`` exports the result as Prometheus
metrics and ``source`` is the controller's MetricSource that scrapes the agents. See docs/ipvs.md.
"""
