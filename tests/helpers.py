"""Helpers shared by the test suites (import as `from helpers import wait_for`).

Tests never sleep for a fixed time: they poll a condition with a deadline, and when it is not met
the failure says what was last observed, so a red test explains itself.
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from kubernetes import client

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    timeout: float,
    describe: str | Callable[[], str],
    interval: float = 0.2,
) -> T:
    """Call `predicate` until it returns something truthy, and return that.

    An exception raised by `predicate` counts as "not yet" (the object may not exist yet) and is
    remembered. On timeout, raise AssertionError naming `describe` (a string, or a callable
    evaluated then, to fetch the current state) and the last value or exception seen.
    """
    deadline = time.monotonic() + timeout
    last: object = "<never evaluated>"
    attempts = 0
    while True:
        attempts += 1
        try:
            value = predicate()
        except Exception as e:  # polling: "not found yet" is an expected answer
            last = e
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    what = describe() if callable(describe) else describe
    raise AssertionError(
        f"timed out after {timeout:.0f} s ({attempts} attempts) waiting for {what}; last saw: {last!r}"
    )


def holds_for(predicate: Callable[[], object], seconds: float, describe: str | Callable[[], str],
              interval: float = 0.5) -> None:
    """Assert that `predicate` stays truthy for `seconds` (e.g. "nothing was written meanwhile")."""
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if not value:
            what = describe() if callable(describe) else describe
            raise AssertionError(f"{what} stopped holding; last saw: {value!r}")
        if time.monotonic() >= deadline:
            return
        time.sleep(interval)


@contextlib.contextmanager
def fresh_namespace(api_client: Any, test_name: str, prefix: str = "", slug_length: int = 40) -> Iterator[str]:
    """A namespace named after the test (plus a random suffix), deleted without waiting afterwards."""
    slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:slug_length].strip("-")
    name = f"{prefix}{slug}-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": name, "labels": {"gonka.test/namespace": "true"}}})
    try:
        yield name
    finally:
        core.delete_namespace(name)
