"""``swarm-autoscaler run``: the live controller.

Wires settings to the Swarm target, the metric sources, the policy store, the reconcile
loop and the HTTP server, then runs until SIGTERM/SIGINT (or one pass with ``--once``).
``serve`` takes its collaborators as arguments so component tests drive the real wiring
with in-memory fakes.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from autoscaler.cli import EXIT_INPUT, EXIT_OK, add_docker_host
from autoscaler.cli.shutdown import Shutdown
from autoscaler.observability.http import ObservabilityServer
from autoscaler.observability.logs import configure_logging
from autoscaler.observability.metrics import ControllerMetrics
from autoscaler.observability.web_config import WebConfigError, add_web_config_option, load_web_config
from autoscaler.reconciler.loop import Clock, Reconciler, Sleep
from autoscaler.reconciler.ports import (
    LoadBalancerReader,
    MetricSource,
    PolicyCatalog,
    RunningFailover,
    RunningLease,
    Target,
)
from autoscaler.reconciler.status import ReconcilerStatus
from autoscaler.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from autoscaler.targets.docker_api import DockerApi

log = logging.getLogger("autoscaler.run")

EXAMPLES = """\
examples:
  # every policy in ./policies, against the local daemon, scraping Prometheus
  swarm-autoscaler run --policies examples/policies/ --prometheus-url http://127.0.0.1:9090

  # see what it would do without touching anything, one pass, JSON logs
  swarm-autoscaler run --policies examples/policies/web.yaml --dry-run --once --log-format json

  # a lab node's daemon, metrics served on loopback only
  swarm-autoscaler run --docker-host unix:///run/lab/node1/docker.sock --listen 127.0.0.1:8080

Every option can also be set by environment (AUTOSCALER_LOOP__INTERVAL=10,
AUTOSCALER_PROMETHEUS__URL=...) or a settings file (--config settings.yaml); flags win.
SIGHUP re-reads policy files; SIGTERM/SIGINT finish in-flight scale calls and exit.
"""


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="run the autoscaler controller",
        description="Reconcile every policy's services every --interval seconds and on Swarm events.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, help="settings file, YAML or .env (else $AUTOSCALER_CONFIG)")
    parser.add_argument(
        "--policies",
        type=Path,
        nargs="+",
        metavar="PATH",
        help="policy files or directories (default: policies)",
    )
    parser.add_argument(
        "--label-selector",
        action="append",
        metavar="KEY=VALUE",
        help="only services that also carry this label get a policy from their labels (repeatable)",
    )
    add_docker_host(parser)
    parser.add_argument("--prometheus-url", help="Prometheus base URL, e.g. http://127.0.0.1:9090")
    parser.add_argument(
        "--ipvs-agent", action="append", metavar="URL", help="an IPVS agent metrics URL (repeatable)"
    )
    parser.add_argument(
        "--interval", type=float, metavar="SECONDS", help="seconds between passes (default 5)"
    )
    parser.add_argument(
        "--listen", metavar="HOST:PORT", help="HTTP address (default 0.0.0.0:8080; '' disables)"
    )
    add_web_config_option(parser, protects="the listener", left_open="/healthz and /readyz stay open")
    parser.add_argument("--dry-run", action="store_true", default=None, help="decide and log, never scale")
    parser.add_argument(
        "--once", action="store_true", default=None, help="one pass then exit; exit 1 if any service failed"
    )
    parser.add_argument("--log-format", choices=["text", "json"], help="log line format (default text)")
    parser.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="default INFO: changes, holds and failures; DEBUG adds every unchanged decision",
    )
    parser.set_defaults(handler=handle)


def overrides_from(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Only the flags actually given, as nested settings groups (so env and file fill the rest)."""
    given: dict[str, tuple[str, str]] = {
        "docker_host": ("docker", "host"),
        "prometheus_url": ("prometheus", "url"),
        "ipvs_agent": ("ipvs", "agents"),
        "policies": ("policies", "paths"),
        "label_selector": ("policies", "label_selector"),
        "interval": ("loop", "interval"),
        "dry_run": ("loop", "dry_run"),
        "once": ("loop", "once"),
        "listen": ("http", "listen"),
        "web_config_file": ("http", "web_config_file"),
        "log_format": ("log", "format"),
        "log_level": ("log", "level"),
    }
    overrides: dict[str, dict[str, Any]] = {}
    for attribute, (group, name) in given.items():
        value = getattr(args, attribute, None)
        if value is not None:
            overrides.setdefault(group, {})[name] = value
    return overrides


def handle(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config, overrides_from(args))
    except SettingsError as exc:
        print(f"swarm-autoscaler run: {exc}", file=sys.stderr)
        return EXIT_INPUT
    configure_logging(settings.log.format, settings.log.level)
    shutdown = Shutdown(settings.loop.shutdown_grace)
    code = asyncio.run(serve(settings, shutdown=shutdown))
    return shutdown.leave_stuck_threads(code)


# The real collaborators are imported where they are made, so `--help` and `explain` work
# even where aiodocker or aiohttp are absent.


def _real_docker(settings: Settings) -> DockerApi:
    """The one Docker adapter every Swarm read and write of the controller goes through."""
    from autoscaler.targets.docker_api import DockerApi

    return DockerApi(settings.docker.host)


def _real_sources(settings: Settings) -> dict[str, MetricSource]:
    from autoscaler.sources.ipvs_agents import IpvsSource
    from autoscaler.sources.prometheus import PrometheusSource

    sources: dict[str, MetricSource] = {}
    if settings.prometheus.url:
        sources["prometheus"] = PrometheusSource(settings.prometheus.url, timeout=settings.prometheus.timeout)
    if settings.ipvs.agents or settings.ipvs.dns_name:
        ipvs = settings.ipvs
        sources["ipvs"] = IpvsSource(ipvs.agents, ipvs.dns_name, port=ipvs.agent_port)
    return sources


def _real_catalog(settings: Settings) -> PolicyCatalog:
    from autoscaler.policy_sources.loader import PolicyStore

    return PolicyStore(settings.policies.paths)


def _real_target(docker: DockerApi) -> Target:
    from autoscaler.targets.swarm import SwarmTarget

    return SwarmTarget(docker)


def _real_lease(settings: Settings, docker: DockerApi, registry: CollectorRegistry) -> RunningLease:
    from autoscaler.reconciler.lease import Lease
    from autoscaler.targets.service_labels import ServiceLabelStore

    return Lease(
        ServiceLabelStore(docker, settings.lease.service),
        lease_seconds=settings.lease.seconds,
        registry=registry,  # autoscaler_lease_leader, for the no-leader / two-leaders alerts
    )


def _real_failover(
    settings: Settings,
    docker: DockerApi,
    target: Target,
    registry: CollectorRegistry,
    lease: RunningLease | None,
    load_balancer: LoadBalancerReader | None,
) -> RunningFailover:
    from autoscaler.reconciler.failover_monitor import FailoverMonitor
    from autoscaler.targets.swarm_nodes import SwarmNodes

    def may_act() -> bool:
        # onTimeout actions change services, like scaling: never in dry-run, and only on the
        # replica holding the lease, or two controllers would force-update the same service.
        return not settings.loop.dry_run and (lease is None or lease.is_leader())

    return FailoverMonitor(
        nodes=SwarmNodes(docker),
        target=target,
        registry=registry,
        interval=settings.loop.interval,
        may_act=may_act,
        load_balancer=load_balancer,
    )


def _load_balancer(sources: Mapping[str, MetricSource]) -> LoadBalancerReader | None:
    """The ``ipvs`` source (the agents) doubles as the failover monitor's view of IPVS routing."""
    from autoscaler.sources.ipvs_agents import IpvsSource

    source = sources.get("ipvs")
    return source if isinstance(source, IpvsSource) else None


async def _close(thing: object) -> None:
    close = getattr(thing, "close", None)
    if close is None:
        return
    try:
        result = close()
        if inspect.isawaitable(result):
            await result
    except Exception as exc:  # closing must not hide the exit status
        log.warning("closing %s failed: %s", type(thing).__name__, exc)


async def serve(
    settings: Settings,
    *,
    target: Target | None = None,
    sources: Mapping[str, MetricSource] | None = None,
    catalog: PolicyCatalog | None = None,
    registry: CollectorRegistry | None = None,
    clock: Clock | None = None,
    sleep: Sleep | None = None,
    failover: RunningFailover | None = None,
    lease: RunningLease | None = None,
    started: asyncio.Future[tuple[Reconciler, ObservabilityServer | None]] | None = None,
    shutdown: Shutdown | None = None,
) -> int:
    """Run the controller until stopped; the exit code. ``started`` resolves once it serves.

    Collaborators left out are the real ones built from ``settings`` (the failover monitor
    only when the target is real too: it reads the same Swarm's nodes and tasks). After a
    stop signal everything ends within ``loop.shutdown_grace``; the exit status is 1 when
    something had to be abandoned at that deadline (see ``shutdown.py``).
    """
    shutdown = shutdown or Shutdown(settings.loop.shutdown_grace)
    registry = registry or CollectorRegistry()
    docker: DockerApi | None = None
    if (lease is None and settings.lease.service and not settings.loop.once) or target is None:
        docker = _real_docker(settings)
    if lease is None and settings.lease.service and not settings.loop.once:
        assert docker is not None
        lease = _real_lease(settings, docker, registry)
    sources = _real_sources(settings) if sources is None else sources
    if target is None:
        assert docker is not None
        target = _real_target(docker)
        if failover is None and not settings.loop.once:
            failover = _real_failover(settings, docker, target, registry, lease, _load_balancer(sources))
    catalog = catalog or _real_catalog(settings)
    timing: dict[str, Any] = {k: v for k, v in (("clock", clock), ("sleep", sleep)) if v is not None}
    reconciler = Reconciler(
        target=target,
        sources=sources,
        policies=catalog,
        metrics=ControllerMetrics(registry),
        interval=settings.loop.interval,
        dry_run=settings.loop.dry_run,
        debounce=settings.loop.debounce,
        service_timeout=settings.loop.service_timeout,
        failover=failover,
        leadership=lease,
        labels=settings.policies.labels,
        label_selector=settings.policies.label_selector,
        freeze_after_first_pass=True,
        **timing,
    )
    try:
        if settings.loop.once:
            code = await _once(reconciler, started)
        else:
            code = await _forever(reconciler, settings, registry, failover, lease, started, shutdown)
    finally:
        # docker: the one client the target, the lease and the failover monitor share.
        for thing in [target, *sources.values(), docker]:
            if thing is not None:
                await shutdown.bounded(f"closing {type(thing).__name__}", _close(thing))
    if shutdown.abandoned:
        log.warning("stopped; abandoned: %s", "; ".join(shutdown.abandoned), extra={"event": "stopped"})
        return code if code != EXIT_OK else EXIT_INPUT
    log.info("stopped", extra={"event": "stopped"})
    return code


async def _once(
    reconciler: Reconciler, started: asyncio.Future[tuple[Reconciler, ObservabilityServer | None]] | None
) -> int:
    if started is not None:
        started.set_result((reconciler, None))
    result = await reconciler.run_once()
    problems = reconciler.policies.problems
    if result.target_error:
        log.error("pass failed: cannot reach Docker: %s", result.target_error)
    if result.failed:
        log.error("pass failed for: %s", ", ".join(result.failed))
    if problems:
        log.error("%d policy problem(s); fix the files named above", len(problems))
    return EXIT_OK if result.ok and not problems else EXIT_INPUT


async def _forever(
    reconciler: Reconciler,
    settings: Settings,
    registry: CollectorRegistry,
    failover: RunningFailover | None,
    lease: RunningLease | None,
    started: asyncio.Future[tuple[Reconciler, ObservabilityServer | None]] | None,
    shutdown: Shutdown,
) -> int:
    loop = asyncio.get_running_loop()
    server: ObservabilityServer | None = None
    if settings.http.listen:
        status = ReconcilerStatus(reconciler, liveness_passes=settings.loop.liveness_passes)
        web_config = None
        if settings.http.web_config_file is not None:
            try:
                web_config = load_web_config(settings.http.web_config_file)
            except WebConfigError as exc:
                log.error("%s", exc, extra={"event": "web_config_error"})
                return EXIT_INPUT
        server = ObservabilityServer(
            registry, status, host=settings.http.host, port=settings.http.port, web_config=web_config
        )
        await server.start()
        log.info("serving /metrics /healthz /readyz /decisions on port %d", server.port)
    run_task = asyncio.create_task(reconciler.run(), name="autoscaler-reconciler")
    lease_task = asyncio.create_task(lease.run(), name="autoscaler-lease") if lease is not None else None
    failover_task = None
    if failover is not None:
        failover_task = asyncio.create_task(failover.run(), name="autoscaler-failover")

    def on_stop_signal(signame: str) -> None:
        if reconciler.stopping:
            return
        log.info("%s: finishing in-flight work, then exiting", signame, extra={"event": "shutdown"})
        shutdown.begin()
        reconciler.stop()
        if failover is not None:
            failover.stop()
        # A pass stuck on a dead daemon must not keep the process alive past the grace period.
        loop.call_later(shutdown.for_the_pass(), run_task.cancel)

    handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_stop_signal, sig.name)
    loop.add_signal_handler(signal.SIGHUP, reconciler.request_reload)
    if started is not None:
        started.set_result((reconciler, server))
    try:
        await run_task
    except asyncio.CancelledError:
        if not reconciler.stopping:
            raise
        shutdown.abandon("the in-flight pass")
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        if failover is not None and failover_task is not None:
            failover.stop()
            _, pending = await asyncio.wait({failover_task}, timeout=shutdown.remaining())
            for task in pending:
                task.cancel()
                shutdown.abandon("the failover monitor")
            await asyncio.gather(failover_task, return_exceptions=True)
        if lease is not None and lease_task is not None:
            # Only now that no scale call is in flight: hand the lease to a standby at once.
            lease_task.cancel()
            await asyncio.gather(lease_task, return_exceptions=True)
            await shutdown.bounded("releasing the lease (standbys will wait it out)", lease.release())
        if server is not None:
            await shutdown.bounded("stopping the HTTP listener", server.stop())
    return EXIT_OK
