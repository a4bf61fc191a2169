# swarm-autoscaler: one image for the controller (`run`, the default) and the per-node
# IPVS agent (`ipvs-agent`). Build:  docker build -t swarm-autoscaler:0.1.0 .
# Without a registry or internet (the lab):  charts/build-image.sh --base lab/python --offline
#
# Works with the legacy builder (DOCKER_BUILDKIT=0): no RUN --mount, no heredocs.

# Any Debian-like image with python3.11 at the same path in both stages. The default is
# pinned by version tag; pin by digest (python:3.11.10-slim-bookworm@sha256:...) in CI.
ARG BASE_IMAGE=python:3.11.10-slim-bookworm

FROM ${BASE_IMAGE} AS build
WORKDIR /src
# The lab (`swarm-autoscaler lab`, local test swarms) is its own distribution in lab/ and is
# not copied in: `swarm-autoscaler lab` in the image says how to install it. The agent extra
# brings the docker SDK the IPVS agent reads its node's engine with.
# Versions are exact (charts/image/constraints.txt). With --offline, build-image.sh also puts
# a wheelhouse in charts/image/wheels/ and nothing is fetched from the network.
COPY charts/image/ /image/
COPY pyproject.toml README.m[d] ./
COPY autoscaler ./autoscaler
COPY ipvs_agent ./ipvs_agent
RUN set -eu; \
    test -f README.md || echo "# swarm-autoscaler" > README.md; \
    if ls /image/wheels/pip-*.whl >/dev/null 2>&1; then \
        python3 -m venv --without-pip /venv; \
        pip_wheel="$(ls /image/wheels/pip-*.whl)"; \
        /venv/bin/python "$pip_wheel/pip" install --quiet --no-index "$pip_wheel"; \
        set -- --no-index --find-links /image/wheels; \
    else \
        python3 -m venv /venv; \
        set --; \
    fi; \
    /venv/bin/pip install --quiet --no-cache-dir --disable-pip-version-check "$@" \
        --constraint /image/constraints.txt '.[agent]'; \
    /venv/bin/pip uninstall --quiet --yes pip setuptools wheel 2>/dev/null || true; \
    find /venv -name '__pycache__' -prune -o -name '*.pyc' -print | xargs -r rm -f; \
    find /venv \( -name '*.c' -o -name '*.h' -o -name '*.pyx' -o -name '*.pxd' -o -name '*.pyi' \) -delete; \
    /venv/bin/python -m compileall -q /venv/lib

FROM ${BASE_IMAGE}
# No root needed to read metrics or serve HTTP. Scaling needs the Docker socket, which is
# root-equivalent: the stack runs the controller as root by default, or as this user with
# the socket's group added (see docs/deploy.md, "Docker socket access"). The IPVS agent
# reads other network namespaces and needs root with CAP_NET_ADMIN.
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent autoscaler
COPY --from=build /venv /venv
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AUTOSCALER_POLICIES__PATHS=/etc/autoscaler/policies \
    HEALTHCHECK_PORT=8080
WORKDIR /etc/autoscaler
USER 10001:10001
EXPOSE 8080
# Swarm marks a task running only once healthy and replaces it when unhealthy. The agent
# serves /healthz too: set HEALTHCHECK_PORT to its port in its service. A raw socket and
# `python3 -I -S` keep the probe to a few ms of CPU: on a loaded node an urllib probe
# (site + http.client + ssl imports) timed out and got healthy replicas killed. With TLS in
# the web config file set HEALTHCHECK_TLS=1: only then is ssl imported (the probe talks to
# its own loopback, so the certificate is not checked; client certificates cannot be required).
HEALTHCHECK --interval=10s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python3", "-I", "-S", "-c", "import os, socket; s = socket.create_connection(('127.0.0.1', int(os.environ['HEALTHCHECK_PORT'])), 8); s = __import__('ssl')._create_unverified_context().wrap_socket(s) if os.environ.get('HEALTHCHECK_TLS') else s; s.sendall(b'GET /healthz HTTP/1.0\\r\\n\\r\\n'); assert s.recv(12).split()[1] == b'200'"]
ENTRYPOINT ["swarm-autoscaler"]
CMD ["run"]
