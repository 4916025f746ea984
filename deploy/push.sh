#!/usr/bin/env bash
# From a laptop: push the checked-out commit to a pod over direct-TCP SSH, deploy it there
# (pod-deploy.sh: bootstrap, restart what changed) and print the pod's health check.
#
# Usage: deploy/push.sh [ssh] [USER@]HOST -p PORT [-i KEY] [more ssh options]
#   i.e. the "SSH over exposed TCP" command RunPod shows, pasted after the script name.
#   The RunPod SSH gateway (ssh.runpod.io) cannot carry files and is refused.
# Reads: CA_PUSH_REF (commit to deploy, default HEAD), CA_REMOTE_WORKSPACE (/workspace),
#   CA_SSH_CONNECT_TIMEOUT_S (15).
# Sends only `git archive` of the commit (never the working tree, never a secret); the pod keeps
# each commit in $CA_REMOTE_WORKSPACE/ca/src/<commit>, written under a temporary name first.
set -euo pipefail

CA_PUSH_REF="${CA_PUSH_REF:-HEAD}"
CA_REMOTE_WORKSPACE="${CA_REMOTE_WORKSPACE:-/workspace}"
CA_SSH_CONNECT_TIMEOUT_S="${CA_SSH_CONNECT_TIMEOUT_S:-15}"

say() { printf '[push] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

[ "${1:-}" = ssh ] && shift
if [ "$#" -lt 1 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
  sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
for arg in "$@"; do
  case "$arg" in
    *ssh.runpod.io*) die "the RunPod SSH gateway (ssh.runpod.io) cannot copy files; use the pod's direct TCP address (Connect > SSH over exposed TCP: root@IP -p PORT)" ;;
  esac
done

repo="$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)" \
  || die "run this from a git checkout of ca-server"
commit="$(git -C "$repo" rev-parse --verify "$CA_PUSH_REF^{commit}")" \
  || die "'$CA_PUSH_REF' is not a commit"
if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no)" ]; then
  say "warning: uncommitted changes are NOT deployed; deploying commit $commit"
fi

ssh_opts=(-o BatchMode=yes -o ConnectTimeout="$CA_SSH_CONNECT_TIMEOUT_S" -o ServerAliveInterval=15)
remote_dir="$CA_REMOTE_WORKSPACE/ca/src/$commit"
printf -v remote_q '%q' "$remote_dir"
# Receive into <dir>.part and rename, so an interrupted push never looks like a complete tree.
receive="set -eu; d=$remote_q
if [ -f \"\$d/.ca-commit\" ]; then cat >/dev/null; echo \"[pod] $commit already present\"; exit 0; fi
rm -rf \"\$d.part\" \"\$d\"; mkdir -p \"\$d.part\"; tar -x -C \"\$d.part\"
echo $commit >\"\$d.part/.ca-commit\"; mv \"\$d.part\" \"\$d\"; echo \"[pod] received $commit\""

say "pushing $commit to $*"
# shellcheck disable=SC2029  # the remote command is built here, with %q-quoted paths
git -C "$repo" archive --format=tar "$commit" | ssh "${ssh_opts[@]}" "$@" "$receive" \
  || die "copying the tree failed (is TCP port 22 exposed and sshd running on the pod?)"
say "deploying on the pod (first run installs CuPy and the plugin: minutes)"
rc=0
# shellcheck disable=SC2029
ssh "${ssh_opts[@]}" "$@" "$remote_q/deploy/pod-deploy.sh" || rc=$?
if [ "$rc" = 0 ]; then say "deployed $commit: healthy"; else say "deploy of $commit finished UNHEALTHY (exit $rc)"; fi
exit "$rc"
