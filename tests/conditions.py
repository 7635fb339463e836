"""Reading custom resources' conditions, and the operator environment the tests use."""

from __future__ import annotations

from helpers import wait_for
from procs import Kubectl, StandIn

POLL_SECONDS = "2"
PRELOAD_RETRY_SECONDS = "2"


def operator_env(standin: StandIn) -> dict[str, str]:
    env = {"GONKA_ADMIN_URL_OVERRIDES": f"*={standin.url}", "GONKA_REGISTRY_POLL_SECONDS": POLL_SECONDS,
           "GONKA_ADMIN_TIMEOUT_SECONDS": "3",
           # a failed preload pod fails its Job at once, and the operator's next attempt follows after
           # 2 s, 4 s, 8 s... (the defaults: 6 pod retries, then 60 s doubling): tests see retries quickly
           "GONKA_PRELOAD_BACKOFF_LIMIT": "0", "GONKA_PRELOAD_RETRY_SECONDS": PRELOAD_RETRY_SECONDS}
    if getattr(standin, "chain_url", None):  # host status (host_status.py): the stand-in's chain and public faces
        env |= {"GONKA_CHAIN_URL_OVERRIDES": f"*={standin.chain_url}",
                "GONKA_PUBLIC_URL_OVERRIDES": f"*={standin.public_url}"}
    return env


def condition(obj: dict | None, ctype: str) -> dict | None:
    for c in ((obj or {}).get("status") or {}).get("conditions", []):
        if c["type"] == ctype:
            return c
    return None


def wait_condition(kubectl: Kubectl, kind: str, name: str, ns: str, ctype: str, status: str,
                   reason: str | None = None, timeout: float = 60) -> dict:
    def check() -> dict | None:
        c = condition(kubectl.get(kind, name, ns), ctype)
        return c if c and c["status"] == status and (reason is None or c["reason"] == reason) else None

    return wait_for(check, timeout, lambda: f"{kind} {ns}/{name} {ctype}={status} {reason or ''}; "
                    f"status now: {(kubectl.get(kind, name, ns) or {}).get('status')}")
