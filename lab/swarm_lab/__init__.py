"""The local lab: a real multi-node Docker Swarm in network namespaces, Prometheus and a sample app.

Public API (also behind ``swarm-autoscaler lab ...``): ``up``, ``down``, ``status``, ``info``,
``is_up``, ``node_down``, ``node_up``, ``set_load``, ``deploy_sample``, ``create_service``,
``scrape_labels``. See docs/lab.md.
"""

from swarm_lab.errors import LabError
from swarm_lab.lab import LabInfo, down, info, is_up, node_down, node_up, status, up
from swarm_lab.swarm import create_service, deploy_sample, scrape_labels, set_load

__all__ = [
    "LabError",
    "LabInfo",
    "create_service",
    "deploy_sample",
    "down",
    "info",
    "is_up",
    "node_down",
    "node_up",
    "scrape_labels",
    "set_load",
    "status",
    "up",
]
