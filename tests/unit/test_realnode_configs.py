"""The real node's pure parts: its configs say what issue 14 found necessary, the OCI packer writes
an archive whose digests check out, the image cache key follows the content, and a machine without
root is told why the real node cannot run."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tomllib
from pathlib import Path

import pytest

from gonka_operator.devcluster import images, machine, node_config
from gonka_operator.devcluster.certs import Pki


def test_containerd_config_restricts_oom_score_adj_and_uses_cgroupfs(tmp_path: Path) -> None:
    cfg = tomllib.loads(node_config.containerd_config(tmp_path, "localhost/pause:x", tmp_path / "bin"))
    cri = cfg["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True  # else: "can't get final child's PID from pipe: EOF"
    assert cri["sandbox_image"] == "localhost/pause:x"
    assert cri["containerd"]["snapshotter"] == "overlayfs"
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    assert cfg["root"].startswith(str(tmp_path)) and cfg["state"].startswith(str(tmp_path))
    assert len(cfg["grpc"]["address"]) < 108  # a unix socket path


def test_kubelet_config_keeps_dns_inside_and_taints_the_node(tmp_path: Path) -> None:
    cfg = node_config.kubelet_config(tmp_path, Pki(tmp_path), "192.0.2.2", 10250, 10248)
    assert cfg["cgroupDriver"] == "cgroupfs" and cfg["failCgroupV1"] is False
    assert cfg["resolvConf"] == ""  # no pod inherits the host's resolver
    assert cfg["clusterDNS"] == [node_config.DNS_SERVICE_IP]
    assert cfg["registerWithTaints"] == [node_config.TAINT]
    assert "forward" not in node_config.COREFILE


def test_cni_config_bridges_without_masquerade(tmp_path: Path) -> None:
    bridge = node_config.cni_config(tmp_path)["plugins"][0]
    assert bridge["bridge"] == node_config.BRIDGE and bridge["ipMasq"] is False
    assert bridge["ipam"]["ranges"] == [[{"subnet": node_config.POD_CIDR}]]
    assert bridge["ipam"]["dataDir"].startswith(str(tmp_path))


def test_pack_oci_writes_a_layout_whose_digests_match(tmp_path: Path) -> None:
    layer = images.layer_from_files(tmp_path / "layer.tar", {"/bin/hello": (b"#!/bin/sh\necho hi\n", 0o755)})
    img = images.pack_oci(tmp_path / "img.tar", "localhost/hello:1", [layer],
                          images.ImageConfig(entrypoint=["/bin/hello"]))
    with tarfile.open(img.archive) as tar:
        def read(name: str) -> bytes:
            f = tar.extractfile(name)
            assert f is not None
            return f.read()

        def blob(digest: str) -> bytes:
            data = read(f"blobs/sha256/{digest.split(':')[1]}")
            assert hashlib.sha256(data).hexdigest() == digest.split(":")[1]
            return data

        index = json.loads(read("index.json"))
        assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == "localhost/hello:1"
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        config = json.loads(blob(manifest["config"]["digest"]))
        layer_bytes = blob(manifest["layers"][0]["digest"])
    assert config["rootfs"]["diff_ids"] == [f"sha256:{hashlib.sha256(layer_bytes).hexdigest()}"]
    assert config["config"]["Entrypoint"] == ["/bin/hello"] and config["os"] == "linux"
    with tarfile.open(fileobj=io.BytesIO(layer_bytes)) as t:
        member = t.getmember("bin/hello")
        assert member.mode == 0o755


def test_content_hash_follows_the_files(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("one")
    first = images.content_hash(tmp_path, "recipe")
    assert images.content_hash(tmp_path, "recipe") == first
    (tmp_path / "a").write_text("two")
    assert images.content_hash(tmp_path, "recipe") != first
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert images.content_hash(tmp_path, "recipe") == images.content_hash(tmp_path, "recipe")


def test_without_root_the_reason_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine.os, "geteuid", lambda: 1000)
    reason = machine.unavailable_reason()
    assert reason is not None and "root" in reason and "\n" not in reason
