#!/usr/bin/env bash
# The pod's start command (PID 1): sshd for deploys, the idempotent bootstrap, then supervisord in
# the foreground supervising the CA daemon and Scope (restart on crash, logs in $CA_LOG_DIR).
# It never exits on a failed step: a failed bootstrap still starts what is installed, and without
# any supervisor it runs Scope alone and then sleeps, so the pod stays reachable for debugging.
#
# Template start command (see README.md): exec /workspace/ca/current/deploy/pod-start.sh
# Reads: CA_ENABLE_SSHD (1), and everything bootstrap.sh reads.
set -euo pipefail

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
CA_SCRIPT_NAME=pod-start
# shellcheck source=lib/common.sh
source "$DEPLOY_DIR/lib/common.sh"
# shellcheck source=lib/sshd.sh
source "$DEPLOY_DIR/lib/sshd.sh"

CA_ENABLE_SSHD="${CA_ENABLE_SSHD:-1}"

mkdir -p "$CA_LOG_DIR/deploy" "$CA_RUN_DIR"
exec > >(tee -a "$CA_LOG_DIR/deploy/pod-start-$(date -u +%Y%m%dT%H%M%SZ).log") 2>&1
log "pod start from $(dirname "$DEPLOY_DIR")"

if [ "$CA_ENABLE_SSHD" = 1 ]; then
  start_sshd || log "warning: sshd did not start; deploys from a laptop fail until it does"
fi

if ! "$DEPLOY_DIR/bootstrap.sh"; then
  log "BOOTSTRAP FAILED (see $CA_STATE_DIR/bootstrap.json): starting what is installed"
  "$DEPLOY_DIR/bootstrap.sh" --render-only || log "could not render the supervisord config either"
fi

if [ -x "$CA_TOOLS_VENV/bin/supervisord" ] && [ -f "$CA_RUN_DIR/supervisord.conf" ]; then
  log "handing over to supervisord"
  exec "$CA_TOOLS_VENV/bin/supervisord" --nodaemon -c "$CA_RUN_DIR/supervisord.conf"
fi

log "no supervisord: running Scope alone, without restart on crash"
scope_cli --host "$CA_SCOPE_HOST" --port "$CA_SCOPE_PORT" --no-browser || log "Scope exited"
log "keeping the pod up for debugging"
exec sleep infinity
