#!/usr/bin/env bash
# Is the pod healthy? Uses only `ca-server ctl` and Scope's HTTP API (through probe.py): the
# daemon answers and its frame counter rises, Scope is up, our plugin is installed and not failed,
# and its pipeline is registered. Prints the JSON report on stdout and a one-line verdict on
# stderr, writes it to $CA_LOG_DIR/health/latest.json, and exits with probe.py's per-component
# code: 0 healthy, 3 daemon, 4 Scope, 5 plugin.
#
# Usage: healthcheck.sh [--wait SECONDS]   (retry until healthy or SECONDS have passed)
# Reads: CA_SCOPE_URL, CA_RING_NAME, CA_PIPELINE_ID (require this pipeline id),
#   CA_HEALTH_SAMPLE_S (seconds between the two counter samples), CA_HEALTH_RETRY_S.
set -euo pipefail

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
CA_SCRIPT_NAME=healthcheck
# shellcheck source=lib/common.sh
source "$DEPLOY_DIR/lib/common.sh"

CA_HEALTH_SAMPLE_S="${CA_HEALTH_SAMPLE_S:-1}"
CA_HEALTH_RETRY_S="${CA_HEALTH_RETRY_S:-5}"
CA_PIPELINE_ID="${CA_PIPELINE_ID:-}"

wait_s=0
while [ "$#" -gt 0 ]; do
  case "$1" in
    --wait) wait_s="${2:?--wait needs a number of seconds}"; shift 2 ;;
    *) echo "usage: healthcheck.sh [--wait SECONDS]" >&2; exit 2 ;;
  esac
done

probe_args=(health --ctl "$CA_VENV/bin/ca-server" --ring "$CA_RING_NAME" --url "$CA_SCOPE_URL"
  --dist "$CA_PLUGIN_DIST" --sample-s "$CA_HEALTH_SAMPLE_S")
[ -n "$CA_PIPELINE_ID" ] && probe_args+=(--pipeline "$CA_PIPELINE_ID")
python_bin="$(probe_python)"
deadline=$((SECONDS + wait_s))
while true; do
  rc=0
  report="$("$python_bin" "$DEPLOY_DIR/probe.py" "${probe_args[@]}")" || rc=$?
  [ "$rc" = 0 ] || [ "$SECONDS" -ge "$deadline" ] && break
  log "not healthy yet (exit $rc); retrying for $((deadline - SECONDS)) s more"
  sleep "$CA_HEALTH_RETRY_S"
done

mkdir -p "$CA_LOG_DIR/health"
printf '%s\n' "$report" | write_atomic "$CA_LOG_DIR/health/latest.json"
printf '%s %s\n' "$(date -u +%FT%TZ)" "$rc" >>"$CA_LOG_DIR/health/history.log"
if supervisord_running; then supervisorctl_cmd status >&2 || true; fi
printf '%s\n' "$report"
if [ "$rc" = 0 ]; then log "HEALTHY"; else log "UNHEALTHY (exit $rc); report in $CA_LOG_DIR/health/latest.json"; fi
exit "$rc"
