"""Starting and stopping the Thespian actor system the server runs on.

A surviving admin daemon from a crashed run keeps running old code, so every
start replaces whatever admin holds the port, and every stop shuts the
system down and waits until its processes are gone.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass
from typing import Any

from thespian.actors import ActorSystem

from actors.messages import AdminReply, Inspect, ShardDirectory, ShardSettings, Stopping
from actors.runtime.hosts import Director
from server.config import Settings
from server.procs import alive, pids_listening_on

log = logging.getLogger("treasure.system")
BASE = "multiprocTCPBase"


@dataclass
class Runtime:
    asys: Any
    director: Any
    shards: list[Any]
    admin_port: int

    def pids(self) -> list[int]:
        reply = self.asys.ask(self.director, Inspect("director"), timeout=10)
        if not isinstance(reply, AdminReply) or not reply.ok:
            return []
        return [reply.data["pid"], *reply.data["shard_pids"]]


def _log_defs(level: str, fmt: str) -> dict[str, Any]:
    """How the actor processes log (Thespian's logger process applies this)."""
    formatters = {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "server.logs.JsonFormatter"},
    }
    return {
        "version": 1,
        "formatters": {"chosen": formatters.get(fmt, formatters["text"])},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "chosen", "level": "WARNING"}
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
    }


def replace_stale_admin(port: int, timeout_s: float = 15.0) -> None:
    """Shut down (or, if it won't answer, kill) an actor system left on ``port``."""
    if not pids_listening_on(port):
        return
    log.warning("a Thespian admin from an earlier run holds port %d; replacing it", port)
    try:
        ActorSystem(BASE, capabilities={"Admin Port": port}, transientUnique=True).shutdown()
    except Exception as exc:
        log.warning("the stale admin did not shut down cleanly: %s", exc)
    deadline = time.monotonic() + timeout_s
    while pids_listening_on(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids_listening_on(port):
        log.warning("killing unresponsive admin process %d", pid)
        os.kill(pid, signal.SIGKILL)


def start(settings: Settings) -> Runtime:
    os.environ.setdefault("THESPIAN_BASE_IPADDR", "127.0.0.1")
    replace_stale_admin(settings.admin_port)
    # The admin and logger processes are forked here and inherit these dispositions.
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        asys = ActorSystem(
            BASE,
            capabilities={"Admin Port": settings.admin_port},
            logDefs=_log_defs(settings.log_level, settings.log_format),
            transientUnique=True,
        )
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    try:
        director = asys.createActor(Director, globalName="director")
        template = ShardSettings(
            0,
            settings.shards,
            settings.store_config(),
            snapshot_every=settings.snapshot_every,
            passivate_after_s=settings.passivate_after_s,
        )
        directory = asys.ask(director, template, timeout=60)
        if not isinstance(directory, ShardDirectory):
            raise RuntimeError(f"the director did not start the shards: {directory!r}")
    except BaseException:
        asys.shutdown()
        raise
    return Runtime(asys, director, directory.shards, settings.admin_port)


def stop(runtime: Runtime, timeout_s: float = 20.0) -> None:
    pids = []
    try:
        pids = runtime.pids()
    except Exception as exc:
        log.warning("could not list actor processes before shutdown: %s", exc)
    try:
        runtime.asys.ask(runtime.director, Stopping(), timeout=5)
    except Exception as exc:
        log.warning("the director did not acknowledge shutdown: %s", exc)
    runtime.asys.shutdown()
    deadline = time.monotonic() + timeout_s
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        if alive(pid):
            log.warning("actor process %d outlived shutdown; killing it", pid)
            os.kill(pid, signal.SIGKILL)
