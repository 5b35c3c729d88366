"""The admin token: given (flag or environment), else generated once into the data directory."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

TOKEN_FILE = "admin-token"


def load_or_create(given: str | None, data_dir: Path) -> tuple[str, Path | None]:
    """The token and the file it lives in (None when it was given)."""
    if given:
        return given, None
    path = data_dir / TOKEN_FILE
    if path.exists():
        token = path.read_text().strip()
        if token:
            return token, path
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.chmod(path, 0o600)
    return token, path


def token_id(token: str) -> str:
    """A short, non-secret name of a token for the logs."""
    return "tok-" + hashlib.sha256(token.encode()).hexdigest()[:8]


def matches(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())
