#!/usr/bin/env bash
# The one entrypoint of the image; the first argument says what this container is.
#
#   web            gunicorn serving the sample project on 0.0.0.0:$PORT (default 8000)
#   worker         manage.py django_ray_worker, with flags from the environment (below)
#   celery-worker  celery worker, pool $CELERY_POOL (default prefork; django_ray with the bridge)
#   beat           celery beat
#   migrate        manage.py migrate
#   ray-head       a Ray head node: GCS on 6379, dashboard and Jobs API on 8265
#   ray-node       a Ray worker node joining $RAY_HEAD_ADDRESS (default ray-head:6379)
#   manage ARGS    manage.py ARGS (django_ray_status, django_ray_doctor, createsuperuser...)
#   anything else  run as given (bash, python...)
# Arguments after the role are appended to its command.
#
# worker: environment variables become django_ray_worker flags, exactly as in
# docs/configuration.md ("Environment variables"); unset and empty are the same.
#   DJANGO_RAY_QUEUES       --queue "$DJANGO_RAY_QUEUES" (comma list; wins over DJANGO_RAY_QUEUE)
#   DJANGO_RAY_QUEUE        --queue "$DJANGO_RAY_QUEUE"
#   DJANGO_RAY_CONCURRENCY  --concurrency "$DJANGO_RAY_CONCURRENCY"
#   RAY_ADDRESS             --address "$RAY_ADDRESS"
#   DJANGO_RAY_METRICS_PORT --metrics-port "$DJANGO_RAY_METRICS_PORT" --metrics-address 0.0.0.0
#   DJANGO_RAY_SKIP_VALIDATION stays in the environment, where django-ray reads it.
#
# Ray nodes listen on the container's network, so they start only with token
# authentication (RAY_AUTH_MODE=token, and the token in RAY_AUTH_TOKEN_PATH or
# RAY_AUTH_TOKEN); RAY_AUTH_MODE=disabled must be asked for by name.
#
# DJANGO_RAY_ENTRYPOINT_DRY_RUN=1 prints the command (shell-quoted) instead of running it.
set -euo pipefail

run() {
  if [[ "${DJANGO_RAY_ENTRYPOINT_DRY_RUN:-}" == 1 ]]; then
    local quoted=() arg
    for arg in "$@"; do quoted+=("$(printf '%q' "$arg")"); done
    echo "${quoted[*]}"
    exit 0
  fi
  exec "$@"
}

fail() {
  echo "django-ray entrypoint: $*" >&2
  exit 64
}

worker() {
  local command=(python manage.py django_ray_worker)
  local queues="${DJANGO_RAY_QUEUES:-${DJANGO_RAY_QUEUE:-}}"
  if [[ -n "$queues" ]]; then
    command+=(--queue "$queues")
  fi
  if [[ -n "${DJANGO_RAY_CONCURRENCY:-}" ]]; then
    command+=(--concurrency "$DJANGO_RAY_CONCURRENCY")
  fi
  if [[ -n "${RAY_ADDRESS:-}" ]]; then
    command+=(--address "$RAY_ADDRESS")
  fi
  if [[ -n "${DJANGO_RAY_METRICS_PORT:-}" ]]; then
    command+=(--metrics-port "$DJANGO_RAY_METRICS_PORT" --metrics-address 0.0.0.0)
  fi
  run "${command[@]}" "$@"
}

require_ray_auth() {
  case "${RAY_AUTH_MODE:-}" in
    token)
      if [[ -z "${RAY_AUTH_TOKEN:-}" && ! -s "${RAY_AUTH_TOKEN_PATH:-}" ]]; then
        fail "RAY_AUTH_MODE=token needs the token: RAY_AUTH_TOKEN_PATH (a file) or RAY_AUTH_TOKEN."
      fi
      ;;
    disabled) ;;
    *) fail "set RAY_AUTH_MODE=token (or RAY_AUTH_MODE=disabled on a trusted network) for a Ray node." ;;
  esac
}

role="${1:-web}"
if [[ $# -gt 0 ]]; then
  shift
fi

case "$role" in
  web)
    run gunicorn sample_project.wsgi --bind "0.0.0.0:${PORT:-8000}" \
      --workers "${WEB_CONCURRENCY:-2}" --access-logfile - "$@"
    ;;
  worker) worker "$@" ;;
  celery-worker)
    run celery -A sample_project worker -P "${CELERY_POOL:-prefork}" -l "${CELERY_LOG_LEVEL:-INFO}" "$@"
    ;;
  beat)
    run celery -A sample_project beat -l "${CELERY_LOG_LEVEL:-INFO}" \
      --schedule "${CELERY_BEAT_SCHEDULE_FILE:-/tmp/celerybeat-schedule}" "$@"
    ;;
  migrate) run python manage.py migrate --noinput "$@" ;;
  ray-head)
    require_ray_auth
    run ray start --head --port=6379 --dashboard-host=0.0.0.0 --dashboard-port=8265 \
      --disable-usage-stats --block "$@"
    ;;
  ray-node)
    require_ray_auth
    run ray start --address="${RAY_HEAD_ADDRESS:-ray-head:6379}" --disable-usage-stats --block "$@"
    ;;
  manage) run python manage.py "$@" ;;
  *) run "$role" "$@" ;;
esac
