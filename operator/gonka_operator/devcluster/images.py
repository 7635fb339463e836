"""Container images for the real node, built on this machine without a daemon or a registry.

* Static Go binaries (pause, CoreDNS) are packed by `pack_oci` into a single-layer OCI archive.
* Debian roots come from `mmdebstrap --variant=minbase` (Debian's own packages) and become a
  one-layer image the same way.
* The operator image is built **from the repository's Dockerfile**, unchanged, by buildah (chroot
  isolation, vfs storage under the cache), on the Debian-with-Python root as `PYTHON_IMAGE`.
* Role images for the NetworkNode's containers reuse those layers with a new image config.

Every archive is cached under `~/.cache/gonka-operator/images/` by the hash of everything that goes
into it, so a warm start only imports (`ctr -n k8s.io images import`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .procs import ClusterError

# Bump when the way an image is made changes, so the caches are rebuilt.
RECIPE = "1"
REPO_ROOT = Path(__file__).resolve().parents[3]
DEBIAN_SUITE = "bookworm"
PYTHON_PACKAGES = ("python3", "python3-venv", "python-is-python3")
NGINX_PACKAGES = ("nginx-light", "python3")
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _say(msg: str) -> None:
    print(f"images: {msg}", file=sys.stderr, flush=True)


def cache_root() -> Path:
    root = os.environ.get("GONKA_TOOLS_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gonka-operator"
    )
    return Path(root) / "images"


def _digest_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def content_hash(*parts: str | bytes | Path) -> str:
    """sha256 over strings, bytes and files (a directory: every file under it, sorted by path)."""
    h = hashlib.sha256(RECIPE.encode())
    for part in parts:
        if isinstance(part, Path):
            files = sorted(p for p in part.rglob("*") if p.is_file()) if part.is_dir() else [part]
            for f in files:
                if "__pycache__" in f.parts or f.suffix == ".pyc":
                    continue
                h.update(str(f.relative_to(part) if part.is_dir() else f.name).encode())
                h.update(_digest_file(f).encode())
        else:
            h.update(part if isinstance(part, bytes) else part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Image:
    """An OCI archive on disk and the reference it is imported under."""

    ref: str
    archive: Path


@dataclass
class ImageConfig:
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=lambda: [DEFAULT_PATH])
    workdir: str = "/"
    user: str = ""
    ports: list[int] = field(default_factory=list)


# ---- OCI archives ------------------------------------------------------------------------------


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def layer_from_files(out: Path, files: dict[str, tuple[bytes | Path, int]]) -> Path:
    """An uncompressed layer tarball holding `files` (path in the image -> (content, mode))."""
    dirs: set[str] = set()
    for name in files:
        parts = name.strip("/").split("/")[:-1]
        dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for d in sorted(dirs):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.mtime = 0
            tar.addfile(info)
        for name, (content, mode) in sorted(files.items()):
            data = content.read_bytes() if isinstance(content, Path) else content
            _add_bytes(tar, name.strip("/"), data, mode)
    return out


def pack_oci(archive: Path, ref: str, layers: Sequence[Path], cfg: ImageConfig) -> Image:
    """Write an OCI image-layout tarball of `layers` (uncompressed tars, bottom first) for linux/amd64.

    The index carries `io.containerd.image.name` so `ctr images import` names it `ref`.
    """
    layer_digests = [_digest_file(p) for p in layers]
    config: dict[str, Any] = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": cfg.env,
            "Entrypoint": cfg.entrypoint or None,
            "Cmd": cfg.cmd or None,
            "WorkingDir": cfg.workdir,
            "User": cfg.user,
            "ExposedPorts": {f"{p}/tcp": {} for p in cfg.ports},
        },
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for d in layer_digests]},
        "history": [{"created_by": "gonka-operator devcluster images.py"} for _ in layers],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_digest = hashlib.sha256(config_bytes).hexdigest()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": f"sha256:{config_digest}", "size": len(config_bytes)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": f"sha256:{d}",
                    "size": p.stat().st_size} for d, p in zip(layer_digests, layers, strict=True)],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    manifest_digest = hashlib.sha256(manifest_bytes).hexdigest()
    index = {
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": f"sha256:{manifest_digest}", "size": len(manifest_bytes),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": ref},
        }],
    }
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_suffix(".partial")
    with tarfile.open(tmp, "w") as tar:
        _add_bytes(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        _add_bytes(tar, "index.json", json.dumps(index).encode())
        _add_bytes(tar, f"blobs/sha256/{config_digest}", config_bytes)
        _add_bytes(tar, f"blobs/sha256/{manifest_digest}", manifest_bytes)
        seen: set[str] = set()
        for digest, path in zip(layer_digests, layers, strict=True):
            if digest not in seen:
                seen.add(digest)
                tar.add(str(path), arcname=f"blobs/sha256/{digest}")
    tmp.replace(archive)
    return Image(ref, archive)


def oci_layers(archive: Path, workdir: Path) -> tuple[list[Path], dict[str, Any]]:
    """The (uncompressed) layer files and the image config of a one-manifest OCI archive."""
    import gzip

    with tarfile.open(archive) as tar:
        def blob(digest: str) -> bytes:
            f = tar.extractfile(f"blobs/sha256/{digest.split(':', 1)[1]}")
            assert f is not None
            return f.read()

        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        config = json.loads(blob(manifest["config"]["digest"]))
        layers = []
        for i, layer in enumerate(manifest["layers"]):
            data = blob(layer["digest"])
            if layer["mediaType"].endswith("gzip"):
                data = gzip.decompress(data)
            path = workdir / f"layer-{i}.tar"
            path.write_bytes(data)
            layers.append(path)
    return layers, config


# ---- the images --------------------------------------------------------------------------------

PAUSE_GO = """\
// pause: the pod sandbox's PID 1. Sleeps until SIGTERM/SIGINT, reaps orphans (a pod may share its
// PID namespace). Written for the gonka-operator dev cluster; does what k8s' pause.c does.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
"""


def _run(argv: Sequence[str], what: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    started = time.monotonic()
    out = subprocess.run(list(argv), cwd=cwd, env={**os.environ, **(env or {})},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    if out.returncode != 0:
        tail = out.stdout.decode(errors="replace")[-3000:]
        raise ClusterError(f"{what} failed ({' '.join(argv[:3])}… code {out.returncode}):\n{tail}")
    _say(f"{what}: {time.monotonic() - started:.1f} s")


def pause_image() -> Image:
    key = content_hash(PAUSE_GO)
    ref = f"localhost/gonka-pause:{key}"
    archive = cache_root() / f"pause-{key}.oci.tar"
    if archive.exists():
        return Image(ref, archive)
    with tempfile.TemporaryDirectory(prefix="gonka-pause-") as tmp:
        d = Path(tmp)
        (d / "go.mod").write_text("module gonka-operator.local/pause\n\ngo 1.22\n")
        (d / "main.go").write_text(PAUSE_GO)
        _run(["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", "pause", "."], "pause: go build", d,
             {"CGO_ENABLED": "0", "GOTOOLCHAIN": os.environ.get("GOTOOLCHAIN", "local")})
        layer = layer_from_files(d / "layer.tar", {"/pause": (d / "pause", 0o755)})
        return pack_oci(archive, ref, [layer], ImageConfig(entrypoint=["/pause"], env=[]))


def binary_image(name: str, binary: Path, cfg: ImageConfig, extra: dict[str, tuple[bytes | Path, int]]
                 | None = None) -> Image:
    """A one-layer image holding a static binary at /<name> (plus `extra` files)."""
    key = content_hash(binary, json.dumps(cfg.__dict__, sort_keys=True),
                       json.dumps(sorted((k, hashlib.sha256(v.read_bytes() if isinstance(v, Path) else v)
                                          .hexdigest(), m) for k, (v, m) in (extra or {}).items())))
    ref = f"localhost/gonka-{name}:{key}"
    archive = cache_root() / f"{name}-{key}.oci.tar"
    if archive.exists():
        return Image(ref, archive)
    with tempfile.TemporaryDirectory(prefix=f"gonka-{name}-") as tmp:
        layer = layer_from_files(Path(tmp) / "layer.tar", {f"/{name}": (binary, 0o755), **(extra or {})})
        return pack_oci(archive, ref, [layer], cfg)


def debian_rootfs(packages: Iterable[str]) -> Path:
    """A Debian minbase root with `packages` as one uncompressed layer tarball (cached by recipe).

    Device nodes are left out (the runtime mounts /dev); everything else is as mmdebstrap made it.
    """
    pkgs = sorted(packages)
    key = content_hash(DEBIAN_SUITE, *pkgs)
    layer = cache_root() / f"debian-{DEBIAN_SUITE}-{key}.layer.tar"
    if layer.exists():
        return layer
    if shutil.which("mmdebstrap") is None:
        raise ClusterError("mmdebstrap is missing: run `bash hack/install-apt.sh realnode`")
    layer.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gonka-debian-", dir=layer.parent) as tmp:
        raw = Path(tmp) / "root.tar"
        _run(["mmdebstrap", "--quiet", "--variant=minbase", f"--include={','.join(pkgs)}", DEBIAN_SUITE,
              str(raw)], f"mmdebstrap {DEBIAN_SUITE} +{','.join(pkgs)}")
        partial = Path(tmp) / "layer.tar"
        with tarfile.open(raw) as src, tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as dst:
            for member in src:
                if member.ischr() or member.isblk():
                    continue
                dst.addfile(member, src.extractfile(member) if member.isfile() else None)
        partial.replace(layer)
    return layer


class Buildah:
    """buildah with its storage (vfs) under the image cache, never the system's."""

    def __init__(self) -> None:
        if shutil.which("buildah") is None:
            raise ClusterError("buildah is missing: run `bash hack/install-apt.sh realnode`")
        self.root = cache_root() / "buildah"
        self.base = ["buildah", "--root", str(self.root / "storage"), "--runroot", str(self.root / "run"),
                     "--storage-driver", "vfs"]

    def __call__(self, *args: str, what: str, cwd: Path | None = None) -> None:
        _run([*self.base, *args], what, cwd)

    def output(self, *args: str) -> str:
        return subprocess.run([*self.base, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, check=False).stdout.strip()

    def has_image(self, ref: str) -> bool:
        return bool(self.output("images", "-q", ref))


def operator_image(repo: Path = REPO_ROOT) -> Image:
    """The operator image, built from `repo`/Dockerfile with the local Debian Python as PYTHON_IMAGE.

    Cached by the hash of everything the Dockerfile copies (pyproject.toml, README.md, operator/)
    and of the Dockerfile and base themselves.
    """
    base_layer = debian_rootfs(PYTHON_PACKAGES)
    key = content_hash(repo / "Dockerfile", repo / "pyproject.toml", repo / "README.md", repo / "operator",
                       _digest_file(base_layer))
    ref = f"localhost/gonka-operator:{key}"
    archive = cache_root() / f"operator-{key}.oci.tar"
    if archive.exists():
        return Image(ref, archive)
    b = Buildah()
    base_ref = f"localhost/debian-python:{DEBIAN_SUITE}-{_digest_file(base_layer)[:12]}"
    if not b.has_image(base_ref):
        ctr = b.output("from", "scratch")
        if not ctr:
            raise ClusterError("buildah from scratch gave no container")
        b("add", ctr, str(base_layer), "/", what="buildah add debian base")
        b("config", "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", ctr,
          what="buildah config")
        b("commit", "--rm", ctr, base_ref, what="buildah commit debian base")
    # buildah's RUN steps set up CNI state in /etc/cni/net.d (a lock file) whatever the storage dirs.
    made_cni = not Path("/etc/cni").exists()
    # The certs mount: TLS to the package registries may go through a CA only this machine trusts.
    b("bud", "--isolation", "chroot", "--layers=false", "-v", "/etc/ssl/certs:/etc/ssl/certs:ro",
      "--build-arg", f"PYTHON_IMAGE={base_ref}", "-t", ref, "-f", str(repo / "Dockerfile"), str(repo),
      what="buildah bud (operator image from the Dockerfile)", cwd=repo)
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_suffix(".partial")
    tmp.unlink(missing_ok=True)
    if made_cni:
        (Path("/etc/cni/net.d") / "cni.lock").unlink(missing_ok=True)
        for d in (Path("/etc/cni/net.d"), Path("/etc/cni")):
            with contextlib.suppress(OSError):
                d.rmdir()
    b("push", ref, f"oci-archive:{tmp}:{ref}", what="buildah push oci-archive")
    tmp.replace(archive)
    # The archive is the cache; the vfs copy of the image is not needed any more.
    b.output("rmi", ref)
    return Image(ref, archive)


def derived_image(name: str, parent: Image, cfg: ImageConfig,
                  extra: dict[str, tuple[bytes | Path, int]] | None = None) -> Image:
    """`parent`'s layers (+ one layer of `extra` files) under a new config: role images that share
    the operator's or Debian's layers (containerd stores a shared layer once)."""
    extra = extra or {}
    key = content_hash(parent.archive.name, json.dumps(cfg.__dict__, sort_keys=True),
                       *(f"{k}:{m}:{hashlib.sha256(v.read_bytes() if isinstance(v, Path) else v).hexdigest()}"
                         for k, (v, m) in sorted(extra.items())))
    ref = f"localhost/gonka-{name}:{key}"
    archive = cache_root() / f"{name}-{key}.oci.tar"
    if archive.exists():
        return Image(ref, archive)
    with tempfile.TemporaryDirectory(prefix=f"gonka-{name}-", dir=cache_root()) as tmp:
        layers, _ = oci_layers(parent.archive, Path(tmp))
        if extra:
            layers.append(layer_from_files(Path(tmp) / "extra.tar", extra))
        return pack_oci(archive, ref, layers, cfg)


def rootfs_image(name: str, packages: Iterable[str], cfg: ImageConfig,
                 extra: dict[str, tuple[bytes | Path, int]] | None = None) -> Image:
    """A Debian minbase root (+ `extra` files in a second layer) as an image."""
    base = debian_rootfs(packages)
    parent_key = content_hash(_digest_file(base))
    parent = Image(f"localhost/gonka-debian:{parent_key}", cache_root() / f"debian-{parent_key}.oci.tar")
    if not parent.archive.exists():
        pack_oci(parent.archive, parent.ref, [base], ImageConfig())
    return derived_image(name, parent, cfg, extra)


# ---- containerd --------------------------------------------------------------------------------


def import_images(ctr_address: str, images: Sequence[Image]) -> None:
    """Import each archive into containerd's k8s.io namespace, skipping those already there."""
    have = subprocess.run(["ctr", "--address", ctr_address, "-n", "k8s.io", "images", "ls", "-q"],
                          stdout=subprocess.PIPE, text=True, check=False).stdout.split()
    for image in images:
        if image.ref in have:
            continue
        _run(["ctr", "--address", ctr_address, "-n", "k8s.io", "images", "import", str(image.archive)],
             f"import {image.ref}")


def toolbox_image() -> Image:
    """Debian with Python: throw-away client and server pods of the tests (`python3 -c …`)."""
    return rootfs_image("toolbox", PYTHON_PACKAGES, ImageConfig(cmd=["python3"], workdir="/tmp"))


# ---- role images: what the operator's workloads run on the real node -------------------------
#
# The upstream images (inferenced, api, tmkms, proxy, mlnode) need a chain, keys and GPUs. On the
# real node their containers run these instead, set through NetworkNode spec.images and
# InferenceNode spec.image / spec.proxy.image. Each keeps the container's command working as the
# operator writes it (`sh ./init-docker.sh` for node, `uvicorn …` for mlnode, `nginx -p … -c …` for
# the ML pod's proxy) and serves what the probes and the other pods ask for.

STANDIN_TARGETS = "10.88.0.0/24,10.96.0.0/16"  # the real node's pods and the Services: nothing else

API_ENTRYPOINT = f"""#!/bin/sh
# The network node's api container: the network-node stand-in (admin 9200, public 9000, ML callback
# 9100) also serving the chain RPC /status on 26657 for the node container of the same pod. The PoC
# callback URL is the one the operator derived (DAPI_API__POC_CALLBACK_URL).
exec gonka-operator simulate-network-node --host 0.0.0.0 --chain-port 26657 \\
  --poc-callback-url "${{DAPI_API__POC_CALLBACK_URL:?}}" --allow-targets {STANDIN_TARGETS} \\
  --access-log "$@"
"""

NODE_INIT = """#!/bin/sh
# The chain node's place in the pod (`sh ./init-docker.sh`): no chain here. The api container's
# stand-in serves /status on 26657 for this container's probes (one network namespace per pod);
# this one accepts P2P connections on 26656 (and closes them), so the public P2P Service has a peer.
exec python3 -c '
import socket
s = socket.create_server(("0.0.0.0", 26656), backlog=64)
while True:
    c, _ = s.accept()
    c.close()
'
"""

INFERENCED_KEYS = """#!/bin/sh
# `inferenced keys show|add` for the warm-key Job (the api image ships inferenced): the stand-in of
# simulator/keys.py, the Cosmos SDK's file keyring under $HOME/.inference (the Job's volume).
exec python3 -m gonka_operator.simulator.keys "$@"
"""

MLNODE_UVICORN = f"""#!/bin/sh
# The InferenceNode's mlnode container runs `uvicorn api.app:app --host=0.0.0.0 --port=8080`
# (upstream mlnode). Here the same command starts the ML-node stand-in on that port.
exec gonka-operator simulate-ml-node --host 0.0.0.0 --port 8080 --allow-targets {STANDIN_TARGETS} \\
  --gpus "${{GONKA_STANDIN_GPUS:-1}}"
"""

NETWORK_PROXY_CONF = """# The network node's public proxy (upstream proxy image, reduced): /health for the probes,
# the public API from the api Service (hostAliases map `api` to it).
daemon off;
worker_processes 1;
pid /tmp/nginx.pid;
error_log stderr notice;
events { worker_connections 256; }
http {
    access_log /dev/stdout;
    client_body_temp_path /tmp/client_body;
    proxy_temp_path /tmp/proxy;
    fastcgi_temp_path /tmp/fastcgi;
    uwsgi_temp_path /tmp/uwsgi;
    scgi_temp_path /tmp/scgi;
    server {
        listen 80;
        location = /health { return 200 "ok\\n"; }
        location /v1/ { proxy_pass http://api:9000; }
        location / { return 404; }
    }
}
"""


def role_images(repo: Path = REPO_ROOT) -> dict[str, Image]:
    """operator, api, node, tmkms, mlnode (on the operator image's layers) and nginx, proxy (Debian nginx)."""
    operator = operator_image(repo)
    op_env = [DEFAULT_PATH.replace("PATH=", "PATH=/opt/venv/bin:"), "PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1"]
    op_user = "10001:10001"
    nginx = rootfs_image("nginx", NGINX_PACKAGES, ImageConfig(cmd=["nginx", "-g", "daemon off;"]))
    return {
        "operator": operator,
        # root, as upstream's api image (no USER): the warm-key Job writes the keyring into the node
        # pod's /root/.inference volume (a root-owned 0750 directory of the hostPath provisioner)
        "api": derived_image("role-api", operator, ImageConfig(
            entrypoint=["/usr/local/bin/gonka-api-standin"], workdir="/tmp", ports=[9000, 9100, 9200, 26657],
            env=[*op_env, "HOME=/root"], user="0:0"),
            {"/usr/local/bin/gonka-api-standin": (API_ENTRYPOINT.encode(), 0o755),
             "/usr/local/bin/inferenced": (INFERENCED_KEYS.encode(), 0o755)}),
        "node": derived_image("role-node", operator, ImageConfig(workdir="/opt/gonka-node", env=op_env, user=op_user),
                              {"/opt/gonka-node/init-docker.sh": (NODE_INIT.encode(), 0o755)}),
        "tmkms": derived_image("role-tmkms", operator,
                               ImageConfig(entrypoint=["sleep", "infinity"], env=op_env, user=op_user)),
        "mlnode": derived_image("role-mlnode", operator,
                                ImageConfig(workdir="/tmp", ports=[8080], env=op_env, user=op_user),
                                {"/usr/local/bin/uvicorn": (MLNODE_UVICORN.encode(), 0o755)}),
        "nginx": nginx,
        "proxy": derived_image("role-proxy", nginx, ImageConfig(
            entrypoint=["nginx", "-c", "/etc/gonka-proxy/nginx.conf", "-e", "stderr"], ports=[80]),
            {"/etc/gonka-proxy/nginx.conf": (NETWORK_PROXY_CONF.encode(), 0o644)}),
    }
