#!/usr/bin/env bash
# Render the ByzantineTrainingJob CRD from its one source (runtime/garfield/spec/schema.py, via
# `garfield crd`) into both places that ship it: crds/ (kubectl apply -f crds/) and the Helm
# chart's crds/ folder (installed by `helm install`). tests/helm/test_crd_sync.py fails when either
# copy drifts from the schema, so run this after changing the schema.
#
#   scripts/sync-crds.sh          # rewrite both files
#   scripts/sync-crds.sh --check  # exit 1 (with a diff) if either file is stale; writes nothing
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
TARGETS=("$ROOT/crds/byzantinetrainingjobs.yaml" "$ROOT/helm/garfield/crds/byzantinetrainingjobs.yaml")

rendered="$(mktemp)"
trap 'rm -f "$rendered"' EXIT
PYTHONPATH="$ROOT/runtime${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m garfield crd >"$rendered"

if [[ "${1:-}" == "--check" ]]; then
  status=0
  for target in "${TARGETS[@]}"; do
    if ! diff -u "$target" "$rendered" --label "${target#"$ROOT"/}" --label "garfield crd"; then
      echo "${target#"$ROOT"/} is stale: run scripts/sync-crds.sh" >&2
      status=1
    fi
  done
  exit "$status"
fi

for target in "${TARGETS[@]}"; do
  mkdir -p "$(dirname "$target")"
  cp "$rendered" "$target"
  echo "wrote ${target#"$ROOT"/}"
done
