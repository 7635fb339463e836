#!/usr/bin/env bash
# Installs the Debian packages the local test cluster needs, idempotently: a package already
# installed (dpkg -s) is skipped, so a warm run touches no network and takes well under a second.
#
#   bash hack/install-apt.sh            # every group below
#   bash hack/install-apt.sh realnode   # one group
#
# Groups (add yours as a new case; keep each list minimal):
#   realnode  the real node beside the kwok nodes (devcluster --real-node): container runtime,
#             the packet-filter tools kube-proxy and kube-router's firewall call, and the tools
#             that build images without a daemon or a registry (mmdebstrap, buildah).
#   nginx     the Debian nginx that the stand-in tests use as the ML pod's routing proxy.
#   gitops    Argo CD's redis and the git its repo-server runs (tests/gitops, `make test-gitops`).
set -euo pipefail

declare -A GROUPS_=(
  [realnode]="containerd runc iptables ipset conntrack mmdebstrap buildah"
  [nginx]="nginx-light"
  [gitops]="redis-server git"
)

want=()
for g in "${@:-${!GROUPS_[@]}}"; do
  [ -n "${GROUPS_[$g]+x}" ] || { echo "install-apt: unknown group $g (have: ${!GROUPS_[*]})" >&2; exit 2; }
  for p in ${GROUPS_[$g]}; do
    dpkg -s "$p" >/dev/null 2>&1 || want+=("$p")
  done
done
[ ${#want[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "install-apt: need root to install: ${want[*]}" >&2; exit 1
fi
echo "install-apt: installing ${want[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
# --no-install-recommends: buildah recommends podman-ish extras, containerd recommends nothing we use.
apt-get install -y -qq --no-install-recommends "${want[@]}" >&2
# Debian starts the packaged daemons; the cluster runs its own instances with its own configs.
for svc in containerd nginx redis-server; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" >&2 || true
    systemctl disable "$svc" >&2 2>/dev/null || true
  fi
done
