"""Controller settings: defaults < settings file < environment < command-line flags.

Environment variables are ``AUTOSCALER_<GROUP>__<FIELD>`` (for example
``AUTOSCALER_LOOP__INTERVAL=10``, ``AUTOSCALER_PROMETHEUS__URL=http://prom:9090``). List
fields take a JSON list or a comma-separated string. The optional settings file, given by
``--config`` or ``AUTOSCALER_CONFIG``, is YAML (``.yaml``/``.yml``, the same groups as
nested mappings) or a ``.env`` file of the same ``AUTOSCALER_*`` variables.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from autoscaler.errors import PermanentError

ENV_PREFIX = "AUTOSCALER_"
CONFIG_ENV = "AUTOSCALER_CONFIG"
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
# 0.0.0.0 because the controller normally runs as a Swarm service scraped by Prometheus over
# the overlay network; use 127.0.0.1:8080 to keep /metrics and /decisions local to the host.
DEFAULT_LISTEN = "0.0.0.0:8080"

_config_file: ContextVar[Path | None] = ContextVar("autoscaler_config_file", default=None)


class SettingsError(PermanentError, ValueError):
    """Settings are invalid; the message names each bad field, where it came from and how to fix it.

    Permanent: the same settings fail the same way. Still a ValueError, as before.
    """


def _split_list(value: object) -> object:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DockerSettings(_Group):
    host: str = Field(
        default_factory=lambda: os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST,
        description="Docker Engine API of a Swarm manager: unix:///path/docker.sock or tcp://host:2375. "
        "Defaults to $DOCKER_HOST, else the local socket.",
    )


class PrometheusSettings(_Group):
    url: str | None = Field(
        default=None,
        description="Base URL of the Prometheus HTTP API (http://host:9090). Needed by policies with "
        "prometheus metrics; without it their readings are missing and nothing scales down.",
    )
    timeout: float = Field(default=5.0, gt=0, le=120, description="Seconds per query before giving up.")


class IpvsSettings(_Group):
    agents: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Metrics URLs of the per-node IPVS agents (http://10.0.0.5:9105/metrics), "
        "JSON list or comma-separated.",
    )
    dns_name: str | None = Field(
        default=None,
        description="DNS name resolving to every agent (tasks.ipvs-agent in a Swarm overlay); "
        "used with agent_port instead of a fixed agents list.",
    )
    agent_port: int = Field(default=9105, ge=1, le=65535, description="Port of the agents found by dns_name.")

    _split = field_validator("agents", mode="before")(_split_list)


class PolicySettings(_Group):
    paths: Annotated[list[Path], NoDecode] = Field(
        default_factory=lambda: [Path("policies")],
        description="Policy files or directories (*.yaml, not recursive), JSON list or comma-separated.",
    )

    _split = field_validator("paths", mode="before")(_split_list)
    labels: bool = Field(
        default=True,
        description="Read policies from service labels (autoscaler.enable=true) as well as from files.",
    )
    label_selector: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="Only services that also carry all these labels may have a policy from labels: "
        "KEY=VALUE pairs, comma-separated (e.g. com.docker.stack.namespace=shop), or a JSON object. "
        "For several controllers on one swarm; empty: every service.",
    )

    @field_validator("label_selector", mode="before")
    @classmethod
    def _pairs(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            value = ",".join(str(v) for v in value)
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("{"):
            return json.loads(text)
        pairs: dict[str, str] = {}
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            key, equals, wanted = part.partition("=")
            if not equals or not key.strip():
                raise ValueError(f"{part!r} is not KEY=VALUE (e.g. com.docker.stack.namespace=shop)")
            pairs[key.strip()] = wanted.strip()
        return pairs


class LoopSettings(_Group):
    interval: float = Field(default=5.0, gt=0, le=3600, description="Seconds between reconcile passes.")
    debounce: float = Field(
        default=0.5, ge=0, le=60, description="Seconds to gather a burst of Swarm events into one early pass."
    )
    service_timeout: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="Seconds one service's Docker calls may take in a pass; past that it is recorded as "
        "failed and the pass moves on, so one stuck service cannot hold up the others' next pass.",
    )
    dry_run: bool = Field(default=False, description="Decide and log, never scale.")
    once: bool = Field(default=False, description="One pass, then exit (non-zero if any service failed).")
    liveness_passes: int = Field(
        default=3,
        ge=1,
        le=1000,
        description="/healthz fails when no pass completed for this many intervals (at least 10 s): "
        "a loop stuck on a hung Docker daemon is then replaced by Swarm's HEALTHCHECK.",
    )
    shutdown_grace: float = Field(
        default=5.0,
        gt=0,
        le=120,
        description="Seconds everything may take after SIGTERM (the in-flight pass, the lease release, "
        "closing the clients); what is still running then is abandoned and the exit status is 1. "
        "Keep it below the service's stop_grace_period (Docker's default: 10 s).",
    )


class LeaseSettings(_Group):
    service: str = Field(
        default="",
        description="The controller's own Swarm service; with several replicas, the one holding a lease "
        "in this service's labels scales and the others stand by. Empty: no lease, this process always acts.",
    )
    seconds: float = Field(
        default=15.0,
        ge=3,
        le=300,
        description="Lease length: a dead leader is replaced within about this long.",
    )


class HttpSettings(_Group):
    listen: str = Field(
        default=DEFAULT_LISTEN,
        description="host:port for /metrics, /healthz, /readyz and /decisions; empty to disable.",
    )
    web_config_file: Path | None = Field(
        default=None,
        description="Web config file (Prometheus exporter-toolkit format): TLS and basic auth for the "
        "listener; see docs/limits.md. Unset: plain HTTP, no auth.",
    )

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        if value == "":
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"expected host:port such as 127.0.0.1:8080, got {value!r}")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class LogSettings(_Group):
    format: Literal["text", "json"] = Field(
        default="text", description="text for people, json (one object per line) for log shippers."
    )
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Minimum level.")

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        nested_model_default_partial_update=True,
    )

    docker: DockerSettings = Field(default_factory=DockerSettings, description="The Swarm to scale.")
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings, description="Metric source.")
    ipvs: IpvsSettings = Field(default_factory=IpvsSettings, description="IPVS connection-counter source.")
    policies: PolicySettings = Field(default_factory=PolicySettings, description="Where policies live.")
    loop: LoopSettings = Field(default_factory=LoopSettings, description="Reconcile loop timing and mode.")
    lease: LeaseSettings = Field(default_factory=LeaseSettings, description="High availability.")
    http: HttpSettings = Field(default_factory=HttpSettings, description="Observability HTTP server.")
    log: LogSettings = Field(default_factory=LogSettings, description="Logging.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = _config_file.get()
        if path is None:
            return (init_settings, env_settings)
        file_source: PydanticBaseSettingsSource
        if path.suffix in (".yaml", ".yml"):
            file_source = YamlConfigSettingsSource(settings_cls, yaml_file=path)
        else:
            file_source = DotEnvSettingsSource(settings_cls, env_file=path)
        return (init_settings, env_settings, file_source)


def load_settings(config: Path | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Settings from ``config`` (else $AUTOSCALER_CONFIG), the environment and ``overrides``.

    ``overrides`` holds command-line values as nested groups (``{"loop": {"interval": 2}}``);
    they win over everything. Raises ``SettingsError`` naming every bad field.
    """
    if config is None and os.environ.get(CONFIG_ENV):
        config = Path(os.environ[CONFIG_ENV])
    if config is not None and not config.is_file():
        raise SettingsError(f"settings file {config}: no such file (check --config or ${CONFIG_ENV})")
    token = _config_file.set(config)
    try:
        return Settings(**dict(overrides or {}))
    except ValidationError as exc:
        raise SettingsError(_explain(exc, config)) from None
    except (ValueError, OSError) as exc:  # unreadable file, YAML syntax, JSON in an env var
        where = f"settings file {config}" if config is not None else "environment"
        raise SettingsError(f"{where}: {exc}") from None
    finally:
        _config_file.reset(token)


def _explain(exc: ValidationError, config: Path | None) -> str:
    origins = "command line, " + ENV_PREFIX + "* environment" + (f" or {config}" if config else "")
    lines = [f"invalid settings (from {origins}):"]
    for error in exc.errors():
        dotted = ".".join(str(part) for part in error["loc"])
        env = ENV_PREFIX + "__".join(str(part).upper() for part in error["loc"])
        lines.append(f"  {dotted} (env {env}): {error['msg']}; got {error.get('input')!r}")
    return "\n".join(lines)
