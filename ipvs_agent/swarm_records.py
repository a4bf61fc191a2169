"""Swarm's own record of this node's load balancers: ``network inspect --verbose`` per network.

Verbose inspect is answered by the local engine from its own libnetwork state, so the
LocalLBIndex values are this node's fwmarks. Needs the Docker socket mounted into the agent.
"""

from __future__ import annotations

from typing import Any

from ipvs_agent.mangle import SwarmNetworkRecord, parse_network_inspect


def docker_network_records(
    base_url: str = "unix:///var/run/docker.sock", timeout: float = 10.0
) -> list[SwarmNetworkRecord]:
    """Verbose inspect of every swarm-scoped network this engine knows."""
    import docker  # the agent's optional dependency; imported late so the controller never needs it

    client = docker.APIClient(base_url=base_url, timeout=timeout)
    try:
        records = []
        for net in client.networks(filters={"scope": "swarm"}):
            doc: dict[str, Any] = client.inspect_network(net["Id"], verbose=True, scope="swarm")
            records.append(parse_network_inspect(doc))
        return records
    finally:
        client.close()
