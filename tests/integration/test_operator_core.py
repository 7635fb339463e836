"""Issue 3: the real operator turns NetworkNodes and InferenceNodes into workloads on a real API
server (kube-apiserver + etcd + controller-manager + scheduler + kwok nodes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conditions import condition, wait_condition
from helpers import holds_for, wait_for
from manifests import NETWORK_NODE as NN
from procs import Kubectl, Operator, StandIn

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
pytestmark = pytest.mark.integration



def ml_node(name: str, gpus: int, product: str | None = "NVIDIA-H100-80GB-HBM3", extra: str = "") -> str:
    product_line = f"\n  gpuProduct: {product}" if product else ""
    return f"""
apiVersion: gonka.ai/v1alpha1
kind: InferenceNode
metadata: {{name: {name}}}
spec:
  networkNodeRef: {{name: gonka}}
  model: Qwen/Qwen3-32B-FP8
  gpus: {gpus}{product_line}
  hfCache: {{size: 10Gi}}{extra}
"""


def children(kubectl: Kubectl, ns: str) -> dict[str, dict]:
    items = kubectl.json("get", "deployments,statefulsets,services,networkpolicies,pvc", "-n", ns)["items"]
    return {f"{i['kind']}/{i['metadata']['name']}": i for i in items}


def test_examples_reconcile_into_children(operator: Operator, kubectl: Kubectl, standin: StandIn,
                                         namespace: str) -> None:
    for example in sorted(EXAMPLES.glob("*.yaml")):
        # The example's adminURL is a private address: tests only ever talk to loopback.
        text = example.read_text().replace("http://10.0.0.5:9200", standin.url)
        kubectl.run("apply", "-n", namespace, "-f", "-", input=text)
    expected = {"StatefulSet/gonka-node", "Deployment/gonka-proxy", "Service/gonka-api", "Service/gonka-chain",
                "Service/gonka-p2p", "Service/gonka-proxy", "NetworkPolicy/gonka-node",
                "PersistentVolumeClaim/gonka-inference", "StatefulSet/host-node",
                "Deployment/qwen235b-h200-mlnode", "Service/qwen235b-h200-mlnode", "Deployment/qwen32b-3080-mlnode",
                "Deployment/qwen32b-h100-mlnode", "PersistentVolumeClaim/qwen32b-h100-hf-cache",
                "Deployment/host-ml-1-mlnode", "NetworkPolicy/host-ml-1-mlnode"}
    found = wait_for(lambda: expected <= set(children(kubectl, namespace)) and children(kubectl, namespace), 60,
                     lambda: f"children {sorted(expected - set(children(kubectl, namespace)))}")
    assert "Deployment/gpu-server-7-mlnode" not in found, "an external ML node gets no workload"
    sts = found["StatefulSet/gonka-node"]
    assert sts["metadata"]["ownerReferences"][0]["kind"] == "NetworkNode"
    assert "ownerReferences" not in found["PersistentVolumeClaim/gonka-inference"]["metadata"]
    api = next(c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "api")
    env = {e["name"]: e.get("value") for e in api["env"]}
    assert env["DAPI_API__POC_CALLBACK_URL"] == f"http://gonka-api.{namespace}.svc.cluster.local:9100"
    nn = wait_for(lambda: (o := kubectl.get("networknode", "gonka", namespace)) and condition(o, "Ready") and o,
                  30, "NetworkNode conditions")
    assert nn["status"]["observedGeneration"] == nn["metadata"]["generation"]
    assert nn["status"]["endpoints"]["adminURL"] == f"http://gonka-api.{namespace}.svc.cluster.local:9200"
    assert {c["type"] for c in nn["status"]["conditions"]} == {"Ready", "Progressing", "Degraded"}
    # kwok marks the pods ready: the whole network node becomes Ready
    wait_condition(kubectl, "networknode", "gonka", namespace, "Ready", "True", timeout=90)


def test_reapply_writes_nothing(operator: Operator, kubectl: Kubectl, namespace: str) -> None:
    manifest = NN + "---" + ml_node("steady", 1)
    kubectl.run("apply", "-n", namespace, "-f", "-", input=manifest)
    wait_condition(kubectl, "inferencenode", "steady", namespace, "Ready", "True", timeout=90)
    wait_condition(kubectl, "networknode", "gonka", namespace, "Ready", "True", timeout=90)

    def versions() -> dict[str, str]:
        objs = {**children(kubectl, namespace),
                **{f"CR/{o['metadata']['name']}": o for o in kubectl.json("get", "gonka", "-n", namespace)["items"]}}
        return {k: v["metadata"]["resourceVersion"] for k, v in objs.items()}

    # settle: registry state reaches INFERENCE and lastSeen is written once
    wait_for(lambda: (kubectl.get("inferencenode", "steady", namespace)["status"].get("registry") or {})
             .get("currentStatus") == "INFERENCE", 30, "registry state INFERENCE")
    before = versions()
    kubectl.run("apply", "-n", namespace, "-f", "-", input=manifest)
    # three poll intervals of the operator (2 s each) during which nothing may be written
    holds_for(lambda: versions() == before, 6,
              lambda: f"resourceVersions unchanged after re-apply: {before} vs {versions()}")


def test_drift_is_repaired(operator: Operator, kubectl: Kubectl, namespace: str) -> None:
    kubectl.run("apply", "-n", namespace, "-f", "-", input=NN + "---" + ml_node("drifty", 1))
    wait_for(lambda: kubectl.get("service", "drifty-mlnode", namespace), 60, "ML node Service")
    uid = kubectl.get("service", "drifty-mlnode", namespace)["metadata"]["uid"]
    kubectl.run("delete", "service", "drifty-mlnode", "-n", namespace)
    wait_for(lambda: (s := kubectl.get("service", "drifty-mlnode", namespace)) and s["metadata"]["uid"] != uid, 30,
             "deleted Service to be re-created")
    kubectl.run("patch", "deployment", "drifty-mlnode", "-n", namespace, "--type=merge",
                "-p", '{"spec":{"strategy":{"type":"RollingUpdate"}}}')
    wait_for(lambda: kubectl.get("deployment", "drifty-mlnode", namespace)["spec"]["strategy"]["type"] == "Recreate",
             30, "edited Deployment strategy to be restored")
    kubectl.run("patch", "service", "gonka-api", "-n", namespace, "--type=merge", "-p", '{"spec":{"type":"NodePort"}}')
    wait_for(lambda: kubectl.get("service", "gonka-api", namespace)["spec"]["type"] == "ClusterIP", 30,
             "private api Service to become ClusterIP again")


def test_four_gpus_become_available_on_a_gpu_node(operator: Operator, kubectl: Kubectl, namespace: str) -> None:
    kubectl.run("apply", "-n", namespace, "-f", "-", input=NN + "---" + ml_node("four", 4))
    wait_condition(kubectl, "inferencenode", "four", namespace, "WorkloadAvailable", "True", "Available", 90)
    pods = kubectl.json("get", "pods", "-n", namespace, "-l", "gonka.ai/inference-node=four")["items"]
    node = kubectl.json("get", "node", pods[0]["spec"]["nodeName"])
    assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"


def test_sixteen_gpus_show_the_schedulers_reason(operator: Operator, kubectl: Kubectl, namespace: str) -> None:
    kubectl.run("apply", "-n", namespace, "-f", "-", input=NN + "---" + ml_node("sixteen", 16, product=None))
    cond = wait_condition(kubectl, "inferencenode", "sixteen", namespace, "WorkloadAvailable", "False",
                          "InsufficientGPU", 90)
    assert "Insufficient nvidia.com/gpu" in cond["message"]
    ready = condition(kubectl.get("inferencenode", "sixteen", namespace), "Ready")
    assert ready and ready["reason"] == "InsufficientGPU"


def test_delete_removes_children_but_keeps_pvcs(operator: Operator, kubectl: Kubectl, namespace: str) -> None:
    kubectl.run("apply", "-n", namespace, "-f", "-", input=NN + "---" + ml_node("gone", 1))
    wait_for(lambda: "Deployment/gone-mlnode" in children(kubectl, namespace)
             and "StatefulSet/gonka-node" in children(kubectl, namespace), 60, "children")
    wait_condition(kubectl, "inferencenode", "gone", namespace, "Registered", "True", timeout=60)
    kubectl.run("delete", "inferencenode", "gone", "-n", namespace, "--wait=true", "--timeout=60s")
    kubectl.run("delete", "networknode", "gonka", "-n", namespace, "--wait=true", "--timeout=60s")
    def only_pvcs_left() -> dict[str, dict] | None:
        left = children(kubectl, namespace)
        return left if all(k.startswith("PersistentVolumeClaim/") for k in left) else None

    remaining = wait_for(only_pvcs_left, 60,
                         lambda: f"garbage collection; left: {sorted(children(kubectl, namespace))}")
    assert set(remaining) == {"PersistentVolumeClaim/gonka-inference", "PersistentVolumeClaim/gonka-dapi",
                              "PersistentVolumeClaim/gonka-tmkms", "PersistentVolumeClaim/gone-hf-cache"}


def test_render_matches_what_the_operator_applies(operator: Operator, kubectl: Kubectl, namespace: str) -> None:
    """`gonka-operator render` is the same builders: its Deployment equals the applied one's spec."""
    import subprocess
    import sys

    manifest = ml_node("rendered", 2)
    out = subprocess.run([str(Path(sys.executable).parent / "gonka-operator"), "render", "-f", "-"], input=manifest,
                         capture_output=True, text=True, check=True).stdout
    rendered = {d["kind"]: d for d in yaml.safe_load_all(out)}
    kubectl.run("apply", "-n", namespace, "-f", "-", input=NN + "---" + manifest)
    live = wait_for(lambda: kubectl.get("deployment", "rendered-mlnode", namespace), 60, "Deployment")
    container = rendered["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    live_container = live["spec"]["template"]["spec"]["containers"][0]
    assert live_container["resources"] == container["resources"]
    assert live_container["env"] == container["env"]
