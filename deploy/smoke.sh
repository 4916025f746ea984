#!/usr/bin/env bash
# Smoke test after a deploy: the health check, then a headless Scope session with our pipeline
# that must return a frame. With --e2e, also our pipeline chained into Krea Realtime (video mode,
# a graph with a source node), when Krea's weights are present, reporting fps and VRAM of both.
# Uses only `ca-server ctl` and Scope's HTTP API. Starting a session replaces Scope's current
# one, so run it while nobody is streaming. Frames land in $CA_LOG_DIR/health/.
#
# Usage: smoke.sh [--e2e]
# Reads: CA_SCOPE_URL, CA_PIPELINE_ID, CA_KREA_PIPELINE (default krea-realtime-video),
#   CA_SMOKE_TIMEOUT_S (session, default 120), CA_E2E_TIMEOUT_S (Krea load + frame, default 1200).
set -euo pipefail

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
CA_SCRIPT_NAME=smoke
# shellcheck source=lib/common.sh
source "$DEPLOY_DIR/lib/common.sh"

CA_PIPELINE_ID="${CA_PIPELINE_ID:-}"
CA_KREA_PIPELINE="${CA_KREA_PIPELINE:-krea-realtime-video}"
CA_SMOKE_TIMEOUT_S="${CA_SMOKE_TIMEOUT_S:-120}"
CA_E2E_TIMEOUT_S="${CA_E2E_TIMEOUT_S:-1200}"

e2e=0
case "${1:-}" in
  "") ;;
  --e2e) e2e=1 ;;
  *) echo "usage: smoke.sh [--e2e]" >&2; exit 2 ;;
esac

"$DEPLOY_DIR/healthcheck.sh" || die "health check failed; not starting a session"

out="$CA_LOG_DIR/health"
python_bin="$(probe_python)"
common_args=(--url "$CA_SCOPE_URL" --dist "$CA_PLUGIN_DIST" --ctl "$CA_VENV/bin/ca-server" --ring "$CA_RING_NAME")
[ -n "$CA_PIPELINE_ID" ] && common_args+=(--pipeline "$CA_PIPELINE_ID")

log "headless session with our pipeline"
rc=0
"$python_bin" "$DEPLOY_DIR/probe.py" session "${common_args[@]}" --timeout-s "$CA_SMOKE_TIMEOUT_S" \
  --frame-out "$out/smoke-frame.jpg" | tee "$out/smoke-session.json" || rc=$?
[ "$rc" = 0 ] || die "headless session failed (exit $rc); see $out/smoke-session.json and scope.out.log"

if [ "$e2e" = 1 ]; then
  log "end to end: our pipeline -> $CA_KREA_PIPELINE (this loads a 14B model; minutes)"
  "$python_bin" "$DEPLOY_DIR/probe.py" chain "${common_args[@]}" --krea "$CA_KREA_PIPELINE" \
    --timeout-s "$CA_E2E_TIMEOUT_S" --frame-out "$out/chain-frame.jpg" | tee "$out/smoke-chain.json" || rc=$?
  [ "$rc" = 0 ] || die "chain into $CA_KREA_PIPELINE failed (exit $rc); see $out/smoke-chain.json"
fi
log "SMOKE PASSED"
