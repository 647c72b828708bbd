#!/usr/bin/env bash
# Debian binaries the integration tests run (.ci/run calls this; as root, or through sudo when there is one).
# Tests that need one skip without it on a developer's machine, but fail under CI=true.
#   kubectl: tests/test_deploy.py renders deploy/kubernetes with `kubectl kustomize`
#   prometheus-alertmanager: tests/service/test_delivery_alertmanager.py posts alerts to a real Alertmanager
#   chromium, chromium-driver: tests/service/test_delivery_ui.py drives the web page in headless Chromium
# Each further group of test programs (shippers, the container engine, ...) has its own script in
# scripts/ci_packages.d/, run here in name order, with SUDO set.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi
export SUDO
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends kubectl prometheus-alertmanager chromium chromium-driver
for script in scripts/ci_packages.d/*.sh; do
    [ -e "$script" ] || continue
    echo "ci_packages: $script"
    bash "$script"
done
