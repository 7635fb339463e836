"""The operator as users run it, on the real node: `helm install` of charts/gonka-operator with the
image built from the Dockerfile (imagePullPolicy Never, no admin-URL override, the chart's
NetworkPolicy on), and a host (NetworkNode + InferenceNodes) whose containers run the stand-ins."""

from __future__ import annotations

import json
import subprocess
import textwrap
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from gonka_operator.devcluster import LocalCluster
from gonka_operator.devcluster.images import Image, role_images
from gonka_operator.devcluster.machine import host_ip
from gonka_operator.devcluster.node_config import NODE_SELECTOR, TOLERATION
from helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_NS = "gonka-system"
RELEASE = "gonka-operator"
SCHEDULING = {"nodeSelector": NODE_SELECTOR, "tolerations": [TOLERATION]}
MODEL = "Qwen/Qwen3-32B-FP8"


@dataclass
class Host:
    """What the e2e tests share: the cluster, the images, the installed operator and one host."""

    cluster: LocalCluster
    images: dict[str, Image]
    namespace: str
    network_node: str = "host"
    ml_nodes: list[str] = field(default_factory=lambda: ["ml-a", "ml-b"])

    @property
    def kubectl(self) -> list[str]:
        return [str(self.cluster.bin_dir / "kubectl"), "--kubeconfig", str(self.cluster.kubeconfig)]

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([*self.kubectl, *args], capture_output=True, text=True, timeout=timeout, check=False)
        if check and out.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {out.stderr}")
        return out

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def exec_python(self, namespace: str, target: str, container: str, code: str, *argv: str) -> str:
        """Run python in an existing container (kubectl exec through the API server and the kubelet)."""
        return self.run("exec", "-n", namespace, target, "-c", container, "--", "python3", "-c", code, *argv,
                        timeout=60).stdout

    def standin(self, path: str, method: str = "GET", body: dict[str, Any] | None = None) -> Any:
        """A request to the network-node stand-in from inside its own container (loopback)."""
        code = textwrap.dedent("""\
            import json, sys, urllib.request
            data = sys.argv[3].encode() if sys.argv[3] else None
            req = urllib.request.Request("http://127.0.0.1:9200" + sys.argv[1], data=data, method=sys.argv[2],
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as r:
                print(r.read().decode())
        """)
        out = self.exec_python(self.namespace, f"{self.network_node}-node-0", "api", code, path, method,
                               json.dumps(body) if body is not None else "")
        return json.loads(out)

    def logs(self, namespace: str, target: str, container: str) -> str:
        return self.run("logs", "-n", namespace, target, "-c", container, "--tail=-1").stdout


def api_server_port(cluster: LocalCluster) -> int:
    return int(cluster.server.rsplit(":", 1)[1])


def install_operator(host: Host) -> None:
    op = host.images["operator"]
    repo, tag = op.ref.rsplit(":", 1)
    values = {
        "image": {"repository": repo, "tag": tag, "pullPolicy": "Never"},
        "operator": {"registryPollSeconds": 5, "logFormat": "plain"},
        "nodeSelector": NODE_SELECTOR, "tolerations": [TOLERATION],
        # The API server as the pod sees it after the `kubernetes` Service's DNAT.
        "networkPolicy": {"enabled": True,
                          "apiServer": {"cidrs": [f"{host_ip()}/32"], "ports": [api_server_port(host.cluster)]}},
    }
    values_file = host.cluster.workdir / "e2e-values.json"
    values_file.write_text(json.dumps(values))
    subprocess.run([str(host.cluster.bin_dir / "helm"), "--kubeconfig", str(host.cluster.kubeconfig), "install",
                    RELEASE, str(ROOT / "charts" / "gonka-operator"), "-n", OPERATOR_NS, "--create-namespace",
                    "-f", str(values_file), "--wait", "--timeout", "240s"],
                   check=True, capture_output=True, text=True, timeout=300)


def host_manifests(host: Host) -> list[dict[str, Any]]:
    img = host.images
    objs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keyring"},
         "stringData": {"password": uuid.uuid4().hex}},
        {"apiVersion": "gonka.ai/v1alpha1", "kind": "NetworkNode", "metadata": {"name": host.network_node},
         "spec": {
             "keyName": "e2e-warm-key", "accountPubKey": "Ap1lR9OQ6r2bYkT8d0cHKb3mWm5cCzOZ0bSx0n4p5QyA",
             "keyringPasswordSecretRef": {"name": "keyring", "key": "password"},
             "publicHost": "gonka.example.com",
             "exposure": {"p2p": {"type": "ClusterIP"}, "proxy": {"type": "ClusterIP"}},
             "images": {"node": img["node"].ref, "api": img["api"].ref, "tmkms": img["tmkms"].ref,
                        "proxy": img["proxy"].ref},
             "storage": {"inference": {"size": "1Gi"}, "dapi": {"size": "1Gi"}, "tmkms": {"size": "1Gi"}},
             "scheduling": SCHEDULING,
         }},
    ]
    for i, name in enumerate(host.ml_nodes):
        objs.append({
            "apiVersion": "gonka.ai/v1alpha1", "kind": "InferenceNode", "metadata": {"name": name},
            "spec": {"networkNodeRef": {"name": host.network_node}, "model": MODEL, "gpus": i + 1,
                     "hardwareType": "H100", "hfCache": {"size": "1Gi", "preload": False},
                     "image": img["mlnode"].ref, "proxy": {"image": img["nginx"].ref},
                     "scheduling": SCHEDULING},
        })
    return objs


def deploy(cluster: LocalCluster, namespace: str) -> Host:
    imgs = role_images()
    assert cluster.real_node is not None
    cluster.real_node.load_images(list(imgs.values()))
    host = Host(cluster, imgs, namespace)
    install_operator(host)
    for obj in host_manifests(host):
        subprocess.run([*host.kubectl, "apply", "-n", namespace, "-f", "-"], input=json.dumps(obj), text=True,
                       check=True, capture_output=True, timeout=60)
    return host


def wait_registered(host: Host, timeout: float = 300) -> None:
    def registered() -> bool:
        items = host.json("get", "inferencenodes", "-n", host.namespace)["items"]
        conds = [{c["type"]: c["status"] for c in i.get("status", {}).get("conditions", [])} for i in items]
        return len(items) == len(host.ml_nodes) and all(c.get("Registered") == "True" for c in conds)

    wait_for(registered, timeout, lambda: json.dumps(
        [(i["metadata"]["name"], i.get("status")) for i in
         host.json("get", "inferencenodes", "-n", host.namespace)["items"]])[:3000], interval=2)


def core(cluster: LocalCluster) -> Any:
    return client.CoreV1Api(cluster.api_client())
