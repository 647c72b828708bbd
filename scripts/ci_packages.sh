#!/usr/bin/env bash
# Debian packages the tests need beyond Python (.ci/run calls this as root before the tests):
#   kubectl: tests/test_deploy.py renders deploy/kubernetes with `kubectl kustomize`.
set -euo pipefail
apt-get update
apt-get install -y --no-install-recommends kubectl
