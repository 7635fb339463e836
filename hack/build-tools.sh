#!/usr/bin/env bash
# Builds the local control plane (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl,
# etcd) and the helper tools (kwok, helm) from their Go modules, into a version-keyed cache outside
# the repo. Builds only what is missing. Prints the bin directory on its last line.
#
# Why wrapper modules: k8s.io/kubernetes and etcd's server module replace their sibling modules with
# local paths, so `go install pkg@version` refuses them. A throw-away module that requires the
# top-level module and replaces every sibling with its published version builds the same binaries.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
HELM_VERSION="${HELM_VERSION:-v3.19.5}"

CACHE_ROOT="${GONKA_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gonka-operator}"
BIN="$CACHE_ROOT/bin-k8s-${K8S_VERSION}-etcd-${ETCD_VERSION}-kwok-${KWOK_VERSION}-helm-${HELM_VERSION}"
mkdir -p "$BIN"
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -trimpath" GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

log() { printf '[build-tools] %s\n' "$*" >&2; }
timed() { local start=$SECONDS; "$@"; log "  took $((SECONDS - start)) s"; }

build_kubernetes() {
  local want=(kube-apiserver kube-controller-manager kube-scheduler kubectl) missing=()
  for b in "${want[@]}"; do [ -x "$BIN/$b" ] || missing+=("$b"); done
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
  (cd "$work" && go get "${pinned[@]}" >&2
   timed go build -ldflags "-s -w $ld" -o "$BIN/" "${pkgs[@]}")
}

build_etcd() {
  [ -x "$BIN/etcd" ] && { log "etcd $ETCD_VERSION: cached"; return; }
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
  (cd "$work" && go mod tidy >&2 && timed go build -ldflags "-s -w" -o "$BIN/etcd" .)
}

build_go_install() {  # name module version
  [ -x "$BIN/$1" ] && { log "$1 $3: cached"; return; }
  log "$1 $3: building"
  GOBIN="$BIN" timed go install -ldflags "-s -w" "$2@$3"
}

build_kubernetes
build_etcd
build_go_install kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION"
build_go_install helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
echo "$BIN"
