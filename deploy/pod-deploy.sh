#!/usr/bin/env bash
# Deploy the tree this script lives in on a running pod (push.sh runs it over SSH): bootstrap,
# then apply what changed to the running supervisor (restart the daemon if its venv changed,
# Scope if the plugin changed), or start supervisord when none runs yet (first deploy, before
# the template's start command has a pod-start.sh to run), then the health check.
#
# Usage: pod-deploy.sh
# Reads: CA_DEPLOY_HEALTH_WAIT_S (300), and everything bootstrap.sh and healthcheck.sh read.
set -euo pipefail

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
CA_SCRIPT_NAME=pod-deploy
# shellcheck source=lib/common.sh
source "$DEPLOY_DIR/lib/common.sh"

CA_DEPLOY_HEALTH_WAIT_S="${CA_DEPLOY_HEALTH_WAIT_S:-300}"

"$DEPLOY_DIR/bootstrap.sh" || die "bootstrap failed; its last lines above say what the pod runs now"
mapfile -t changes <"$CA_RUN_DIR/last-changes"
changed() { [[ " ${changes[*]} " == *" $1 "* ]]; }

# Scope under the image's own CMD (PID 1) re-executes itself in place on this request.
restart_scope_in_place() {
  curl -fsS -X POST --max-time 30 "$CA_SCOPE_URL/api/v1/restart" >/dev/null \
    || log "warning: Scope did not accept POST /api/v1/restart; restart the pod to load the plugin"
}

if supervisord_running; then
  if changed config; then supervisorctl_cmd reread && supervisorctl_cmd update; fi
  if changed daemon; then supervisorctl_cmd restart ca-server; fi
  if changed plugin; then
    if scope_is_pid1; then restart_scope_in_place; else supervisorctl_cmd restart scope; fi
  fi
else
  log "starting supervisord for this boot (the start command takes over at the next restart)"
  # Its programs inherit its environment: give it all of PID 1's (the template's env, NVIDIA_*,
  # LD_LIBRARY_PATH, Scope's settings), not just what this SSH session imported.
  (import_env --all && exec "$CA_TOOLS_VENV/bin/supervisord" -c "$CA_RUN_DIR/supervisord.conf")
  if changed plugin && scope_is_pid1; then restart_scope_in_place; fi
fi

exec "$DEPLOY_DIR/healthcheck.sh" --wait "$CA_DEPLOY_HEALTH_WAIT_S"
