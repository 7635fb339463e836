"""The Hugging Face Hub stand-in answers like the Hub (paths, headers, status and error codes that
huggingface_hub's download code reads: hf_api.py repo_info/list_repo_tree, file_download.py
get_hf_file_metadata, utils/_http.py hf_raise_for_status)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hubproc import REPO, HubStandIn


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubStandIn]:
    with HubStandIn(tmp_path_factory.mktemp("hub-logs")) as h:
        yield h


def test_model_info_has_sha_and_siblings(hub: HubStandIn) -> None:
    repo = hub.repo()
    info = httpx.get(f"{hub.url}/api/models/{REPO}").json()
    assert info["id"] == REPO and info["sha"] == repo["main"]
    assert sorted(s["rfilename"] for s in info["siblings"]) == sorted(repo["commits"][-1]["files"])
    old = repo["commits"][0]
    pinned = httpx.get(f"{hub.url}/api/models/{REPO}/revision/{old['sha']}").json()
    assert pinned["sha"] == old["sha"] and sorted(s["rfilename"] for s in pinned["siblings"]) == sorted(old["files"])
    assert httpx.get(f"{hub.url}/api/models/{REPO}/revision/main").json()["sha"] == repo["main"]


def test_tree_lists_sizes_and_lfs(hub: HubStandIn) -> None:
    main = hub.repo()["main"]
    tree = {e["path"]: e for e in httpx.get(f"{hub.url}/api/models/{REPO}/tree/{main}?recursive=true").json()}
    assert tree["model.safetensors"]["lfs"]["size"] == tree["model.safetensors"]["size"] == 192 * 1024
    assert "lfs" not in tree["config.json"] and len(tree["config.json"]["oid"]) == 40


def test_resolve_regular_file_headers(hub: HubStandIn) -> None:
    main = hub.repo()["main"]
    url = f"{hub.url}/{REPO}/resolve/main/config.json"
    head = httpx.head(url)
    assert head.status_code == 200
    assert head.headers["X-Repo-Commit"] == main
    body = httpx.get(url).content
    assert int(head.headers["Content-Length"]) == len(body)
    blob = hashlib.sha1(b"blob %d\0" % len(body) + body).hexdigest()
    assert head.headers["ETag"] == f'"{blob}"'


def test_resolve_lfs_file_redirects_to_another_origin_with_linked_headers(hub: HubStandIn) -> None:
    head = httpx.head(f"{hub.url}/{REPO}/resolve/main/model.safetensors")
    assert head.status_code == 302
    location = head.headers["Location"]
    assert location.startswith(f"http://127.0.0.1:{hub.cdn_port}/cdn/")  # not the Hub's origin, like cdn-lfs.hf.co
    assert head.headers["X-Linked-Size"] == str(192 * 1024)
    body = httpx.get(location).content
    assert head.headers["X-Linked-Etag"] == f'"{hashlib.sha256(body).hexdigest()}"'
    part = httpx.get(location, headers={"Range": "bytes=100-"})
    assert part.status_code == 206 and part.content == body[100:]
    assert part.headers["Content-Range"] == f"bytes 100-{len(body) - 1}/{len(body)}"


@pytest.mark.parametrize(("path", "status", "code", "message"), [
    ("/api/models/nobody/nothing", 401, "RepoNotFound", "Repository not found"),
    ("/nobody/nothing/resolve/main/config.json", 401, "RepoNotFound", "Repository not found"),
    (f"/api/models/{REPO}/revision/{'0' * 40}", 404, "RevisionNotFound", f"Invalid rev id: {'0' * 40}"),
    (f"/{REPO}/resolve/no-such-branch/config.json", 404, "RevisionNotFound", "Invalid rev id: no-such-branch"),
    (f"/{REPO}/resolve/main/missing.bin", 404, "EntryNotFound", "Entry not found"),
])
def test_errors_as_the_hub_sends_them(hub: HubStandIn, path: str, status: int, code: str, message: str) -> None:
    response = httpx.get(hub.url + path)
    assert response.status_code == status
    assert response.headers["X-Error-Code"] == code and response.headers["X-Error-Message"] == message
    assert response.json() == {"error": message}


def test_every_request_is_recorded(hub: HubStandIn, tmp_path: Path) -> None:
    hub.clear()
    httpx.get(f"{hub.url}/api/models/{REPO}")
    assert [(r["method"], r["path"], r["status"]) for r in hub.requests()] == [
        ("GET", f"/api/models/{REPO}", 200)]


def test_public_cdn_url_is_the_redirect_target(tmp_path: Path) -> None:
    """In a pod the stand-in listens on 0.0.0.0, which is no address for its clients: the LFS redirect
    names the CDN by the URL given (a Service's DNS name), as the Hub names cdn-lfs.hf.co."""
    public = "http://hf-hub.gonka-test.svc.cluster.local:8091"
    with HubStandIn(tmp_path, "hf-hub-public", extra=("--cdn-url", public)) as h:
        head = httpx.head(f"{h.url}/{REPO}/resolve/main/model.safetensors")
    assert head.status_code == 302 and head.headers["Location"].startswith(f"{public}/cdn/")


def test_requests_record_whether_a_token_came_but_never_the_token(hub: HubStandIn) -> None:
    hub.clear()
    httpx.get(f"{hub.url}/api/models/{REPO}", headers={"Authorization": "Bearer hf_sekrit"})
    httpx.get(f"{hub.url}/api/models/{REPO}")
    recorded = hub.requests()
    assert [r["authorized"] for r in recorded] == [True, False]
    assert "hf_sekrit" not in str(recorded)
