#!/usr/bin/env bash
# Everything the test suite needs beyond the Python packages: the real Kubernetes control plane
# (built once into ~/.cache/garfield-test-cluster, seconds when cached) and checkov in its own
# virtualenv (its pinned dependencies clash with the project's). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-cluster.sh build
bash scripts/install-checkov.sh
