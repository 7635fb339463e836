#!/usr/bin/env bash
# Builds Argo CD pieces from their Go modules into a version-keyed cache outside the repo. Builds only
# what is missing or stale. Prints the bin directory on its last line.
#
#   bash hack/build-argocd.sh lua      # gonka-argocd-lua: our health-check runner on Argo CD's Lua VM
#                                      # (hack/argocd-lua/luahealth; `make test` needs only this)
#   bash hack/build-argocd.sh argocd   # argocd: the application-controller + repo-server binary
#                                      # (hack/argocd-lua/components; `make test-gitops`)
#   bash hack/build-argocd.sh all
#
# Why a wrapper module: argo-cd/v3 replaces its gitops-engine module with ./gitops-engine, so
# `go install …/cmd@version` refuses it. A throw-away module that requires argo-cd/v3 and the
# published gitops-engine/v3 of the same version, with argo-cd's other replace lines copied, builds
# upstream's packages unchanged. argo-cd v3.6 needs Go 1.27: GOTOOLCHAIN fetches it through the Go
# module proxy when the local Go is older.
#
# The two mains are our own (hack/argocd-lua/*/main.go); everything they run is upstream's code at
# ARGOCD_VERSION. The binary name of a main carries a hash of its source, so an edit rebuilds it.
set -euo pipefail

ARGOCD_VERSION="${ARGOCD_VERSION:-v3.6.1}"
GITOPS_ENGINE_VERSION="${GITOPS_ENGINE_VERSION:-$ARGOCD_VERSION}"
ARGOCD_GOTOOLCHAIN="${ARGOCD_GOTOOLCHAIN:-go1.27.3}"

HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE_ROOT="${GONKA_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gonka-operator}"
BIN="$CACHE_ROOT/bin-argocd-$ARGOCD_VERSION"
WORK="$CACHE_ROOT/src/argocd-$ARGOCD_VERSION-gitops-engine-$GITOPS_ENGINE_VERSION"
mkdir -p "$BIN" "$WORK"
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -trimpath" GOTOOLCHAIN="$ARGOCD_GOTOOLCHAIN"

log() { printf '[build-argocd] %s\n' "$*" >&2; }

wrapper_module() {
  [ -f "$WORK/go.sum" ] && [ -f "$WORK/.complete" ] && return
  log "argo-cd $ARGOCD_VERSION: writing the wrapper module in $WORK"
  local gomod
  gomod=$(go mod download -json "github.com/argoproj/argo-cd/v3@$ARGOCD_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  {
    echo "module gonka-operator.local/argocd-build"
    grep -E '^go [0-9]' "$gomod"
    echo "require ("
    echo "	github.com/argoproj/argo-cd/v3 $ARGOCD_VERSION"
    echo "	github.com/argoproj/argo-cd/gitops-engine/v3 $GITOPS_ENGINE_VERSION"
    echo ")"
    # argo-cd's replace block(s), minus the local ./gitops-engine path
    awk '/^replace \($/{inblk=1; print; next} inblk && /^\)$/{inblk=0; print; next} inblk{print; next}
         /^replace /{print}' "$gomod" | grep -v '=> \./'
  } > "$WORK/go.mod"
  # tools.go keeps every package either main needs in the module graph for `go mod tidy`.
  printf '%s\n' '//go:build tools' '' 'package tools' '' 'import (' \
    '	_ "github.com/argoproj/argo-cd/v3/cmd/argocd-application-controller/commands"' \
    '	_ "github.com/argoproj/argo-cd/v3/cmd/argocd-git-ask-pass/commands"' \
    '	_ "github.com/argoproj/argo-cd/v3/cmd/argocd-repo-server/commands"' \
    '	_ "github.com/argoproj/argo-cd/v3/util/lua"' ')' > "$WORK/tools.go"
  (cd "$WORK" && go mod tidy >&2)
  touch "$WORK/.complete"
}

build_main() {  # name source-dir
  local name="$1" src="$HERE/argocd-lua/$2" sum
  # the version argo-cd's own Makefile stamps (logs and metrics say v3.6.1+unknown, not v99.99.99)
  local ldflags="-s -w -X github.com/argoproj/argo-cd/v3/common.version=${ARGOCD_VERSION#v}"
  sum=$( (cat "$src"/*.go; echo "$ldflags") | sha256sum | cut -c1-12)
  if [ -x "$BIN/$name" ] && [ "$(cat "$BIN/$name.src" 2>/dev/null)" = "$sum" ]; then
    log "$name ($ARGOCD_VERSION, source $sum): cached"; return
  fi
  wrapper_module
  log "$name ($ARGOCD_VERSION, source $sum): building"
  rm -rf "$WORK/$2" && mkdir -p "$WORK/$2" && cp "$src"/*.go "$WORK/$2/"
  local start=$SECONDS
  (cd "$WORK" && go build -ldflags "$ldflags" -o "$BIN/$name.tmp" "./$2")
  mv "$BIN/$name.tmp" "$BIN/$name" && echo "$sum" > "$BIN/$name.src"
  log "  took $((SECONDS - start)) s, $(du -m "$BIN/$name" | cut -f1) MB"
}

argocd_files() {
  # Argo CD's own CRDs (Application, AppProject) of the same version, for the tests to apply, and the
  # git-verify-wrapper.sh its image puts on the repo-server's PATH (it runs it for every revision).
  [ -f "$BIN/crds/application-crd.yaml" ] && [ -f "$BIN/crds/appproject-crd.yaml" ] \
    && [ -x "$BIN/git-verify-wrapper.sh" ] && return
  local dir
  dir=$(go mod download -json "github.com/argoproj/argo-cd/v3@$ARGOCD_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  mkdir -p "$BIN/crds"
  cp "$dir/manifests/crds/application-crd.yaml" "$dir/manifests/crds/appproject-crd.yaml" "$BIN/crds/"
  install -m 0755 "$dir/hack/git-verify-wrapper.sh" "$BIN/git-verify-wrapper.sh"
}

case "${1:-all}" in
  lua) build_main gonka-argocd-lua luahealth ;;
  argocd) build_main argocd components; argocd_files ;;
  all) build_main gonka-argocd-lua luahealth; build_main argocd components; argocd_files ;;
  *) echo "usage: $0 [lua|argocd|all]" >&2; exit 2 ;;
esac
echo "$BIN"
