#!/usr/bin/env bash
# Runs a command against a broker and a Postgres of its own (other ports, other data
# dirs), so it never disturbs a system started with `make up`; both are stopped after.
# The broker starts empty every time. Used by `make test`, `make bench-sink` and bench/infra.sh.
#   TEST_KAFKA_PORT, TEST_KAFKA_CONTROLLER_PORT, TEST_PGPORT, OPENRIDE_TEST_HOME override the defaults.
#   KAFKA_BROKERS=3 starts a cluster instead (scripts/kafka.sh), nodes 2.. on
#   TEST_KAFKA_EXTRA_PORTS and up, and every topic gets 3 replicas (TOPIC_REPLICATION_FACTOR).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export OPENRIDE_HOME="${OPENRIDE_TEST_HOME:-$PWD/.local/test}"
export KAFKA_PORT="${TEST_KAFKA_PORT:-19092}" KAFKA_CONTROLLER_PORT="${TEST_KAFKA_CONTROLLER_PORT:-19093}"
export KAFKA_BROKERS="${KAFKA_BROKERS:-1}" KAFKA_EXTRA_PORTS="${TEST_KAFKA_EXTRA_PORTS:-19094}"
export PGPORT="${TEST_PGPORT:-15433}"
KAFKA_BOOTSTRAP="$(scripts/kafka.sh bootstrap)"
export KAFKA_BOOTSTRAP
export DATABASE_URL="postgresql://openride:openride@127.0.0.1:$PGPORT/openride"
export ENVIRONMENT="${ENVIRONMENT:-development}"  # tests and benches sign tokens with the development key
if ((KAFKA_BROKERS > 1)); then
  export TOPIC_REPLICATION_FACTOR="${TOPIC_REPLICATION_FACTOR:-$((KAFKA_BROKERS < 3 ? KAFKA_BROKERS : 3))}"
fi

stop_infra() {
  scripts/kafka.sh stop || true
  scripts/postgres.sh stop || true
}
trap stop_infra EXIT

scripts/kafka.sh wipe
scripts/kafka.sh start
scripts/postgres.sh start >/dev/null
.venv/bin/python -m tools.create_topics
"$@"
