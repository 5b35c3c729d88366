from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from server.client import GameClient, quick_client
from tests.support.server_harness import ServerProcess, start_server, stop_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real server (SQLite, 2 shards) shared by the tests of a module."""
    srv = start_server(tmp_path_factory.mktemp("server") / "data")
    yield srv
    stop_server(srv)
    assert srv.pids() == [], "server processes left after SIGTERM"


@pytest.fixture
async def client(server: ServerProcess) -> AsyncIterator[GameClient]:
    c = await quick_client(server.url, "tester")
    yield c
    await c.close()
    assert c.violations == []


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item) -> Iterator[None]:
    """Keeps each phase's report on the test, for fixtures to see how it went."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def servers(request: pytest.FixtureRequest) -> Iterator[list[ServerProcess]]:
    """Servers a test starts; whatever is still running at the end is killed. When the
    test failed, the servers' last log lines are printed (shown with the failure)."""
    started: list[ServerProcess] = []
    yield started
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        for srv in started:
            print(f"---- last log lines of the server on port {srv.port} ----")
            print("\n".join(srv.lines[-200:]))
    for srv in started:
        srv.kill_all()
        srv.close_pipe()
    for srv in started:
        assert srv.wait_gone() == [], "server processes left behind"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"
