"""Wires the admin endpoint to a running server: token, asking threads, HTTP listener."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from server.actorsys import Runtime
from server.admin import tokens as admin_token
from server.admin.endpoint import AdminServer
from server.admin.queries import AdminQueries, Asker
from server.config import Settings
from server.gateway.server import Gateway

log = logging.getLogger("treasure.admin")


@dataclass
class Admin:
    asker: Asker
    server: AdminServer

    async def stop(self) -> None:
        await self.server.stop()
        self.asker.stop()


async def start_admin(settings: Settings, runtime: Runtime, gateway: Gateway) -> Admin:
    token, path = admin_token.load_or_create(settings.admin_token, settings.data_dir)
    asker = Asker(runtime.asys)
    asker.start()
    server = AdminServer(
        AdminQueries(asker, runtime.director, gateway), token, gateway.metrics.registry
    )
    try:
        await server.start(settings.admin_http_host, settings.admin_http_port)
    except OSError as exc:
        asker.stop()
        where = f"{settings.admin_http_host}:{settings.admin_http_port}"
        raise SystemExit(f"cannot serve the admin endpoint on {where}: {exc}") from exc
    where = "given with --admin-token / TREASURE_ADMIN_TOKEN" if path is None else f"in {path}"
    log.info(
        "admin endpoint at http://%s:%d/ (bearer token %s, %s)",
        settings.admin_http_host,
        server.port,
        server.token_id,
        where,
    )
    return Admin(asker, server)
