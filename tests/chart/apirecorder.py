"""A recording reverse proxy in front of the Kubernetes API server (tests only).

The operator under test talks to http://127.0.0.1:<port> with its ServiceAccount token; every
request is forwarded unchanged (same Authorization header, so the API server authorizes the
ServiceAccount, not us) and one JSON line {method, path, query, status[, message]} is appended to
the log (message: the API server's, for errors). Watch responses are streamed chunk by chunk.
From the log a test derives the exact (group, resource, verb) triples the operator used, and
compares them with the chart's RBAC rules.

    python apirecorder.py --port P --upstream https://127.0.0.1:6443 --ca ca.crt --log requests.jsonl
"""

from __future__ import annotations

import argparse
import json
import ssl
from pathlib import Path

import aiohttp
from aiohttp import web

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "content-length", "host"}


def make_app(upstream: str, ca: str, log_path: Path) -> web.Application:
    ssl_ctx = ssl.create_default_context(cafile=ca)
    log = log_path.open("a", buffering=1)

    async def session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        app["session"] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ssl_ctx), timeout=aiohttp.ClientTimeout(total=None),
            auto_decompress=False)
        yield
        await app["session"].close()
        log.close()

    async def forward(request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read()
        session: aiohttp.ClientSession = request.app["session"]
        async with session.request(request.method, upstream + request.rel_url.path_qs, headers=headers,
                                   data=body or None, allow_redirects=False) as upstream_resp:
            entry = {"method": request.method, "path": request.rel_url.path, "query": dict(request.rel_url.query),
                     "status": upstream_resp.status}
            response = web.StreamResponse(status=upstream_resp.status, reason=upstream_resp.reason)
            for key, value in upstream_resp.headers.items():
                if key.lower() not in HOP_BY_HOP:
                    response.headers[key] = value
            if upstream_resp.status >= 400:  # small Status objects: keep the API server's message
                payload = await upstream_resp.read()
                try:
                    entry["message"] = json.loads(payload).get("message", "")
                except ValueError:
                    entry["message"] = payload[:500].decode(errors="replace")
                log.write(json.dumps(entry) + "\n")
                await response.prepare(request)
                await response.write(payload)
                await response.write_eof()
                return response
            log.write(json.dumps(entry) + "\n")
            await response.prepare(request)
            async for chunk in upstream_resp.content.iter_any():  # watch streams: chunk by chunk
                await response.write(chunk)
            await response.write_eof()
            return response

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    # handler_cancellation: a watch the client dropped ends here too; short shutdown on SIGTERM.
    web.run_app(make_app(args.upstream.rstrip("/"), args.ca, Path(args.log)), host="127.0.0.1", port=args.port,
                print=None, handler_cancellation=True, shutdown_timeout=2)


if __name__ == "__main__":
    main()
