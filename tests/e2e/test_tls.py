"""wss:// with --tls-cert/--tls-key, and no secret in what the server logs."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from server.client import GameClient
from tests.support.server_harness import start_server, stop_server


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate (apt-get install openssl)")
    key, crt = tmp_path / "key.pem", tmp_path / "cert.pem"
    make = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    names = ["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(
        [*make, "-keyout", str(key), "-out", str(crt), *names],
        check=True,
        capture_output=True,
    )
    return crt, key


async def test_a_game_over_wss_and_no_secret_in_the_log(
    tmp_path: Path, cert: tuple[Path, Path]
) -> None:
    crt, key = cert
    srv = start_server(tmp_path / "data", "--tls-cert", str(crt), "--tls-key", str(key))
    try:
        assert srv.url.startswith("wss://")
        trusted = ssl.create_default_context(cafile=str(crt))
        client = GameClient(srv.url, name="secure")
        await client.connect(ssl=trusted)
        welcome = await client.hello()
        clues = [{"text": "t", "answer": "hidden-answer", "points": 3}]
        hunt = (await client.request("create_hunt", name="tls", clues=clues))["hunt_id"]
        assert (await client.request("get_hunt", hunt_id=hunt))["t"] == "ok"
        await client.close()

        plain = GameClient(srv.url.replace("wss://", "ws://"))
        with pytest.raises(Exception):  # noqa: B017 - a plain client cannot talk to it
            await plain.connect(open_timeout=5)

        untrusting = GameClient(srv.url)
        with pytest.raises(ssl.SSLCertVerificationError):
            await untrusting.connect()
    finally:
        stop_server(srv)
    assert srv.pids() == []
    log = "\n".join(srv.lines)
    assert welcome["token"] not in log and welcome["token"].split(".")[1] not in log
    assert "hidden-answer" not in log
