"""Runs the whole server: actor system first (before any thread), then the gateway."""

from __future__ import annotations

import asyncio
import logging
import resource
import signal

from actors.runtime.tuning import GC_LATENCY, tune_gc, tune_malloc
from server import actorsys
from server.admin.app import start_admin
from server.config import Settings
from server.gateway import admission
from server.gateway.server import Gateway

log = logging.getLogger("treasure")


def raise_open_files_limit() -> None:
    """Each connection is a file descriptor: allow as many as the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run(settings: Settings) -> None:
    raise_open_files_limit()
    tune_malloc()  # before the actor system forks: its processes inherit it
    runtime = actorsys.start(settings)
    try:
        with asyncio.Runner(loop_factory=admission.new_event_loop) as runner:
            runner.run(_serve(settings, runtime))
    finally:
        actorsys.stop(runtime)
        log.info("actor system stopped; bye")


async def _serve(settings: Settings, runtime: actorsys.Runtime) -> None:
    gateway = Gateway(settings, runtime)
    await gateway.start()
    tune_gc(GC_LATENCY)
    admin = await start_admin(settings, runtime, gateway)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "treasure server ready at %s (store %s, %d shards, thespian admin port %d)",
        gateway.url,
        settings.store,
        settings.shards,
        settings.admin_port,
    )
    await stop.wait()
    log.info("shutting down: finishing in-flight commands, closing clients with 1001")
    await admin.stop()
    await gateway.stop()
