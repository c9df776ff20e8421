#!/bin/sh
# The image's entrypoint: the first argument picks the role. exec, so the service is
# PID 1 and receives SIGTERM itself (the worker, sink and gateway all stop cleanly on it).
set -eu
role="${1:-gateway}"
[ "$#" -gt 0 ] && shift
case "$role" in
  worker) exec python -m app.worker worker -l info "$@" ;;
  sink) exec python -m sinks.main "$@" ;;
  gateway) exec uvicorn gateway.main:create_app --factory --http gateway.server:HttpProtocol --host "$GATEWAY_HOST" --port "$GATEWAY_PORT" --no-access-log "$@" ;;
  topics) exec python -m tools.create_topics "$@" ;;
  migrate) exec python -m sinks.migrate "$@" ;;
  *) exec "$role" "$@" ;;
esac
