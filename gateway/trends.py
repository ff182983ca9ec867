"""Print-quality drift: warn while the grades are still passing but heading for the minimum.

The store keeps, per UTC minute and per measure ("overall" and each ISO/IEC 15415 parameter),
how many graded items there were and their mean and lowest grade (:class:`TrendPoint`). Rejects
only start once an item grades below the minimum; a printhead running dry or a ribbon wearing
lowers symbol contrast and modulation for tens of minutes before that. :func:`drift_warnings`
catches that slide while there is still time to act:

* It takes the per-minute mean grades of the last ``window_minutes`` (the minute ``now_minute``
  included) and needs at least ``min_minutes`` distinct minutes and ``min_items`` items.
* It fits a straight line through them by least squares weighted by items: a minute of many
  items counts more than the half-filled current minute or a minute with one item.
* A minute's mean of n items scatters with variance σ²/n, so the weighted residuals estimate σ²
  and with it the slope's standard error. A slope that does not fall by more than twice its
  standard error is noise (a flat line with scatter) and gives no warning, as does a flat or
  rising line.
* A falling line warns when it reaches the minimum within ``horizon_minutes`` from now or its
  value now is already within ``warn_margin`` of the minimum (a slow fall close to the edge).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class TrendPoint:
    """The graded items of one minute (or of a longer bucket starting at ``minute``)."""

    minute: str  # YYYY-MM-DDTHH:MM, UTC
    parameter: str  # "overall" or a parameter name
    items: int
    grade_mean: float
    grade_min: float
    value_mean: float


@dataclass(frozen=True, slots=True)
class DriftWarning:
    parameter: str
    slope_per_hour: float  # grades per hour (negative: falling)
    current: float  # the fitted grade now
    minimum: float
    minutes_to_minimum: float | None  # None: the fitted grade is at or below the minimum already
    window_minutes: float  # the line was fitted over this many minutes up to now
    text: str


def minutes_between(start: str, end: str) -> float:
    """Minutes from one ``YYYY-MM-DDTHH:MM`` to another."""
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() / 60


def drift_warnings(
    points: Iterable[TrendPoint],
    minimums: Mapping[str, float],
    now_minute: str,
    window_minutes: float = 60,
    horizon_minutes: float = 60,
    warn_margin: float = 0.5,
    min_minutes: int = 5,
    min_items: int = 30,
) -> list[DriftWarning]:
    """Warnings for the measures of ``minimums`` whose grade is drifting down, soonest first
    (those already at the minimum before all others)."""
    series: dict[str, list[tuple[float, float, int]]] = {}  # parameter → (minutes from now, mean, items)
    for p in points:
        age = minutes_between(p.minute, now_minute)
        if p.parameter in minimums and 0 <= age < window_minutes and p.items > 0:
            series.setdefault(p.parameter, []).append((-age, p.grade_mean, p.items))
    warnings = []
    for parameter, samples in series.items():
        minutes = len({t for t, _, _ in samples})
        if minutes < max(min_minutes, 2) or sum(n for _, _, n in samples) < min_items:  # a line needs 2 minutes
            continue
        slope, now_value, slope_error = _weighted_line(samples)
        if slope >= 0 or -slope <= 2 * slope_error:  # not falling, or not told apart from noise
            continue
        minimum = minimums[parameter]
        to_minimum = (minimum - now_value) / slope if now_value > minimum else None
        soon = to_minimum is not None and to_minimum <= horizon_minutes
        close = now_value < minimum + warn_margin
        if not (soon or close):
            continue
        name = "overall grade" if parameter == "overall" else parameter
        where = (
            f"below the minimum {minimum:g}"
            if to_minimum is None
            else f"reaches the minimum {minimum:g} in about {to_minimum:.0f} min"
        )
        text = (
            f"{name} falling {-slope * 60:.1f} grade/h: {now_value:.1f} now, {where}"
            f" (trend of the last {window_minutes:g} min)"
        )
        warnings.append(DriftWarning(parameter, slope * 60, now_value, minimum, to_minimum, window_minutes, text))
    return sorted(warnings, key=lambda w: (w.minutes_to_minimum is not None, w.minutes_to_minimum or 0.0))


def _weighted_line(samples: list[tuple[float, float, int]]) -> tuple[float, float, float]:
    """Items-weighted least squares of mean grade against time (minutes, 0 = now), for samples
    of at least two distinct minutes: (slope per minute, value now, standard error of the slope)."""
    weights = sum(n for _, _, n in samples)
    t_mean = sum(t * n for t, _, n in samples) / weights
    y_mean = sum(y * n for _, y, n in samples) / weights
    spread = sum(n * (t - t_mean) ** 2 for t, _, n in samples)
    slope = sum(n * (t - t_mean) * (y - y_mean) for t, y, n in samples) / spread
    intercept = y_mean - slope * t_mean
    # var(slope) = σ² / Σ n (t - t̄)², σ² (one item's variance) estimated from the weighted
    # residuals with two degrees of freedom taken by the line.
    residual = sum(n * (y - intercept - slope * t) ** 2 for t, y, n in samples)
    item_variance = residual / max(len(samples) - 2, 1)
    return slope, intercept, math.sqrt(item_variance / spread)
