"""Errors of the admin API client, by what the caller should do about them."""

from __future__ import annotations


class AdminError(Exception):
    """Base class of every admin API failure."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AdminUnavailable(AdminError):
    """No usable answer: connection refused or reset, timeout, 5xx, or a malformed answer.

    Retry with backoff. `status` is the HTTP status when there was one (5xx), else None.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AdminRejected(AdminError):
    """The api understood the request and refused it (4xx), e.g. a model governance has not approved.

    Retrying the same request will not help until something changes (the spec, the governance list);
    `message` carries the api's `{"error": ...}` text.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status

    def __str__(self) -> str:
        return f"{self.status}: {self.message}"


class AdminNotFound(AdminRejected):
    """404 for a node id (enable/disable of a node the api does not know)."""
