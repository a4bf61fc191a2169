"""TLS and basic auth for the HTTP listeners, from an optional web config file.

The file follows Prometheus exporter-toolkit's ``--web.config.file`` (the same keys, a
subset of them), so one habit serves every exporter of a site::

    tls_server_config:
      cert_file: /run/secrets/autoscaler.crt
      key_file: /run/secrets/autoscaler.key
      client_auth_type: RequireAndVerifyClientCert   # or NoClientCert (the default)
      client_ca_file: /run/secrets/ca.crt            # needed with RequireAndVerifyClientCert
      min_version: TLS12                             # or TLS13
    basic_auth_users:
      prometheus: $2y$10$...                         # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':')

Without the file, listeners serve plain HTTP to anyone who can reach them. With basic
auth, every path asks for it except those the listener names open (the controller's
/healthz and /readyz, which Docker's HEALTHCHECK calls without secrets and which say only
whether the loop is alive). The file is read once at start: restart to apply a change.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hashlib
import ssl
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path
from typing import Annotated, Literal

import bcrypt
import yaml
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from autoscaler.errors import PermanentError

# A web config is a few lines; anything bigger is the wrong file.
MAX_FILE_BYTES = 64 * 1024
# bcrypt costs ~50-250 ms of CPU per check by design. Checks run in a thread, two at a
# time, so a flood of wrong passwords queues instead of taking every core; a password that
# passed is remembered (by its SHA-256, never in clear) so Prometheus' scrapes cost one check.
_CONCURRENT_CHECKS = 2
_REMEMBERED = 64
_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
# Checked when the user is unknown, so a wrong name takes as long as a wrong password.
_DUMMY_HASH = bcrypt.hashpw(b"not a password", bcrypt.gensalt(rounds=10))


class WebConfigError(PermanentError):
    """The web config file is unreadable or invalid; the message says what and how to fix it."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsServerConfig(_Strict):
    cert_file: Path
    key_file: Path
    client_auth_type: Literal["NoClientCert", "RequireAndVerifyClientCert"] = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: Literal["TLS12", "TLS13"] = "TLS12"


class WebConfig(_Strict):
    tls_server_config: TlsServerConfig | None = None
    basic_auth_users: Annotated[dict[StrictStr, StrictStr], Field(max_length=1000)] = {}


def load_web_config(path: Path) -> WebConfig:
    """The parsed file, with its certificates and hashes checked; raises ``WebConfigError``."""
    where = f"web config {path}"
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise WebConfigError(f"{where}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise WebConfigError(f"{where}: larger than {MAX_FILE_BYTES // 1024} KiB; is it the right file?")
    try:
        raw = yaml.safe_load(data.decode("utf-8")) or {}
    except (UnicodeDecodeError, yaml.YAMLError):
        # No parser message: it would quote the file, which may hold key material.
        raise WebConfigError(f"{where}: not valid YAML (UTF-8)") from None
    try:
        config = WebConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'top level'}: {error['msg']}"
            for error in exc.errors()
        )
        raise WebConfigError(f"{where}: {problems}") from None
    for user, hashed in config.basic_auth_users.items():
        if not hashed.startswith(_BCRYPT_PREFIXES):
            raise WebConfigError(
                f"{where}: basic_auth_users.{user}: not a bcrypt hash (starts with $2y$, $2b$ or $2a$); "
                "make one with: htpasswd -nBC 10 '' | tr -d ':'"
            )
    if config.tls_server_config is not None:
        server_ssl_context(config.tls_server_config, where)  # fail at start, not at the first client
    return config


def server_ssl_context(tls: TlsServerConfig, where: str = "web config") -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3 if tls.min_version == "TLS13" else ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.client_auth_type == "RequireAndVerifyClientCert":
            if tls.client_ca_file is None:
                raise WebConfigError(
                    f"{where}: tls_server_config: RequireAndVerifyClientCert needs client_ca_file"
                )
            context.load_verify_locations(cafile=tls.client_ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise WebConfigError(
            f"{where}: tls_server_config: cannot load the certificate, key or CA: {exc.strerror or exc}"
        ) from None
    return context


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BasicAuth:
    """aiohttp middleware: 401 unless the request carries one of ``users``' passwords."""

    def __init__(
        self, users: dict[str, str], open_paths: Collection[str] = (), realm: str = "swarm-autoscaler"
    ):
        self._users = {name: hashed.encode() for name, hashed in users.items()}
        self._open_paths = frozenset(open_paths)
        self._challenge = f'Basic realm="{realm}", charset="UTF-8"'
        self._checks = asyncio.Semaphore(_CONCURRENT_CHECKS)
        self._passed: OrderedDict[bytes, None] = OrderedDict()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in self._open_paths or await self._allowed(request.headers.get("Authorization", "")):
            return await handler(request)
        return web.Response(
            status=401, text="401 unauthorized\n", headers={"WWW-Authenticate": self._challenge}
        )

    async def _allowed(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        if not sep:
            return False
        key = hashlib.sha256(f"{len(user)}:{user}:{password}".encode()).digest()
        if key in self._passed:
            return True
        hashed = self._users.get(user)
        async with self._checks:
            ok = await asyncio.to_thread(bcrypt.checkpw, password.encode(), hashed or _DUMMY_HASH)
        if ok and hashed is not None:
            self._passed[key] = None
            while len(self._passed) > _REMEMBERED:
                self._passed.popitem(last=False)
            return True
        return False


def secure(app: web.Application, config: WebConfig | None, open_paths: Collection[str] = ()) -> None:
    """Add basic auth to ``app`` when ``config`` names users (TLS is the site's, see ``site_ssl``)."""
    if config is not None and config.basic_auth_users:
        app.middlewares.append(BasicAuth(config.basic_auth_users, open_paths).middleware)


def site_ssl(config: WebConfig | None) -> ssl.SSLContext | None:
    if config is None or config.tls_server_config is None:
        return None
    return server_ssl_context(config.tls_server_config)


def add_web_config_option(parser: argparse.ArgumentParser, *, protects: str, left_open: str) -> None:
    """``--web.config.file`` (exporter-toolkit's spelling) of a program that serves HTTP; the
    handler passes ``args.web_config_file`` to ``load_web_config``."""
    parser.add_argument(
        "--web.config.file",
        "--web-config-file",
        dest="web_config_file",
        type=Path,
        metavar="FILE",
        help=f"TLS and basic auth for {protects}, in Prometheus exporter-toolkit's format "
        f"(tls_server_config, basic_auth_users); {left_open}",
    )
