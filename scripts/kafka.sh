#!/usr/bin/env bash
# Local Apache Kafka (KRaft), assembled from Maven Central jars: one node by default, or a
# cluster of KAFKA_BROKERS nodes (each broker and controller in one process) for the
# chaos runs that kill brokers.
# Usage: scripts/kafka.sh install|start [N]|stop [N]|kill N|pid N|controller|status|wipe|bootstrap|logs [tail args]
set -euo pipefail

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
LOG_TAG=kafka

KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
# Optional second listener for clients that reach the broker through another address (the
# benchmark's delay proxy, bench/delayproxy): it listens on KAFKA_DELAYED_PORT and tells
# its clients to come back through KAFKA_DELAYED_ADVERTISED_PORT.
KAFKA_DELAYED_PORT="${KAFKA_DELAYED_PORT:-}"
KAFKA_DELAYED_ADVERTISED_PORT="${KAFKA_DELAYED_ADVERTISED_PORT:-}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}"
# A cluster: node 1 listens on KAFKA_PORT / KAFKA_CONTROLLER_PORT, node n >= 2 on
# KAFKA_EXTRA_PORTS + 2(n-2) and the port after it.
KAFKA_BROKERS="${KAFKA_BROKERS:-1}"
KAFKA_EXTRA_PORTS="${KAFKA_EXTRA_PORTS:-$((KAFKA_CONTROLLER_PORT + 1))}"

KAFKA_HOME="$OPENRIDE_HOME/kafka"
LIBS_DIR="$KAFKA_HOME/libs"
INSTALLED_MARKER="$LIBS_DIR/.installed"
CLUSTER_ID_FILE="$KAFKA_HOME/cluster.id"
BROKERS_FILE="$KAFKA_HOME/brokers"
MVN_LOG_FILE="$LOG_DIR/kafka-install.log"
POM_FILE="$REPO_ROOT/scripts/kafka-pom.xml"

# The node the functions below work on (select_node); node 1 keeps the one-node paths.
NODE=1
select_node() {
  NODE=$1
  [[ "$NODE" =~ ^[0-9]+$ ]] && ((NODE >= 1 && NODE <= KAFKA_BROKERS)) || die "no node $NODE (KAFKA_BROKERS=$KAFKA_BROKERS)"
  local suffix=""
  ((NODE == 1)) || suffix="-$NODE"
  NODE_PORT=$(node_port "$NODE")
  NODE_CONTROLLER_PORT=$(node_controller_port "$NODE")
  DATA_DIR="$KAFKA_HOME/data$suffix"
  PROPS_FILE="$KAFKA_HOME/server$suffix.properties"
  LOG4J_FILE="$KAFKA_HOME/log4j2$suffix.xml"
  PID_FILE="$RUN_DIR/kafka$suffix.pid"
  LOG_FILE="$LOG_DIR/kafka$suffix.log"
}

node_port() {
  if (($1 == 1)); then printf '%s' "$KAFKA_PORT"; else printf '%s' $((KAFKA_EXTRA_PORTS + 2 * ($1 - 2))); fi
}

node_controller_port() {
  if (($1 == 1)); then printf '%s' "$KAFKA_CONTROLLER_PORT"; else printf '%s' $((KAFKA_EXTRA_PORTS + 2 * ($1 - 2) + 1)); fi
}

nodes() {
  seq 1 "$KAFKA_BROKERS"
}

bootstrap_servers() {
  local n servers=()
  for n in $(nodes); do servers+=("$LOCAL_HOST:$(node_port "$n")"); done
  (IFS=,; printf '%s\n' "${servers[*]}")
}

controller_voters() {
  local n voters=()
  for n in $(nodes); do voters+=("$n@$LOCAL_HOST:$(node_controller_port "$n")"); done
  (IFS=,; printf '%s' "${voters[*]}")
}

install_stamp() {
  printf 'kafka_version=%s pom_sha256=%s\n' "$KAFKA_VERSION" "$(sha256sum "$POM_FILE" | cut -d' ' -f1)"
}

is_installed() {
  [[ -f "$INSTALLED_MARKER" ]] && [[ "$(cat "$INSTALLED_MARKER")" == "$(install_stamp)" ]]
}

cmd_install() {
  need_cmd java "Install a JDK 17+ (Debian: apt-get install -y openjdk-17-jdk-headless)."
  if is_installed; then
    log "Kafka $KAFKA_VERSION already installed in $LIBS_DIR"
    return 0
  fi
  need_cmd mvn "Install Maven 3.8+ (Debian: apt-get install -y maven)."
  # Replacing jars under a running JVM would crash it.
  local n
  for n in $(nodes); do
    select_node "$n"
    if broker_pid >/dev/null; then
      die "a broker is running from $LIBS_DIR; run 'scripts/kafka.sh stop' before reinstalling"
    fi
  done
  ensure_home
  log "downloading Kafka $KAFKA_VERSION and its runtime dependencies from Maven Central into $LIBS_DIR"
  # Start from an empty folder: a half-finished or other-version download must not leak in.
  rm -rf "$LIBS_DIR"
  mkdir -p "$LIBS_DIR"
  # Maven's output goes to a file: even with -q it prints stray colour codes.
  mvn -q -B -f "$POM_FILE" \
    org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$LIBS_DIR" -Dkafka.version="$KAFKA_VERSION" \
    >"$MVN_LOG_FILE" 2>&1 \
    || { show_log_tail "$MVN_LOG_FILE"; die "Maven could not fetch Kafka $KAFKA_VERSION (is Maven Central reachable?)"; }
  compgen -G "$LIBS_DIR/kafka_2.13-*.jar" >/dev/null || die "no kafka_2.13 jar in $LIBS_DIR after download"
  install_stamp >"$INSTALLED_MARKER"
  log "installed $(find "$LIBS_DIR" -name '*.jar' | wc -l) jars ($(du -sh "$LIBS_DIR" | cut -f1))"
}

# The broker's pid: from the pid file, or else by scanning for a JVM started with our
# properties file (covers a deleted pid file). A reused pid never matches.
broker_pid() {
  local pid
  if pid="$(read_pidfile "$PID_FILE")" && is_our_broker "$pid"; then
    printf '%s' "$pid"
    return 0
  fi
  local dir
  for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    if is_our_broker "$pid"; then
      printf '%s' "$pid"
      return 0
    fi
  done
  return 1
}

is_our_broker() {
  local pid=$1 cmdline
  pid_alive "$pid" || return 1
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
  [[ "$cmdline" == *" kafka.Kafka $PROPS_FILE"* ]]
}

write_config() {
  mkdir -p "$DATA_DIR"
  local listeners="PLAINTEXT://$LOCAL_HOST:$NODE_PORT,CONTROLLER://$LOCAL_HOST:$NODE_CONTROLLER_PORT"
  local advertised="$listeners"
  local protocols="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
  # The benchmark's delay proxy reaches the first node through a listener of its own.
  if [[ -n "$KAFKA_DELAYED_PORT" && "$NODE" == 1 ]]; then
    listeners+=",DELAYED://$LOCAL_HOST:$KAFKA_DELAYED_PORT"
    advertised+=",DELAYED://$LOCAL_HOST:${KAFKA_DELAYED_ADVERTISED_PORT:?KAFKA_DELAYED_PORT needs KAFKA_DELAYED_ADVERTISED_PORT}"
    protocols+=",DELAYED:PLAINTEXT"
  fi
  # One broker: the defaults (3 replicas, min ISR 2) can never be met, and idempotent or
  # transactional producers would hang. A cluster: 3 replicas (or as many as there are
  # brokers), and a write acknowledged to acks=all is on all but one of them.
  local replicas=$((KAFKA_BROKERS < 3 ? KAFKA_BROKERS : 3))
  local min_isr=$((replicas > 1 ? replicas - 1 : 1))
  cat >"$PROPS_FILE" <<EOF
# Generated by scripts/kafka.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=$NODE
controller.quorum.voters=$(controller_voters)
controller.listener.names=CONTROLLER
listeners=$listeners
advertised.listeners=$advertised
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
log.dirs=$DATA_DIR

offsets.topic.replication.factor=$replicas
transaction.state.log.replication.factor=$replicas
transaction.state.log.min.isr=$min_isr
share.coordinator.state.topic.replication.factor=$replicas
share.coordinator.state.topic.min.isr=$min_isr
default.replication.factor=$replicas
min.insync.replicas=$min_isr
# Never elect a replica that may miss acknowledged writes (Kafka's default, said here
# because the chaos runs depend on it).
unclean.leader.election.enable=false

# Tests: no 3 s wait on the first group join, and fewer internal partitions to create.
group.initial.rebalance.delay.ms=0
offsets.topic.num.partitions=1
transaction.state.log.num.partitions=1
auto.create.topics.enable=false
num.partitions=1

# Small machine. The 128 MiB default dedupe buffer is allocated on the heap at start-up.
num.network.threads=2
num.io.threads=2
log.cleaner.dedupe.buffer.size=33554432
EOF
  cat >"$LOG4J_FILE" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by scripts/kafka.sh on every start. Log4j's own shutdown hook would stop
     logging while Kafka's shutdown hook is still running, hiding the end of a shutdown. -->
<Configuration status="WARN" shutdownHook="disable">
  <Appenders>
    <File name="file" fileName="$LOG_FILE" append="true">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="file"/></Root>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="kafka.network.RequestChannel\$" level="WARN"/>
    <Logger name="kafka.authorizer.logger" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
  </Loggers>
</Configuration>
EOF
}

new_cluster_id() {
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    [[ "${id:0:1}" != - ]] && break
  done
  printf '%s' "$id"
}

cluster_id() {
  [[ -s "$CLUSTER_ID_FILE" ]] || new_cluster_id >"$CLUSTER_ID_FILE"
  cat "$CLUSTER_ID_FILE"
}

# Data formatted for another number of nodes has another quorum: it cannot be reused.
check_brokers_count() {
  if [[ -s "$BROKERS_FILE" && "$(cat "$BROKERS_FILE")" != "$KAFKA_BROKERS" ]]; then
    die "the data in $KAFKA_HOME is for $(cat "$BROKERS_FILE") broker(s), KAFKA_BROKERS is $KAFKA_BROKERS: run 'scripts/kafka.sh wipe' first"
  fi
  printf '%s\n' "$KAFKA_BROKERS" >"$BROKERS_FILE"
}

java_opts() {
  local heap
  read -r -a heap <<<"$KAFKA_HEAP_OPTS"
  printf '%s\n' "${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    "-Dlog4j2.configurationFile=$LOG4J_FILE"
}

format_storage() {
  [[ -f "$DATA_DIR/meta.properties" ]] && return 0
  local opts
  mapfile -t opts < <(java_opts)
  log "formatting $DATA_DIR"
  java "${opts[@]}" -cp "$LIBS_DIR/*" kafka.tools.StorageTool format -g \
    -t "$(cluster_id)" -c "$PROPS_FILE" >>"$LOG_FILE" 2>&1 \
    || { show_log_tail "$LOG_FILE"; die "formatting $DATA_DIR failed"; }
}

ensure_ports_free() {
  local port
  local delayed=""
  [[ "$NODE" == 1 ]] && delayed=$KAFKA_DELAYED_PORT
  for port in "$NODE_PORT" "$NODE_CONTROLLER_PORT" $delayed; do
    if port_open "$LOCAL_HOST" "$port"; then
      die "port $port on $LOCAL_HOST is already in use by: $(port_owner "$port"). Stop it or set KAFKA_PORT / KAFKA_CONTROLLER_PORT / KAFKA_EXTRA_PORTS."
    fi
  done
}

launch() {
  local opts
  mapfile -t opts < <(java_opts)
  # setsid + nohup: the broker must outlive this script and ignore the terminal's
  # hang-up and Ctrl-C aimed at whatever ran us.
  setsid nohup java "${opts[@]}" -cp "$LIBS_DIR/*" kafka.Kafka "$PROPS_FILE" \
    </dev/null >>"$LOG_FILE" 2>&1 &
  printf '%s\n' "$!" >"$PID_FILE"
}

# Until the broker listens. The ports may lie in Linux's ephemeral range (32768-60999),
# so another process's connection or port-0 server can hold the port for a while (the
# broker then fails to bind and exits: it is launched again, up to 5 times), and a
# connect to a port nothing listens on can connect to itself (so the listener must be
# the broker's own pid).
await_ready() {
  local pid=$1 attempt rc
  for attempt in 1 2 3 4 5; do
    rc=0
    wait_for_listener "$pid" || rc=$?
    case "$rc" in
      0) return 0 ;;
      2)
        if ((attempt < 5)) && tail -n 300 "$LOG_FILE" | grep -q "failed to bind to $LOCAL_HOST:$NODE_PORT"; then
          log "node $NODE could not bind $NODE_PORT (another socket held it: $(port_owner "$NODE_PORT")); starting it again"
          sleep $((2 * attempt))
          launch
          pid="$(read_pidfile "$PID_FILE")"
          continue
        fi
        rm -f "$PID_FILE"
        show_log_tail "$LOG_FILE"
        die "broker exited during start-up (log: $LOG_FILE)"
        ;;
      *)
        show_log_tail "$LOG_FILE"
        terminate_pid "$pid" "$KAFKA_STOP_TIMEOUT" kafka
        rm -f "$PID_FILE"
        die "broker not reachable on $LOCAL_HOST:$NODE_PORT after ${KAFKA_START_TIMEOUT}s; stopped it (log: $LOG_FILE)"
        ;;
    esac
  done
}

# 0 once `pid` listens on the node's port; 2 if it exited; 1 after KAFKA_START_TIMEOUT.
wait_for_listener() {
  local pid=$1 deadline=$((SECONDS + KAFKA_START_TIMEOUT))
  until port_open "$LOCAL_HOST" "$NODE_PORT" && listens "$pid" "$NODE_PORT"; do
    pid_alive "$pid" || return 2
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

# Whether `pid` listens on `port` (yes when ss is missing: nothing to check with).
listens() {
  command -v ss >/dev/null 2>&1 || return 0
  ss -Hltnp "sport = :$2" 2>/dev/null | grep -q "pid=$1,"
}

# Launches the node selected unless it runs; prints its pid. Nodes of a cluster are all
# launched before any is awaited: a broker opens its port only once a quorum of
# controllers is up.
launch_node() {
  local pid
  if pid="$(broker_pid)"; then
    printf '%s\n' "$pid" >"$PID_FILE"
    log "node $NODE already running (pid $pid)"
  else
    rm -f "$PID_FILE"
    ensure_ports_free
    write_config
    format_storage
    log "starting node $NODE on $LOCAL_HOST:$NODE_PORT (controller $NODE_CONTROLLER_PORT), log $LOG_FILE"
    launch
    pid="$(read_pidfile "$PID_FILE")"
  fi
  printf '%s' "$pid"
}

# start: every node; start N: node N only (a cluster's other nodes must be running).
cmd_start() {
  local n pid pids=()
  cmd_install
  ensure_home
  check_brokers_count
  for n in ${1:-$(nodes)}; do
    select_node "$n"
    pid="$(launch_node)"
    pids+=("$pid")
  done
  local i=0
  for n in ${1:-$(nodes)}; do
    select_node "$n"
    await_ready "${pids[$i]}"
    i=$((i + 1))
  done
  log "ready: bootstrap servers $(bootstrap_servers)"
}

# All nodes are asked at once: the last ones of a cluster would otherwise wait for a
# quorum that is gone.
cmd_stop() {
  local n pid stopping=()
  for n in ${1:-$(nodes)}; do
    select_node "$n"
    rm -f "$PID_FILE"
    if pid="$(broker_pid)"; then
      log "stopping node $n (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      stopping+=("$pid")
    fi
  done
  for pid in "${stopping[@]}"; do
    terminate_pid "$pid" "$KAFKA_STOP_TIMEOUT" kafka
  done
  log "stopped"
}

# SIGKILL, as a crash: no controlled shutdown, no leadership handed over.
cmd_kill() {
  local pid
  select_node "${1:?usage: scripts/kafka.sh kill N}"
  pid="$(broker_pid)" || die "node $NODE is not running"
  kill -KILL "$pid"
  while pid_alive "$pid"; do sleep 0.1; done
  rm -f "$PID_FILE"
  log "killed node $NODE (pid $pid)"
}

# The node that is the active controller now: the leader of the highest epoch any running
# node has recorded in its quorum state (KRaft's own file; brokers answer client requests
# for the controller with a random broker).
cmd_controller() {
  local n pid best_epoch=-1 leader="" state epoch
  for n in $(nodes); do
    select_node "$n"
    pid="$(broker_pid)" || continue
    state="$(cat "$DATA_DIR/__cluster_metadata-0/quorum-state" 2>/dev/null)" || continue
    epoch="$(grep -o '"leaderEpoch":[0-9]*' <<<"$state" | cut -d: -f2)"
    if [[ -n "$epoch" ]] && ((epoch > best_epoch)); then
      best_epoch=$epoch
      leader="$(grep -o '"leaderId":-\?[0-9]*' <<<"$state" | cut -d: -f2)"
    fi
  done
  [[ -n "$leader" && "$leader" != -1 ]] || die "no active controller known"
  printf '%s\n' "$leader"
}

cmd_pid() {
  select_node "${1:?usage: scripts/kafka.sh pid N}"
  broker_pid
}

cmd_status() {
  local n pid rc=0
  for n in $(nodes); do
    select_node "$n"
    if ! pid="$(broker_pid)"; then
      echo "kafka node $n: not running"
      rc=1
    elif ! port_open "$LOCAL_HOST" "$NODE_PORT"; then
      echo "kafka node $n: process $pid alive but $LOCAL_HOST:$NODE_PORT not accepting connections"
      rc=1
    else
      echo "kafka node $n: running (pid $pid) on $LOCAL_HOST:$NODE_PORT"
    fi
  done
  return "$rc"
}

# Every node's data, also of a cluster larger than KAFKA_BROKERS formed here before.
cmd_wipe() {
  local formed
  formed="$(cat "$BROKERS_FILE" 2>/dev/null || echo 1)"
  ((formed > KAFKA_BROKERS)) && KAFKA_BROKERS=$formed
  cmd_stop
  rm -rf "$KAFKA_HOME"/data "$KAFKA_HOME"/data-* "$BROKERS_FILE"
  log "deleted the data in $KAFKA_HOME (jars kept)"
}

usage() {
  cat >&2 <<EOF
usage: scripts/kafka.sh install|start [N]|stop [N]|kill N|pid N|controller|status|wipe|bootstrap|logs [tail args, e.g. -f]
  N: a node of the cluster (1..KAFKA_BROKERS); logs of node n >= 2: $LOG_DIR/kafka-n.log
env: KAFKA_VERSION=$KAFKA_VERSION KAFKA_PORT=$KAFKA_PORT KAFKA_CONTROLLER_PORT=$KAFKA_CONTROLLER_PORT
     KAFKA_BROKERS=$KAFKA_BROKERS KAFKA_EXTRA_PORTS=$KAFKA_EXTRA_PORTS
     KAFKA_START_TIMEOUT=$KAFKA_START_TIMEOUT KAFKA_STOP_TIMEOUT=$KAFKA_STOP_TIMEOUT
     KAFKA_HEAP_OPTS="$KAFKA_HEAP_OPTS" OPENRIDE_HOME=$OPENRIDE_HOME
EOF
  exit 2
}

main() {
  select_node 1
  local cmd=${1:-}
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
    install) cmd_install ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    kill) cmd_kill "$@" ;;
    pid) cmd_pid "$@" ;;
    controller) cmd_controller ;;
    status) cmd_status ;;
    wipe) cmd_wipe ;;
    bootstrap) bootstrap_servers ;;
    logs) tail_log "$LOG_FILE" "$@" ;;
    *) usage ;;
  esac
}

main "$@"
