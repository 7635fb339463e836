"""Helpers shared by the test suites (import as `from helpers import wait_for`).

Tests never sleep for a fixed time: they poll a condition with a deadline, and when it is not met
the failure says what was last observed, so a red test explains itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

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
