"""swarm-autoscaler: a reconciling autoscaler for Docker Swarm services."""

__version__ = "0.1.0"
