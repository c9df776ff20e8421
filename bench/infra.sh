#!/usr/bin/env bash
# Runs a bench module (bench.run, bench.chaos, bench.rebuild) against a broker and a Postgres of its own
# (scripts/isolated.sh): other ports and data dirs than `make up` and `make test`, an
# empty broker every run, everything stopped on exit.
#   bench/infra.sh run|chaos|rebuild [args...]
#   bench/infra.sh chaos --brokers 3 [args...]   a three-node cluster (nodes 2 and 3 on
#                                                BENCH_KAFKA_EXTRA_PORTS and the 3 ports after it)
# Ports and home: BENCH_KAFKA_PORT, BENCH_KAFKA_CONTROLLER_PORT, BENCH_KAFKA_EXTRA_PORTS,
# BENCH_PGPORT, BENCH_HOME (defaults 29092, 29093, 29102, 25433, .local/bench). For
# `run --rtt-ms`, the delay proxy (bench/delayproxy) listens on BENCH_KAFKA_PORT+3 for the
# broker's second listener, BENCH_KAFKA_PORT+2 (override: BENCH_KAFKA_PROXY_PORT,
# BENCH_KAFKA_DELAYED_PORT), and on a free port for Postgres.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

module=${1:?usage: bench/infra.sh run|chaos|rebuild [args...]}
shift
kafka_port="${BENCH_KAFKA_PORT:-29092}" pg_port="${BENCH_PGPORT:-25433}"
export DELAY_PROXY_KAFKA_PORT="${BENCH_KAFKA_PROXY_PORT:-$((kafka_port + 3))}"
export KAFKA_DELAYED_PORT="${BENCH_KAFKA_DELAYED_PORT:-$((kafka_port + 2))}"
export KAFKA_DELAYED_ADVERTISED_PORT="$DELAY_PROXY_KAFKA_PORT"
brokers=1
args=("$@")
for i in "${!args[@]}"; do
  if [[ "${args[$i]}" == --brokers ]]; then
    brokers=${args[$((i + 1))]:?--brokers needs a number}
  elif [[ "${args[$i]}" == --brokers=* ]]; then
    brokers=${args[$i]#--brokers=}
  fi
done
OPENRIDE_TEST_HOME="${BENCH_HOME:-$PWD/.local/bench}" TEST_KAFKA_PORT="$kafka_port" \
  TEST_KAFKA_CONTROLLER_PORT="${BENCH_KAFKA_CONTROLLER_PORT:-29093}" TEST_PGPORT="$pg_port" \
  TEST_KAFKA_EXTRA_PORTS="${BENCH_KAFKA_EXTRA_PORTS:-$((kafka_port + 10))}" KAFKA_BROKERS="$brokers" \
  exec scripts/isolated.sh .venv/bin/python -m "bench.$module" "$@"
