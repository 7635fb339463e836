#!/usr/bin/env bash
# `make run`: the local embedded default. Starts (or reuses) the local control plane, installs the
# CRDs, starts the admin-API stand-in on 127.0.0.1, applies example manifests into namespace
# gonka-demo and runs the operator in the foreground. Ctrl-C stops the operator and the stand-in;
# the control plane keeps running until `make cluster-down`.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
CLUSTER_DIR=${CLUSTER_DIR:-$PWD/.local/cluster}
SIM_PORT=${SIM_PORT:-19200}
NS=${DEMO_NAMESPACE:-gonka-demo}
mkdir -p .local

export GONKA_TOOLS_BIN=$(bash hack/build-tools.sh | tail -n1)
KUBECTL="$GONKA_TOOLS_BIN/kubectl"
export KUBECONFIG=$($BIN/python -m gonka_operator.devcluster up --dir "$CLUSTER_DIR" | sed -n 's/^KUBECONFIG=//p')
"$KUBECTL" apply --server-side -f crds/ >/dev/null
# (kubectl wait fails instead of waiting while a fresh CRD has no conditions yet: poll)
for _ in $(seq 100); do
  [ "$("$KUBECTL" get crd networknodes.gonka.ai inferencenodes.gonka.ai \
       -o jsonpath='{.items[*].status.conditions[?(@.type=="Established")].status}')" = "True True" ] && break
  sleep 0.2
done

$BIN/gonka-operator simulate-network-node --host 127.0.0.1 --port "$SIM_PORT" --generation latest \
  > .local/standin.log 2>&1 &
SIM_PID=$!
trap 'kill $SIM_PID 2>/dev/null || true' EXIT
$BIN/python - "$SIM_PORT" <<'PY'
import sys, time, httpx
for _ in range(100):
    try:
        httpx.get(f"http://127.0.0.1:{sys.argv[1]}/admin/v1/nodes", timeout=1).raise_for_status()
        break
    except httpx.HTTPError:
        time.sleep(0.1)
else:
    sys.exit("the admin-API stand-in did not start: see .local/standin.log")
PY

"$KUBECTL" create namespace "$NS" --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
for f in examples/01-network-node.yaml examples/04-qwen3-32b-1xh100.yaml examples/06-external-ml-node.yaml; do
  "$KUBECTL" apply -n "$NS" -f "$f"
done

cat <<MSG

== gonka-operator local demo ==========================================================
The operator is starting below. In another terminal:
  export KUBECONFIG=$KUBECONFIG
  $KUBECTL get gonka -n $NS                       # NetworkNode + InferenceNodes, Ready/Registry columns
  curl -s http://127.0.0.1:$SIM_PORT/admin/v1/nodes   # the stand-in's registry
  $KUBECTL apply -n $NS -f examples/03-qwen3-235b-8xh200.yaml   # register another ML node
  $KUBECTL delete inferencenode qwen32b-h100 -n $NS            # deregistered before it goes
Ctrl-C stops the operator and the stand-in; 'make cluster-down' stops the control plane.
=======================================================================================

MSG
GONKA_ADMIN_URL_OVERRIDES="*=http://127.0.0.1:$SIM_PORT" GONKA_REGISTRY_POLL_SECONDS=${POLL_SECONDS:-5} \
  $BIN/gonka-operator run
