"""The preload entry point (`gonka-operator preload-model`, what the Job runs) with the REAL
huggingface_hub download code against the Hub stand-in (HF_ENDPOINT), as processes; and what the
operator makes of the outcome it leaves in the termination message (builders/hf_cache.read_job)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakekube import context, handled

from gonka_operator import preload_housekeeping
from gonka_operator.builders import hf_cache
from gonka_operator.models.inference_node import InferenceNodeSpec
from gonka_operator.status import Facts
from hubproc import REPO, HubStandIn, Run, preload


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubStandIn]:
    # 1 MB/s: the 192 KiB weights take ~0.2 s, long enough for progress lines every 0.05 s
    with HubStandIn(tmp_path_factory.mktemp("hub-logs"), extra=("--throttle", "1000000")) as h:
        yield h


def snapshot_files(home: Path, commit: str) -> dict[str, bytes]:
    snap = home / "hub" / f"models--{REPO.replace('/', '--')}" / "snapshots" / commit
    return {p.name: p.read_bytes() for p in snap.iterdir()}


def hub_file(hub: HubStandIn, revision: str, name: str) -> bytes:
    return httpx.get(f"{hub.url}/{REPO}/resolve/{revision}/{name}", follow_redirects=True).content


def spec(revision: str | None = None, repo: str = REPO) -> InferenceNodeSpec:
    body: dict[str, Any] = {"networkNodeRef": {"name": "gonka"}, "model": repo, "hfCache": {"size": "10Gi"}}
    if revision:
        body["modelOverride"] = {"hfRepo": repo, "hfCommit": revision}
    return InferenceNodeSpec.model_validate(body)


def pod(job: str, run: Run, n: int) -> dict[str, Any]:
    """The pod of attempt `n` as the operator sees it: phase and the container's termination message."""
    return {"job": job, "created": f"2026-12-01T00:00:0{n}Z",
            "status": {"phase": "Succeeded" if run.code == 0 else "Failed", "startTime": f"2026-12-01T00:00:0{n}Z",
                       "containerStatuses": [{"name": "preload", "state": {"terminated": {
                           "exitCode": run.code, "message": json.dumps(run.termination)}}}]}}


def test_first_download_fetches_the_snapshot_with_progress(hub: HubStandIn, tmp_path: Path) -> None:
    repo = hub.repo()
    run = preload(tmp_path / "home", hub.url, interval=0.05)
    assert run.code == 0, run.output
    main_files = repo["commits"][-1]["files"]
    assert run.outcome["state"] == "Ready" and run.outcome["commit"] == repo["main"]
    assert (run.outcome["files"], run.outcome["bytes"]) == (len(main_files), sum(main_files.values()))
    assert run.outcome["fetchedBytes"] == run.outcome["bytes"]
    assert run.termination == {k: v for k, v in run.outcome.items() if k != "event"}
    # the files on disk are the Hub's, in huggingface_hub's cache layout (what mlnode/vLLM read)
    assert snapshot_files(tmp_path / "home", repo["main"]) == {n: hub_file(hub, "main", n) for n in main_files}
    progress = [line for line in run.lines if line["event"] == "progress"]
    assert progress, f"no progress line in the log: {run.output}"
    assert all(isinstance(p["fetchedBytes"], int) and isinstance(p["fetchedFiles"], int) for p in progress)
    assert [p["fetchedBytes"] for p in progress] == sorted(p["fetchedBytes"] for p in progress)


def test_second_run_fetches_nothing(hub: HubStandIn, tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert preload(home, hub.url).code == 0
    hub.clear()
    again = preload(home, hub.url)
    assert again.code == 0 and again.outcome["state"] == "Ready", again.output
    assert again.outcome["fetchedBytes"] == 0 and again.outcome["fetchedFiles"] == 0
    assert hub.downloads() == []
    # a branch is resolved (to notice a new commit), nothing else is asked
    assert [r["path"] for r in hub.requests()] == [f"/api/models/{REPO}/revision/main"]


def test_revision_pin_downloads_that_commit_and_then_asks_nothing(hub: HubStandIn, tmp_path: Path) -> None:
    old = hub.repo()["commits"][0]
    home = tmp_path / "home"
    run = preload(home, hub.url, revision=old["sha"])
    assert run.code == 0, run.output
    assert run.outcome["commit"] == old["sha"] and run.outcome["files"] == len(old["files"])
    files = snapshot_files(home, old["sha"])
    assert set(files) == set(old["files"]) and "tokenizer.json" not in files
    assert files["config.json"] == hub_file(hub, old["sha"], "config.json") != hub_file(hub, "main", "config.json")
    hub.clear()
    again = preload(home, hub.url, revision=old["sha"])
    assert again.code == 0 and again.outcome["fetchedBytes"] == 0
    assert any(line["event"] == "cached" for line in again.lines)
    assert hub.requests() == []  # a complete pinned snapshot is found with local_files_only: no request


def test_hub_down_then_back_retries_then_ready(tmp_path: Path) -> None:
    home = tmp_path / "home"
    s = spec()
    job = hf_cache.job_name("gpu", s)
    hub = HubStandIn(tmp_path, "hf-hub-flaky")
    hub.start()
    hub.stop()  # the Hub is down: nothing listens on its address
    first = preload(home, hub.url)
    assert first.code == 1, first.output  # transient: the Job retries it with its backoff
    assert first.termination is not None and first.termination["state"] == "Failed"
    assert first.termination.get("transient") is True
    pods = [pod(job, first, 1)]
    view = hf_cache.read_job(s, "gpu", {"status": {"failed": 1, "active": 1}}, pods)
    assert view.status["state"] == "Downloading" and not view.ready
    assert f"pod 2 of Job {job}" in view.message and first.termination["message"][:60] in view.message
    with hub:  # the Hub back on the same address
        second = preload(home, hub.url)
    assert second.code == 0 and second.outcome["state"] == "Ready", second.output
    pods.append(pod(job, second, 2))
    done = hf_cache.read_job(s, "gpu", {"status": {"failed": 1, "succeeded": 1, "conditions": [
        {"type": "Complete", "status": "True"}]}}, pods)
    assert done.ready and done.status["state"] == "Ready"
    assert (done.status["files"], done.status["bytes"]) == (second.outcome["files"], second.outcome["bytes"])
    assert done.status["commit"] == second.outcome["commit"]


def test_missing_repository_fails_with_the_hubs_message(hub: HubStandIn, tmp_path: Path) -> None:
    run = preload(tmp_path / "home", hub.url, repo="gonka-test/does-not-exist")
    assert run.code == 2, run.output  # permanent: the Job's podFailurePolicy fails it at once
    assert run.termination is not None
    message = run.termination["message"]
    assert "RepositoryNotFoundError" in message and "401 Client Error" in message
    assert "Repository Not Found for url" in message and "gonka-test/does-not-exist" in message
    s = spec(repo="gonka-test/does-not-exist")
    job = hf_cache.job_name("gpu", s)
    view = hf_cache.read_job(s, "gpu", {"status": {"failed": 1, "conditions": [
        {"type": "Failed", "status": "True", "reason": "PodFailurePolicy",
         "message": "Container preload for pod x failed with exit code 2 matching FailJob rule at index 0"}]}},
        [pod(job, run, 1)])
    assert view.status["state"] == "Failed" and view.ok is False and view.reason == "PreloadFailed"
    assert "Repository Not Found for url" in view.message


def test_wrong_revision_fails_with_the_hubs_message(hub: HubStandIn, tmp_path: Path) -> None:
    run = preload(tmp_path / "home", hub.url, revision="0" * 40)
    assert run.code == 2, run.output
    assert run.termination is not None and f"Invalid rev id: {'0' * 40}" in run.termination["message"]


def test_the_log_never_shows_the_endpoints_userinfo(hub: HubStandIn, tmp_path: Path) -> None:
    """HF_ENDPOINT may carry a mirror's credentials (http://user:password@mirror): the start line and
    the Hub's error messages (which name the URL) show the endpoint without them."""
    endpoint = hub.url.replace("http://", "http://mirror-user:s3cret-pass@")
    run = preload(tmp_path / "home", endpoint)
    assert run.code == 0, run.output
    start = next(line for line in run.lines if line["event"] == "start")
    assert start["endpoint"] == hub.url
    missing = preload(tmp_path / "home", endpoint, repo="gonka-test/does-not-exist")
    assert missing.code == 2 and missing.termination is not None, missing.output
    assert "Repository Not Found for url" in missing.termination["message"]
    for text in (run.output, missing.output, json.dumps(missing.termination)):
        assert "s3cret-pass" not in text and "mirror-user" not in text


def test_the_token_reaches_the_hub_and_never_the_log(hub: HubStandIn, tmp_path: Path) -> None:
    token = "hf_" + "Zq7" * 10
    hub.clear()
    run = preload(tmp_path / "home", hub.url, env={"HF_TOKEN": token})
    missing = preload(tmp_path / "home", hub.url, repo="gonka-test/does-not-exist", env={"HF_TOKEN": token})
    assert run.code == 0 and missing.code == 2, run.output + missing.output
    # with the token to the Hub; never to the CDN, another origin (as huggingface_hub does with cdn-lfs.hf.co)
    seen = {(r["path"].startswith("/cdn/"), r["authorized"]) for r in hub.requests()}
    assert seen == {(False, True), (True, False)}, hub.requests()
    for text in (run.output, missing.output, json.dumps(run.termination), json.dumps(missing.termination)):
        assert token not in text and token[3:12] not in text


def test_offline_mode_refuses_to_preload(hub: HubStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gonka_operator import preload as entry

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, outcome = entry.preload(REPO, None, tmp_path / "hub")
    assert code == 2 and "HF_HUB_OFFLINE" in outcome["message"]


async def test_progress_reaches_the_cr_while_the_pod_runs(hub: HubStandIn, tmp_path: Path) -> None:
    """The operator reads the running preload pod's log (here: the real log of a real run) and puts the
    bytes and files fetched so far on status.cache."""
    run = preload(tmp_path / "home", hub.url, interval=0.05)
    assert run.code == 0, run.output
    last = [line for line in run.lines if line["event"] == "progress"][-1]
    ctx, kube = context(None)  # type: ignore[arg-type]
    body = {"apiVersion": "gonka.ai/v1alpha1", "kind": "InferenceNode",
            "metadata": {"name": "gpu", "namespace": "ns", "uid": "uid-1", "generation": 1},
            "spec": {"networkNodeRef": {"name": "gonka"}, "model": REPO, "hfCache": {"size": "10Gi"}}}
    record = handled(ctx, body)
    record.registration = Facts(None, "WaitingForCache", "registered once the HF cache is Ready")
    job = hf_cache.job_name("gpu", spec())
    record.jobs[job] = {"status": {"active": 1}}
    record.preload_pods["gpu-hf-x-1"] = {"job": job, "status": {"phase": "Running"}}
    assert await preload_housekeeping.refresh_cache_progress(ctx) == 0  # the log cannot be read yet: skipped
    assert kube.patches == []
    kube.logs["gpu-hf-x-1"] = run.output
    assert await preload_housekeeping.refresh_cache_progress(ctx) == 1
    written = kube.statuses[("ns", "gpu")]["cache"]
    assert written["state"] == "Downloading"
    assert (written["bytes"], written["files"]) == (last["fetchedBytes"], last["fetchedFiles"])
    assert f"{last['fetchedBytes']} bytes" in written["message"]
    patches = len(kube.patches)
    await preload_housekeeping.refresh_cache_progress(ctx)
    assert len(kube.patches) == patches  # unchanged progress: no write
