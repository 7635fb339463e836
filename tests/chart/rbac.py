"""RBAC arithmetic of the chart tests: the (apiGroup, resource, verb) triples a role grants, and
the triples a recorded run of the operator needed (tests/chart/apirecorder.py's log)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Triple = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)

# Granted by the chart, but no request of a recorded run can show it; each with the reason.
NOT_VISIBLE_IN_REQUESTS: dict[Triple, str] = {
    ("gonka.ai", "networknodes/finalizers", "update"):
        "checked by the OwnerReferencesPermissionEnforcement admission plugin (blockOwnerDeletion on "
        "children); the test API server does not enable it",
    ("gonka.ai", "inferencenodes/finalizers", "update"): "same as networknodes/finalizers",
    ("", "services", "delete"):
        "drift repair replaces an InferenceNode's Service the apply cannot merge into (HTTP 422); "
        "no edit of a Service found here provokes a 422",
    ("networking.k8s.io", "networkpolicies", "delete"):
        "drift repair replaces an InferenceNode's NetworkPolicy on HTTP 422; no edit provokes one",
    ("", "pods/log", "get"):
        "read while a preload Job's pod runs (progress on status.cache); kwok completes a Job's pod at once, "
        "so no log is read here (tests/unit/test_hf_cache_preload.py reads a real run's log)",
    ("policy", "poddisruptionbudgets", "create"):
        "the ML Deployment's PDB exists only during a PoC window (disruption.py); the chart test opens none "
        "(tests/integration/test_poc_aware.py and the e2e drain test do)",
    ("policy", "poddisruptionbudgets", "patch"): "same as poddisruptionbudgets create",
    ("policy", "poddisruptionbudgets", "delete"): "deleted when a PoC window closes: same as create",
    ("policy", "poddisruptionbudgets", "get"):
        "read once after an operator restart for an ML node that ran before (tests/unit/test_disruption.py)",
    ("gonka.ai", "networknodes", "get"):
        "an InferenceNode deleted while its NetworkNode is not in the index (start-up, or the NetworkNode "
        "deleted first) reads it before calling deregistration moot (tests/unit/test_startup_race.py)",
    ("", "configmaps", "delete"):
        "prunes an adminURL node's own proxy ConfigMap after a switch to networkNodeRef "
        "(tests/unit/test_children_apply.py); the chart test switches no node",
    ("batch", "jobs", "delete"):
        "prunes the previous model's HF-cache preload Job after a model change (tests/unit/test_hf_cache.py); "
        "the chart test changes no model",
}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    status: int

    @classmethod
    def of(cls, raw: dict[str, Any]) -> Request:
        return cls(raw["method"], raw["path"], raw.get("query", {}), int(raw["status"]))

    def target(self) -> tuple[str, str | None, str, str | None] | None:
        """(apiGroup, namespace, resource[/sub], name) or None for discovery and non-resource URLs."""
        parts = [p for p in self.path.split("/") if p]
        if parts[:1] == ["api"] and len(parts) >= 2:
            group, rest = "", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, rest = parts[1], parts[3:]
        else:
            return None
        if not rest:
            return None
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        resource = rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "")
        return group, namespace, resource, rest[1] if len(rest) > 1 else None

    def verbs(self) -> set[str]:
        """The RBAC verbs the API server checked for this request."""
        target = self.target()
        if target is None:
            return set()
        name = target[3]
        if self.method == "GET":
            return {"watch" if self.query.get("watch") in ("true", "1") else ("get" if name else "list")}
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(self.method)
        if self.method == "DELETE":
            verb = "delete" if name else "deletecollection"
        assert verb, f"unexpected method {self.method}"
        # a server-side apply that creates the object (201) is authorized as patch AND create
        return {verb, "create"} if self.method == "PATCH" and self.status == 201 else {verb}

    def triples(self) -> set[Triple]:
        target = self.target()
        return {(target[0], target[2], verb) for verb in self.verbs()} if target else set()


def used(requests: list[dict[str, Any]]) -> set[Triple]:
    return {t for raw in requests for t in Request.of(raw).triples()}


def forbidden(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Requests RBAC refused. (A 403 for writing into a terminating namespace is not RBAC's.)"""
    return [r for r in requests if r["status"] == 403 and "being terminated" not in r.get("message", "")]


def granted(roles: list[dict[str, Any]]) -> set[Triple]:
    """Every triple the rules of these Roles/ClusterRoles allow (no wildcards in the chart)."""
    out = set()
    for role in roles:
        for rule in role.get("rules", []):
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        assert "*" not in (group, resource, verb), f"wildcard in {role['metadata']['name']}"
                        out.add((group, resource, verb))
    return out


def describe(triples: set[Triple]) -> str:
    return "\n".join(f"  {g or 'core'} {r}: {v}" for g, r, v in sorted(triples)) or "  (none)"
