"""A Hugging Face Hub stand-in: the Hub's HTTP API for a tiny made-up model repository.

`gonka-operator simulate-hf-hub` serves what the real `huggingface_hub` download code
(`snapshot_download`, `hf_hub_download`, `huggingface-cli download`) calls, with the Hub's headers,
status codes and error codes (followed: huggingface_hub's `hf_api.py` `repo_info`/`list_repo_tree`,
`file_download.py` `get_hf_file_metadata` and `utils/_http.py` `hf_raise_for_status`, v2.4):

* `GET /api/models/<repo>` and `/api/models/<repo>/revision/<rev>`: model info with `id`, `sha` (the
  commit the revision resolves to) and `siblings` [{rfilename}];
* `GET /api/models/<repo>/tree/<rev>[/<path>]`: the file listing [{type, oid, size, path, lfs}];
* `HEAD|GET /<repo>/resolve/<rev>/<file>`: a regular file answers 200 with `ETag` (its git blob id),
  `X-Repo-Commit`, `Content-Length`; an LFS file (`*.safetensors`, `*.bin`) answers **302** to the
  stand-in's "CDN" (`/cdn/<sha256>`) with `X-Linked-Etag` (its sha256), `X-Linked-Size`, `X-Repo-Commit`,
  as the Hub does (the client reads the metadata from the redirect, then GETs the Location). The "CDN"
  listens on its own port (`--cdn-port`): like cdn-lfs.hf.co it is another origin, and the client
  follows a redirect within the Hub's origin but not to a CDN. Range requests are honoured (the
  client resumes `.incomplete` files);
* errors as the Hub sends them: an unknown repository is **401** `X-Error-Code: RepoNotFound`,
  `X-Error-Message: Repository not found` (the Hub answers 401, not 404, so as not to reveal private
  repositories); an unknown branch or commit 404 `RevisionNotFound` `Invalid rev id: <rev>`; an
  unknown file 404 `EntryNotFound` `Entry not found`; JSON body `{"error": <message>}`.

The repository (default `gonka-test/tiny-model`) has two commits: the first with `config.json` and a
small `model.safetensors`, the second (= `main`) changes the config, adds `tokenizer.json` and makes
the weights `--weights-size` bytes. The content is generated deterministically, so the same
commit always has the same sha. `--throttle` limits the bytes per second of file bodies (so a demo
shows a download in progress). In a pod (`--host 0.0.0.0`), `--cdn-url` gives the CDN's address as
clients reach it (its Service's DNS name). Every request is listed (with whether it carried a token,
never the token) at `GET /stand-in/v1/requests`; `GET
/stand-in/v1/repo` lists the commits and files. Loopback only by default.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

logger = logging.getLogger(__name__)
DEFAULT_REPO = "gonka-test/tiny-model"
LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt")
CHUNK = 64 * 1024


def _bytes(seed: str, size: int) -> bytes:
    """Deterministic pseudo-random content of `size` bytes."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def git_blob_id(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class RepoFile:
    path: str
    content: bytes

    @property
    def lfs(self) -> bool:
        return self.path.endswith(LFS_SUFFIXES)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def blob_id(self) -> str:
        """The git object id: of the LFS pointer for an LFS file, of the content otherwise."""
        if self.lfs:
            pointer = (f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\n"
                       f"size {len(self.content)}\n").encode()
            return git_blob_id(pointer)
        return git_blob_id(self.content)

    def tree_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "oid": self.blob_id, "size": len(self.content), "path": self.path}
        if self.lfs:
            entry["lfs"] = {"oid": self.sha256, "size": len(self.content), "pointerSize": 134}
        return entry


@dataclass
class Commit:
    sha: str
    files: dict[str, RepoFile]


@dataclass
class Repo:
    repo_id: str
    commits: list[Commit]  # oldest first; the last one is `main`
    created: str = "2026-01-05T10:00:00.000Z"

    @property
    def branches(self) -> dict[str, str]:
        return {"main": self.commits[-1].sha}

    def resolve(self, revision: str) -> Commit | None:
        sha = self.branches.get(revision, revision)
        return next((c for c in self.commits if c.sha == sha), None)


def make_repo(repo_id: str = DEFAULT_REPO, weights_size: int = 192 * 1024) -> Repo:
    """The made-up repository: two commits (see the module docstring)."""
    def commit(n: int, files: dict[str, bytes]) -> Commit:
        digest = hashlib.sha1(json.dumps([repo_id, n, sorted((k, git_blob_id(v)) for k, v in files.items())])
                              .encode()).hexdigest()
        return Commit(digest, {k: RepoFile(k, v) for k, v in files.items()})

    first = commit(1, {
        "config.json": json.dumps({"architectures": ["TinyForCausalLM"], "hidden_size": 64,
                                   "num_hidden_layers": 2, "vocab_size": 256}, indent=2).encode(),
        "model.safetensors": _bytes(f"{repo_id}:weights:1", 96 * 1024),
    })
    second = commit(2, {
        "config.json": json.dumps({"architectures": ["TinyForCausalLM"], "hidden_size": 128,
                                   "num_hidden_layers": 4, "vocab_size": 256}, indent=2).encode(),
        "tokenizer.json": json.dumps({"version": "1.0", "model": {"type": "BPE", "vocab": {}}}).encode(),
        "model.safetensors": _bytes(f"{repo_id}:weights:2", weights_size),
    })
    return Repo(repo_id, [first, second])


@dataclass
class HubState:
    repos: dict[str, Repo]
    throttle: float = 0.0  # bytes per second of file bodies; 0 = unlimited
    cdn_url: str = ""  # where LFS files are served (another origin), set once it listens
    requests: list[dict[str, Any]] = field(default_factory=list)

    def blob(self, sha256: str) -> RepoFile | None:
        for repo in self.repos.values():
            for c in repo.commits:
                for f in c.files.values():
                    if f.lfs and f.sha256 == sha256:
                        return f
        return None


def _error(status: int, code: str | None, message: str) -> web.Response:
    headers = {"X-Error-Message": message}
    if code:
        headers["X-Error-Code"] = code
    return web.json_response({"error": message}, status=status, headers=headers)


def _repo_not_found() -> web.Response:
    return _error(401, "RepoNotFound", "Repository not found")


def _revision_not_found(revision: str) -> web.Response:
    return _error(404, "RevisionNotFound", f"Invalid rev id: {revision}")


REPO = r"{repo:[A-Za-z0-9][-_.A-Za-z0-9]*(?:/[-_.A-Za-z0-9]+)?}"


def build_app(state: HubState) -> tuple[web.Application, web.Application]:
    """The Hub's app and its CDN's app (LFS bodies, another origin)."""
    routes = web.RouteTableDef()

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        if not request.path.startswith("/stand-in/"):
            # whether a token came (HF_TOKEN reaches the Hub), never the token itself
            state.requests.append({"method": request.method, "path": request.path_qs, "status": response.status,
                                   "range": request.headers.get("Range"),
                                   "authorized": "Authorization" in request.headers, "time": time.time()})
        return response

    def model_info(repo: Repo, commit: Commit) -> dict[str, Any]:
        return {"_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
                "id": repo.repo_id, "modelId": repo.repo_id, "author": repo.repo_id.split("/")[0],
                "sha": commit.sha, "private": False, "disabled": False, "gated": False, "downloads": 0,
                "likes": 0, "tags": ["safetensors"], "library_name": "transformers",
                "createdAt": repo.created, "lastModified": repo.created,
                "siblings": [{"rfilename": p} for p in sorted(commit.files)]}

    async def info(request: web.Request, revision: str) -> web.Response:
        repo = state.repos.get(request.match_info["repo"])
        if repo is None:
            return _repo_not_found()
        commit = repo.resolve(revision)
        if commit is None:
            return _revision_not_found(revision)
        return web.json_response(model_info(repo, commit))

    @routes.get(f"/api/models/{REPO}/revision/{{revision}}")
    async def info_at(request: web.Request) -> web.Response:
        return await info(request, request.match_info["revision"])

    @routes.get(f"/api/models/{REPO}/tree/{{revision}}")
    @routes.get(f"/api/models/{REPO}/tree/{{revision}}/{{path:.*}}")
    async def tree(request: web.Request) -> web.Response:
        repo = state.repos.get(request.match_info["repo"])
        if repo is None:
            return _repo_not_found()
        revision = request.match_info["revision"]
        commit = repo.resolve(revision)
        if commit is None:
            return _revision_not_found(revision)
        prefix = request.match_info.get("path", "").strip("/")
        entries = [f.tree_entry() for p, f in sorted(commit.files.items()) if not prefix or p.startswith(prefix + "/")]
        return web.json_response(entries)

    @routes.get(f"/api/models/{REPO}")
    async def info_main(request: web.Request) -> web.Response:
        return await info(request, "main")

    async def body(request: web.Request, content: bytes, headers: dict[str, str]) -> web.StreamResponse:
        start, end, status = 0, len(content), 200
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", request.headers.get("Range", ""))
        if match:
            start = int(match.group(1))
            end = min(len(content), int(match.group(2)) + 1) if match.group(2) else len(content)
            if start >= len(content):
                return web.Response(status=416, headers={"Content-Range": f"bytes */{len(content)}"})
            status = 206
            headers = {**headers, "Content-Range": f"bytes {start}-{end - 1}/{len(content)}"}
        headers = {**headers, "Accept-Ranges": "bytes", "Content-Length": str(end - start)}
        response = web.StreamResponse(status=status, headers=headers)
        response.content_type = "application/octet-stream"
        if request.method == "HEAD":
            return response
        await response.prepare(request)
        for offset in range(start, end, CHUNK):
            chunk = content[offset:min(end, offset + CHUNK)]
            await response.write(chunk)
            if state.throttle:
                await asyncio.sleep(len(chunk) / state.throttle)
        await response.write_eof()
        return response

    @routes.route("*", f"/{REPO}/resolve/{{revision}}/{{path:.+}}")
    async def resolve(request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"])
        repo = state.repos.get(request.match_info["repo"])
        if repo is None:
            return _repo_not_found()
        revision = request.match_info["revision"]
        commit = repo.resolve(revision)
        if commit is None:
            return _revision_not_found(revision)
        repo_file = commit.files.get(request.match_info["path"])
        if repo_file is None:
            return _error(404, "EntryNotFound", "Entry not found")
        if repo_file.lfs:
            location = f"{state.cdn_url}/cdn/{repo_file.sha256}"
            return web.Response(status=302, headers={
                "Location": location, "X-Repo-Commit": commit.sha, "ETag": f'"{repo_file.blob_id}"',
                "X-Linked-Etag": f'"{repo_file.sha256}"', "X-Linked-Size": str(len(repo_file.content)),
                "Content-Length": "0"})
        return await body(request, repo_file.content,
                          {"ETag": f'"{repo_file.blob_id}"', "X-Repo-Commit": commit.sha})

    async def cdn(request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"])
        repo_file = state.blob(request.match_info["sha256"])
        if repo_file is None:
            return web.Response(status=404, text="NoSuchKey")
        return await body(request, repo_file.content, {"ETag": f'"{repo_file.sha256}"'})

    @routes.get("/stand-in/v1/requests")
    async def requests_(request: web.Request) -> web.Response:
        return web.json_response(state.requests)

    @routes.delete("/stand-in/v1/requests")
    async def clear(request: web.Request) -> web.Response:
        state.requests.clear()
        return web.json_response({"cleared": True})

    @routes.get("/stand-in/v1/repo")
    async def repos(request: web.Request) -> web.Response:
        return web.json_response({r.repo_id: {"main": r.commits[-1].sha, "commits": [
            {"sha": c.sha, "files": {p: len(f.content) for p, f in sorted(c.files.items())}} for c in r.commits]}
            for r in state.repos.values()})

    @routes.get("/livez")
    async def livez(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[record])
    app.add_routes(routes)
    cdn_app = web.Application(middlewares=[record])
    cdn_app.router.add_route("*", "/cdn/{sha256}", cdn)
    return app, cdn_app


async def serve(state: HubState, host: str, port: int, cdn_port: int, ready: asyncio.Event | None = None,
                stop: asyncio.Event | None = None, cdn_url: str | None = None) -> None:
    """Run the Hub (and its CDN) until `stop` is set (forever without one). `cdn_url`: the CDN's URL
    as clients reach it (default http://<host>:<cdn port>; in a pod, its Service's DNS name)."""
    app, cdn_app = build_app(state)
    runners = [web.AppRunner(app, access_log=None), web.AppRunner(cdn_app, access_log=None)]
    for runner in runners:
        await runner.setup()
    cdn_site = web.TCPSite(runners[1], host, cdn_port)
    await cdn_site.start()
    cdn_bound = runners[1].addresses[0][1]
    state.cdn_url = (cdn_url or f"http://{host}:{cdn_bound}").rstrip("/")
    site = web.TCPSite(runners[0], host, port)
    await site.start()
    logger.info("Hub stand-in on http://%s:%s (CDN %s)", host, runners[0].addresses[0][1], state.cdn_url)
    if ready:
        ready.set()
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        for runner in runners:
            await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gonka-operator simulate-hf-hub", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18090)
    parser.add_argument("--repo", action="append", default=[],
                        help=f"repository id to serve (repeatable; default {DEFAULT_REPO})")
    parser.add_argument("--weights-size", type=int, default=192 * 1024,
                        help="bytes of model.safetensors at main (default 192 KiB)")
    parser.add_argument("--cdn-port", type=int, default=0, help="port of the LFS \"CDN\" (default: a free one)")
    parser.add_argument("--cdn-url", default=None,
                        help="the CDN's URL as clients reach it, for the LFS redirects (default http://HOST:CDN_PORT; "
                             "in a pod: its Service's DNS name and the CDN port)")
    parser.add_argument("--throttle", type=float, default=0.0, help="bytes per second of file bodies (0 = no limit)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    repos = {r: make_repo(r, args.weights_size) for r in (args.repo or [DEFAULT_REPO])}
    state = HubState(repos, throttle=args.throttle)
    for repo in repos.values():
        logger.info("Serving %s: main=%s, commits %s", repo.repo_id, repo.commits[-1].sha,
                    ", ".join(c.sha for c in repo.commits))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(state, args.host, args.port, args.cdn_port, cdn_url=args.cdn_url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
