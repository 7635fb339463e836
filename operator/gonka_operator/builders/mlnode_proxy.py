"""The nginx that sits in front of mlnode in every InferenceNode pod (REFERENCE.md §1, §3).

Follows upstream's `deploy/join/nginx.conf` (gonka-ai/gonka, 2025-08 and later copies):

- management server (upstream `listen 8080`): `location /v3.0.8/ { proxy_pass http://mlnode/; }`
  strips the ML-node version prefix that the api's broker puts in front of every path
  (`PoCUrlWithVersion`), and `location /` passes unprefixed paths unchanged. Upstream hard-codes the
  one version it ships; here one regex location strips any `/v<major>.<minor>…/` prefix
  (`v3.0.8`, `v3.0.12-post3`, `v4.1.0`), so a governance upgrade needs no new config. The regex
  wants a dot after the major number, so mlnode's own `/v1/…` inference paths are never mistaken
  for a version.
- inference server (upstream `listen 5000`, published as 5050, "compatibility block for mlnode <
  3.0.7 when 2 ports were used"): everything goes to mlnode's 8080, since 3.0.7 its one port.
  The version prefix is stripped here too. The api puts it on inference URLs as well
  (decentralized-api broker `InferenceUrlWithVersion`: `http://host:inference_port/<version><segment>`)
  and mlnode serves only unprefixed paths. Upstream's 2025-08 copy stripped it on this block
  (`proxy_pass http://mlnode_v308_port5000/;`); its later copy passes the path unchanged
  (`proxy_pass http://mlnode_v308;`), which reaches mlnode only if mlnode accepts the prefix.
  Stripping works either way, because unprefixed paths are always served. Unprefixed paths pass
  unchanged on both ports.
- both: `client_max_body_size 0` and 24 h connect/send/read timeouts, the Host/X-Real-IP/
  X-Forwarded-For headers upstream sets.

The config runs both in the `nginx` image and as a plain process of the Debian nginx binary:
no `user` directive, logs to stdout/stderr, and the pid file and temp paths are relative, so they
land under nginx's prefix (`nginx -p <dir>`), which the pod points at a writable emptyDir.
"""

from __future__ import annotations

from gonka_operator.builders.common import Obj, Owner, metadata

# One version segment: "/v" + major "." + anything up to the next slash; the rest is captured.
VERSION_PREFIX_REGEX = r"^/v[0-9]+\.[0-9]+[^/]*/(.*)$"

_PROXY_HEADERS = """\
            proxy_set_header Host $host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"""

_LIMITS = """\
        client_max_body_size      0;
        proxy_connect_timeout     24h;
        proxy_send_timeout        24h;
        proxy_read_timeout        24h;"""


def render_nginx_conf(*, upstream: str, management_listen: int, inference_listen: int) -> str:
    """The whole nginx.conf. `upstream` is mlnode's `host:port` (in the pod: `127.0.0.1:8080`)."""
    if not upstream or "/" in upstream or any(c.isspace() for c in upstream) or ";" in upstream:
        raise ValueError(f"upstream must be host:port, got {upstream!r}")
    for port in (management_listen, inference_listen):
        if not 1 <= port <= 65535:
            raise ValueError(f"listen port out of range: {port}")
    if management_listen == inference_listen:
        raise ValueError("management and inference listen ports must differ")
    return f"""\
# Rendered by gonka-operator (builders/mlnode_proxy.py); follows upstream deploy/join/nginx.conf.
worker_processes 1;
daemon off;
pid nginx.pid;
error_log stderr notice;

events {{
    worker_connections 1024;
}}

http {{
    access_log /dev/stdout;
    client_body_temp_path client_body_temp;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;

    upstream mlnode {{
        server {upstream};
    }}

    # Management / PoC (Service 8080): strip any /<ml-node version>/ prefix.
    server {{
        listen {management_listen};
{_LIMITS}

        location ~ "{VERSION_PREFIX_REGEX}" {{
            rewrite "{VERSION_PREFIX_REGEX}" /$1 break;
            proxy_pass http://mlnode;
{_PROXY_HEADERS}
        }}

        location / {{
            proxy_pass http://mlnode;
{_PROXY_HEADERS}
        }}
    }}

    # Inference (Service 5050): mlnode >= 3.0.7 serves inference on its one port; the api's
    # InferenceUrlWithVersion prefixes these paths too, so the same prefix is stripped.
    server {{
        listen {inference_listen};
{_LIMITS}

        location ~ "{VERSION_PREFIX_REGEX}" {{
            rewrite "{VERSION_PREFIX_REGEX}" /$1 break;
            proxy_pass http://mlnode;
{_PROXY_HEADERS}
        }}

        location / {{
            proxy_pass http://mlnode;
{_PROXY_HEADERS}
        }}
    }}
}}
"""


# -- the proxy in the InferenceNode pod -------------------------------------------------------------
#
# The pod shares one network namespace: mlnode listens on 8080, so nginx listens on other ports and
# the Service maps the api-facing ports onto them (8080 -> MANAGEMENT_LISTEN, 5050 -> INFERENCE_LISTEN).
# Probes keep going to mlnode's own 8080.

MLNODE_UPSTREAM = "127.0.0.1:8080"
MANAGEMENT_LISTEN, INFERENCE_LISTEN = 18080, 15050
MANAGEMENT_PORT_NAME, INFERENCE_PORT_NAME = "proxy-mgmt", "proxy-inference"
CONFIG_KEY = "nginx.conf"
CONFIG_DIR, RUN_DIR = "/etc/gonka-mlnode-proxy", "/var/run/gonka-mlnode-proxy"
CONFIG_VOLUME, RUN_VOLUME = "proxy-config", "proxy-run"
NGINX_UID = 101  # the `nginx` user of the nginx image
DEFAULT_REQUESTS = {"cpu": "50m", "memory": "32Mi"}
DEFAULT_LIMITS = {"memory": "256Mi"}


def pod_config() -> str:
    """The config every ML pod runs: identical for all of them (so one ConfigMap can serve many)."""
    return render_nginx_conf(upstream=MLNODE_UPSTREAM, management_listen=MANAGEMENT_LISTEN,
                             inference_listen=INFERENCE_LISTEN)


def config_map(name: str, owner: Owner, obj_labels: dict[str, str]) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(name, owner, obj_labels),
            "data": {CONFIG_KEY: pod_config()}}


def container(image: str, resources: Obj) -> Obj:
    """nginx as a plain non-root process: config from the ConfigMap, pid/temp files in an emptyDir."""
    tcp = {"tcpSocket": {"port": MANAGEMENT_PORT_NAME}, "timeoutSeconds": 5}
    return {
        "name": "proxy", "image": image,
        "command": ["nginx", "-p", f"{RUN_DIR}/", "-c", f"{CONFIG_DIR}/{CONFIG_KEY}", "-e", "stderr"],
        "ports": [{"name": MANAGEMENT_PORT_NAME, "containerPort": MANAGEMENT_LISTEN, "protocol": "TCP"},
                  {"name": INFERENCE_PORT_NAME, "containerPort": INFERENCE_LISTEN, "protocol": "TCP"}],
        "resources": resources,
        "volumeMounts": [{"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": True},
                         {"name": RUN_VOLUME, "mountPath": RUN_DIR}],
        "readinessProbe": {**tcp, "periodSeconds": 10, "failureThreshold": 3},
        "livenessProbe": {**tcp, "periodSeconds": 30, "failureThreshold": 5},
        "securityContext": {"runAsNonRoot": True, "runAsUser": NGINX_UID, "runAsGroup": NGINX_UID,
                            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
    }


def volumes(config_map_name: str) -> list[Obj]:
    return [{"name": CONFIG_VOLUME, "configMap": {"name": config_map_name,
                                                  "items": [{"key": CONFIG_KEY, "path": CONFIG_KEY}]}},
            {"name": RUN_VOLUME, "emptyDir": {"sizeLimit": "1Gi"}}]
