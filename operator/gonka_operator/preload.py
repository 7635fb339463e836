"""`gonka-operator preload-model`: fill the Hugging Face cache with one model snapshot (run by the
preload Job, builders/hf_cache.py).

It calls the real `huggingface_hub.snapshot_download(repo, revision=...)` into `$HF_HOME/hub`
(HF_HOME=/root/.cache in the Job, the ML pod's mount), the same layout mlnode/vLLM read (upstream's
advice, REFERENCE.md §3: pre-download weights into HF_HOME; a cold vLLM start downloads 10-60 min).

* Idempotent: a revision pinned to a commit is first looked up with `local_files_only=True`; a
  complete snapshot there is used without a single request to the Hub. A branch (`main`) is
  resolved online (one model-info and, for a new commit, one tree request), and files already in the
  cache are not fetched again (the library skips them; `fetchedBytes` says what came over the wire).
* Progress: one JSON line per `--progress-interval` seconds on stdout (the Job's log): bytes and
  files fetched so far, measured in the cache directory itself (`blobs/`, `.incomplete` files
  included; huggingface_hub writes a file in 10 MiB chunks, so that is the granularity), then a
  final line with the snapshot's commit, files and bytes.
* Nothing secret in the log: HF_ENDPOINT and the Hub's messages (which name URLs) are shown without
  `user:password@`; HF_TOKEN (from the Job's Secret reference) is never printed.
* The outcome is also written as JSON to the container's termination message
  (`/dev/termination-log`), which the operator reads from the pod status it already watches: the
  final bytes/files, or the Hub's error message. No Kubernetes credentials in the Job.
* Exit codes: 0 ready; 1 a transient failure (Hub unreachable, 5xx: the Job retries with its
  backoff); 2 a permanent one (repository, revision or file not found, gated): the Job's
  podFailurePolicy fails at once, the CR shows Failed with the Hub's message.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

EXIT_TRANSIENT, EXIT_PERMANENT = 1, 2
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
MESSAGE_LIMIT = 1000
# the userinfo of a URL (scheme://user:password@host): a mirror's credentials in HF_ENDPOINT
USERINFO_RE = re.compile(r"(?<=://)[^/@\s]*@")


def _emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def repo_folder(cache_dir: Path, repo_id: str) -> Path:
    """huggingface_hub's cache layout: <HF_HOME>/hub/models--<org>--<name>."""
    return cache_dir / ("models--" + repo_id.replace("/", "--"))


def _blob_stats(folder: Path) -> tuple[int, int]:
    """Bytes under blobs/ (partial downloads included) and the number of complete blobs."""
    size = done = 0
    blobs = folder / "blobs"
    if not blobs.is_dir():
        return 0, 0
    for entry in blobs.iterdir():
        try:
            size += entry.stat().st_size
        except OSError:
            continue
        if not entry.name.endswith(".incomplete"):
            done += 1
    return size, done


def snapshot_stats(snapshot: Path) -> tuple[int, int]:
    """Files and bytes of a snapshot (its entries are symlinks into blobs/)."""
    files = size = 0
    for path in snapshot.rglob("*"):
        if path.is_file():
            files += 1
            size += path.stat().st_size
    return files, size


def without_userinfo(text: str) -> str:
    """`text` with the user:password@ of every URL in it removed (HF_ENDPOINT may carry a mirror's
    credentials; the start line and the Hub's error messages, which name the URL, must not)."""
    return USERINFO_RE.sub("", text)


def hub_message(exc: BaseException) -> str:
    """The library's/Hub's message on one line, without URL credentials (no token: the library never
    puts it in messages)."""
    text = without_userinfo(" ".join(str(exc).split()))
    return f"{type(exc).__name__}: {text}"[:MESSAGE_LIMIT]


class Progress:
    """Prints bytes/files fetched every `interval` seconds until stopped."""

    def __init__(self, folder: Path, interval: float) -> None:
        self.folder, self.interval = folder, interval
        self.start_bytes, self.start_files = _blob_stats(folder)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="progress")

    def fetched(self) -> tuple[int, int]:
        size, done = _blob_stats(self.folder)
        return max(0, size - self.start_bytes), max(0, done - self.start_files)

    def _run(self) -> None:
        started = time.monotonic()
        while not self.stop.wait(self.interval):
            size, files = self.fetched()
            _emit("progress", fetchedBytes=size, fetchedFiles=files, seconds=round(time.monotonic() - started, 1))

    def __enter__(self) -> Progress:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def preload(repo_id: str, revision: str | None, cache_dir: Path, interval: float = 5.0) -> tuple[int, dict[str, Any]]:
    """Download (or find complete) one snapshot. Returns (exit code, outcome for the operator)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # our JSON lines instead of tqdm bars
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    outcome: dict[str, Any] = {"repo": repo_id, "revision": revision or "main"}
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        outcome |= {"state": "Failed", "message": "HF_HUB_OFFLINE is set: the preload Job must reach the Hub"}
        return EXIT_PERMANENT, outcome
    folder = repo_folder(cache_dir, repo_id)
    _emit("start", repo=repo_id, revision=revision or "main", cacheDir=str(cache_dir),
          endpoint=without_userinfo(os.environ.get("HF_ENDPOINT", "https://huggingface.co")))
    path: str | None = None
    if revision and COMMIT_RE.match(revision):
        try:  # a pinned commit that is complete in the cache: not one request to the Hub
            path = snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, local_files_only=True)
            _emit("cached", commit=revision, message="complete snapshot found in the cache; nothing fetched")
        except LocalEntryNotFoundError:
            path = None
    fetched = (0, 0)
    if path is None:
        try:
            with Progress(folder, interval) as progress:
                path = snapshot_download(repo_id, revision=revision, cache_dir=cache_dir)
                fetched = progress.fetched()
        except LocalEntryNotFoundError as exc:  # (an EntryNotFoundError) Hub unreachable, nothing cached
            outcome |= {"state": "Failed", "message": hub_message(exc), "transient": True}
            return EXIT_TRANSIENT, outcome
        except (RepositoryNotFoundError, RevisionNotFoundError, GatedRepoError, EntryNotFoundError) as exc:
            outcome |= {"state": "Failed", "message": hub_message(exc)}
            return EXIT_PERMANENT, outcome
        except Exception as exc:
            outcome |= {"state": "Failed", "message": hub_message(exc), "transient": True}
            return EXIT_TRANSIENT, outcome
    files, size = snapshot_stats(Path(path))
    outcome |= {"state": "Ready", "commit": Path(path).name, "files": files, "bytes": size,
                "fetchedBytes": fetched[0], "fetchedFiles": fetched[1]}
    return 0, outcome


def write_termination_message(path: str, outcome: dict[str, Any]) -> None:
    try:
        with open(path, "w") as f:
            f.write(json.dumps(outcome)[:4000])  # the kubelet keeps at most 4096 bytes
    except OSError:
        pass  # not in a pod (a local run): stdout has it all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gonka-operator preload-model", description=__doc__.split("\n")[0])
    parser.add_argument("--repo", required=True, help="Hugging Face repository, e.g. Qwen/Qwen3-32B-FP8")
    parser.add_argument("--revision", default=None, help="branch, tag or 40-hex commit (default main)")
    parser.add_argument("--cache-dir", default=None, help="default $HF_HOME/hub (HF_HOME default ~/.cache/huggingface)")
    parser.add_argument("--progress-interval", type=float, default=5.0)
    parser.add_argument("--termination-log", default="/dev/termination-log")
    args = parser.parse_args(argv)
    home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    cache_dir = Path(args.cache_dir or Path(home) / "hub")
    code, outcome = preload(args.repo, args.revision, cache_dir, args.progress_interval)
    _emit("done" if code == 0 else "failed", **outcome)
    write_termination_message(args.termination_log, outcome)
    return code


if __name__ == "__main__":
    sys.exit(main())
