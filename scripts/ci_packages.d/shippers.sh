#!/usr/bin/env bash
# The shippers of tests/service/test_shippers_*.py: syslog-ng's http() destination (Debian syslog-ng-core and
# syslog-ng-mod-http) and the npm libraries of tests/shippers/node (winston-loki, pino-loki, the OpenTelemetry JS
# SDK with its OTLP/HTTP log exporter; Node.js and npm are in the image).
# syslog-ng-core conflicts with rsyslog as a Debian package (scripts/ci_packages.d/syslog.sh unpacks both), so it
# is unpacked here too (apt-get download + dpkg -x) under $HTTP_SHIPPERS_DIR, with its libraries installed
# normally; tests/service/shippers.py finds it there, or on PATH.
set -euo pipefail
SUDO="${SUDO:-}"
DIR="${HTTP_SHIPPERS_DIR:-/opt/logllm-shippers}"
$SUDO apt-get install -y --no-install-recommends libcurl4 libivykis0 libnet1 libpcre3 libwrap0 libjson-c5 \
    libglib2.0-0 libcap2 libssl3
work="$(mktemp -d)"
(cd "$work" && apt-get download syslog-ng-core syslog-ng-mod-http)
$SUDO mkdir -p "$DIR/syslog-ng"
for deb in "$work"/syslog-ng*.deb; do $SUDO dpkg -x "$deb" "$DIR/syslog-ng"; done
rm -rf "$work"
root="$(cd "$(dirname "$0")/../.." && pwd)"
command -v npm >/dev/null || { echo "shippers.sh: npm (Node.js 20) is not installed" >&2; exit 1; }
(cd "$root/tests/shippers/node" && npm ci --no-audit --no-fund)
