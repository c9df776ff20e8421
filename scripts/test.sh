#!/usr/bin/env bash
# Runs the whole suite (or the pytest arguments given) against a broker and a Postgres of
# its own; see scripts/isolated.sh for the ports and data dirs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec scripts/isolated.sh .venv/bin/python -m pytest "$@"
