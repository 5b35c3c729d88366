"""Wire protocol version 1: typed messages, msgpack codec, validation.

Sans-I/O: bytes in, typed messages out (``decode``), and back (``encode``).
Every problem with input is a ``ProtocolError`` carrying its wire code.
"""

from protocol.codec import (
    MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    decode,
    decode_frame,
    decode_server,
    encode,
    parse_command,
    read_envelope,
)
from protocol.errors import NOT_REMEMBERED, ErrorCode, ProtocolError

__all__ = [
    "MAX_FRAME_BYTES",
    "NOT_REMEMBERED",
    "PROTOCOL_VERSION",
    "ErrorCode",
    "ProtocolError",
    "decode",
    "decode_frame",
    "decode_server",
    "encode",
    "parse_command",
    "read_envelope",
]
