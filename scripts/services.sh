#!/usr/bin/env bash
# The project's own processes: the faust worker, the Postgres sink and the gateway.
#   start  in the background (pid files in $RUN_DIR, logs in $LOG_DIR)
#   stop   SIGTERM, then SIGKILL after a grace period; idempotent
#   run    start, follow the logs, and stop everything (infra too) on Ctrl-C
set -euo pipefail
LOG_TAG=services
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PY="$REPO_ROOT/.venv/bin/python"
# `make run`/`make up` run on a developer's machine: the development JWT key is accepted.
export ENVIRONMENT="${ENVIRONMENT:-development}"
GATEWAY_HOST="${GATEWAY_HOST:-127.0.0.1}"
GATEWAY_PORT="${GATEWAY_PORT:-8000}"
# Gateway processes (uvicorn workers), each with a reply partition of its own, their
# metrics summed through a shared directory. Sizing: docs/operations.md, "Gateway".
GATEWAY_WORKERS="${GATEWAY_WORKERS:-2}"
export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-$RUN_DIR/gateway-metrics}"
# Static group membership: a worker killed and started again takes its partitions straight
# back, instead of the group waiting out the dead one's session (about 28 s without it).
export WORKER_INSTANCE_ID="${WORKER_INSTANCE_ID:-worker-$(hostname)}"
SERVICES=(worker sink gateway)

command_of() {
  case $1 in
    worker) echo "$PY -m app.worker worker -l info" ;;
    sink) echo "$PY -m sinks.main" ;;
    gateway) echo "$PY -m uvicorn gateway.main:create_app --factory --http gateway.server:HttpProtocol --host $GATEWAY_HOST --port $GATEWAY_PORT --no-access-log --workers $GATEWAY_WORKERS" ;;
  esac
}

start_one() {
  local name=$1 pidfile="$RUN_DIR/$1.pid" pid
  if pid="$(read_pidfile "$pidfile")" && pid_alive "$pid"; then
    log "$name already running (pid $pid)"
    return
  fi
  # A plain background command, so $! is the service itself (setsid execs in place: a
  # script's background job is no process-group leader) and nothing keeps our stdout.
  # shellcheck disable=SC2046 # the command line is split into words on purpose
  setsid nohup $(command_of "$name") >>"$LOG_DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  log "$name started (pid $(cat "$pidfile")), log $LOG_DIR/$name.log"
}

stop_one() {
  local name=$1 pidfile="$RUN_DIR/$1.pid" pid
  if pid="$(read_pidfile "$pidfile")" && pid_alive "$pid"; then
    terminate_pid "$pid" 20 "$name"
  fi
  rm -f "$pidfile"
}

start_all() {
  ensure_home
  cd "$REPO_ROOT"
  [[ "$GATEWAY_PORT" =~ ^[0-9]+$ ]] || die "GATEWAY_PORT must be a number"
  if port_open "$LOCAL_HOST" "$GATEWAY_PORT" && ! read_pidfile "$RUN_DIR/gateway.pid" >/dev/null; then
    die "port $GATEWAY_PORT is taken by $(port_owner "$GATEWAY_PORT"); set GATEWAY_PORT"
  fi
  [[ "$GATEWAY_WORKERS" =~ ^[1-9][0-9]*$ ]] || die "GATEWAY_WORKERS must be a positive number"
  # The metrics of processes from an earlier start would be summed in: start empty.
  local pid
  if ! { pid="$(read_pidfile "$RUN_DIR/gateway.pid")" && pid_alive "$pid"; }; then
    rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
  fi
  for name in "${SERVICES[@]}"; do start_one "$name"; done
  wait_for_port "$LOCAL_HOST" "$GATEWAY_PORT" 60 || die "gateway did not open port $GATEWAY_PORT; see $LOG_DIR/gateway.log"
  log "gateway ready at http://$GATEWAY_HOST:$GATEWAY_PORT (OpenAPI at /docs)"
}

stop_all() {
  local name
  for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
    name=${SERVICES[$i]}
    stop_one "$name"
  done
}

run_foreground() {
  trap 'log "stopping"; stop_all; "$REPO_ROOT/scripts/kafka.sh" stop; "$REPO_ROOT/scripts/postgres.sh" stop; exit 0' INT TERM
  start_all
  cat "$REPO_ROOT/docs/try-it.txt" 2>/dev/null || true
  tail -n 0 -F "${SERVICES[@]/#/$LOG_DIR/}".log 2>/dev/null &
  wait
}

case "${1:-}" in
  start) start_all ;;
  stop) stop_all ;;
  run) run_foreground ;;
  *) die "usage: $0 start|stop|run" ;;
esac
