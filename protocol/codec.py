"""Bytes in, typed messages out, and back: the sans-I/O core of the protocol.

``decode_frame`` checks a frame is one msgpack map, ``read_envelope`` pulls out
``t`` and ``id``, ``parse_command`` validates the rest for a protocol version.
``decode`` does all three. ``encode`` turns a server message into one frame.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any

import msgpack

from protocol import v1
from protocol.errors import ErrorCode, ProtocolError
from protocol.messages import (
    Command,
    CommandId,
    Error,
    EventPush,
    Ok,
    ServerMessage,
    Welcome,
)

PROTOCOL_VERSION = v1.VERSION
VERSIONS = {v1.VERSION: v1.COMMANDS}
MAX_FRAME_BYTES = 64 * 1024
_ENVELOPE = frozenset({"t", "re"})


def decode_frame(frame: bytes | str) -> dict[str, Any]:
    """One binary frame holding one msgpack map with string keys, or ``bad_frame``."""
    if isinstance(frame, str):
        raise ProtocolError(
            ErrorCode.BAD_FRAME, "text frames are not accepted; send binary msgpack"
        )
    try:
        value = msgpack.unpackb(frame, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises many unrelated types for corrupt input
        raise ProtocolError(
            ErrorCode.BAD_FRAME, f"not valid msgpack ({type(exc).__name__})"
        ) from exc
    if not isinstance(value, dict):
        raise ProtocolError(ErrorCode.BAD_FRAME, "a frame must hold one msgpack map")
    if not all(isinstance(k, str) for k in value):
        raise ProtocolError(ErrorCode.BAD_FRAME, "map keys must be strings")
    return value


def read_envelope(m: Mapping[str, Any]) -> tuple[str, CommandId]:
    """The command's ``t`` and ``id``; ``bad_request``/``unknown_type`` otherwise."""
    cid = m.get("id")
    if not isinstance(cid, str) or not 1 <= len(cid) <= v1.ID_MAX:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, f"id: must be a string of 1 to {v1.ID_MAX} characters"
        )
    t = m.get("t")
    if not isinstance(t, str):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "t: must be a string naming a command", cid)
    if t not in v1.COMMANDS:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"t: no command named {t[:64]!r}", cid)
    return t, CommandId(cid)


def parse_command(m: Mapping[str, Any], version: int = PROTOCOL_VERSION) -> Command:
    t, cid = read_envelope(m)
    try:
        return VERSIONS[version][t](cid, m)
    except ProtocolError as exc:
        raise exc.with_re(cid) from None


def decode(frame: bytes | str, version: int = PROTOCOL_VERSION) -> Command:
    return parse_command(decode_frame(frame), version)


def to_wire(msg: ServerMessage) -> dict[str, Any]:
    """The plain map of a server message, ``t`` first."""
    if isinstance(msg, Ok):
        result = {k: v for k, v in msg.result.items() if k not in _ENVELOPE}
        return {"t": "ok", "re": msg.re, **result}
    out: dict[str, Any] = {"t": msg.TYPE}
    names = _FIELD_NAMES.get(type(msg))
    if names is None:  # fields() walks the class's fields each call: once per type here
        names = _FIELD_NAMES[type(msg)] = tuple(f.name for f in fields(msg))
    for name in names:
        out[name] = getattr(msg, name)
    return out


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def encode(msg: ServerMessage) -> bytes:
    return pack(to_wire(msg))


# One Packer for every frame: ``msgpack.packb`` makes a Packer, and its 256 KB
# buffer, at each call. Sharing it is safe: it packs the builtin types of a frame
# without running Python code, so no other thread can take the GIL in the middle of one.
_pack: Callable[[object], bytes] = msgpack.Packer(use_bin_type=True).pack


def pack(value: Mapping[str, Any]) -> bytes:
    return _pack(value)


def decode_server(frame: bytes) -> ServerMessage:
    """For clients (bots, tests): one server frame as a typed message."""
    m = decode_frame(frame)
    try:
        return _server_message(m)
    except (KeyError, TypeError) as exc:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"server message lacks {exc}") from exc


def _server_message(m: dict[str, Any]) -> ServerMessage:
    t = m.get("t")
    if t == "ok":
        result = {k: v for k, v in m.items() if k not in _ENVELOPE}
        return Ok(m["re"], result)
    if t == "error":
        return Error(m.get("re"), m["code"], m["message"])
    if t == "welcome":
        return Welcome(m["re"], m["player_id"], m["name"], m["token"], m["server_time"])
    if t == "event":
        return EventPush(m["hunt_id"], m["seq"], m["kind"], m["at"], m["data"])
    raise ProtocolError(ErrorCode.BAD_FRAME, f"unknown server message {t!r}")
