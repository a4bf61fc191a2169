"""``swarm-autoscaler explain SERVICE``: why a running controller did what it did.

Reads ``/decisions`` from the controller's HTTP server and prints one service's last
decision: replica counts, each metric's value against its target, the limits that
clamped the number and the reason, in words.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any, TextIO

from autoscaler.cli import EXIT_INPUT, EXIT_OK

DEFAULT_URL = "http://127.0.0.1:8080"

EXAMPLES = """\
examples:
  swarm-autoscaler explain web
  swarm-autoscaler explain web --url http://10.0.0.5:8080
  swarm-autoscaler explain web --json | jq .decision.metrics
"""


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "explain",
        help="explain a running controller's last decision for a service",
        description="Fetch /decisions from a running 'swarm-autoscaler run' and explain one service.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("service", metavar="SERVICE", help="the Swarm service name")
    parser.add_argument(
        "--url", default=DEFAULT_URL, help=f"the controller's HTTP address (default {DEFAULT_URL})"
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the controller")
    parser.add_argument("--json", action="store_true", help="print the raw record as JSON")
    parser.set_defaults(handler=handle)


def fetch_decisions(url: str, timeout: float) -> dict[str, Any]:
    """GET {url}/decisions; raises ``OSError`` or ``ValueError`` with a message for people."""
    endpoint = url.rstrip("/") + "/decisions"
    try:
        with urllib.request.urlopen(endpoint, timeout=timeout) as response:
            body: dict[str, Any] = json.load(response)
    except urllib.error.URLError as exc:
        raise OSError(f"cannot reach the controller at {endpoint}: {exc.reason}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{endpoint} did not return JSON ({exc}); is --url a swarm-autoscaler?") from None
    return body


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _when(at: float | None) -> str:
    if at is None:
        return "never"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def render(record: dict[str, Any], document: dict[str, Any], out: TextIO) -> None:
    w = out.write
    source = " from its labels" if record.get("policy_source") == "labels" else ""
    w(f"service   {record['service']}  (policy {record['policy']}{source}, id {record['service_id'][:12]})\n")
    w(f"at        {_when(record['at'])}{'  [dry run]' if document.get('dry_run') else ''}\n")
    w(f"outcome   {record['outcome']}\n")
    paused = record.get("paused")
    if paused:
        who = paused.get("by") or "someone (not recorded: set by hand)"
        when = paused.get("at") or f"{_when(paused.get('since'))} or earlier (first seen by this controller)"
        held = (
            f", at {paused['replicas']} replicas (pausedReplicas)"
            if paused.get("replicas") is not None
            else ""
        )
        w(f"paused    by {who}, at {when}{held}; resume: swarm-autoscaler resume {record['service']}\n")
    decision = record.get("decision")
    replicas = f"current {_number(record['current'])}, running {record['running']}"
    if decision is not None:
        replicas += f", recommended {decision['recommendation']}, desired {decision['desired']}"
    w(f"replicas  {replicas}  (min {record['min_replicas']}, max {record['max_replicas']})\n")
    if decision is not None:
        if decision["metrics"]:
            w("metrics\n")
            w(f"  {'name':<20} {'value':>10} {'target':>16} {'ratio':>7} {'wants':>6}  reason\n")
            for m in decision["metrics"]:
                target = (
                    f"{_number(m['target'])} {'/replica' if m['target_kind'] == 'AverageValue' else 'total'}"
                )
                ratio = "-" if m["ratio"] is None else f"{m['ratio']:.2f}"
                w(
                    f"  {m['name']:<20} {_number(m['value']):>10} {target:>16} {ratio:>7}"
                    f" {_number(m['desired']):>6}  {m['reason']}\n"
                )
        for f in decision.get("forecasts", []):
            if f["value"] is None:
                w(f"forecast  {f['metric']}: not used, {f['note']}\n")
            else:
                w(f"forecast  {f['metric']} {_number(f['value'])} in {f['horizon']:g} s ({f['method']})\n")
        w(f"limits    {', '.join(decision['limits']) or 'none'}\n")
        if decision["panic"]:
            w("panic     yes: scaling up without stabilization or rate limits\n")
    w(f"reason    {record['reason']}\n")
    if record.get("error"):
        w(f"error     {record['error']}\n")
    for problem in document.get("policy_problems", []):
        w(f"policy problem at {problem} (the message is in the controller's log, or run validate)\n")
    for problem in document.get("label_problems", {}).get(record["service"], []):
        w(f"label problem: {problem}\n")
    for note in document.get("shadowed", []):
        if note.startswith(f"service {record['service']!r} "):
            w(f"note      {note}\n")


def handle(args: argparse.Namespace) -> int:
    try:
        document = fetch_decisions(args.url, args.timeout)
    except (OSError, ValueError) as exc:
        print(f"swarm-autoscaler explain: {exc}", file=sys.stderr)
        return EXIT_INPUT
    services: dict[str, Any] = document.get("services", {})
    record = services.get(args.service)
    if record is None:
        known = ", ".join(sorted(services)) or "none yet"
        print(
            f"swarm-autoscaler explain: no decision for service {args.service!r}; "
            f"services governed by a policy: {known}",
            file=sys.stderr,
        )
        notes = [*document.get("conflicts", []), *document.get("idle_policies", [])]
        notes += document.get("label_problems", {}).get(args.service, [])
        for note in notes:
            print(f"  {note}", file=sys.stderr)
        return EXIT_INPUT
    if args.json:
        json.dump(record, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        render(record, document, sys.stdout)
    return EXIT_OK
