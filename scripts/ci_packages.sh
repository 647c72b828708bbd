#!/usr/bin/env bash
# Debian binaries the integration tests run (.ci/run calls this; as root, or through sudo when there is one).
# Tests that need one skip without it on a developer's machine, but fail under CI=true.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi
$SUDO apt-get update
# delivery tests: a real Alertmanager (test_delivery_alertmanager.py), headless Chromium + driver (test_delivery_ui.py)
$SUDO apt-get install -y --no-install-recommends prometheus-alertmanager chromium chromium-driver
