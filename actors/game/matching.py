"""How an answer or a GPS check-in is judged."""

from __future__ import annotations

import math
import unicodedata

EARTH_RADIUS_M = 6_371_008.8


def normalize_answer(text: str) -> str:
    """NFKC, case folding, trimmed, inner runs of white space folded to one space."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(folded.split())


def answers_match(given: str, expected: str) -> bool:
    return normalize_answer(given) == normalize_answer(expected)


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine) in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))
