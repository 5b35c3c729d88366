"""The gateway's command metrics, counted in plain dicts, render as prometheus_client's
own ``Counter`` and ``Histogram`` would have rendered the same updates."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from server.gateway.metrics import LATENCY_BUCKETS, Metrics

TYPES = st.sampled_from(["join_hunt", "leave_hunt", "ping"])
OUTCOMES = st.sampled_from(["ok", "rate_limited", "not_found"])
ELAPSED = st.one_of(
    st.none(),
    st.sampled_from([*LATENCY_BUCKETS, 0.0, 99.0]),  # on a bound, and past the last
    st.floats(min_value=0, max_value=20, allow_nan=False),
)


def _samples(text: bytes, prefix: str) -> list[str]:
    lines = text.decode().splitlines()
    return sorted(line for line in lines if line.startswith(prefix) and "_created" not in line)


@given(st.lists(st.tuples(TYPES, OUTCOMES, ELAPSED), max_size=60))
def test_command_metrics_render_as_prometheus_client_would(
    updates: list[tuple[str, str, float | None]],
) -> None:
    ours = Metrics()
    theirs = CollectorRegistry()
    commands = Counter("treasure_commands", "c", ["type"], registry=theirs)
    replies = Counter("treasure_replies", "r", ["type", "outcome"], registry=theirs)
    latency = Histogram(
        "treasure_command_seconds", "l", ["type"], buckets=LATENCY_BUCKETS, registry=theirs
    )
    for t, outcome, elapsed in updates:
        ours.command(t)
        ours.outcome(t, outcome, elapsed)
        commands.labels(t).inc()
        replies.labels(t, outcome).inc()
        if elapsed is not None:
            latency.labels(t).observe(elapsed)
    for prefix in ("treasure_commands", "treasure_replies", "treasure_command_seconds"):
        assert _samples(generate_latest(ours.registry), prefix) == _samples(
            generate_latest(theirs), prefix
        )
