# shellcheck shell=bash
# sshd for deploys from a laptop: the Scope image has none, and the container disk (where apt
# puts it) is wiped at every restart, so pod-start installs it again each boot. Host keys are
# kept on the volume so the laptop's known_hosts stays valid across restarts. The public key
# comes from RunPod's PUBLIC_KEY variable. Sourced after common.sh.

CA_SSHD_BIN="${CA_SSHD_BIN:-/usr/sbin/sshd}"
CA_SSH_ETC="${CA_SSH_ETC:-/etc/ssh}"
CA_AUTHORIZED_KEYS="${CA_AUTHORIZED_KEYS:-/root/.ssh/authorized_keys}"
CA_SSH_HOST_KEYS="${CA_SSH_HOST_KEYS:-$CA_STATE_DIR/ssh-host-keys}"
CA_APT_CACHE="${CA_APT_CACHE:-$CA_HOME/cache/apt}"

start_sshd() {
  if [ ! -x "$CA_SSHD_BIN" ]; then
    log "sshd: installing openssh-server (debs cached in $CA_APT_CACHE)"
    mkdir -p "$CA_APT_CACHE/partial"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      -o Dir::Cache::archives="$CA_APT_CACHE" openssh-server >/dev/null
  fi
  mkdir -p "$CA_SSH_HOST_KEYS" "$CA_SSH_ETC"
  if compgen -G "$CA_SSH_HOST_KEYS/ssh_host_*_key" >/dev/null; then
    cp -p "$CA_SSH_HOST_KEYS"/ssh_host_* "$CA_SSH_ETC/"
  else
    ssh-keygen -A >/dev/null
    cp -p "$CA_SSH_ETC"/ssh_host_* "$CA_SSH_HOST_KEYS/"
  fi
  if [ -n "${PUBLIC_KEY:-}" ]; then
    mkdir -p "$(dirname "$CA_AUTHORIZED_KEYS")"
    chmod 700 "$(dirname "$CA_AUTHORIZED_KEYS")"
    touch "$CA_AUTHORIZED_KEYS"
    grep -qxF "$PUBLIC_KEY" "$CA_AUTHORIZED_KEYS" || printf '%s\n' "$PUBLIC_KEY" >>"$CA_AUTHORIZED_KEYS"
    chmod 600 "$CA_AUTHORIZED_KEYS"
  else
    log "sshd: PUBLIC_KEY is not set; add your key in RunPod's settings or authorized_keys"
  fi
  if [ -f /run/sshd.pid ] && kill -0 "$(cat /run/sshd.pid)" 2>/dev/null; then
    log "sshd: already running"
    return 0
  fi
  mkdir -p /run/sshd
  "$CA_SSHD_BIN"
  log "sshd: started (expose TCP port 22 in the template to reach it)"
}
