"""The real node's machine claim: a second cluster waits for the first, never takes a live one for dead."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

from gonka_operator.devcluster import realnode
from gonka_operator.devcluster.procs import ClusterError


@pytest.fixture
def owner_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    monkeypatch.setattr(realnode, "OWNER_FILE", tmp_path / "owner")
    monkeypatch.setattr(realnode, "OWNER_LOCK", tmp_path / "lock")
    stopped: list[Path] = []
    monkeypatch.setattr(realnode.RealNode, "stop", lambda self: stopped.append(self.workdir) or [])
    return stopped


def test_a_node_still_starting_is_not_taken_for_dead(owner_files: list[Path], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    starter = subprocess.Popen(["sleep", "30"])  # the other cluster's process: alive, no procs recorded yet
    try:
        realnode.OWNER_FILE.write_text(f"{tmp_path / 'other'}\n{starter.pid}\n")
        monkeypatch.setenv("GONKA_REAL_NODE_WAIT", "0")
        with pytest.raises(ClusterError, match="already running"):
            realnode.RealNode(tmp_path / "mine", tmp_path)._claim_machine()
        assert owner_files == []  # nothing of the live node was cleaned up
    finally:
        starter.kill()
        starter.wait()


def test_a_second_node_waits_for_the_first_then_claims(owner_files: list[Path], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    starter = subprocess.Popen(["sleep", "30"])
    realnode.OWNER_FILE.write_text(f"{tmp_path / 'other'}\n{starter.pid}\n")
    monkeypatch.setenv("GONKA_REAL_NODE_WAIT", "60")
    timer = threading.Timer(2.0, lambda: (starter.kill(), starter.wait()))
    timer.start()
    try:
        node = realnode.RealNode(tmp_path / "mine", tmp_path)
        node._claim_machine()
    finally:
        timer.cancel()
        starter.kill()
    assert node.claimed
    assert realnode.read_owner() == (tmp_path / "mine", os.getpid())
    assert owner_files == [tmp_path / "other"]  # the dead one's leftovers were cleaned once
