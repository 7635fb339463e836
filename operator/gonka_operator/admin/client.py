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
`AdminRejected` (4xx, with the api's `{"error": ...}` text, and the 500s that are really refusals,
see `is_rejection_500`), `AdminNotFound` (404 on a node id).

A 2025-08 change is DELETE then POST, and that api has no dry run: when the POST is refused (say the
new model is not approved by governance) or fails, the client POSTs the old entry back, so a serving
ML node is never dropped by an edit it could not take.
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


def _message_of(data: Any, fallback: str) -> str:
    """`{"error": "m"}`, `{"message": "m"}`, and echo's nested `{"error": {"error": "m", "errors": [...]}}`."""
    if isinstance(data, dict):
        message = data.get("error") or data.get("message")
        text = _message_of(message, fallback) if isinstance(message, dict) else (
            message if isinstance(message, str) else fallback)
        errors = data.get("errors")
        if isinstance(errors, list) and errors:
            text += ": " + "; ".join(str(e) for e in errors)
        return text
    return str(data)[:300]


def _error_text(resp: httpx.Response) -> str:
    """The api's `{"error": ...}` message (plus `errors` of a batch), else the start of the body."""
    try:
        data: Any = resp.json()
    except ValueError:
        return resp.text[:300].strip() or resp.reason_phrase
    return _message_of(data, resp.reason_phrase)


# 500 answers that are refusals of the request, not failures of the api (retrying the same body
# cannot help). Upstream decentralized-api internal/server/admin/node_handlers.go: an upsert of an
# existing id answers 500 "failed to update node: <broker error>", where the broker error of a
# refused body is "validation failed: a; b" (for example "duplicate inference host+port
# combination: h:p (already used by node 'x')") or a governance-model error. The 2025-08 api
# answers 500 "error creating new node" when its broker refuses the node (a model governance has
# not approved; it says the same when it could not read the governance list).
_REJECTION_500 = ("validation failed", "duplicate inference host+port", "duplicate poc host+port",
                  "governance", "error creating new node")


def is_rejection_500(message: str) -> bool:
    text = message.lower()
    return any(marker in text for marker in _REJECTION_500)


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
        # (api root, node id) -> body last PUT with a model_override (see `_same`); one small entry per
        # node that has an override, dropped when its node is deleted.
        self._overrides_sent: dict[tuple[str, str], dict[str, Any]] = {}

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
        root = api_root(base_url)
        if self.known_generation(base_url) is not None:
            config = config.without_model_override()  # that api does not know the field
        if current is not None and self._same(root, current, config):
            return
        if self.known_generation(base_url) is None:
            resp = await self._request("PUT", base_url, "nodes", config.id, json=config.to_body(),
                                       rejection_500=True)
            if resp.status_code not in (404, 405):
                self._raise_for_4xx(resp)
                self._remember_override(root, config)
                return
            self._legacy_since[root] = self._clock()
            logger.info(
                "Admin API at %s answered PUT with %s: treating it as the %s generation (changes by DELETE then POST)",
                root,
                resp.status_code,
                LEGACY_GENERATION,
            )
            config = config.without_model_override()
            if current is not None and self._same(root, current, config):
                return
        if current is None:
            await self._post(base_url, config)
            return
        removed = await self.delete(base_url, config.id)
        logger.debug("Removed node %s before re-adding it (was present: %s)", config.id, removed)
        try:
            await self._post(base_url, config)
        except (AdminRejected, AdminUnavailable) as exc:
            await self._restore(base_url, current, exc)
            raise

    async def _post(self, base_url: str, config: InferenceNodeConfig) -> None:
        resp = await self._request("POST", base_url, "nodes", json=config.to_body(), rejection_500=True)
        self._raise_for_4xx(resp)

    async def _restore(self, base_url: str, previous: InferenceNodeConfig, cause: Exception) -> None:
        """Put the entry a failed DELETE+POST removed back (2025-08: a POST of an absent id)."""
        try:
            await self._post(base_url, previous)
        except (AdminRejected, AdminUnavailable) as exc:
            logger.error("Admin API at %s refused the change of node %s (%s) and restoring its previous entry "
                         "failed too (%s): the node is not registered until the next retry",
                         api_root(base_url), previous.id, cause, exc)
            return
        logger.warning("Admin API at %s refused the change of node %s (%s); restored its previous entry",
                       api_root(base_url), previous.id, cause)

    def _same(self, root: str, current: InferenceNodeConfig, config: InferenceNodeConfig) -> bool:
        """`current` (as the api reports it) already is `config`. An api may accept `model_override`
        without echoing it in `GET nodes`; the override we last sent for this id then counts as
        present, so such an api does not get the same PUT again and again."""
        if current.same_config(config):
            return True
        if not config.has_model_override() or current.has_model_override():
            return False
        sent = self._overrides_sent.get((root, config.id))
        return sent == config.to_body() and current.same_config(config.without_model_override())

    def _remember_override(self, root: str, config: InferenceNodeConfig) -> None:
        if config.has_model_override():
            self._overrides_sent[(root, config.id)] = config.to_body()
        else:
            self._overrides_sent.pop((root, config.id), None)

    async def delete(self, base_url: str, node_id: str) -> bool:
        """`DELETE nodes/{id}`: True if removed, False if the api did not know it (also success)."""
        resp = await self._request("DELETE", base_url, "nodes", node_id)
        self._raise_for_4xx(resp)
        self._overrides_sent.pop((api_root(base_url), node_id), None)
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

    # -- host status (read-only; host_status.py) -------------------------------------------------

    async def setup_report(self, base_url: str) -> dict[str, Any]:
        """`GET setup/report` (latest generation; a 2025-08 api answers 404: `AdminNotFound`)."""
        resp = await self._request("GET", base_url, "setup", "report")
        self._raise_for_4xx(resp)
        return self._json_object(resp)

    async def get_json(self, url: str) -> dict[str, Any]:
        """GET a JSON object at a full URL: the chain's `:26657/status`, the public API's
        `/v1/epochs/latest`. Errors map as for the admin API."""
        try:
            async with asyncio.timeout(self._total):
                resp = await self._http.request("GET", url, timeout=self._timeout)
        except (httpx.HTTPError, httpx.InvalidURL, TimeoutError) as exc:
            reason = str(exc) or f"no answer within {self._total:g} s"
            raise AdminUnavailable(f"GET {url} failed: {type(exc).__name__}: {reason}") from exc
        if resp.status_code >= 500:
            raise AdminUnavailable(f"GET {url} answered {resp.status_code}: {_error_text(resp)}",
                                   status=resp.status_code)
        self._raise_for_4xx(resp)
        return self._json_object(resp)

    @staticmethod
    def _json_object(resp: httpx.Response) -> dict[str, Any]:
        try:
            data = resp.json()
        except ValueError as exc:
            raise AdminUnavailable(f"GET {resp.request.url} gave no JSON") from exc
        if not isinstance(data, dict):
            raise AdminUnavailable(f"GET {resp.request.url} gave no JSON object")
        return data

    # -- plumbing ---------------------------------------------------------------------------------

    async def _request(
        self, method: str, base_url: str, *path: str, json: dict[str, Any] | None = None,
        rejection_500: bool = False,
    ) -> httpx.Response:
        """One request; answers < 500 are returned, everything else raises `AdminUnavailable`, except
        (with `rejection_500`, for writes of a node) a 500 that refuses the body: `AdminRejected`."""
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
            message = _error_text(resp)
            if rejection_500 and resp.status_code == 500 and is_rejection_500(message):
                raise AdminRejected(resp.status_code, message)
            raise AdminUnavailable(
                f"{method} {url} answered {resp.status_code}: {message}", status=resp.status_code
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
