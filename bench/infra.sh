#!/usr/bin/env bash
# Runs a bench module (bench.run, bench.chaos, bench.rebuild) against a broker and a Postgres of its own
# (scripts/isolated.sh): other ports and data dirs than `make up` and `make test`, an
# empty broker every run, everything stopped on exit.
#   bench/infra.sh run|chaos|rebuild [args...]
# Ports and home: BENCH_KAFKA_PORT, BENCH_KAFKA_CONTROLLER_PORT, BENCH_PGPORT, BENCH_HOME
# (defaults 29092, 29093, 25433, .local/bench).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

module=${1:?usage: bench/infra.sh run|chaos|rebuild [args...]}
shift
OPENRIDE_TEST_HOME="${BENCH_HOME:-$PWD/.local/bench}" TEST_KAFKA_PORT="${BENCH_KAFKA_PORT:-29092}" \
  TEST_KAFKA_CONTROLLER_PORT="${BENCH_KAFKA_CONTROLLER_PORT:-29093}" TEST_PGPORT="${BENCH_PGPORT:-25433}" \
  exec scripts/isolated.sh .venv/bin/python -m "bench.$module" "$@"
