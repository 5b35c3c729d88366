"""Errors of the wire protocol.

Exception tree::

    ProtocolError          one bad frame or command; carries the wire error code,
                           a message naming the field, and ``re`` (the command id
                           when it was readable, else None)

Codes are the ``ErrorCode`` values of docs/protocol.md; the gateway turns a
``ProtocolError`` into an ``error`` reply and keeps the connection open.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    BAD_FRAME = "bad_frame"
    BAD_REQUEST = "bad_request"
    UNKNOWN_TYPE = "unknown_type"
    NOT_AUTHENTICATED = "not_authenticated"
    UNAUTHORIZED = "unauthorized"
    UNSUPPORTED_PROTOCOL = "unsupported_protocol"
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"
    CONFLICT = "conflict"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


NOT_REMEMBERED = frozenset({ErrorCode.UNAVAILABLE, ErrorCode.RATE_LIMITED, ErrorCode.INTERNAL})
"""Replies with these codes are not kept for idempotency: a resend tries again."""


class ProtocolError(Exception):
    def __init__(self, code: ErrorCode, message: str, re: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.re = re

    def with_re(self, re: str | None) -> ProtocolError:
        return ProtocolError(self.code, self.message, re)
