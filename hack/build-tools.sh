#!/usr/bin/env bash
# Builds the local control plane (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl,
# etcd) and the helper tools (kwok, helm) from their Go modules, into a version-keyed cache outside
# the repo. Builds only what is missing. Prints the bin directory on its last line.
#
#   bash hack/build-tools.sh              # the control plane and tools (what the kwok tests need)
#   bash hack/build-tools.sh --real-node  # also the real node: kubelet, kube-proxy, crictl, CNI
#                                         # plugins, CoreDNS, kube-router (GONKA_REAL_NODE=1 too)
#
# The directory name holds every version, node ones included, so a version bump never mixes builds;
# a binary whose own version did not change is hard-linked from an older directory, not rebuilt.
#
# Why wrapper modules: k8s.io/kubernetes and etcd's server module replace their sibling modules with
# local paths, so `go install pkg@version` refuses them. A throw-away module that requires the
# top-level module and replaces every sibling with its published version builds the same binaries.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
HELM_VERSION="${HELM_VERSION:-v3.19.5}"
CNI_VERSION="${CNI_VERSION:-v1.6.2}"
CRICTL_VERSION="${CRICTL_VERSION:-v1.34.0}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.12.4}"
KUBE_ROUTER_VERSION="${KUBE_ROUTER_VERSION:-v2.1.0}"
REAL_NODE="${GONKA_REAL_NODE:-0}"
[ "${1:-}" = "--real-node" ] && REAL_NODE=1

CACHE_ROOT="${GONKA_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gonka-operator}"
BIN="$CACHE_ROOT/bin-k8s-${K8S_VERSION}-etcd-${ETCD_VERSION}-kwok-${KWOK_VERSION}-helm-${HELM_VERSION}"
BIN+="-cni-${CNI_VERSION}-crictl-${CRICTL_VERSION}-coredns-${COREDNS_VERSION}-kuberouter-${KUBE_ROUTER_VERSION}"
mkdir -p "$BIN"
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -trimpath" GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

log() { printf '[build-tools] %s\n' "$*" >&2; }
# Runs "$@" (a build step), printing "<binary>: built (N s)" as each binary named in $WATCH appears in
# $BIN, and a heartbeat every HEARTBEAT seconds while it runs (a cold Kubernetes build is quiet for
# tens of minutes: it must not look hung). Binaries still missing when it ends are reported then.
HEARTBEAT="${GONKA_BUILD_HEARTBEAT:-30}"
timed() {
  local start=$SECONDS beat=$SECONDS pid rc=0 b pending=() still=()
  read -r -a pending <<< "${WATCH:-}"
  "$@" & pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 0.2
    still=()
    for b in "${pending[@]}"; do
      if [ -x "$BIN/$b" ]; then log "  $b: built ($((SECONDS - start)) s)"; else still+=("$b"); fi
    done
    pending=("${still[@]}")
    if ((SECONDS - beat >= HEARTBEAT)); then
      beat=$SECONDS
      log "  ... still building ($((SECONDS - start)) s${pending[*]:+; not linked yet: ${pending[*]}})"
    fi
  done
  wait "$pid" || rc=$?
  [ "$rc" -eq 0 ] || { log "  FAILED after $((SECONDS - start)) s"; return "$rc"; }
  for b in "${pending[@]}"; do
    if [ -x "$BIN/$b" ]; then log "  $b: built ($((SECONDS - start)) s)"; else log "  $b: not produced"; fi
  done
  log "  took $((SECONDS - start)) s"
}
# Hard-links binary $1 from an older cache directory whose name holds the same "$2" (e.g.
# "-etcd-v3.6.16-"): the same version of that component, so the same binary.
reuse() {
  local d
  [ -x "$BIN/$1" ] && return 0
  for d in "$CACHE_ROOT"/bin-*; do
    case "$d-" in *"$2"*) [ "$d" != "$BIN" ] && [ -x "$d/$1" ] && ln -f "$d/$1" "$BIN/$1" 2>/dev/null \
      && { log "$1: reused from $d"; return 0; } ;; esac
  done
  return 1
}

build_kubernetes() {
  local want=(kube-apiserver kube-controller-manager kube-scheduler kubectl) missing=()
  [ "$REAL_NODE" = 1 ] && want+=(kubelet kube-proxy)
  for b in "${want[@]}"; do reuse "$b" "-k8s-$K8S_VERSION-" || missing+=("$b"); done
  [ ${#missing[@]} -eq 0 ] && { log "kubernetes $K8S_VERSION: cached"; return; }
  log "kubernetes $K8S_VERSION: building ${missing[*]} (cold: tens of minutes on 2 cores)"
  local work="$CACHE_ROOT/src/k8s-$K8S_VERSION"; mkdir -p "$work"
  local gomod minor patch
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  minor=$(echo "$K8S_VERSION" | cut -d. -f2); patch=$(echo "$K8S_VERSION" | cut -d. -f3)
  {
    echo "module gonka-operator.local/k8s-build"
    grep -E '^go [0-9]' "$gomod"
    grep -E '^godebug' "$gomod" || true
    echo "require k8s.io/kubernetes $K8S_VERSION"
    # every staging module (k8s.io/<name> => ./staging/src/k8s.io/<name>) -> its published v0.<minor>.<patch>
    grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging' "$gomod" \
      | awk -v v="v0.$minor.$patch" '{print "replace " $1 " => " $1 " " v}'
  } > "$work/go.mod"
  local ld="" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=2000-01-01T00:00:00Z"
  done
  local pkgs=(); for b in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
  local pinned=(); for p in "${pkgs[@]}"; do pinned+=("$p@$K8S_VERSION"); done
  log "  go get ${pinned[*]} (module downloads)"
  (cd "$work" && timed go get "${pinned[@]}" >&2
   WATCH="${missing[*]}" timed go build -ldflags "-s -w $ld" -o "$BIN/" "${pkgs[@]}")
}

build_etcd() {
  reuse etcd "-etcd-$ETCD_VERSION-" && { log "etcd $ETCD_VERSION: cached"; return; }
  log "etcd $ETCD_VERSION: building"
  local work="$CACHE_ROOT/src/etcd-$ETCD_VERSION"; mkdir -p "$work"
  local gomod
  gomod=$(go mod download -json "go.etcd.io/etcd/server/v3@$ETCD_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  {
    echo "module gonka-operator.local/etcd-build"
    grep -E '^go [0-9]' "$gomod"
    echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
    grep -E '^\s*go\.etcd\.io/etcd/[a-z0-9/]+ => \.\./' "$gomod" \
      | awk -v v="$ETCD_VERSION" '{print "replace " $1 " => " $1 " " v}'
  } > "$work/go.mod"
  printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' > "$work/main.go"
  (cd "$work" && go mod tidy >&2 && WATCH=etcd timed go build -ldflags "-s -w" -o "$BIN/etcd" .)
}

build_go_install() {  # name module version [reuse-pattern]
  reuse "$1" "${4:--$1-$3-}" && { log "$1 $3: cached"; return; }
  log "$1 $3: building"
  GOBIN="$BIN" WATCH="$1" timed go install -ldflags "-s -w" "$2@$3"
}

build_cni() {  # the CNI plugins containerd calls for a pod's network (one module, one build)
  local want=(bridge host-local loopback portmap) missing=() b
  for b in "${want[@]}"; do reuse "$b" "-cni-$CNI_VERSION-" || missing+=("$b"); done
  [ ${#missing[@]} -eq 0 ] && { log "cni plugins $CNI_VERSION: cached"; return; }
  log "cni plugins $CNI_VERSION: building ${missing[*]}"
  local pkgs=() m=github.com/containernetworking/plugins/plugins
  for b in "${missing[@]}"; do
    case "$b" in bridge|loopback) pkgs+=("$m/main/$b@$CNI_VERSION") ;; host-local) pkgs+=("$m/ipam/$b@$CNI_VERSION") ;;
      portmap) pkgs+=("$m/meta/$b@$CNI_VERSION") ;; esac
  done
  GOBIN="$BIN" WATCH="${missing[*]}" timed go install -ldflags "-s -w" "${pkgs[@]}"
}

build_kubernetes
build_etcd
build_go_install kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION"
build_go_install helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
if [ "$REAL_NODE" = 1 ]; then
  build_cni
  build_go_install crictl sigs.k8s.io/cri-tools/cmd/crictl "$CRICTL_VERSION" "-crictl-$CRICTL_VERSION-"
  build_go_install coredns github.com/coredns/coredns "$COREDNS_VERSION" "-coredns-$COREDNS_VERSION-"
  build_go_install kube-router github.com/cloudnativelabs/kube-router/v2/cmd/kube-router "$KUBE_ROUTER_VERSION" \
    "-kuberouter-$KUBE_ROUTER_VERSION-"
fi
echo "$BIN"
