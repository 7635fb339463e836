"""Builders are pure: assert on the dicts they return, no cluster needed."""

from __future__ import annotations

import re
from typing import Any

import pytest

from gonka_operator.builders import inference_node as inb
from gonka_operator.builders import mlnode_proxy
from gonka_operator.builders import network_node as nnb
from gonka_operator.builders.common import Owner
from gonka_operator.builders.policies import inference_node_policy, network_node_policies
from gonka_operator.models.inference_node import DEFAULT_MLNODE_IMAGE, DEFAULT_PROXY_IMAGE, InferenceNodeSpec
from gonka_operator.models.network_node import NetworkNodeImages, NetworkNodeSpec

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
    # 9300 is not published: nothing uses it and the NetworkPolicy closes it
    assert {p["port"] for p in services["gonka-api"]["spec"]["ports"]} == {9000, 9100, 9200}
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
    policies = network_node_policies(NN_OWNER, {"app.kubernetes.io/name": "gonka-operator"}, "gonka-system")
    node = policies[0]["spec"]["ingress"]
    by_port = {p["port"]: rule.get("from") for rule in node for p in rule["ports"]}
    assert by_port[26656] is None  # public
    # namespace AND labels in ONE peer: a pod with copied labels in another namespace does not match
    assert by_port[9200] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gonka-system"}},
                              "podSelector": {"matchLabels": {"app.kubernetes.io/name": "gonka-operator"}}}]
    assert by_port[9100][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/component": "mlnode",
                                                              "gonka.ai/network-node": "gonka"}
    assert 9300 not in by_port


def test_admin_port_is_closed_to_every_pod_without_a_known_operator_namespace() -> None:
    node = network_node_policies(NN_OWNER, {"app.kubernetes.io/name": "gonka-operator"})[0]["spec"]["ingress"]
    assert 9200 not in {p["port"] for rule in node for p in rule["ports"]}
    assert all(rule.get("from") != [] for rule in node)  # no rule opened to everyone by accident


def test_ml_policy_opens_only_the_proxy_ports_to_the_api_pod() -> None:
    ml = inference_node_policy(IN_OWNER, "gonka")["spec"]
    assert ml["podSelector"]["matchLabels"] == inb.pod_selector("ml-a")
    [rule] = ml["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": nnb.node_selector("gonka")}}]
    assert {p["port"] for p in rule["ports"]} == {mlnode_proxy.MANAGEMENT_LISTEN, mlnode_proxy.INFERENCE_LISTEN}
    assert not {5000, 8080} & {p["port"] for p in rule["ports"]}  # mlnode's raw ports stay closed


def test_ml_policy_in_admin_url_mode_allows_only_the_configured_peers() -> None:
    spec = InferenceNodeSpec.model_validate({
        "adminURL": "http://10.0.0.5:9200", "model": "m", "hfCache": {"size": "1Gi"},
        "allowedFrom": [{"cidr": "192.168.10.0/24"}, {"namespaceSelector": {"kubernetes.io/metadata.name": "hosts"},
                                                      "podSelector": {"app": "api"}}]})
    [rule] = inference_node_policy(IN_OWNER, None, spec.allowed_from)["spec"]["ingress"]
    assert rule["from"] == [{"ipBlock": {"cidr": "192.168.10.0/24"}},
                            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "hosts"}},
                             "podSelector": {"matchLabels": {"app": "api"}}}]
    assert inference_node_policy(IN_OWNER, None, [])["spec"]["ingress"] == []  # no peer: nothing gets in


def test_no_gonka_workload_mounts_a_service_account_token() -> None:
    spec = nn_spec(explorer={"enabled": True})
    ep = nnb.endpoints("gonka", "hosts", spec, "cluster.local")
    workloads = [nnb.build_statefulset(NN_OWNER, spec, ep), nnb.build_proxy(NN_OWNER, spec, {}),
                 nnb.build_explorer(NN_OWNER, spec), inb.build_deployment(IN_OWNER, in_spec(), "gonka"),
                 inb.build_deployment(IN_OWNER, in_spec(), None)]
    for workload in workloads:
        assert workload["spec"]["template"]["spec"]["automountServiceAccountToken"] is False, workload["metadata"]


def test_current_defaults() -> None:
    images = NetworkNodeImages()
    assert (images.node, images.api, images.tmkms, images.proxy) == (
        "ghcr.io/product-science/inferenced:0.2.14", "ghcr.io/product-science/api:0.2.14",
        "ghcr.io/product-science/tmkms-softsign-with-keygen:0.2.14", "ghcr.io/product-science/proxy:0.2.14")
    pod = inb.build_deployment(IN_OWNER, in_spec(), "gonka")["spec"]["template"]["spec"]
    assert [c["image"] for c in pod["containers"]] == [DEFAULT_MLNODE_IMAGE, DEFAULT_PROXY_IMAGE]
    assert DEFAULT_MLNODE_IMAGE.startswith("ghcr.io/gonka-ai/mlnode:3.0.") and DEFAULT_PROXY_IMAGE == "nginx:1.28.0"
    major, minor, patch = (int(x) for x in re.findall(r"\d+", DEFAULT_MLNODE_IMAGE.split(":")[1])[:3])
    assert (major, minor, patch) >= (3, 0, 13)  # PoC v2 needs 3.0.12-post3 or later
    proxy = nnb.build_proxy(NN_OWNER, nn_spec(), {})["spec"]["template"]["spec"]["containers"][0]
    assert env_of(proxy)["GONKA_API_PORT"] == "9000" and env_of(proxy)["DISABLE_DEVSHARD_PROXY"] == "true"


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
        assert c[probe]["httpGet"] == {"path": "/api/v1/state", "port": 8080}  # mlnode itself, not the proxy
    assert c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"] >= 3600
    assert "HF_HUB_OFFLINE" not in env_of(c)  # v0.2.14's compose no longer sets it
    assert dep["spec"]["template"]["metadata"]["labels"]["gonka.ai/network-node"] == "gonka"


def test_proxy_container_beside_mlnode() -> None:
    pod = inb.build_deployment(IN_OWNER, in_spec(proxy={"image": "mirror.example/nginx:1.28.0"}), "gonka")
    pod = pod["spec"]["template"]["spec"]
    mlnode, proxy = pod["containers"]
    assert proxy["image"] == "mirror.example/nginx:1.28.0"
    assert {p["containerPort"] for p in proxy["ports"]} == {18080, 15050}
    assert {p["containerPort"] for p in mlnode["ports"]} == {8080}  # nginx never listens on mlnode's port
    assert proxy["command"][0] == "nginx" and "-p" in proxy["command"] and "-e" in proxy["command"]
    sec = proxy["securityContext"]
    assert sec["runAsNonRoot"] is True and sec["readOnlyRootFilesystem"] is True and sec["capabilities"] == {
        "drop": ["ALL"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["proxy-config"]["configMap"]["name"] == "gonka-ml-proxy"  # the NetworkNode's, shared
    assert "emptyDir" in volumes["proxy-run"]
    mounts = {m["mountPath"] for m in proxy["volumeMounts"]}
    assert {"/etc/gonka-mlnode-proxy", "/var/run/gonka-mlnode-proxy"} == mounts
    assert proxy["resources"]["limits"]["memory"] == "256Mi"


def test_proxy_config_maps_shared_per_network_node_or_own_in_admin_url_mode() -> None:
    shared = nnb.build_mlnode_proxy_config(NN_OWNER)
    assert shared["metadata"]["name"] == "gonka-ml-proxy"
    assert shared["metadata"]["ownerReferences"][0]["kind"] == "NetworkNode"
    assert shared["data"]["nginx.conf"] == mlnode_proxy.render_nginx_conf(
        upstream="127.0.0.1:8080", management_listen=18080, inference_listen=15050)
    own = inb.build_proxy_config(IN_OWNER)
    assert own["metadata"]["name"] == "ml-a-mlnode-proxy" != shared["metadata"]["name"]
    assert own["metadata"]["ownerReferences"][0]["uid"] == "uid-in"
    assert own["data"] == shared["data"]
    pod = inb.build_deployment(IN_OWNER, in_spec(), None)["spec"]["template"]["spec"]
    assert {v["name"]: v for v in pod["volumes"]}["proxy-config"]["configMap"]["name"] == "ml-a-mlnode-proxy"


def test_service_sends_both_api_ports_to_the_proxy() -> None:
    svc = inb.build_service(IN_OWNER, "gonka")
    assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(5050, "proxy-inference"),
                                                                            (8080, "proxy-mgmt")]
    proxy = inb.build_deployment(IN_OWNER, in_spec(), "gonka")["spec"]["template"]["spec"]["containers"][1]
    named = {p["name"]: p["containerPort"] for p in proxy["ports"]}
    assert (named["proxy-inference"], named["proxy-mgmt"]) == (15050, 18080)


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


def test_registry_body_carries_model_override() -> None:
    spec = in_spec(modelOverride={"hfRepo": "host/custom-qwen", "hfCommit": "0123456789abcdef0123456789abcdef01234567"})
    body = inb.registry_config("ml-a", "hosts", spec, "cluster.local").to_body()
    assert body["models"] == {"Qwen/Qwen3-32B-FP8": {
        "args": [], "model_override": {"hf_repo": "host/custom-qwen",
                                       "hf_commit": "0123456789abcdef0123456789abcdef01234567"}}}
    assert "model_override" not in inb.registry_config("ml-a", "hosts", in_spec(), "cluster.local").to_body()[
        "models"]["Qwen/Qwen3-32B-FP8"]


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


# -- the routing proxy's config (the real-nginx test is tests/integration, engineer A) ---------------

CONF = mlnode_proxy.render_nginx_conf(upstream="127.0.0.1:8080", management_listen=18080, inference_listen=15050)


def _server(conf: str, port: int) -> str:
    start = conf.index(f"listen {port};")
    end = conf.find("server {", start)
    return conf[start:end if end != -1 else None]


def test_proxy_conf_runs_as_a_plain_process() -> None:
    assert "daemon off;" in CONF and "pid nginx.pid;" in CONF  # relative: under `nginx -p <dir>`
    assert not re.search(r"^\s*user\s", CONF, re.M)
    for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        assert re.search(rf"^\s*{temp}_temp_path {temp}_temp;", CONF, re.M), temp
    assert "server 127.0.0.1:8080;" in CONF


def test_proxy_conf_strips_any_version_prefix_on_both_ports() -> None:
    management, inference = _server(CONF, 18080), _server(CONF, 15050)
    for server in (management, inference):
        assert "client_max_body_size      0;" in server
        for timeout in ("connect", "send", "read"):
            assert re.search(rf"proxy_{timeout}_timeout\s+24h;", server), timeout
    for server in (management, inference):  # the api prefixes PoC *and* inference URLs
        assert f'location ~ "{mlnode_proxy.VERSION_PREFIX_REGEX}"' in server
        assert "proxy_pass http://mlnode;" in server
    pattern = re.compile(mlnode_proxy.VERSION_PREFIX_REGEX)
    for path, rest in (("/v3.0.8/api/v1/state", "api/v1/state"), ("/v3.0.12-post3/api/v1/state", "api/v1/state"),
                       ("/v4.1.0/", "")):
        match = pattern.match(path)
        assert match is not None and match.group(1) == rest, path
    for path in ("/api/v1/state", "/v1/chat/completions", "/v1/models", "/health", "/v3.0.8"):
        assert pattern.match(path) is None, path  # unprefixed paths (even mlnode's own /v1/…) pass unchanged


@pytest.mark.parametrize("kwargs", [
    {"upstream": "", "management_listen": 1, "inference_listen": 2},
    {"upstream": "h:1; evil", "management_listen": 1, "inference_listen": 2},
    {"upstream": "h:1", "management_listen": 0, "inference_listen": 2},
    {"upstream": "h:1", "management_listen": 3, "inference_listen": 3},
])
def test_proxy_conf_refuses_bad_input(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        mlnode_proxy.render_nginx_conf(**kwargs)
