#!/usr/bin/env bash
# Runs a bench module (bench.run, bench.chaos) against a broker and a Postgres of its own,
# like scripts/test.sh does for the tests: other ports and data dirs than `make up` and
# `make test`, an empty broker every run, everything stopped on exit.
#   bench/infra.sh run|chaos [args...]
# Ports and home: BENCH_KAFKA_PORT, BENCH_KAFKA_CONTROLLER_PORT, BENCH_PGPORT, BENCH_HOME
# (defaults 29092, 29093, 25433, .local/bench).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export OPENRIDE_HOME="${BENCH_HOME:-$PWD/.local/bench}"
export KAFKA_PORT="${BENCH_KAFKA_PORT:-29092}" KAFKA_CONTROLLER_PORT="${BENCH_KAFKA_CONTROLLER_PORT:-29093}"
export PGPORT="${BENCH_PGPORT:-25433}"
export KAFKA_BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
export DATABASE_URL="postgresql://openride:openride@127.0.0.1:$PGPORT/openride"

module=${1:?usage: bench/infra.sh run|chaos [args...]}
shift

stop_infra() {
  scripts/kafka.sh stop || true
  scripts/postgres.sh stop || true
}
trap stop_infra EXIT

scripts/kafka.sh wipe
scripts/kafka.sh start
scripts/postgres.sh start >/dev/null
.venv/bin/python -m app.topics
.venv/bin/python -m "bench.$module" "$@"
