"""Child processes of the local control plane: spawn, probe, stop, and say why they failed.

Each component runs in its own session (so its own process group): a terminal Ctrl-C does not hit
it, `up` can exit while it keeps running, and stop() can signal the whole group. Components log to
<workdir>/<name>.log so a failure message can quote the tail.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class ClusterError(RuntimeError):
    """The local control plane could not be started (the message carries the log tail)."""


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on 127.0.0.1.

    All sockets stay open until every port is chosen so the kernel cannot hand out one twice; the
    window between closing them and the component binding is small enough for a dev machine.
    """
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError as e:
        return f"(no log: {e})"
    return "\n".join(text.splitlines()[-lines:])


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _stat(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name (state first), [] if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    # The command name is parenthesised and may itself contain spaces or parentheses.
    return stat.rsplit(")", 1)[1].split()


def _running(pid: int) -> bool:
    fields = _stat(pid)
    return bool(fields) and fields[0] not in ("Z", "X")


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            # fields[0] is the state, fields[2] the process group id.
            if len(fields) > 2 and fields[0] not in ("Z", "X") and fields[2] == str(pgid):
                members.append(int(entry.name))
    return members


@dataclass
class Proc:
    """One component. `popen` is set only in the process that started it."""

    name: str
    pid: int
    exe: str
    log: Path
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        # After a restart of the CLI the pid may have been reused by something else: only treat it
        # as ours if it still runs our binary.
        argv = _cmdline(self.pid)
        return bool(argv) and argv[0] == self.exe and _running(self.pid)

    def _group(self) -> list[int]:
        """Live members of our process group. A group id is the pid of its leader; leftover members
        (the binaries do not fork, but be thorough) are ours even after the leader exited. But once
        the leader is gone and reaped, its pid can be given to a new process that leads a group of
        its own (an operator or stand-in a test started, say): that process is not ours. Linux never
        reuses a pid that is still a live group's id, so only the leader's pid itself is suspect."""
        if self.popen is not None:
            self.popen.poll()  # reap our child so it stops counting
        members = group_members(self.pid)
        return members if self.alive() else [m for m in members if m != self.pid]

    def signal_group(self, sig: signal.Signals) -> None:
        if self.alive() or self._group():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)

    def group_gone(self) -> bool:
        return not self._group()

    def failure(self, what: str) -> ClusterError:
        rc = self.popen.poll() if self.popen is not None else None
        state = f"exited with code {rc}" if rc is not None else ("running" if self.alive() else "gone")
        return ClusterError(
            f"{self.name}: {what} ({state}); last lines of {self.log}:\n{log_tail(self.log)}"
        )


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask the kernel to SIGTERM it when the process that
    # started it dies, even by SIGKILL, so a killed test run leaves no control plane behind.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def spawn(
    name: str,
    argv: Sequence[str],
    workdir: Path,
    env: Mapping[str, str] | None = None,
    detach: bool = False,
) -> Proc:
    """Start one component in its own session; unless `detach`, it dies with this process."""
    log = workdir / f"{name}.log"
    with log.open("ab") as out:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env={**os.environ, **(env or {})},
            start_new_session=True,
            preexec_fn=None if detach or sys.platform != "linux" else _die_with_parent,
        )
    return Proc(name=name, pid=popen.pid, exe=str(argv[0]), log=log, popen=popen)


def stop_all(procs: Sequence[Proc], grace: float = 10.0) -> None:
    """SIGTERM every group at once, then SIGKILL whatever is left after `grace` seconds."""
    for p in procs:
        p.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and not all(p.group_gone() for p in procs):
        time.sleep(0.1)
    for p in procs:
        if not p.group_gone():
            p.signal_group(signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not all(p.group_gone() for p in procs):
        time.sleep(0.05)


def https_context(ca: Path | None, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    # ca=None: kube-controller-manager/kube-scheduler serve /healthz with a self-signed cert they
    # made up at start; there is nothing to verify it against.
    ctx = ssl._create_unverified_context() if ca is None else ssl.create_default_context(cafile=str(ca))
    if cert is not None and key is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def probe(url: str, ctx: ssl.SSLContext | None = None) -> str | None:
    """None if GET url answers 200, else a short description of what it answered."""
    try:
        with urllib.request.urlopen(url, timeout=5, context=ctx) as resp:
            return None if resp.status == 200 else f"HTTP {resp.status}"
    except urllib.error.HTTPError as e:
        body = e.read().decode(errors="replace")
        failed = [ln for ln in body.splitlines() if ln.startswith("[-]")]
        return f"HTTP {e.code}: {'; '.join(failed) or body[:300]}"
    except (OSError, ssl.SSLError) as e:
        return f"{type(e).__name__}: {e}"


def wait_until(
    check: Callable[[], str | None], timeout: float, owner: Proc, what: str, watch: Sequence[Proc] = ()
) -> None:
    """Poll `check` (None = done, else what is still wrong) until done or `timeout` runs out.

    Fails early, with that component's log, if `owner` or any process in `watch` exits meanwhile.
    """
    deadline = time.monotonic() + timeout
    last = "not checked yet"
    while True:
        for p in (owner, *watch):
            if not p.alive():
                raise p.failure(f"exited while waiting for {what}")
        last_or_none = check()
        if last_or_none is None:
            return
        last = last_or_none
        if time.monotonic() > deadline:
            raise owner.failure(f"{what} not reached within {timeout:.0f} s; last saw: {last}")
        time.sleep(0.25)
