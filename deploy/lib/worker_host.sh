#!/usr/bin/env bash
# deploy/up --role worker: an extra host that runs only Celery workers, against the
# PostgreSQL and Redis of the main host. Installs what a worker needs (packages, the
# virtual environment, the models), never a database or a queue of its own.
set -euo pipefail

worker_host_usage() {
  die "usage: deploy/up --role worker --queues answer|ingest|answer,ingest --broker redis://HOST:6379/0 --database postgresql://USER:PASSWORD@HOST:5432/NAME"
}

check_worker_host_arguments() {
  local queues=$1 broker=$2 database=$3 queue
  [ -n "$queues" ] && [ -n "$broker" ] && [ -n "$database" ] || worker_host_usage
  for queue in ${queues//,/ }; do
    case "$queue" in answer|ingest) ;; *) die "--queues: '$queue' is not a queue (answer, ingest)" ;; esac
  done
  case "$broker" in redis://*|rediss://*) ;; *) die "--broker must be a redis:// URL, not '$broker'" ;; esac
  case "$database" in postgresql://*|postgres://*) ;;
    *) die "--database must be a postgresql:// URL, not '$database'" ;; esac
}

export_database_url() {
  # The settings read the database as APPLIANCE_DB_* (appliance/settings.py).
  local assignments
  assignments=$("$(venv_python)" - "$1" <<'PY'
import shlex, sys
from urllib.parse import unquote, urlsplit
url = urlsplit(sys.argv[1])
values = {
    "APPLIANCE_DB_HOST": url.hostname or "127.0.0.1",
    "APPLIANCE_DB_PORT": str(url.port or 5432),
    "APPLIANCE_DB_NAME": unquote(url.path.lstrip("/")) or "appliance",
    "APPLIANCE_DB_USER": unquote(url.username or "appliance_app"),
    "APPLIANCE_DB_PASSWORD": unquote(url.password or ""),
}
print("\n".join(f"export {k}={shlex.quote(v)}" for k, v in values.items()))
PY
  ) || die "--database: cannot read '$1'"
  eval "$assignments"
}

run_worker_host() {
  local queues=$1 broker=$2 database=$3 queue args
  check_worker_host_arguments "$queues" "$broker" "$database"
  if [ "${APPLIANCE_SKIP_INSTALL:-0}" != 1 ]; then
    ensure_worker_packages
    ensure_env_file
    ensure_venv
    ensure_models
  fi
  export APPLIANCE_REDIS_URL="$broker"
  export_database_url "$database"
  cd "$ROOT"
  manage migrate --check >/dev/null 2>&1 ||
    die "the database at $APPLIANCE_DB_HOST is unreachable or not at this version's schema: run deploy/up on the main host with the same version first"
  clear_metrics
  for queue in ${queues//,/ }; do
    worker_args args "$queue"
    start_process "$queue" env APPLIANCE_WORKER_ROLE="$queue" "${args[@]}"
  done
  trap 'echo; log "stopping"; stop_all; exit 0' INT TERM
  log "workers for ${queues//,/ and } run against $APPLIANCE_DB_HOST; logs in $DATA_DIR/log/"
  log "press Ctrl-C to stop them (anything they were doing is delivered again to another worker)"
  while :; do
    for queue in ${queues//,/ }; do
      if ! is_running "$queue"; then
        log "the $queue worker stopped; see $DATA_DIR/log/$queue.log"
        stop_all
        exit 1
      fi
    done
    sleep 2
  done
}
