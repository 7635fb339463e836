"""The one module that talks to network nodes' admin APIs (`http://<api>:9200/admin/v1/`).

`AdminClient` wraps a single `httpx.AsyncClient` owned by the operator (created at startup with
`create_http_client()`, closed at cleanup); every call names the network node by its `base_url`
(`http://api.ns.svc:9200`; a trailing `/admin/v1` is accepted too), so one client serves them all.

API generations (REFERENCE.md §4): the latest one upserts with `PUT nodes/{id}`; the 2025-08 one has
no such route (404/405) and appends a duplicate to its saved config when an existing id is POSTed
again, so there a change is DELETE then POST and an existing id is never re-POSTed. The client finds
out which by trying PUT once and remembers the answer per base_url (for `legacy_ttl` seconds: the
api upgrades itself in place, so the probe is repeated now and then).

Errors: `AdminUnavailable` (no answer, timeout, 5xx, malformed answer: retry with backoff),
`AdminRejected` (4xx, with the api's `{"error": ...}` text), `AdminNotFound` (404 on a node id).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter, ValidationError

from gonka_operator.admin.errors import AdminNotFound, AdminRejected, AdminUnavailable
from gonka_operator.admin.models import InferenceNodeConfig, NodeEntry
from gonka_operator.metrics import ADMIN_REQUESTS

logger = logging.getLogger(__name__)

API_PREFIX = "/admin/v1"
CONNECT_TIMEOUT = 3.0
TOTAL_TIMEOUT = 10.0
LEGACY_TTL = 3600.0
LEGACY_GENERATION = "2025-08"

_ENTRIES = TypeAdapter(list[NodeEntry])


def create_http_client(
    *, connect_timeout: float = CONNECT_TIMEOUT, total_timeout: float = TOTAL_TIMEOUT
) -> httpx.AsyncClient:
    """The shared client the operator creates once at startup (and closes at cleanup).

    `trust_env=False`: the admin API is private to the cluster; an HTTP(S)_PROXY meant for the
    internet must not capture it.
    """
    return httpx.AsyncClient(
        timeout=httpx.Timeout(total_timeout, connect=connect_timeout),
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
        trust_env=False,
    )


def api_root(base_url: str) -> str:
    """`http://x:9200`, `http://x:9200/` and `http://x:9200/admin/v1/` all give `http://x:9200/admin/v1`."""
    root = base_url.rstrip("/")
    return root if root.endswith(API_PREFIX) else root + API_PREFIX


def _error_text(resp: httpx.Response) -> str:
    """The api's `{"error": ...}` message (plus `errors` of a batch), else the start of the body."""
    try:
        data: Any = resp.json()
    except ValueError:
        return resp.text[:300].strip() or resp.reason_phrase
    if isinstance(data, dict):
        message = data.get("error") or data.get("message")
        text = message if isinstance(message, str) else resp.reason_phrase
        errors = data.get("errors")
        if isinstance(errors, list) and errors:
            text += ": " + "; ".join(str(e) for e in errors)
        return text
    return str(data)[:300]


class AdminClient:
    """Admin API calls for any number of network nodes, over one shared `httpx.AsyncClient`."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        total_timeout: float = TOTAL_TIMEOUT,
        legacy_ttl: float = LEGACY_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._total = total_timeout
        self._timeout = httpx.Timeout(total_timeout, connect=connect_timeout)
        self._legacy_ttl = legacy_ttl
        self._clock = clock
        self._legacy_since: dict[str, float] = {}

    # -- generation -------------------------------------------------------------------------------

    def known_generation(self, base_url: str) -> str | None:
        """`"2025-08"` when this api answered PUT with 404/405 (within `legacy_ttl`), else None."""
        root = api_root(base_url)
        since = self._legacy_since.get(root)
        if since is None:
            return None
        if self._clock() - since > self._legacy_ttl:
            del self._legacy_since[root]
            return None
        return LEGACY_GENERATION

    # -- calls ------------------------------------------------------------------------------------

    async def list_nodes(self, base_url: str) -> list[NodeEntry]:
        """`GET nodes`: every registered node with its state."""
        resp = await self._request("GET", base_url, "nodes")
        self._raise_for_4xx(resp)
        try:
            return _ENTRIES.validate_json(resp.content)
        except ValidationError as exc:
            # Fail closed: a partial list would make absent nodes look deleted.
            raise AdminUnavailable(
                f"GET nodes at {api_root(base_url)} gave a malformed answer: {exc.error_count()} errors"
            ) from exc

    async def get_node(self, base_url: str, node_id: str) -> NodeEntry | None:
        """The entry of one node (from `GET nodes`, the api has no per-node GET), or None."""
        for entry in await self.list_nodes(base_url):
            if entry.node.id == node_id:
                return entry
        return None

    async def upsert(self, base_url: str, config: InferenceNodeConfig, current: InferenceNodeConfig | None) -> None:
        """Make the registry's entry for `config.id` equal `config`.

        `current` is what the registry holds now for that id (from a recent `GET nodes`), None when
        absent. Nothing is sent when it already equals `config`. Latest generation: `PUT nodes/{id}`.
        2025-08: `POST nodes` when absent, else `DELETE` then `POST` (never a re-POST of an existing
        id). A wrong `current=None` on 2025-08 would make the api append a duplicate: pass what the
        registry really holds.
        """
        if not config.id:
            raise ValueError("InferenceNodeConfig.id must not be empty")
        if current is not None and current.id != config.id:
            raise ValueError(f"current is node {current.id!r}, config is node {config.id!r}")
        if current is not None and current.same_config(config):
            return
        body = config.to_body()
        if self.known_generation(base_url) is None:
            resp = await self._request("PUT", base_url, "nodes", config.id, json=body)
            if resp.status_code not in (404, 405):
                self._raise_for_4xx(resp)
                return
            self._legacy_since[api_root(base_url)] = self._clock()
            logger.info(
                "Admin API at %s answered PUT with %s: treating it as the %s generation (changes by DELETE then POST)",
                api_root(base_url),
                resp.status_code,
                LEGACY_GENERATION,
            )
        if current is not None:
            removed = await self.delete(base_url, config.id)
            logger.debug("Removed node %s before re-adding it (was present: %s)", config.id, removed)
        resp = await self._request("POST", base_url, "nodes", json=body)
        self._raise_for_4xx(resp)

    async def delete(self, base_url: str, node_id: str) -> bool:
        """`DELETE nodes/{id}`: True if removed, False if the api did not know it (also success)."""
        resp = await self._request("DELETE", base_url, "nodes", node_id)
        self._raise_for_4xx(resp)
        try:
            removed = resp.json()
        except ValueError:
            removed = None
        if not isinstance(removed, bool):
            raise AdminUnavailable(
                f"DELETE nodes/{node_id} at {api_root(base_url)} answered {resp.status_code} without a true/false body"
            )
        return removed

    async def set_enabled(self, base_url: str, node_id: str, enabled: bool) -> None:
        """`POST nodes/{id}/enable|disable` (effective from the next epoch). 404 → `AdminNotFound`."""
        action = "enable" if enabled else "disable"
        resp = await self._request("POST", base_url, "nodes", node_id, action)
        self._raise_for_4xx(resp)

    # -- plumbing ---------------------------------------------------------------------------------

    async def _request(
        self, method: str, base_url: str, *path: str, json: dict[str, Any] | None = None
    ) -> httpx.Response:
        """One request; answers < 500 are returned, everything else raises `AdminUnavailable`."""
        url = api_root(base_url) + "/" + "/".join(quote(p, safe="") for p in path)
        try:
            async with asyncio.timeout(self._total):
                resp = await self._http.request(method, url, json=json, timeout=self._timeout)
        except (httpx.HTTPError, httpx.InvalidURL, TimeoutError) as exc:
            ADMIN_REQUESTS.labels(method=method, code="error").inc()
            reason = str(exc) or f"no answer within {self._total:g} s"
            logger.debug("%s %s failed: %s: %s", method, url, type(exc).__name__, reason)
            raise AdminUnavailable(f"{method} {url} failed: {type(exc).__name__}: {reason}") from exc
        ADMIN_REQUESTS.labels(method=method, code=str(resp.status_code)).inc()
        logger.debug("%s %s answered %s", method, url, resp.status_code)
        if resp.status_code >= 500:
            raise AdminUnavailable(
                f"{method} {url} answered {resp.status_code}: {_error_text(resp)}", status=resp.status_code
            )
        return resp

    @staticmethod
    def _raise_for_4xx(resp: httpx.Response) -> None:
        if resp.status_code == 404:
            raise AdminNotFound(404, _error_text(resp))
        if resp.status_code >= 400:
            raise AdminRejected(resp.status_code, _error_text(resp))
        if resp.status_code >= 300:
            raise AdminUnavailable(f"unexpected answer {resp.status_code} from {resp.request.url}")
