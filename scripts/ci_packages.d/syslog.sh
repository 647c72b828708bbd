#!/usr/bin/env bash
# rsyslog (omfwd, omelasticsearch) and syslog-ng (network()/syslog()) for tests/service/test_intake_syslog*.py
# and test_intake_bulk*.py; util-linux `logger` comes with bsdutils.
# rsyslog and syslog-ng-core conflict as Debian packages, so neither is installed: each is unpacked
# (apt-get download + dpkg -x) under $SYSLOG_SHIPPERS_DIR, with its libraries installed normally. The tests
# find them there (tests/service/syslog_shippers.py), or on PATH.
set -euo pipefail
SUDO="${SUDO:-}"
DIR="${SYSLOG_SHIPPERS_DIR:-/opt/logllm-syslog}"
$SUDO apt-get install -y --no-install-recommends bsdutils libestr0 libfastjson4 liblognorm5 libcurl4 \
    libivykis0 libnet1 libpcre3 libwrap0 libjson-c5 libglib2.0-0 libcap2 libssl3
work="$(mktemp -d)"
(cd "$work" && apt-get download rsyslog rsyslog-elasticsearch rsyslog-gnutls syslog-ng-core)
$SUDO mkdir -p "$DIR/rsyslog" "$DIR/syslog-ng"
for deb in "$work"/rsyslog*.deb; do $SUDO dpkg -x "$deb" "$DIR/rsyslog"; done
$SUDO dpkg -x "$work"/syslog-ng-core*.deb "$DIR/syslog-ng"
rm -rf "$work"
