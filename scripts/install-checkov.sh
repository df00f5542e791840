#!/usr/bin/env bash
# Install checkov (the IaC scanner the chart and Dockerfile tests run) into its own virtualenv.
#
# checkov pins dozens of heavy dependencies (boto3, networkx, openai, ...) that clash with the
# project's own; it therefore lives in a private virtualenv under a git-ignored cache folder, where
# tests/helm/test_checkov.py finds it. Idempotent: a second run with the same version does nothing.
#
#   scripts/install-checkov.sh            # install (or confirm) the pinned version
#   GARFIELD_CHECKOV_HOME=/some/dir ...    # choose another location
set -euo pipefail

CHECKOV_VERSION="3.3.30"
HOME_DIR="${GARFIELD_CHECKOV_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/garfield-checkov}"
VENV="$HOME_DIR/venv"
PYTHON="${PYTHON:-python3}"

if [[ -x "$VENV/bin/checkov" ]] && [[ "$("$VENV/bin/checkov" --version 2>/dev/null)" == "$CHECKOV_VERSION" ]]; then
  echo "checkov $CHECKOV_VERSION already installed at $VENV/bin/checkov"
  exit 0
fi

mkdir -p "$HOME_DIR"
"$PYTHON" -m venv --clear "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "checkov==$CHECKOV_VERSION"
echo "checkov $("$VENV/bin/checkov" --version) installed at $VENV/bin/checkov"
