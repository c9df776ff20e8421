#!/usr/bin/env bash
# Runs a command against a broker and a Postgres of its own (other ports, other data
# dirs), so it never disturbs a system started with `make up`; both are stopped after.
# The broker starts empty every time. Used by `make test`, `make bench-sink` and bench/infra.sh.
#   TEST_KAFKA_PORT, TEST_KAFKA_CONTROLLER_PORT, TEST_PGPORT, OPENRIDE_TEST_HOME override the defaults.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export OPENRIDE_HOME="${OPENRIDE_TEST_HOME:-$PWD/.local/test}"
export KAFKA_PORT="${TEST_KAFKA_PORT:-19092}" KAFKA_CONTROLLER_PORT="${TEST_KAFKA_CONTROLLER_PORT:-19093}"
export PGPORT="${TEST_PGPORT:-15433}"
export KAFKA_BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
export DATABASE_URL="postgresql://openride:openride@127.0.0.1:$PGPORT/openride"
export ENVIRONMENT="${ENVIRONMENT:-development}"  # tests and benches sign tokens with the development key

stop_infra() {
  scripts/kafka.sh stop || true
  scripts/postgres.sh stop || true
}
trap stop_infra EXIT

scripts/kafka.sh wipe
scripts/kafka.sh start
scripts/postgres.sh start >/dev/null
.venv/bin/python -m app.topics
"$@"
