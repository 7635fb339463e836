"""The one module that talks to the Kubernetes API (besides kopf's own watching and patching).

It uses the asyncio flavour of the official client (`kubernetes.aio`, one ApiClient for the
operator's life), so no coroutine ever blocks the event loop. Children are sent with server-side
apply under one field manager: re-applying repairs drift and makes retries idempotent; an unchanged
apply writes nothing.
"""

from __future__ import annotations

import json
import logging
import secrets
from datetime import UTC, datetime
from typing import Any

import aiohttp
from kubernetes.aio import client, config

logger = logging.getLogger(__name__)

FIELD_MANAGER = "gonka-operator"
Obj = dict[str, Any]

_PLURALS = {"NetworkPolicy": "networkpolicies"}


class KubeError(Exception):
    """A Kubernetes API call failed; `status` is the HTTP status (0 when there was no answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _plural(kind: str) -> str:
    return _PLURALS.get(kind, kind.lower() + "s")


def object_path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{base}/namespaces/{namespace}/{_plural(kind)}"
    return f"{path}/{name}" if name else path


class Kube:
    """Async facade over one `kubernetes.aio` ApiClient (created at startup, closed at cleanup)."""

    def __init__(self, api: client.ApiClient) -> None:
        self._api = api

    @classmethod
    async def connect(cls, kubeconfig: str | None = None) -> Kube:
        cfg = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=cfg)
        except config.ConfigException:
            await config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        return cls(client.ApiClient(cfg))

    async def close(self) -> None:
        await self._api.close()

    async def _call(self, method: str, path: str, body: Any = None, query: list[tuple[str, str]] | None = None,
                    content_type: str = "application/json") -> Obj:
        method, url, headers, body, _ = await self._api.param_serialize(
            method, path, query_params=query or [], body=body, auth_settings=["BearerToken"],
            header_params={"Content-Type": content_type, "Accept": "application/json"},
        )
        try:
            response = await self._api.call_api(method, url, header_params=headers, body=body)
            data = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KubeError(0, f"{method} {path}: {exc}") from exc
        payload = json.loads(data) if data else {}
        if response.status >= 400:
            message = payload.get("message", response.reason) if isinstance(payload, dict) else response.reason
            raise KubeError(response.status, str(message))
        return payload if isinstance(payload, dict) else {}

    async def apply(self, obj: Obj) -> Obj:
        """Server-side apply `obj` (force: the operator owns these fields)."""
        meta = obj["metadata"]
        path = object_path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
        return await self._call("PATCH", path, obj, query, "application/apply-patch+yaml")

    async def dry_run_create(self, obj: Obj) -> None:
        """Would the API server accept `obj` as a new object? A server-side dry-run apply of it under
        a fresh name (nothing is stored). KubeError (e.g. 422 with the API's message) if not."""
        meta = obj["metadata"]
        fresh = {**obj, "metadata": {**meta, "name": f"{meta['name'][:40]}-dry-{secrets.token_hex(4)}"}}
        path = object_path(obj["apiVersion"], obj["kind"], meta["namespace"], fresh["metadata"]["name"])
        query = [("fieldManager", FIELD_MANAGER), ("force", "true"), ("dryRun", "All")]
        await self._call("PATCH", path, fresh, query, "application/apply-patch+yaml")

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Obj | None:
        """The object, or None when it does not exist."""
        try:
            return await self._call("GET", object_path(api_version, kind, namespace, name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    async def create(self, obj: Obj) -> Obj:
        meta = obj["metadata"]
        return await self._call("POST", object_path(obj["apiVersion"], obj["kind"], meta["namespace"]), obj,
                                [("fieldManager", FIELD_MANAGER)])

    async def replace(self, obj: Obj) -> Obj:
        """PUT `obj` (its resourceVersion makes a concurrent change a 409)."""
        meta = obj["metadata"]
        return await self._call("PUT", object_path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"]),
                                obj)

    async def list(self, api_version: str, kind: str, namespace: str, label_selector: str | None = None) -> list[Obj]:
        query = [("labelSelector", label_selector)] if label_selector else None
        items = (await self._call("GET", object_path(api_version, kind, namespace), query=query)).get("items", [])
        return list(items) if isinstance(items, list) else []

    async def set_finalizer(self, body: Obj, finalizer: str, present: bool) -> None:
        """Add or remove one finalizer of a custom resource, others' finalizers untouched: a merge
        patch of the whole list guarded by resourceVersion (409 → re-read and retry). An object
        that is gone is fine."""
        meta = body["metadata"]
        api_version, kind = body["apiVersion"], body["kind"]
        current: Obj | None = body
        for _ in range(5):
            if current is None:
                return
            cmeta = current["metadata"]
            finalizers = list(cmeta.get("finalizers") or [])
            if (finalizer in finalizers) == present:
                return
            finalizers = [*finalizers, finalizer] if present else [f for f in finalizers if f != finalizer]
            patch = {"metadata": {"finalizers": finalizers or None, "resourceVersion": cmeta["resourceVersion"]}}
            try:
                await self._call("PATCH", object_path(api_version, kind, meta["namespace"], meta["name"]),
                                 patch, None, "application/merge-patch+json")
                return
            except KubeError as exc:
                if exc.status == 404:
                    return
                if exc.status != 409:
                    raise
            current = await self.get(api_version, kind, meta["namespace"], meta["name"])
        raise KubeError(409, f"finalizer {finalizer} of {kind} {meta['namespace']}/{meta['name']}: kept conflicting")

    async def delete(self, obj: Obj, propagation: str = "Background") -> None:
        """Delete `obj` (dependents are garbage-collected in the background, or with "Orphan" kept);
        absent is fine."""
        meta = obj["metadata"]
        path = object_path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        try:
            await self._call("DELETE", path, {"propagationPolicy": propagation})
        except KubeError as exc:
            if exc.status != 404:
                raise

    async def pod_log(self, namespace: str, name: str, container: str, tail_lines: int = 20) -> str:
        """The last lines of a container's log (plain text; the preload Job's progress lines)."""
        path = f"/api/v1/namespaces/{namespace}/pods/{name}/log"
        query = [("container", container), ("tailLines", str(tail_lines))]
        # Accept */* as kubectl sends it: the API server answers "text/plain" alone with 406
        method, url, headers, body, _ = await self._api.param_serialize(
            "GET", path, query_params=query, auth_settings=["BearerToken"], header_params={"Accept": "*/*"})
        try:
            response = await self._api.call_api(method, url, header_params=headers, body=body)
            data = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KubeError(0, f"GET {path}: {exc}") from exc
        text = data.decode(errors="replace") if data else ""
        if response.status >= 400:
            raise KubeError(response.status, text[:300] or str(response.reason))
        return text

    async def patch_status(self, api_version: str, kind: str, namespace: str, name: str, status: Obj) -> None:
        """Merge-patch the status subresource (only the given keys change)."""
        path = object_path(api_version, kind, namespace, name) + "/status"
        try:
            await self._call("PATCH", path, {"status": status}, None, "application/merge-patch+json")
        except KubeError as exc:
            if exc.status != 404:  # the object is gone: nothing to report on
                raise

    async def annotate(self, api_version: str, kind: str, namespace: str, name: str,
                       annotations: dict[str, str]) -> None:
        """Merge-patch `metadata.annotations` (only the given keys change); absent object is fine."""
        try:
            await self._call("PATCH", object_path(api_version, kind, namespace, name),
                             {"metadata": {"annotations": annotations}}, None, "application/merge-patch+json")
        except KubeError as exc:
            if exc.status != 404:
                raise

    async def post_event(self, involved: Obj, event_type: str, reason: str, message: str) -> None:
        """Record a core/v1 Event on `involved` (a CR body). Never raises: an Event is best effort."""
        meta = involved["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": involved["apiVersion"], "kind": involved["kind"],
                               "name": meta["name"], "namespace": meta["namespace"], "uid": meta.get("uid")},
            "type": event_type, "reason": reason, "message": message[:1024],
            "source": {"component": FIELD_MANAGER}, "reportingComponent": FIELD_MANAGER,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        try:
            await self._call("POST", f"/api/v1/namespaces/{meta['namespace']}/events", event)
        except KubeError as exc:
            logger.warning("Could not record Event %s on %s/%s: %s", reason, meta["namespace"], meta["name"], exc)
