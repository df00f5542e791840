#!/usr/bin/env bash
# Everything the test suite needs beyond the Python packages: the real Kubernetes control plane and
# test node (built once into ~/.cache/garfield-test-cluster, seconds when cached), the project's
# image built from its Dockerfile (keyed by its inputs: seconds when unchanged, docs/image.md) and
# checkov in its own virtualenv (its pinned dependencies clash with the project's). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-cluster.sh build
bash scripts/build-image.sh build
bash scripts/install-checkov.sh
