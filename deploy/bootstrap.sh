#!/usr/bin/env bash
# Idempotent install of the tree this script lives in: preflight, the supervisor's venv, the
# daemon's venv (CuPy chosen from the driver and GPU), the plugin in Scope's venv (every package
# Scope has pinned as installed), and the rendered supervisord config. Each component has a
# stamp (sha256 of its inputs); a component whose stamp matches is left alone, so a second run
# changes nothing and an update reinstalls only what changed. A stamp is written only after its
# component installed and checked, so a failed step leaves the last good install in place.
#
# Usage: bootstrap.sh [--render-only]
#   --render-only  only (re)render the supervisord config from what is installed
# Reads: the tunables below and in lib/common.sh, lib/cupy.sh (all environment variables).
# Writes: $CA_HOME/{envs,venv,tools,state,current}, $CA_APP_DIR/.venv (our plugin only),
#   $CA_RUN_DIR/{supervisord.conf,last-changes,scope-constraints.txt},
#   $CA_LOG_DIR/deploy/{bootstrap-*.log,scope-freeze-*.txt}.
set -euo pipefail

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
CA_SCRIPT_NAME=bootstrap
# shellcheck source=lib/common.sh
source "$DEPLOY_DIR/lib/common.sh"
# shellcheck source=lib/cupy.sh
source "$DEPLOY_DIR/lib/cupy.sh"

CA_SOURCE="${CA_SOURCE:-$(dirname "$DEPLOY_DIR")}"
CA_PYTHON_VERSION="${CA_PYTHON_VERSION:-3.12}"
CA_SUPERVISOR_SPEC="${CA_SUPERVISOR_SPEC:-supervisor==4.3.0}"
CA_DAEMON_INPUTS="${CA_DAEMON_INPUTS:-pyproject.toml ca_server}"
CA_PLUGIN_INPUTS="${CA_PLUGIN_INPUTS:-pyproject.toml ca_scope_client ca_server/__init__.py ca_server/wire ca_server/presets}"
CA_MIN_FREE_GB="${CA_MIN_FREE_GB:-20}"
CA_REQUIRE_GPU="${CA_REQUIRE_GPU:-0}"
CA_KEEP_SNAPSHOTS="${CA_KEEP_SNAPSHOTS:-3}"
CA_SERVER_MAX_VRAM_MB="${CA_SERVER_MAX_VRAM_MB:-1024}"
CA_DAEMON_STARTSECS="${CA_DAEMON_STARTSECS:-5}"
CA_SCOPE_STARTSECS="${CA_SCOPE_STARTSECS:-15}"
CUPY_CACHE_DIR="${CUPY_CACHE_DIR:-$CA_HOME/cache/cupy}"
# Our own installs cache and keep their interpreter on the volume (Scope's uv is left alone).
export UV_CACHE_DIR="${CA_UV_CACHE_DIR:-$CA_HOME/cache/uv}"
export UV_PYTHON_INSTALL_DIR="${CA_PYTHON_INSTALL_DIR:-$CA_HOME/python}"

RENDER_ONLY=0
case "${1:-}" in
  "") ;;
  --render-only) RENDER_ONLY=1 ;;
  *) echo "usage: bootstrap.sh [--render-only]" >&2; exit 2 ;;
esac

STEP="start"
CHANGED=()
PARTIAL_DIR=""
GPU_PRESENT=""  # 1 GPU, 0 none (degraded), empty: not checked yet
FAIL_NOTE="Nothing after it ran; the last good install is unchanged."
GPU_LINE=""
CUPY_SPEC=()
LOG_FILE="$CA_LOG_DIR/deploy/bootstrap-$(date -u +%Y%m%dT%H%M%SZ)-$$.log"

json_string() { local s="${1//\\/\\\\}"; s="${s//\"/\\\"}"; printf '"%s"' "$s"; }
json_list() {
  local first=1 item
  printf '['
  for item in "$@"; do
    [ "$first" = 1 ] || printf ','
    first=0
    json_string "$item"
  done
  printf ']'
}

# Degraded means "no GPU found"; before preflight's GPU check ran it is unknown (null).
degraded_json() { case "$GPU_PRESENT" in 1) echo false ;; 0) echo true ;; *) echo null ;; esac; }

write_state() {
  local status="$1" commit=""
  [ -f "$CA_SOURCE/.ca-commit" ] && commit="$(head -c 64 "$CA_SOURCE/.ca-commit")"
  {
    printf '{"status":%s,"step":%s,"source":%s,"commit":%s,' \
      "$(json_string "$status")" "$(json_string "$STEP")" "$(json_string "$CA_SOURCE")" \
      "$(json_string "$commit")"
    printf '"gpu":%s,"degraded":%s,"cupy_spec":%s,"changed":%s,"log":%s,"finished_utc":%s}\n' \
      "$(json_string "$GPU_LINE")" "$(degraded_json)" \
      "$(json_list "${CUPY_SPEC[@]}")" "$(json_list "${CHANGED[@]}")" \
      "$(json_string "$LOG_FILE")" "$(json_string "$(date -u +%FT%TZ)")"
  } | write_atomic "$CA_STATE_DIR/bootstrap.json"
}

on_exit() {
  local rc="$1"
  [ "$rc" = 0 ] && return 0
  [ -n "$PARTIAL_DIR" ] && rm -rf "$PARTIAL_DIR"
  log "FAILED in step '$STEP' (exit $rc). $FAIL_NOTE"
  log "full log: $LOG_FILE"
  write_state failed || true
}

# ---- preflight ------------------------------------------------------------------------------

free_kib() { df -Pk "$1" | awk 'NR == 2 { print $4 }'; }

# Room the ring needs in /dev/shm: slots x frame plus per-slot metadata, twice over (a restart
# creates the new segment before the old one is gone), plus a margin.
ring_need_mib() {
  local width="${CA_SERVER_WIDTH:-1024}" height="${CA_SERVER_HEIGHT:-1024}" slots="${CA_SERVER_SLOTS:-8}"
  echo $(((slots * (width * height * 3 + 64) + 65536) * 2 / 1048576 + 16))
}

preflight() {
  STEP="preflight"
  local tool
  for tool in flock sha256sum df; do
    command -v "$tool" >/dev/null || die "'$tool' is missing from PATH"
  done
  [ -x "$CA_UV" ] || die "uv not found at '$CA_UV'; set CA_UV to Scope's uv (the image has /root/.local/bin/uv)"
  [ -f "$CA_APP_DIR/pyproject.toml" ] && [ -x "$CA_APP_DIR/.venv/bin/python" ] \
    && [ -x "$CA_APP_DIR/.venv/bin/daydream-scope" ] \
    || die "no Scope install in $CA_APP_DIR (pyproject.toml, .venv/bin/python, .venv/bin/daydream-scope); set CA_APP_DIR"
  [ -f "$CA_SOURCE/pyproject.toml" ] || die "$CA_SOURCE is not a ca-server tree (no pyproject.toml)"
  [ -w "$CA_WORKSPACE" ] || die "$CA_WORKSPACE is not writable; attach a volume there or set CA_WORKSPACE"
  local free need
  free="$(free_kib "$CA_WORKSPACE")"
  need=$((CA_MIN_FREE_GB * 1048576))
  [ "$free" -ge "$need" ] \
    || die "$CA_WORKSPACE has $((free / 1048576)) GiB free, needs $CA_MIN_FREE_GB GiB (CA_MIN_FREE_GB)"
  mkdir -p "$CA_SERVER_SHM_DIR" 2>/dev/null || true
  free="$(free_kib "$CA_SERVER_SHM_DIR")"
  need=$((${CA_SHM_MIN_MB:-$(ring_need_mib)} * 1024))
  [ "$free" -ge "$need" ] \
    || die "$CA_SERVER_SHM_DIR has $((free / 1024)) MiB free, the ring needs $((need / 1024)) MiB; use a smaller --width/--height/--slots (CA_SERVER_*) or a pod with a larger /dev/shm"

  if command -v nvidia-smi >/dev/null \
    && GPU_LINE="$(nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total \
      --format=csv,noheader -i "$CA_GPU" 2>/dev/null | head -n 1)" && [ -n "$GPU_LINE" ]; then
    GPU_PRESENT=1
    log "GPU $CA_GPU: $GPU_LINE; driver CUDA $(detect_driver_cuda)"
    local spec
    spec="$(select_cupy_spec)" || die "no CuPy wheel fits this GPU and driver (reason above); CA_CUPY_SPEC overrides"
    mapfile -t CUPY_SPEC <<<"$spec"
    log "CuPy: ${CUPY_SPEC[*]}"
  else
    GPU_LINE=""
    GPU_PRESENT=0
    [ "$CA_REQUIRE_GPU" = 1 ] && die "no GPU visible (nvidia-smi) and CA_REQUIRE_GPU=1"
    log "no GPU visible: DEGRADED; the daemon is installed without CuPy and runs on the CPU"
  fi
}

# ---- venvs ----------------------------------------------------------------------------------

# Build venv NAME for STAMP in a fresh folder, install with INSTALLER, check, then point LINK at
# it. A matching stamp with a working interpreter means nothing to do.
ensure_venv() {
  local name="$1" link="$2" stamp="$3" installer="$4"
  local stamp_file="$CA_STATE_DIR/$name.stamp" target previous
  if [ "$(read_stamp "$stamp_file")" = "$stamp" ] && "$link/bin/python" -c 'import sys' >/dev/null 2>&1; then
    log "$name: up to date"
    return 0
  fi
  target="$CA_HOME/envs/$name-${stamp:0:16}"
  previous="$(readlink "$link" 2>/dev/null || true)"
  log "$name: installing into $target"
  rm -rf "$target"
  PARTIAL_DIR="$target"
  "$CA_UV" venv --quiet --python "$CA_PYTHON_VERSION" --python-preference only-managed "$target"
  "$installer" "$target"
  [ -L "$link" ] || rm -rf "$link"
  switch_link "$target" "$link"
  PARTIAL_DIR=""
  printf '%s\n' "$stamp" | write_atomic "$stamp_file"
  CHANGED+=("$name")
  local old
  for old in "$CA_HOME/envs/$name"-*; do
    [ "$old" = "$target" ] || [ "$old" = "$previous" ] || rm -rf "$old"
  done
}

install_tools() {
  "$CA_UV" pip install --quiet --python "$1/bin/python" "$CA_SUPERVISOR_SPEC"
  "$1/bin/supervisord" --version >/dev/null
}

install_daemon() {
  "$CA_UV" pip install --quiet --python "$1/bin/python" --refresh-package "$CA_PLUGIN_DIST" \
    "$CA_SOURCE" "${CUPY_SPEC[@]}"
  "$1/bin/ca-server" presets >/dev/null
  if [ "$GPU_PRESENT" = 1 ]; then
    # One real kernel compile: proves NVRTC, the CUDA headers and the GPU's architecture.
    CUPY_CACHE_DIR="$CUPY_CACHE_DIR" "$1/bin/python" -c \
      'import cupy as cp; cp.show_config(); assert int((cp.arange(8) * 2).sum()) == 56'
  fi
}

venv_steps() {
  local stamp inputs
  STEP="tools"
  stamp="$(string_digest "$CA_SUPERVISOR_SPEC" "$CA_PYTHON_VERSION")"
  ensure_venv tools "$CA_TOOLS_VENV" "$stamp" install_tools
  STEP="daemon"
  # shellcheck disable=SC2086  # the input list is word-split on purpose
  inputs="$(tree_digest "$CA_SOURCE" $CA_DAEMON_INPUTS)"
  stamp="$(string_digest "$inputs" "${CUPY_SPEC[@]}" "$CA_PYTHON_VERSION")"
  ensure_venv daemon "$CA_VENV" "$stamp" install_daemon
}

# ---- plugin ---------------------------------------------------------------------------------
# Not through `daydream-scope install`: that re-resolves all of Scope's dependencies against the
# package index (newest allowed versions: most of Scope's lock would change, on every plugin
# change and every boot) and needs Scope's GPU wheel indexes. Our plugin's dependencies are light,
# so it goes straight into Scope's venv with every package already there pinned as installed:
# only our distribution and the few dependencies Scope lacks (pyzmq, ...) are added. Freezes of
# Scope's venv before and after land in $CA_LOG_DIR/deploy; any change to Scope's packages fails.

SCOPE_PYTHON="$CA_APP_DIR/.venv/bin/python"
PLUGIN_MARKER="$CA_APP_DIR/.venv/.ca-plugin.stamp"
PLUGIN_CONSTRAINTS="$CA_RUN_DIR/scope-constraints.txt"

# Scope's venv as `uv pip freeze` lists it, without our own distribution.
scope_freeze() {
  local ours="^${CA_PLUGIN_DIST//[-_.]/[-_.]}(==| @ )" listing
  listing="$("$CA_UV" pip freeze --python "$SCOPE_PYTHON")" || return 1
  grep -viE "$ours" <<<"$listing" | LC_ALL=C sort || true
}

install_plugin_tree() {
  "$CA_UV" pip install --quiet --no-config --link-mode copy --python "$SCOPE_PYTHON" \
    --constraint "$PLUGIN_CONSTRAINTS" --reinstall-package "$CA_PLUGIN_DIST" "$1"
}

plugin_loads() { "$SCOPE_PYTHON" "$DEPLOY_DIR/check_plugin.py" "$CA_PLUGIN_DIST"; }

# Earlier deploys registered our tree in Scope's plugins.txt. Scope re-resolves its whole venv at
# startup when a listed plugin is missing, so entries pointing into $CA_HOME go (bootstrap
# installs the plugin itself, before Scope starts).
forget_plugins_txt_entries() {
  local file="$CA_SCOPE_PLUGINS_DIR/plugins.txt" kept
  [ -f "$file" ] || return 0
  kept="$(awk -v home="$CA_HOME/" 'index($0, home) != 1' "$file")"
  [ "$kept" = "$(cat "$file")" ] && return 0
  log "plugin: removing our entries from $file"
  printf '%s\n' "$kept" | sed '/^$/d' | write_atomic "$file"
}

# After a failed install or check, put the last good plugin back (switch_current keeps its tree)
# or, without one, remove ours, so Scope never keeps a plugin that failed its check.
restore_previous_plugin() {
  local previous="$1" stamp
  if [ -n "$previous" ] && [ "$previous" != "$CA_SOURCE" ] && [ -f "$previous/pyproject.toml" ] \
    && install_plugin_tree "$previous" && plugin_loads >/dev/null; then
    # shellcheck disable=SC2086  # the input list is word-split on purpose
    stamp="$(tree_digest "$previous" $CA_PLUGIN_INPUTS)"
    printf '%s\n' "$stamp" | write_atomic "$PLUGIN_MARKER"
    FAIL_NOTE="The last good plugin ($previous) was reinstalled; Scope keeps running it."
  else
    "$CA_UV" pip uninstall --quiet --python "$SCOPE_PYTHON" "$CA_PLUGIN_DIST" || true
    FAIL_NOTE="There was no earlier good plugin to go back to: Scope now runs WITHOUT the plugin."
  fi
}

plugin_step() {
  STEP="plugin"
  local stamp previous freeze changed
  # shellcheck disable=SC2086  # the input list is word-split on purpose
  stamp="$(tree_digest "$CA_SOURCE" $CA_PLUGIN_INPUTS)"
  forget_plugins_txt_entries
  if [ "$(read_stamp "$PLUGIN_MARKER")" = "$stamp" ] \
    && "$SCOPE_PYTHON" -c 'import importlib.metadata as m, sys; m.version(sys.argv[1])' \
      "$CA_PLUGIN_DIST" >/dev/null 2>&1; then
    log "plugin: up to date"
    return 0
  fi
  previous="$(read_stamp "$CA_STATE_DIR/plugin.source")"
  freeze="$CA_LOG_DIR/deploy/scope-freeze-$(date -u +%Y%m%dT%H%M%SZ)-$$"
  scope_freeze >"$freeze-before.txt" || die "'uv pip freeze' of Scope's venv failed"
  grep -E '^[A-Za-z0-9][A-Za-z0-9._-]*==' "$freeze-before.txt" | write_atomic "$PLUGIN_CONSTRAINTS" || true
  rm -f "$PLUGIN_MARKER"
  log "plugin: installing $CA_SOURCE into Scope's venv, Scope's $(wc -l <"$PLUGIN_CONSTRAINTS") packages pinned as installed"
  if ! install_plugin_tree "$CA_SOURCE"; then
    restore_previous_plugin "$previous"
    die "installing the plugin into Scope's venv failed (uv's error above)"
  fi
  scope_freeze >"$freeze-after.txt" || die "'uv pip freeze' of Scope's venv failed"
  changed="$(LC_ALL=C comm -23 "$freeze-before.txt" "$freeze-after.txt")"
  if [ -n "$changed" ]; then
    restore_previous_plugin "$previous"
    die "the plugin install changed Scope's packages (was: $(tr '\n' ' ' <<<"$changed")); see $freeze-*.txt"
  fi
  if ! plugin_loads; then
    restore_previous_plugin "$previous"
    die "plugin does not load in Scope (error above)"
  fi
  local listing
  listing="$(scope_cli plugins)" || die "'daydream-scope plugins' failed after the install"
  grep -Eq "^[[:space:]]*$CA_PLUGIN_DIST \(" <<<"$listing" \
    || die "'daydream-scope plugins' does not list $CA_PLUGIN_DIST after install"
  printf '%s\n' "$stamp" | write_atomic "$PLUGIN_MARKER"
  printf '%s\n' "$CA_SOURCE" | write_atomic "$CA_STATE_DIR/plugin.source"
  CHANGED+=(plugin)
}

# ---- supervisord config ---------------------------------------------------------------------

# shellcheck disable=SC2034  # the locals are read through ${!name}
render_config() {
  STEP="config"
  local CA_DAEMON_AUTOSTART=true CA_SCOPE_AUTOSTART=true CA_UV_DIR CUPY_GPU_MEMORY_LIMIT
  [ -x "$CA_VENV/bin/ca-server" ] || CA_DAEMON_AUTOSTART=false
  # Scope already PID 1 (the image's default CMD): supervise only the daemon beside it.
  if scope_is_pid1; then CA_SCOPE_AUTOSTART=false; fi
  CA_UV_DIR="$(dirname "$CA_UV")"
  CUPY_GPU_MEMORY_LIMIT=$((CA_SERVER_MAX_VRAM_MB * 1048576))
  local text name value conf="$CA_RUN_DIR/supervisord.conf"
  text="$(<"$DEPLOY_DIR/supervisord.conf.in")"
  for name in CA_RUN_DIR CA_LOG_DIR CA_VENV CA_GPU CA_RING_NAME CA_SERVER_MAX_VRAM_MB \
    CUPY_GPU_MEMORY_LIMIT CUPY_CACHE_DIR CA_SERVER_RUNTIME_DIR CA_DAEMON_AUTOSTART \
    CA_DAEMON_STARTSECS CA_SCOPE_HOST CA_SCOPE_PORT CA_APP_DIR CA_SCOPE_PLUGINS_DIR \
    CA_UV_DIR CA_SCOPE_AUTOSTART CA_SCOPE_STARTSECS CA_SERVER_SHM_DIR; do
    value="${!name}"
    [[ "$value" =~ ^[A-Za-z0-9_./:+=,@-]+$ ]] \
      || die "$name='$value' has characters the supervisord config cannot hold; use a plain path or number"
    text="${text//@"$name"@/"$value"}"
  done
  if [[ "$text" =~ @[A-Z_]+@ ]]; then die "supervisord.conf.in has an unfilled ${BASH_REMATCH[0]}"; fi
  mkdir -p "$CA_RUN_DIR" "$CA_LOG_DIR" "$CUPY_CACHE_DIR"
  if [ "$text" != "$(cat "$conf" 2>/dev/null)" ]; then
    printf '%s\n' "$text" | write_atomic "$conf"
    CHANGED+=(config)
    log "config: wrote $conf"
  else
    log "config: up to date"
  fi
}

# ---- snapshots ------------------------------------------------------------------------------

# Point `current` at this tree; keep it, the plugin's install source and the newest
# CA_KEEP_SNAPSHOTS others.
switch_current() {
  STEP="current"
  if [ "$(readlink "$CA_CURRENT" 2>/dev/null)" != "$CA_SOURCE" ]; then
    [ -L "$CA_CURRENT" ] || rm -rf "$CA_CURRENT"
    switch_link "$CA_SOURCE" "$CA_CURRENT"
    log "current -> $CA_SOURCE"
  fi
  [ -d "$CA_SNAPSHOT_DIR" ] || return 0
  local keep_plugin snapshot count=0
  keep_plugin="$(read_stamp "$CA_STATE_DIR/plugin.source")"
  while IFS= read -r snapshot; do
    [ "$snapshot" = "$CA_SOURCE" ] || [ "$snapshot" = "$keep_plugin" ] && continue
    count=$((count + 1))
    [ "$count" -le "$CA_KEEP_SNAPSHOTS" ] && continue
    log "pruning old snapshot $snapshot"
    rm -rf "$snapshot"
  done < <(find "$CA_SNAPSHOT_DIR" -mindepth 1 -maxdepth 1 -type d ! -name '*.part' -printf '%T@ %p\n' \
    | sort -rn | cut -d' ' -f2-)
}

main() {
  mkdir -p "$CA_LOG_DIR/deploy" "$CA_STATE_DIR" "$CA_RUN_DIR" "$CA_HOME/envs"
  exec > >(tee -a "$LOG_FILE") 2>&1
  trap 'on_exit $?' EXIT
  take_deploy_lock
  log "source $CA_SOURCE"
  if [ "$RENDER_ONLY" = 1 ]; then
    render_config
  else
    preflight
    venv_steps
    plugin_step
    render_config
    switch_current
  fi
  STEP="done"
  { [ "${#CHANGED[@]}" -eq 0 ] || printf '%s\n' "${CHANGED[@]}"; } | write_atomic "$CA_RUN_DIR/last-changes"
  write_state ok
  log "done; changed: ${CHANGED[*]:-nothing}"
}

main
