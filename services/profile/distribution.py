"""The distribution of last year's spend in bands, and value-class cut points from it (pure).

Ranking every customer needs every customer's spend; counting customers per spend band
needs only a small map that changes by one when a customer's band changes. Bands are 1%
wide (a band's upper bound is at most 1.01 times its lower bound; below 100 fen every
amount is a band of its own), so cut points placed on band bounds are exact to within 1%:
see ``banded_thresholds``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping
from decimal import Decimal

from services.profile.classification import ValueThresholds
from services.profile.policy import ProfilePolicy

BAND_GROWTH = Decimal("1.01")
"""Upper bound of a band / its lower bound, at most (changing it renumbers every band)."""

_TOP = 10**13
"""Spend (minor units) where the last band starts: everything above shares it."""


def _floors() -> tuple[int, ...]:
    floors = [1]
    while floors[-1] < _TOP:
        low = floors[-1]
        floors.append(max(low + 1, int(Decimal(low) * BAND_GROWTH)))
    return tuple(floors)


BAND_FLOORS: tuple[int, ...] = _floors()
"""The least spend of each band, by band number."""


def band_of(spend_minor: int) -> int | None:
    """The band of a 12-month spend; None for no spend (customers without spend are not ranked)."""
    if spend_minor <= 0:
        return None
    return bisect.bisect_right(BAND_FLOORS, spend_minor) - 1


def band_floor(band: int) -> int:
    """The least spend of a band."""
    return BAND_FLOORS[band]


def banded_thresholds(counts: Mapping[int, int], policy: ProfilePolicy) -> ValueThresholds:
    """Value-class cut points from customers counted per band, on the same rule as the ranking.

    The exact rule (``classification.value_thresholds``): a customer is in the top share s
    when fewer than s·n ranked customers spent strictly more. Here: when fewer than s·n are
    in higher bands. Every customer the exact rule puts in a class gets at least that class;
    one gets a better class only if their spend is within 1% below the exact cut point
    (they share its band). Within a band of a single amount the two rules agree.
    """
    bands = sorted((b for b, n in counts.items() if n > 0), reverse=True)
    n = sum(counts[b] for b in bands)
    if n == 0:
        return ValueThresholds(0, 0, 0, 0)
    rules = policy.value_class

    def cut(share: Decimal) -> int:
        position = max(0, math.ceil(share * n) - 1)
        above = 0
        for band in bands:
            above += counts[band]
            if above > position:
                return band_floor(band)
        return band_floor(bands[-1])

    return ValueThresholds(
        important_min=cut(rules.important_top_share),
        major_min=cut(rules.major_top_share),
        ordinary_min=cut(rules.ordinary_top_share),
        ranked=n,
    )


CutPoints = tuple[int, int, int]
"""Least spend of the important, major and ordinary classes."""


def cut_points(thresholds: ValueThresholds | None) -> CutPoints | None:
    """The cut points that decide value classes (None: nobody is ranked, all are ``none``)."""
    if thresholds is None or thresholds.ranked == 0:
        return None
    return (thresholds.important_min, thresholds.major_min, thresholds.ordinary_min)


def affected_bands(
    used: Iterable[CutPoints], now: CutPoints | None, counted: Mapping[int, int]
) -> set[int]:
    """The counted bands whose customers may be classified otherwise now than with ``used``.

    A customer's class depends only on which cut points their spend reaches, so only
    bands between an old and a new cut point move. A record classified while nobody was
    ranked had no spend itself (its own spend is in the distribution it is classified
    with), so such records never need this; without ranking now, nobody has spend.
    """
    moved: set[int] = set()
    if now is None:
        return moved
    for old in set(used):
        for a, b in zip(old, now, strict=True):
            low, high = min(a, b), max(a, b)
            moved |= {band for band in counted if low <= band_floor(band) < high}
    return moved
