"""Limits against abusive clients, with documented defaults.

- at most ``max_connections`` connections in all (HTTP 503 beyond);
- per remote address, at most ``max_conns_per_ip`` connections (HTTP 429) and
  ``hello_rate_per_ip`` registrations per second (``rate_limited``);
- per player, across all its connections, ``answer_rate`` answers and
  check-ins per second (``rate_limited``), against brute-forcing answers.

Loopback addresses are exempt from the per-address limits unless
``limit_loopback`` is set, so a load test of 10,000 bots from one machine works.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from dataclasses import dataclass

from server.gateway.connection import TokenBucket

TRACKED_ADDRESSES = 100_000


@dataclass(frozen=True)
class Limits:
    max_connections: int = 20_000
    max_conns_per_ip: int = 200
    hello_rate_per_ip: float = 5.0
    hello_burst_per_ip: int = 50
    answer_rate: float = 10.0
    answer_burst: int = 20
    limit_loopback: bool = False


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class Guard:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.open = 0
        self.per_ip: dict[str, int] = defaultdict(int)
        self._hellos: dict[str, TokenBucket] = {}
        self._answers: dict[str, TokenBucket] = {}
        self.refused: dict[str, int] = defaultdict(int)

    def _limited(self, address: str) -> bool:
        return self.limits.limit_loopback or not is_loopback(address)

    def check(self, address: str) -> str | None:
        """None if a new connection from ``address`` may open, else why not."""
        if self.open >= self.limits.max_connections:
            self.refused["max_connections"] += 1
            return "server full"
        if self._limited(address) and self.per_ip[address] >= self.limits.max_conns_per_ip:
            self.refused["per_ip"] += 1
            return "too many connections from your address"
        return None

    def admit(self, address: str) -> None:
        self.open += 1
        self.per_ip[address] += 1

    def release(self, address: str) -> None:
        self.open -= 1
        self.per_ip[address] -= 1
        if self.per_ip[address] <= 0:
            del self.per_ip[address]

    def allow_registration(self, address: str) -> bool:
        if not self._limited(address):
            return True
        bucket = self._hellos.get(address)
        if bucket is None:
            lim = self.limits
            bucket = self._hellos[address] = TokenBucket(
                lim.hello_rate_per_ip, lim.hello_burst_per_ip
            )
        return bucket.take()

    def allow_answer(self, player: str) -> bool:
        bucket = self._answers.get(player)
        if bucket is None:
            lim = self.limits
            bucket = self._answers[player] = TokenBucket(lim.answer_rate, lim.answer_burst)
        return bucket.take()

    def forget_player(self, player: str) -> None:
        self._answers.pop(player, None)
