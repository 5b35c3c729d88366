"""The admin endpoint: a small HTTP/1.1 server on asyncio streams, bearer-token only.

    GET  /api/shards | /api/actors?type=&shard=&sort=&limit= | /api/hunts
    GET  /api/entity/ID[?activate=0] | /api/events/ID?after=&limit=
    POST /api/passivate/ID | /api/end-hunt/ID | /api/kick/PLAYER | /api/snapshot/ID
    GET  /metrics (Prometheus) | / and /entity/ID (the read-only web view)

Every request needs ``Authorization: Bearer TOKEN``; the web view also takes
``?token=`` once and keeps it in a cookie. One request per connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from http import HTTPStatus
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from server.admin import tokens as admin_token
from server.admin import web as admin_web
from server.admin.metrics import ShardCollector
from server.admin.queries import AdminError, AdminQueries

log = logging.getLogger("treasure.admin")
COOKIE = "treasure_admin"
MAX_BODY = 64 * 1024


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    remote: str


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        head = [f"HTTP/1.1 {self.status} {HTTPStatus(self.status).phrase}"]
        head += [f"Content-Type: {self.content_type}", f"Content-Length: {len(self.body)}"]
        head += ["Connection: close", "Cache-Control: no-store"]
        head += [f"{k}: {v}" for k, v in self.headers.items()]
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + self.body


def as_json(status: int, data: Any) -> Response:
    return Response(status, json.dumps(data, default=str).encode())


def error(status: int, message: str) -> Response:
    return as_json(status, {"error": message, "status": status})


class AdminServer:
    def __init__(self, queries: AdminQueries, token: str, registry: Any) -> None:
        self.queries, self.token, self.registry = queries, token, registry
        self.token_id = admin_token.token_id(token)
        self.shard_metrics = ShardCollector()
        registry.register(self.shard_metrics)
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._handle, host, port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    # ---- HTTP -----------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        remote = f"{peer[0]}:{peer[1]}" if peer else "?"
        try:
            req = await asyncio.wait_for(_read_request(reader, remote), 10)
            resp = await self.respond(req) if req is not None else error(400, "bad request")
            writer.write(resp.encode())
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def respond(self, req: Request) -> Response:
        via_query = req.query.get("token")
        if admin_token.matches(via_query, self.token):
            return _remember_token(req, via_query or "")
        if not self._authorized(req):
            return _refused(req)
        try:
            return await self._route(req)
        except AdminError as exc:
            return error(exc.status, exc.message)
        except (KeyError, ValueError) as exc:
            return error(400, f"bad request: {exc}")
        except Exception as exc:
            log.exception("admin request %s %s failed", req.method, req.path)
            return error(500, f"{type(exc).__name__}: {exc}")

    def _authorized(self, req: Request) -> bool:
        auth = req.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return admin_token.matches(auth[7:].strip(), self.token)
        morsel = SimpleCookie(req.headers.get("cookie", "")).get(COOKIE)
        return morsel is not None and admin_token.matches(morsel.value, self.token)

    # ---- routes ---------------------------------------------------------------------

    async def _route(self, req: Request) -> Response:
        parts = [p for p in req.path.split("/") if p]
        q = self.queries
        if req.method == "GET":
            match parts:
                case ["metrics"]:
                    return await self._metrics()
                case []:
                    overview = {"shards": await q.shards(), "hunts": await q.hunts()}
                    return _html(admin_web.overview_page(overview))
                case ["entity", entity_id]:
                    return _html(admin_web.entity_page(entity_id))
                case ["api", "shards"]:
                    return as_json(200, await q.shards())
                case ["api", "actors"]:
                    return as_json(200, await self._actors(req.query))
                case ["api", "hunts"]:
                    return as_json(200, await q.hunts())
                case ["api", "overview"]:
                    return as_json(200, {"shards": await q.shards(), "hunts": await q.hunts()})
                case ["api", "entity", entity_id]:
                    activate = req.query.get("activate", "1") != "0"
                    return as_json(200, await q.inspect(entity_id, activate))
                case ["api", "events", entity_id]:
                    after, limit = int(req.query.get("after", 0)), int(req.query.get("limit", 100))
                    return as_json(200, await q.events(entity_id, after, limit))
        if req.method == "POST" and len(parts) == 3 and parts[0] == "api":
            return as_json(200, await self._act(req, parts[1], parts[2]))
        return error(404, f"no such endpoint: {req.method} {req.path}")

    async def _actors(self, query: dict[str, str]) -> list[dict[str, Any]]:
        shard = query.get("shard")
        return await self.queries.actors(
            query.get("type") or None,
            int(shard) if shard not in (None, "") else None,
            query.get("sort", "msgs"),
            int(query.get("limit", 0)),
        )

    async def _act(self, req: Request, action: str, entity_id: str) -> dict[str, Any]:
        who = self._who(req)
        extra = {"entity": entity_id, "admin": who, "remote": req.remote, "action": action}
        log.info(
            "admin action %s %s by %s from %s", action, entity_id, who, req.remote, extra=extra
        )
        q = self.queries
        try:
            if action == "passivate":
                result = await q.passivate(entity_id)
            elif action == "snapshot":
                result = await q.snapshot(entity_id)
            elif action == "end-hunt":
                result = await q.end_hunt(entity_id)
                extra["cmd_id"] = result.get("cmd_id", "")
            elif action == "kick":
                body = json.loads(req.body or b"{}")
                result = q.kick(entity_id, str(body.get("reason") or f"kicked by admin {who}"))
            else:
                raise AdminError(404, f"no such action: {action}")
        except AdminError as exc:
            log.warning("admin action %s %s refused: %s", action, entity_id, exc, extra=extra)
            raise
        log.info("admin action %s %s done: %s", action, entity_id, result, extra=extra)
        return {"action": action, "id": entity_id, "by": who, **result}

    def _who(self, req: Request) -> str:
        user = req.headers.get("x-admin-user", "").strip()[:40]
        return f"{self.token_id}({user})" if user else self.token_id

    async def _metrics(self) -> Response:
        try:
            rows = (await self.queries.shards())["shards"]
        except AdminError as exc:
            log.warning("metrics: shard stats unavailable: %s", exc)
            rows = []
        self.shard_metrics.update(rows)
        return Response(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)


async def _read_request(reader: asyncio.StreamReader, remote: str) -> Request | None:
    line = (await reader.readline()).decode("latin-1").strip()
    bits = line.split(" ")
    if len(bits) != 3:
        return None
    headers: dict[str, str] = {}
    while True:
        raw = await reader.readline()
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    size = int(headers.get("content-length", "0") or 0)
    if size > MAX_BODY:
        return None
    body = await reader.readexactly(size) if size else b""
    url = urlsplit(bits[1])
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    return Request(bits[0].upper(), url.path, query, headers, body, remote)


def _html(page: str) -> Response:
    return Response(200, page.encode(), "text/html; charset=utf-8")


def _remember_token(req: Request, token: str) -> Response:
    """``?token=`` once: keep it in a cookie and drop it from the address."""
    rest = "&".join(f"{k}={quote(v)}" for k, v in req.query.items() if k != "token")
    location = req.path + (f"?{rest}" if rest else "")
    cookie = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
    return Response(303, b"", "text/plain", {"Location": location, "Set-Cookie": cookie})


def _refused(req: Request) -> Response:
    given = "authorization" in req.headers or COOKIE in req.headers.get("cookie", "")
    message = "wrong admin token" if given else "admin token required (Authorization: Bearer)"
    resp = error(401, message)
    resp.headers["WWW-Authenticate"] = 'Bearer realm="treasure-admin"'
    if "text/html" in req.headers.get("accept", "") or not req.path.startswith(("/api", "/m")):
        resp.content_type = "text/html; charset=utf-8"
        resp.body = admin_web.refused_page(message).encode()
    return resp
