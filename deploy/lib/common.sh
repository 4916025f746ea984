# shellcheck shell=bash
# Shared by every deploy script: the path roots (all overridable, so the tests can run the
# scripts against a fake root), logging, the deploy lock, stamps, and import_env. Sourced, never
# run. Nothing here prints an environment value: secrets reach the programs only by inheritance.

CA_PROC1_ENVIRON="${CA_PROC1_ENVIRON:-/proc/1/environ}"

# Variables import_env may copy from PID 1 into an SSH session (which starts with a clean
# environment on this image). Values are only ever held in memory.
CA_IMPORT_ENV_NAMES="${CA_IMPORT_ENV_NAMES:-HF_TOKEN CIVITAI_API_TOKEN PUBLIC_KEY DAYDREAM_SCOPE_PLUGINS_DIR DAYDREAM_SCOPE_MODELS_DIR DAYDREAM_SCOPE_LOGS_DIR CUDA_VISIBLE_DEVICES RUNPOD_POD_ID}"

# Append to PATH the entries of PATH-like $1 that it lacks. An SSH session starts with sshd's
# short PATH: without PID 1's entries it misses the image's /root/.local/bin (uv) and wherever
# the NVIDIA runtime put nvidia-smi (a GPU pod would then install in degraded mode).
merge_path() {
  local entries entry
  IFS=: read -r -a entries <<<"$1"
  for entry in "${entries[@]}"; do
    [ -n "$entry" ] || continue
    case ":$PATH:" in *":$entry:"*) ;; *) PATH="${PATH:+$PATH:}$entry" ;; esac
  done
  export PATH
}

# Copy each allowlisted variable that is unset here from PID 1's environment, and every
# CA_* tunable too (the template's env), so an SSH session deploys like the start command;
# PID 1's PATH entries are appended to ours. `import_env --all` copies every unset variable:
# for a supervisord started from an SSH session, whose programs must see the same environment
# as after a boot (NVIDIA_*, LD_LIBRARY_PATH, Scope's own settings, ...).
import_env() {
  [ -r "$CA_PROC1_ENVIRON" ] || return 0
  local all="${1:-}" entry name value
  while IFS= read -r -d '' entry; do
    name="${entry%%=*}"
    value="${entry#*=}"
    [[ "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
    if [ "$name" = PATH ]; then
      merge_path "$value"
      continue
    fi
    if [ "$all" != --all ]; then
      case " $CA_IMPORT_ENV_NAMES " in
        *" $name "*) ;;
        *) case "$name" in CA_[A-Z0-9_]*) ;; *) continue ;; esac ;;
      esac
    fi
    if [ -z "${!name+set}" ]; then
      printf -v "$name" '%s' "$value"
      export "${name?}"
    fi
  done <"$CA_PROC1_ENVIRON"
}

# Fill unset variables first, so that tunables from the template env win over the defaults below.
import_env

CA_WORKSPACE="${CA_WORKSPACE:-/workspace}"
CA_APP_DIR="${CA_APP_DIR:-/app}"
CA_RUN_DIR="${CA_RUN_DIR:-/tmp/ca-run}"
CA_HOME="${CA_HOME:-$CA_WORKSPACE/ca}"
CA_LOG_DIR="${CA_LOG_DIR:-$CA_WORKSPACE/logs}"
CA_STATE_DIR="${CA_STATE_DIR:-$CA_HOME/state}"
CA_SNAPSHOT_DIR="${CA_SNAPSHOT_DIR:-$CA_HOME/src}"
CA_CURRENT="${CA_CURRENT:-$CA_HOME/current}"
CA_VENV="${CA_VENV:-$CA_HOME/venv}"
CA_TOOLS_VENV="${CA_TOOLS_VENV:-$CA_HOME/tools}"
CA_SCOPE_PLUGINS_DIR="${CA_SCOPE_PLUGINS_DIR:-${DAYDREAM_SCOPE_PLUGINS_DIR:-$CA_WORKSPACE/scope/plugins}}"
CA_PROC1_CMDLINE="${CA_PROC1_CMDLINE:-/proc/1/cmdline}"
CA_GPU="${CA_GPU:-0}"
CA_RING_NAME="${CA_RING_NAME:-${CA_SERVER_NAME:-gpu$CA_GPU}}"
CA_SCOPE_HOST="${CA_SCOPE_HOST:-0.0.0.0}"
CA_SCOPE_PORT="${CA_SCOPE_PORT:-8000}"
CA_SCOPE_URL="${CA_SCOPE_URL:-http://127.0.0.1:$CA_SCOPE_PORT}"
CA_PLUGIN_DIST="${CA_PLUGIN_DIST:-ca-server}"
# The daemon's runtime folder (lock, ipc control socket); the daemon, Scope's plugin and
# `ca-server ctl` all get the same value so they meet without further configuration.
CA_SERVER_RUNTIME_DIR="${CA_SERVER_RUNTIME_DIR:-$CA_RUN_DIR/ca-server}"
export CA_SERVER_RUNTIME_DIR

# The folder the daemon writes its ring into and the plugin reads it from (both read
# CA_SERVER_SHM_DIR); CA_SHM_DIR is the older name of the same setting.
CA_SERVER_SHM_DIR="${CA_SERVER_SHM_DIR:-${CA_SHM_DIR:-/dev/shm}}"
export CA_SERVER_SHM_DIR

if [ -z "${CA_UV:-}" ]; then
  if [ -x /root/.local/bin/uv ]; then CA_UV=/root/.local/bin/uv; else CA_UV="$(command -v uv || echo uv)"; fi
fi
# Scope's plugin manager runs a bare `uv` found through PATH (its own installs, and its startup
# self-heal): whatever we start of Scope must find the image's uv.
case ":$PATH:" in *":$(dirname "$CA_UV"):"*) ;; *) PATH="$(dirname "$CA_UV"):$PATH" ;; esac
export PATH

CA_SCRIPT_NAME="${CA_SCRIPT_NAME:-$(basename "$0" .sh)}"

log() { printf '%s [%s] %s\n' "$(date -u +%H:%M:%S)" "$CA_SCRIPT_NAME" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Hold the deploy lock on fd 9 for the rest of the calling script.
take_deploy_lock() {
  mkdir -p "$CA_RUN_DIR"
  exec 9>"$CA_RUN_DIR/deploy.lock"
  flock -n 9 || die "another deploy step holds $CA_RUN_DIR/deploy.lock; wait for it to finish"
}

# sha256 of the listed files and folders under ROOT (path + content, sorted, caches ignored),
# so a stamp changes exactly when an input changes, with or without git on the pod.
tree_digest() {
  local root="$1" existing=() path
  shift
  for path in "$@"; do [ -e "$root/$path" ] && existing+=("$path"); done
  [ "${#existing[@]}" -gt 0 ] || die "none of [$*] exists under $root"
  (
    cd "$root" || exit 1
    find "${existing[@]}" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 \
      | LC_ALL=C sort -z | xargs -0 -r sha256sum
  ) | sha256sum | cut -c1-64
}

# sha256 of the arguments, one per line.
string_digest() { printf '%s\n' "$@" | sha256sum | cut -c1-64; }

read_stamp() { cat "$1" 2>/dev/null || true; }

# Write FILE atomically (content from stdin): readers see the old or the new file, never half.
write_atomic() {
  local file="$1" tmp
  mkdir -p "$(dirname "$file")"
  tmp="$(mktemp "$file.XXXXXX")"
  cat >"$tmp"
  mv -f "$tmp" "$file"
}

# Point symlink LINK at TARGET atomically.
switch_link() {
  local target="$1" link="$2"
  ln -sfn "$target" "$link.new"
  mv -T "$link.new" "$link"
}

# A Python for JSON and the Scope API probe: ours, else Scope's, else the system's.
probe_python() {
  local candidate
  for candidate in "$CA_VENV/bin/python" "$CA_APP_DIR/.venv/bin/python"; do
    [ -x "$candidate" ] && { echo "$candidate"; return 0; }
  done
  command -v python3 || die "no Python found for the probe (looked in $CA_VENV and $CA_APP_DIR/.venv)"
}

# Scope's own entry point `daydream-scope ARGS...` from its venv, in the Scope app folder (Scope
# reads pyproject.toml and uv.lock from the current folder), with the environment `uv run` would
# give it. Never through `uv run`: a uv other than the image's can re-create (empty) Scope's venv,
# and under a supervisor the wrapper, not the server, would hold the supervised PID.
scope_cli() {
  (cd "$CA_APP_DIR" && VIRTUAL_ENV="$CA_APP_DIR/.venv" PATH="$CA_APP_DIR/.venv/bin:$PATH" \
    DAYDREAM_SCOPE_PLUGINS_DIR="$CA_SCOPE_PLUGINS_DIR" exec "$CA_APP_DIR/.venv/bin/daydream-scope" "$@")
}

supervisorctl_cmd() { "$CA_TOOLS_VENV/bin/supervisorctl" -c "$CA_RUN_DIR/supervisord.conf" "$@"; }

supervisord_running() {
  [ -S "$CA_RUN_DIR/supervisor.sock" ] && [ -x "$CA_TOOLS_VENV/bin/supervisorctl" ] \
    && [ -f "$CA_RUN_DIR/supervisord.conf" ] && supervisorctl_cmd pid >/dev/null 2>&1
}

# True when Scope itself is PID 1 (the image's default CMD), i.e. we can only attach to it.
scope_is_pid1() {
  [ -r "$CA_PROC1_CMDLINE" ] && [[ "$(tr '\0' ' ' <"$CA_PROC1_CMDLINE")" == *daydream-scope* ]]
}
