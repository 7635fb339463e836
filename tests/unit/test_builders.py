"""Builders are pure: assert on the dicts they return, no cluster needed."""

from __future__ import annotations

from typing import Any

from gonka_operator.builders import inference_node as inb
from gonka_operator.builders import network_node as nnb
from gonka_operator.builders.common import Owner
from gonka_operator.builders.policies import inference_node_policy, network_node_policies
from gonka_operator.models.inference_node import InferenceNodeSpec
from gonka_operator.models.network_node import NetworkNodeSpec

NN_OWNER = Owner("NetworkNode", "gonka", "hosts", "uid-nn")
IN_OWNER = Owner("InferenceNode", "ml-a", "hosts", "uid-in")


def nn_spec(**extra: Any) -> NetworkNodeSpec:
    return NetworkNodeSpec.model_validate({
        "keyName": "k", "accountPubKey": "pub", "keyringPasswordSecretRef": {"name": "s", "key": "password"},
        "publicHost": "gonka.example.com", **extra})


def in_spec(**extra: Any) -> InferenceNodeSpec:
    return InferenceNodeSpec.model_validate({"networkNodeRef": {"name": "gonka"}, "model": "Qwen/Qwen3-32B-FP8",
                                             "hfCache": {"size": "100Gi"}, **extra})


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_callback_url_is_the_private_api_service_on_9100() -> None:
    ep = nnb.endpoints("gonka", "hosts", nn_spec(), "cluster.local")
    assert ep.callback_url == "http://gonka-api.hosts.svc.cluster.local:9100"
    assert ep.admin_url == "http://gonka-api.hosts.svc.cluster.local:9200"
    sts = nnb.build_statefulset(NN_OWNER, nn_spec(), ep)
    api = next(c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "api")
    env = env_of(api)
    assert env["DAPI_API__POC_CALLBACK_URL"] == ep.callback_url
    assert env["DAPI_CHAIN_NODE__URL"] == "http://node:26657"
    assert env["KEYRING_PASSWORD"] == {"secretKeyRef": {"name": "s", "key": "password"}}
    assert env["DAPI_API__PUBLIC_URL"] == "http://gonka.example.com:8000"


def test_public_addresses_follow_node_ports() -> None:
    spec = nn_spec(exposure={"p2p": {"type": "NodePort", "nodePort": 30500},
                             "proxy": {"type": "NodePort", "nodePort": 30800}})
    ep = nnb.endpoints("gonka", "hosts", spec, "cluster.local")
    assert ep.public_url == "http://gonka.example.com:30800"
    assert ep.p2p_external_address == "tcp://gonka.example.com:30500"


def test_statefulset_shape_one_signer_shared_volume_no_service_links() -> None:
    sts = nnb.build_statefulset(NN_OWNER, nn_spec(), nnb.endpoints("gonka", "hosts", nn_spec(), "cluster.local"))
    pod = sts["spec"]["template"]["spec"]
    assert sts["spec"]["replicas"] == 1
    assert [c["name"] for c in pod["containers"]] == ["node", "api", "tmkms"]
    assert pod["enableServiceLinks"] is False
    mounts = {c["name"]: {m["mountPath"] for m in c["volumeMounts"]} for c in pod["containers"]}
    assert "/root/.inference" in mounts["node"] & mounts["api"]
    assert mounts["tmkms"] == {"/root/.tmkms"}
    api = pod["containers"][1]
    assert api["startupProbe"]["failureThreshold"] * api["startupProbe"]["periodSeconds"] >= 3600
    assert sts["metadata"]["ownerReferences"][0]["uid"] == "uid-nn"


def test_pvcs_are_not_owned_so_they_survive_deletion() -> None:
    pvcs = nnb.build_pvcs(NN_OWNER, nn_spec(storage={"inference": {"size": "2Ti", "storageClassName": "nvme"}}))
    assert {p["metadata"]["name"] for p in pvcs} == {"gonka-inference", "gonka-dapi", "gonka-tmkms"}
    assert all("ownerReferences" not in p["metadata"] for p in pvcs)
    inference = next(p for p in pvcs if p["metadata"]["name"] == "gonka-inference")
    assert inference["spec"]["storageClassName"] == "nvme"
    assert inference["spec"]["resources"]["requests"]["storage"] == "2Ti"


def test_services_public_and_private_ports() -> None:
    services = {s["metadata"]["name"]: s for s in nnb.build_services(NN_OWNER, nn_spec())}
    assert services["gonka-api"]["spec"]["type"] == "ClusterIP"
    assert {p["port"] for p in services["gonka-api"]["spec"]["ports"]} == {9000, 9100, 9200, 9300}
    assert services["gonka-chain"]["spec"]["type"] == "ClusterIP"
    assert services["gonka-p2p"]["spec"]["type"] == "LoadBalancer"
    assert services["gonka-p2p"]["spec"]["ports"][0]["targetPort"] == 26656
    assert services["gonka-proxy"]["spec"]["ports"][0] == {"name": "http", "port": 8000, "targetPort": 80,
                                                           "protocol": "TCP"}
    public = {p["port"] for n in ("gonka-p2p", "gonka-proxy") for p in services[n]["spec"]["ports"]}
    assert public.isdisjoint({9100, 9200, 26657, 5000 + 50, 8080})


def test_proxy_maps_compose_names_to_service_ips() -> None:
    proxy = nnb.build_proxy(NN_OWNER, nn_spec(), {"gonka-api": "10.96.0.10", "gonka-chain": "10.96.0.11"})
    aliases = proxy["spec"]["template"]["spec"]["hostAliases"]
    assert aliases == [{"ip": "10.96.0.10", "hostnames": ["api"]}, {"ip": "10.96.0.11", "hostnames": ["node"]}]


def test_network_policies_close_admin_and_callback() -> None:
    policies = network_node_policies(NN_OWNER, {"app.kubernetes.io/name": "gonka-operator"})
    node = policies[0]["spec"]["ingress"]
    by_port = {p["port"]: rule.get("from") for rule in node for p in rule["ports"]}
    assert by_port[26656] is None  # public
    assert by_port[9200] == [{"namespaceSelector": {},
                              "podSelector": {"matchLabels": {"app.kubernetes.io/name": "gonka-operator"}}}]
    assert by_port[9100][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/component": "mlnode",
                                                              "gonka.ai/network-node": "gonka"}
    ml = inference_node_policy(IN_OWNER, "gonka")["spec"]
    assert ml["ingress"][0]["from"][0]["podSelector"]["matchLabels"] == nnb.node_selector("gonka")
    assert {p["port"] for p in ml["ingress"][0]["ports"]} == {5000, 8080}


def test_user_env_overrides_fixed_env() -> None:
    spec = nn_spec(env={"node": [{"name": "SNAPSHOT_KEEP_RECENT", "value": "9"}, {"name": "X", "value": "1"}]})
    sts = nnb.build_statefulset(NN_OWNER, spec, nnb.endpoints("gonka", "hosts", spec, "cluster.local"))
    names = [e["name"] for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]]
    assert names.count("SNAPSHOT_KEEP_RECENT") == 1
    assert env_of(sts["spec"]["template"]["spec"]["containers"][0])["SNAPSHOT_KEEP_RECENT"] == "9"


def test_gpu_deployment_shape() -> None:
    spec = in_spec(gpus=8, parallelism={"tensor": 4}, gpuProduct="NVIDIA-H200", shmSize="64Gi")
    dep = inb.build_deployment(IN_OWNER, spec, "gonka")
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H200"}
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Gi"}} in pod["volumes"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/api/v1/state", "port": 8080}
    assert c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"] >= 3600
    assert env_of(c)["HF_HUB_OFFLINE"] == "true"
    assert dep["spec"]["template"]["metadata"]["labels"]["gonka.ai/network-node"] == "gonka"


def test_service_maps_5050_to_5000_and_8080() -> None:
    svc = inb.build_service(IN_OWNER, "gonka")
    assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(5050, 5000), (8080, 8080)]


def test_registry_body_in_cluster() -> None:
    spec = in_spec(gpus=8, parallelism={"tensor": 4, "pipeline": 2}, hardwareType="3080",
                   args=["--max-model-len", "4096"])
    body = inb.registry_config("ml-a", "hosts", spec, "cluster.local").to_body()
    assert body == {
        "id": "ml-a", "host": "ml-a-mlnode.hosts.svc.cluster.local", "inference_port": 5050, "poc_port": 8080,
        "inference_segment": "", "poc_segment": "", "max_concurrent": 500,
        "models": {"Qwen/Qwen3-32B-FP8": {"args": ["--max-model-len", "4096", "--tensor-parallel-size", "4",
                                                   "--pipeline-parallel-size", "2"]}},
        "hardware": [{"type": "3080", "count": 8}],
    }


def test_registry_body_external() -> None:
    spec = InferenceNodeSpec.model_validate({"adminURL": "http://10.0.0.5:9200", "model": "m", "nodeId": "srv7",
                                             "gpus": 2, "gpuProduct": "NVIDIA-H100-80GB-HBM3", "maxConcurrent": 100,
                                             "external": {"host": "10.0.0.21", "inferencePort": 6000}})
    body = inb.registry_config("ignored", "ns", spec, "cluster.local").to_body()
    assert (body["id"], body["host"], body["inference_port"], body["poc_port"]) == ("srv7", "10.0.0.21", 6000, 8080)
    assert body["hardware"] == [{"type": "NVIDIA-H100-80GB-HBM3", "count": 2}]
    assert body["max_concurrent"] == 100


def test_hf_cache_variants() -> None:
    assert inb.build_hf_cache_pvc(IN_OWNER, in_spec())["metadata"].get("ownerReferences") is None
    assert inb.build_hf_cache_pvc(IN_OWNER, in_spec(hfCache={"hostPath": "/mnt/shared"})) is None
    dep = inb.build_deployment(IN_OWNER, in_spec(hfCache={"existingClaim": "shared"}), None)
    assert dep["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"] == {"claimName": "shared"}
