"""Errors of the event store.

Exception tree (every backend raises only these)::

    StoreError                 the store could not do what was asked
    ├── ConcurrencyError       expected_version is not the stream's version
    └── StoreUnavailable       the backend is down, timed out or refused

A caller that sees ``StoreUnavailable`` knows nothing about whether the write
happened; backends make appends all-or-nothing per stream so a retry with the
same ``expected_version`` either lands once or fails with ``ConcurrencyError``.
"""

from __future__ import annotations


class StoreError(Exception):
    """Root of every event store error."""


class ConcurrencyError(StoreError):
    """The stream's current version is not the one the writer expected."""

    def __init__(self, stream: str, expected: int, actual: int | None = None) -> None:
        self.stream = stream
        self.expected = expected
        self.actual = actual
        found = "unknown" if actual is None else str(actual)
        super().__init__(f"stream {stream!r}: expected version {expected}, found {found}")


class StoreUnavailable(StoreError):
    """The backend could not be reached or did not answer in time."""
