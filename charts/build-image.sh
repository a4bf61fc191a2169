#!/bin/sh
# Build the swarm-autoscaler image and load it into every node that must run it.
#
#   charts/build-image.sh [--tag TAG] [--base IMAGE] [--offline] [--load-to DOCKER_HOST]...
#
# --base     base image with python3.11 (default: the Dockerfile's python:3.11.10-slim-bookworm)
# --offline  download the pinned wheels here first (host pip), so the build fetches nothing
# --load-to  `docker save | docker load` the image into another daemon (a Swarm node with no
#            registry); repeat per node. Building and loading use $DOCKER_HOST as usual.
# Prints the image ID and size. Legacy builder (DOCKER_BUILDKIT=0): works on dockerd 20.10.
set -eu

tag=swarm-autoscaler:0.1.0
base=""
offline=""
load_to=""
while [ $# -gt 0 ]; do
    case "$1" in
        --tag) tag="$2"; shift 2 ;;
        --base) base="$2"; shift 2 ;;
        --offline) offline=1; shift ;;
        --load-to) load_to="$load_to $2"; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "build-image.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

repo="$(cd "$(dirname "$0")/.." && pwd)"
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
# A clean copy: no wheels or caches from a previous build leak into the image.
mkdir -p "$context/charts"
cp -r "$repo/Dockerfile" "$repo/.dockerignore" "$repo/pyproject.toml" "$repo/autoscaler" "$repo/ipvs_agent" "$context/"
cp -r "$repo/charts/image" "$context/charts/image"
[ -f "$repo/README.md" ] && cp "$repo/README.md" "$context/"

if [ -n "$offline" ]; then
    # Wheels for the image's platform, whatever the host runs; exact versions from constraints.
    # Cached per constraints file, so only the first offline build asks the package index.
    stamp="$(sha256sum "$repo/charts/image/constraints.txt" "$repo/pyproject.toml" | sha256sum | cut -c1-16)"
    wheels="${XDG_CACHE_HOME:-$HOME/.cache}/swarm-autoscaler/wheels-$stamp"
    # The runtime requirements' names, with the agent extra the image installs (versions come
    # from the constraints file); computed first so a failure stops the script instead of
    # downloading too little.
    requirements="$(python3 -c 'import re, sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
deps = project["dependencies"] + project["optional-dependencies"]["agent"]
print(" ".join(re.match(r"[A-Za-z0-9._-]+", d).group(0) for d in deps))' "$repo/pyproject.toml")"
    if [ ! -d "$wheels" ]; then
        # shellcheck disable=SC2086  # one word per requirement
        python3 -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
            --implementation cp --python-version 3.11 --platform manylinux2014_x86_64 \
            --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
            --constraint "$repo/charts/image/constraints.txt" --dest "$wheels.partial" \
            pip setuptools wheel $requirements
        mv "$wheels.partial" "$wheels"
    fi
    cp -r "$wheels" "$context/charts/image/wheels"
fi

set -- --tag "$tag"
[ -n "$base" ] && set -- "$@" --build-arg "BASE_IMAGE=$base"
DOCKER_BUILDKIT=0 docker build --quiet "$@" "$context" >/dev/null
for node in $load_to; do
    docker save "$tag" | docker -H "$node" load --quiet >/dev/null
done
docker image inspect --format '{{.Id}} {{.Size}}' "$tag"
