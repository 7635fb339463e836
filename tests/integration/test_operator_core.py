"""Issue 3: the real operator turns NetworkNodes and InferenceNodes into workloads on a real API
server (kube-apiserver + etcd + controller-manager + scheduler + kwok nodes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import manifests
from conditions import condition, wait_condition
from helpers import holds_for, wait_for
from manifests import NETWORK_NODE as NN
from procs import Kubectl, Operator, StandIn

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
pytestmark = pytest.mark.integration



def ml_node(name: str, gpus: int, product: str | None = "NVIDIA-H100-80GB-HBM3", extra: str = "") -> str:
    return manifests.ml_node(name, gpus, product=product, extra=extra)


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
    # + the host's conditions once its api answers (host_status.py; test_host_lifecycle_status.py)
    assert {"Ready", "Progressing", "Degraded"} <= {c["type"] for c in nn["status"]["conditions"]} <= {
        "Ready", "Progressing", "Degraded", "KeysReady", "PermissionsGranted", "ActiveInEpoch", "ChainSynced"}
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
    # ... and the host's first status: its setup report read, its warm-key Job done (kwok)
    wait_condition(kubectl, "networknode", "gonka", namespace, "KeysReady", "True", timeout=30)
    wait_for(lambda: (kubectl.get("networknode", "gonka", namespace)["status"].get("onboarding") or {})
             .get("warmKeyJob") == "Complete", 30, "warm-key Job Complete")
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


# --- issue 11: bad input, pruning, deletion, readiness ------------------------------------------

def events_of(kubectl: Kubectl, ns: str, name: str) -> list[dict]:
    items: list[dict] = kubectl.json("get", "events", "-n", ns, "--field-selector",
                                     f"involvedObject.name={name}")["items"]
    return items


def test_spec_the_api_refuses_is_a_condition_never_a_deletion(operator: Operator, kubectl: Kubectl,
                                                              namespace: str) -> None:
    """Critical 2: requests above limits pass the CRD schema but the API server refuses the
    Deployment. The running Deployment stays (same uid), the CR says ApplyFailed with the API's text."""
    kubectl.run("apply", "-n", namespace, "-f", "-", input=NN + "---" + ml_node("typo", 1))
    dep = wait_for(lambda: kubectl.get("deployment", "typo-mlnode", namespace), 60, "Deployment")
    uid = dep["metadata"]["uid"]
    wait_condition(kubectl, "inferencenode", "typo", namespace, "Registered", "True", timeout=60)
    kubectl.run("patch", "inferencenode", "typo", "-n", namespace, "--type=merge", "-p",
                '{"spec":{"resources":{"requests":{"memory":"64Gi"},"limits":{"memory":"32Gi"}}}}')
    cond = wait_condition(kubectl, "inferencenode", "typo", namespace, "Ready", "False", "ApplyFailed", 30)
    assert "limit" in cond["message"], cond
    # a child event (here an annotation) used to make drift repair delete the Deployment
    kubectl.run("annotate", "deployment", "typo-mlnode", "-n", namespace, "poke=1")
    holds_for(lambda: (d := kubectl.get("deployment", "typo-mlnode", namespace)) and d["metadata"]["uid"] == uid,
              6, "the running Deployment is never deleted")
    assert any(e["reason"] == "ApplyFailed" and e["type"] == "Warning" for e in events_of(kubectl, namespace, "typo"))
    # fixing the spec clears the condition
    kubectl.run("patch", "inferencenode", "typo", "-n", namespace, "--type=merge", "-p",
                '{"spec":{"resources":null}}')
    wait_for(lambda: (condition(kubectl.get("inferencenode", "typo", namespace), "Ready") or {}).get("reason")
             != "ApplyFailed", 30, "ApplyFailed cleared")


def test_unwanted_children_are_pruned_but_pvcs_kept(operator: Operator, kubectl: Kubectl, standin: StandIn,
                                                    namespace: str) -> None:
    """Major 7: switching an InferenceNode to spec.external removes its Deployment, Service and
    NetworkPolicy (never its PVC); switching the explorer off removes the explorer."""
    kubectl.run("apply", "-n", namespace, "-f", "-", input=NN + "---" + ml_node("moving", 1))
    kubectl.run("patch", "networknode", "gonka", "-n", namespace, "--type=merge",
                "-p", '{"spec":{"explorer":{"enabled":true}}}')
    wait_for(lambda: {"Deployment/moving-mlnode", "Service/moving-mlnode", "NetworkPolicy/moving-mlnode",
                      "PersistentVolumeClaim/moving-hf-cache", "Deployment/gonka-explorer"}
             <= set(children(kubectl, namespace)), 60, lambda: f"children: {sorted(children(kubectl, namespace))}")
    external = """
apiVersion: gonka.ai/v1alpha1
kind: InferenceNode
metadata: {name: moving}
spec:
  networkNodeRef: {name: gonka}
  model: Qwen/Qwen3-32B-FP8
  external: {host: 10.5.0.1, inferencePort: 5050, pocPort: 8080}
"""
    # a client-side apply drops what the first apply set and this one lacks (gpus, hfCache, …), by
    # PATCH: no resourceVersion race with the operator's own writes, as `kubectl replace` had
    kubectl.run("apply", "-n", namespace, "-f", "-", input=external)
    kubectl.run("patch", "networknode", "gonka", "-n", namespace, "--type=merge",
                "-p", '{"spec":{"explorer":{"enabled":false}}}')
    gone = {"Deployment/moving-mlnode", "Service/moving-mlnode", "NetworkPolicy/moving-mlnode",
            "Deployment/gonka-explorer", "Service/gonka-explorer"}
    wait_for(lambda: not gone & set(children(kubectl, namespace)), 30,
             lambda: f"pruned; left: {sorted(gone & set(children(kubectl, namespace)))}")
    left = children(kubectl, namespace)
    assert "PersistentVolumeClaim/moving-hf-cache" in left and "StatefulSet/gonka-node" in left


def test_namespace_delete_completes_while_admin_api_is_gone(operator: Operator, kubectl: Kubectl,
                                                            standin: StandIn, api_client: object) -> None:
    """Major 3: `kubectl delete namespace` of a whole host finishes although the admin API (the
    NetworkNode's own api, being deleted with it) no longer answers."""
    import uuid

    ns = f"whole-host-{uuid.uuid4().hex[:6]}"
    kubectl.run("create", "namespace", ns)
    kubectl.run("apply", "-n", ns, "-f", "-", input=NN + "---" + ml_node("host-ml", 1))
    wait_condition(kubectl, "inferencenode", "host-ml", ns, "Registered", "True", timeout=60)
    standin.fault("refuse", 30)  # the api is gone (a refusal cannot be ended early: wait it out)
    try:
        kubectl.run("delete", "namespace", ns, "--wait=false")
        wait_for(lambda: kubectl.run("get", "namespace", ns, check=False).returncode != 0, 25,
                 lambda: f"namespace {ns} gone while the admin API refuses; inferencenodes: "
                         f"{kubectl.run('get', 'inferencenodes', '-n', ns, '-o', 'yaml', check=False).stdout}")
    finally:
        wait_for(lambda: standin.requests() is not None, 40, "stand-in answering again")


def test_deleted_network_node_makes_its_ml_nodes_not_ready(operator: Operator, kubectl: Kubectl,
                                                           namespace: str) -> None:
    kubectl.run("apply", "-n", namespace, "-f", "-", input=NN + "---" + ml_node("left", 1))
    wait_condition(kubectl, "inferencenode", "left", namespace, "Ready", "True", timeout=90)
    kubectl.run("delete", "networknode", "gonka", "-n", namespace)
    cond = wait_condition(kubectl, "inferencenode", "left", namespace, "Ready", "False", "NetworkNodeNotFound", 30)
    assert "gonka" in cond["message"]


def test_ml_node_waits_for_a_ready_network_node(operator: Operator, kubectl: Kubectl, namespace: str) -> None:
    """While the api pod is not Ready (here: it cannot be scheduled), the ML node says
    NetworkNodeNotReady, without a Warning, instead of AdminUnreachable."""
    unschedulable = NN + "  scheduling: {nodeSelector: {gonka.test/nowhere: 'true'}}\n"
    kubectl.run("apply", "-n", namespace, "-f", "-", input=unschedulable + "---" + ml_node("early", 1))
    wait_condition(kubectl, "inferencenode", "early", namespace, "Registered", "Unknown", "NetworkNodeNotReady", 30)
    assert not any(e["type"] == "Warning" for e in events_of(kubectl, namespace, "early"))
    kubectl.run("patch", "networknode", "gonka", "-n", namespace, "--type=json",
                "-p", '[{"op":"remove","path":"/spec/scheduling/nodeSelector"}]')
    # a StatefulSet does not replace a pod that never became Ready (kubernetes#67250): do it by hand,
    # until the controller recreates it from the new revision (a delete before the controller saw
    # the edit gives a pod of the old template again: the flake this loop removed)
    def node_pod_from_new_template() -> bool:
        pod = kubectl.get("pod", "gonka-node-0", namespace)
        if not pod:
            return False
        if "gonka.test/nowhere" in str(pod["spec"].get("nodeSelector") or {}):
            if not pod["metadata"].get("deletionTimestamp"):
                kubectl.run("delete", "pod", "gonka-node-0", "-n", namespace, "--wait=false", check=False)
            return False
        return True

    wait_for(node_pod_from_new_template, 60, "node pod recreated without the nodeSelector")
    wait_condition(kubectl, "inferencenode", "early", namespace, "Registered", "True", timeout=90)


def test_two_operators_only_one_acts(cluster: object, crds: None, kubectl: Kubectl, standin: StandIn,
                                     logs: Path, namespace: str) -> None:
    """Two operators against one cluster (a rollout, a partitioned node): only the Lease holder
    reconciles; the standby takes over when the holder stops."""
    import uuid

    from conditions import operator_env

    env = {**operator_env(standin), "GONKA_LEASE_NAME": f"two-{uuid.uuid4().hex[:6]}"}
    kubeconfig = str(cluster.kubeconfig)  # type: ignore[attr-defined]

    def handled(op: Operator, name: str) -> bool:
        return f"[{namespace}/{name}] Handler 'reconcile_inference_node' succeeded" in op.log_path.read_text()

    def ext(name: str) -> str:
        return f"""
apiVersion: gonka.ai/v1alpha1
kind: InferenceNode
metadata: {{name: {name}}}
spec:
  adminURL: {standin.url}
  model: Qwen/Qwen3-32B-FP8
  external: {{host: 10.6.0.1}}
"""

    with Operator(kubeconfig, logs, env, name=f"first-{namespace}") as first:
        wait_for(lambda: "Acquired Lease" in first.log_path.read_text(), 30, "first operator active")
        with Operator(kubeconfig, logs, env, name=f"second-{namespace}") as second:
            wait_for(lambda: "waiting as a standby" in second.log_path.read_text(), 30, "second operator standby")
            kubectl.run("apply", "-n", namespace, "-f", "-", input=ext("one"))
            wait_for(lambda: handled(first, "one"), 30, lambda: f"first handled one: {first.log_tail()}")
            holds_for(lambda: not handled(second, "one"), 3, "the standby does nothing")
            first.stop()
            wait_for(lambda: "Acquired Lease" in second.log_path.read_text(), 20, "second took over")
            kubectl.run("apply", "-n", namespace, "-f", "-", input=ext("two"))
            wait_for(lambda: handled(second, "two"), 30, lambda: f"second handled two: {second.log_tail()}")
            kubectl.run("delete", "inferencenodes", "--all", "-n", namespace, "--timeout=60s")
