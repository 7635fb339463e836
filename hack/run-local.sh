#!/usr/bin/env bash
# `make run`: the local embedded default. Starts (or reuses) the local control plane, installs the
# CRDs, starts the stand-ins on 127.0.0.1 (the network node: admin API, public API, ML callback,
# broker; one ML node, behind the real nginx with the operator's proxy config when nginx is
# installed), applies example manifests into namespace gonka-demo and runs the operator in the
# foreground. Ctrl-C stops the operator and the stand-ins; the control plane keeps running until
# `make cluster-down`.
#
# What the demo shows honestly: the external ML node of examples/06 is pointed at the loopback ML
# stand-in (its host/ports are rewritten on the fly) and reaches INFERENCE; the in-cluster ML nodes
# run on kwok's fake pods, nothing answers there (their Service names do not even resolve on this
# machine), so the broker reports them FAILED with the reason. The broker may contact loopback only.
# The HF cache of examples/04 is preloaded for real against the Hub stand-in (simulate-hf-hub): the
# demo points it at a claim that does not exist yet (the Job's pods stay Pending; kwok never runs
# them), and hack/preload_locally.py runs each of them here as their kubelet would (the real download)
# and reports the outcome in the pod's status: CACHE Downloading → Ready with the snapshot's files and
# bytes; it then creates the claim, the ML pod starts and the node registers.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
CLUSTER_DIR=${CLUSTER_DIR:-$PWD/.local/cluster}
SIM_PORT=${SIM_PORT:-19200}            # admin API
PUBLIC_PORT=${PUBLIC_PORT:-19000}      # public API (/v1/epochs/latest)
CALLBACK_PORT=${CALLBACK_PORT:-19100}  # ML callback (PoC batches)
ML_PORT=${ML_PORT:-18080}              # the ML stand-in (mlnode's one port)
PROXY_MGMT_PORT=${PROXY_MGMT_PORT:-18081} PROXY_INFERENCE_PORT=${PROXY_INFERENCE_PORT:-15050}
NS=${DEMO_NAMESPACE:-gonka-demo}
HUB_PORT=${HUB_PORT:-18090} HUB_CDN_PORT=${HUB_CDN_PORT:-18091}  # the Hugging Face Hub stand-in and its CDN
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

PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
$BIN/gonka-operator simulate-ml-node --host 127.0.0.1 --port "$ML_PORT" > .local/ml-standin.log 2>&1 &
PIDS+=($!)
# The ML node the api calls: behind nginx with the operator's rendered proxy config (prefix
# v3.0.8 stripped, as in the ML pod), or, without nginx, the bare stand-in called without a prefix.
NGINX=$(command -v nginx || ls /usr/sbin/nginx 2>/dev/null || true)
if [ -n "$NGINX" ]; then
  mkdir -p .local/nginx && chmod 755 .local/nginx
  $BIN/python -c 'import sys; from gonka_operator.builders.mlnode_proxy import render_nginx_conf as r
print(r(upstream=f"127.0.0.1:{sys.argv[1]}", management_listen=int(sys.argv[2]), inference_listen=int(sys.argv[3])))' \
    "$ML_PORT" "$PROXY_MGMT_PORT" "$PROXY_INFERENCE_PORT" > .local/nginx/nginx.conf
  "$NGINX" -p "$PWD/.local/nginx/" -c "$PWD/.local/nginx/nginx.conf" -e stderr > .local/nginx.log 2>&1 &
  PIDS+=($!)
  MLNODE_VERSION=v3.0.8 EXT_POC_PORT=$PROXY_MGMT_PORT EXT_INFERENCE_PORT=$PROXY_INFERENCE_PORT
  ML_DESC="simulate-ml-node on :$ML_PORT behind nginx (:$PROXY_MGMT_PORT management, :$PROXY_INFERENCE_PORT inference)"
else
  MLNODE_VERSION= EXT_POC_PORT=$ML_PORT EXT_INFERENCE_PORT=$ML_PORT
  ML_DESC="simulate-ml-node on :$ML_PORT, no nginx installed: called without a version prefix"
fi
$BIN/gonka-operator simulate-network-node --host 127.0.0.1 --port "$SIM_PORT" --generation latest \
  --public-port "$PUBLIC_PORT" --ml-callback-port "$CALLBACK_PORT" --mlnode-version "$MLNODE_VERSION" \
  --epoch-length "${EPOCH_BLOCKS:-120}" --poc-length 20 --block-time 1 \
  > .local/standin.log 2>&1 &
PIDS+=($!)
# 16 MB of made-up weights for Qwen/Qwen3-32B-FP8 at 1 MB/s: a download that takes ~16 s
$BIN/gonka-operator simulate-hf-hub --host 127.0.0.1 --port "$HUB_PORT" --cdn-port "$HUB_CDN_PORT" \
  --repo Qwen/Qwen3-32B-FP8 --weights-size 16000000 --throttle 1000000 > .local/hf-hub.log 2>&1 &
PIDS+=($!)
$BIN/python - "$SIM_PORT" "$ML_PORT" "$HUB_PORT" <<'PY'
import sys, time, httpx
for url in (f"http://127.0.0.1:{sys.argv[1]}/admin/v1/nodes", f"http://127.0.0.1:{sys.argv[2]}/livez",
            f"http://127.0.0.1:{sys.argv[3]}/livez"):
    for _ in range(100):
        try:
            httpx.get(url, timeout=1).raise_for_status()
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        sys.exit(f"a stand-in did not answer {url}: see .local/standin.log and .local/ml-standin.log")
PY

"$KUBECTL" create namespace "$NS" --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
"$KUBECTL" apply -n "$NS" -f examples/01-network-node.yaml
# (a second `make run` finds the snapshot complete in .local/hf: preload-model fetches nothing)
sed -e "s|hfCache: {size: 100Gi}|hfCache: {existingClaim: qwen32b-h100-weights, preload: true}|" \
    examples/04-qwen3-32b-1xh100.yaml | "$KUBECTL" apply -n "$NS" -f -
$BIN/python hack/preload_locally.py "$KUBECTL" "$NS" qwen32b-h100 qwen32b-h100-weights \
  "http://127.0.0.1:$HUB_PORT" "$PWD/.local/hf" > .local/preload.log 2>&1 &
PIDS+=($!)
# examples/06 as written points at a GPU server (10.0.0.21) this machine must never contact: the demo
# points it at the loopback ML stand-in instead.
sed -e "s/host: 10.0.0.21 .*/host: 127.0.0.1/" -e "s/inferencePort: 5050/inferencePort: $EXT_INFERENCE_PORT/" \
    -e "s/pocPort: 8080/pocPort: $EXT_POC_PORT/" examples/06-external-ml-node.yaml | "$KUBECTL" apply -n "$NS" -f -

cat <<MSG

== gonka-operator local demo ==========================================================
The operator is starting below. In another terminal:
  export KUBECONFIG=$KUBECONFIG
  $KUBECTL get gonka -n $NS                       # NetworkNode + InferenceNodes, Ready/Cache/Registry columns
  $KUBECTL get gin qwen32b-h100 -n $NS -w         # CACHE Downloading → Ready, then the ML pod, then registered
  tail -f .local/preload.log                      # the preload Job's command, run here against the Hub stand-in
  curl -s http://127.0.0.1:$SIM_PORT/admin/v1/nodes   # the stand-in's registry: state as the broker found it
  curl -s http://127.0.0.1:$PUBLIC_PORT/v1/epochs/latest  # epoch clock (PoC every ${EPOCH_BLOCKS:-120} s)
  curl -s -XPOST http://127.0.0.1:$SIM_PORT/stand-in/v1/poc -d '{"action":"open"}'  # PoC now
  curl -s http://127.0.0.1:$SIM_PORT/stand-in/v1/poc-batches | head -c 600  # what the ML node delivered
  $KUBECTL apply -n $NS -f examples/03-qwen3-235b-8xh200.yaml   # register another ML node
  $KUBECTL delete inferencenode qwen32b-h100 -n $NS            # deregistered before it goes
ML node of gpu-server-7: $ML_DESC
Ctrl-C stops the operator and the stand-ins; 'make cluster-down' stops the control plane.
=======================================================================================

MSG
GONKA_ADMIN_URL_OVERRIDES="*=http://127.0.0.1:$SIM_PORT" GONKA_REGISTRY_POLL_SECONDS=${POLL_SECONDS:-5} \
  $BIN/gonka-operator run
