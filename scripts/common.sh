# shellcheck shell=bash
# Helpers shared by scripts/kafka.sh and scripts/postgres.sh. Source it, don't run it.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
OPENRIDE_HOME="${OPENRIDE_HOME:-$REPO_ROOT/.local}"
RUN_DIR="$OPENRIDE_HOME/run"
LOG_DIR="$OPENRIDE_HOME/log"
LOCAL_HOST=127.0.0.1
export REPO_ROOT OPENRIDE_HOME RUN_DIR LOG_DIR LOCAL_HOST

log() {
  printf '[%s] %s\n' "${LOG_TAG:-openride}" "$*" >&2
}

die() {
  log "error: $*"
  exit 1
}

need_cmd() {
  local cmd=$1 hint=$2
  command -v "$cmd" >/dev/null 2>&1 || die "'$cmd' not found on PATH. $hint"
}

# The state folder is ignored by its own .gitignore, so it stays out of git even in a
# checkout whose top-level .gitignore doesn't list it (or an OPENRIDE_HOME inside a repo).
ensure_home() {
  mkdir -p "$OPENRIDE_HOME" "$RUN_DIR" "$LOG_DIR"
  [[ -f "$OPENRIDE_HOME/.gitignore" ]] || printf '*\n' >"$OPENRIDE_HOME/.gitignore"
}

port_open() {
  local host=$1 port=$2
  # shellcheck disable=SC2016 # $0/$1 are expanded by the inner bash, on purpose
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$host" "$port" 2>/dev/null
}

# Names the listener on a port, best effort, for "port already taken" messages.
port_owner() {
  local port=$1 line
  if command -v ss >/dev/null 2>&1; then
    line="$(ss -Hltnp "sport = :$port" 2>/dev/null | head -n 1)"
    [[ -n "$line" ]] && { printf '%s' "$line" | tr -s ' '; return; }
  fi
  printf 'unknown process'
}

# A zombie still answers kill -0, so also look at the process state.
pid_alive() {
  local pid=$1 state
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
  [[ "$state" != Z ]]
}

read_pidfile() {
  local file=$1 pid
  [[ -f "$file" ]] || return 1
  pid="$(head -n 1 "$file" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  printf '%s' "$pid"
}

# Polls until HOST:PORT accepts connections. Fails early when the optional PID dies,
# so a crashed server is reported at once instead of after the whole timeout.
wait_for_port() {
  local host=$1 port=$2 timeout_s=$3 pid=${4:-}
  local deadline=$((SECONDS + timeout_s))
  until port_open "$host" "$port"; do
    if [[ -n "$pid" ]] && ! pid_alive "$pid"; then
      return 2
    fi
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

# SIGTERM, wait, then SIGKILL. The process isn't our child (it was started by an earlier
# run), so we poll instead of `wait`.
terminate_pid() {
  local pid=$1 grace_s=${2:-30} name=${3:-process}
  pid_alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + grace_s))
  while pid_alive "$pid" && ((SECONDS < deadline)); do
    sleep 0.5
  done
  if pid_alive "$pid"; then
    log "$name (pid $pid) ignored SIGTERM for ${grace_s}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while pid_alive "$pid"; do sleep 0.2; done
  fi
}

show_log_tail() {
  local file lines=${LOG_TAIL_LINES:-40}
  for file in "$@"; do
    [[ -s "$file" ]] || continue
    log "last $lines lines of $file:"
    tail -n "$lines" "$file" >&2
  done
}

# `logs` subcommand: last lines of a log; extra args go to tail (e.g. -f).
tail_log() {
  local file=$1
  shift
  [[ -f "$file" ]] || die "no log yet at $file"
  exec tail -n "${LOG_TAIL_LINES:-100}" "$@" "$file"
}

# The installed Go, never a toolchain it would download (GOTOOLCHAIN=local), with the
# module cache under .local/tools/go: how the pinned tools (scripts/kustomize.sh,
# scripts/promcheck.sh) are built on first use. Extra variables go before the call
# (`GOBIN=... run_go install ...`).
run_go() {
  local go
  go="$(command -v go || echo /usr/local/go/bin/go)"
  [[ -x "$go" ]] || die "Go is needed once to build the project's tools (go not on PATH nor at /usr/local/go/bin/go)"
  mkdir -p "$REPO_ROOT/.local/tools/go"
  GOPATH="$REPO_ROOT/.local/tools/go" GOTOOLCHAIN=local GOFLAGS=-modcacherw "$go" "$@"
}
