#!/usr/bin/env bash
# Starting and stopping the appliance's processes: the web server (uvicorn, ASGI), one
# ingest worker and one answer worker (Celery). Pid files live in $DATA_DIR/run.
set -euo pipefail

RUN_DIR="$DATA_DIR/run"
LOG_DIR="$DATA_DIR/log"
PROCESSES=(web ingest answer)

manage() { "$VENV/bin/python" "$ROOT/manage.py" "$@"; }

as_owner() {
  # Migrations and grants run as the owner role; everything else as the application role.
  APPLIANCE_DB_USER=appliance_owner APPLIANCE_DB_PASSWORD="$(env_value APPLIANCE_DB_OWNER_PASSWORD)" "$@"
}

is_running() {
  local pidfile="$RUN_DIR/$1.pid"
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

start_process() {
  local name=$1; shift
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  if is_running "$name"; then return 0; fi
  # setsid: each process leads its own group, so stopping it stops its children too.
  setsid "$@" >>"$LOG_DIR/$name.log" 2>&1 < /dev/null &
  echo $! > "$RUN_DIR/$name.pid"
}

clear_metrics() {
  # The processes' metric files (appliance/metrics.py) start empty with the appliance, so
  # the files of processes long gone do not pile up; Prometheus takes the drop as a restart.
  local dir
  dir=$(env_value APPLIANCE_METRICS_DIR); dir=${dir:-$DATA_DIR/run/metrics}
  mkdir -p "$dir" && find "$dir" -maxdepth 1 -name '*.db' -type f -delete
}

web_address() {
  local host port
  host=$(env_value APPLIANCE_HOST); host=${host:-127.0.0.1}
  port=$(env_value APPLIANCE_PORT); port=${port:-8000}
  printf '%s %s' "$host" "$port"
}

# The command lines, shared by start_all and the systemd units (deploy/install-services):
# each fills the array named by its first argument.
web_args() {
  local -n into=$1
  local host port web_workers
  read -r host port <<<"$(web_address)"
  web_workers=$(env_value APPLIANCE_WEB_WORKERS); web_workers=${web_workers:-2}
  # Requests are logged by the application (with their request id), not by uvicorn.
  into=("$VENV/bin/uvicorn" appliance.asgi:application --host "$host" --port "$port"
    --workers "$web_workers" --proxy-headers --forwarded-allow-ips 127.0.0.1
    --timeout-graceful-shutdown 5 --log-config "$ROOT/deploy/logging.json" --no-access-log)
}

worker_args() {
  local -n into=$1
  local role=$2
  # No gossip or mingle: the workers coordinate through the database, and their chatter
  # would wake every worker every few seconds, in the middle of a model's work. --quiet:
  # no start-up banner, so the log holds only JSON lines.
  into=("$VENV/bin/celery" --quiet -A appliance worker -Q "$role" -n "$role@%h" --concurrency 1
    --prefetch-multiplier 1 --loglevel INFO --without-gossip --without-mingle)
  if [ "$role" = ingest ]; then into+=(--max-memory-per-child 3000000); fi
}

start_all() {
  local host port args
  read -r host port <<<"$(web_address)"
  cd "$ROOT"
  clear_metrics
  web_args args
  start_process web env APPLIANCE_PROCESS=web "${args[@]}"
  for role in ingest answer; do
    worker_args args "$role"
    start_process "$role" env APPLIANCE_WORKER_ROLE="$role" "${args[@]}"
  done
  echo "http://$host:$port/"
}

stop_all() {
  local name pid
  for name in "${PROCESSES[@]}"; do
    [ -f "$RUN_DIR/$name.pid" ] || continue
    pid=$(cat "$RUN_DIR/$name.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  for _ in $(seq 1 40); do
    local alive=0
    for name in "${PROCESSES[@]}"; do is_running "$name" && alive=1; done
    [ $alive -eq 0 ] && break
    sleep 0.5
  done
  for name in "${PROCESSES[@]}"; do
    if is_running "$name"; then
      pid=$(cat "$RUN_DIR/$name.pid")
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$RUN_DIR/$name.pid"
  done
}

wait_healthy() {
  local url=$1
  for _ in $(seq 1 180); do
    if curl -fsS "${url}healthz" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  return 1
}
