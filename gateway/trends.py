"""Print-quality drift: warn while the grades are still passing but heading for the minimum.

The store keeps, per UTC minute and per measure ("overall" and each ISO/IEC 15415 parameter),
how many graded items there were and their mean and lowest grade (:class:`TrendPoint`).
:func:`drift_warnings` fits a straight line, weighted by items, through the per-minute means of
the last ``window_minutes`` and warns about a measure when the line falls and either reaches
the measure's minimum within ``horizon_minutes`` or is already within ``warn_margin`` of it. A
printhead running dry or a ribbon wearing shows up this way tens of minutes before the first
reject; a flat or rising line, a window with too few minutes or items, or a slope that is small
against the scatter of the means (noise) gives no warning.
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
    minutes_to_minimum: float | None  # None: already below it
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
    """Warnings for the measures of ``minimums`` whose grade is drifting down (soonest first)."""
    series: dict[str, list[tuple[float, float, int]]] = {}  # parameter → (minutes before now, mean, items)
    for p in points:
        age = minutes_between(p.minute, now_minute)
        if p.parameter in minimums and 0 <= age <= window_minutes and p.items > 0:
            series.setdefault(p.parameter, []).append((-age, p.grade_mean, p.items))
    warnings = []
    for parameter, samples in series.items():
        if len(samples) < min_minutes or sum(n for _, _, n in samples) < min_items:
            continue
        fit = _weighted_line(samples)
        if fit is None:
            continue
        slope, now_value, slope_error = fit
        if slope >= 0 or -slope < 2 * slope_error:  # not falling, or not distinguishable from noise
            continue
        minimum = minimums[parameter]
        to_minimum = (minimum - now_value) / slope if now_value > minimum else None
        soon = to_minimum is not None and to_minimum <= horizon_minutes
        close = now_value < minimum + warn_margin
        if not (soon or close):
            continue
        name = "overall grade" if parameter == "overall" else parameter
        when = "is below it now" if to_minimum is None else f"reaches it in about {to_minimum:.0f} min"
        text = (
            f"{name} falling {-slope * 60:.1f} grade/h: {now_value:.1f} now, minimum {minimum:g} {when}"
            f" (trend of the last {window_minutes:g} min)"
        )
        warnings.append(DriftWarning(parameter, slope * 60, now_value, minimum, to_minimum, text))
    return sorted(warnings, key=lambda w: (w.minutes_to_minimum is not None, w.minutes_to_minimum or 0.0))


def _weighted_line(samples: list[tuple[float, float, int]]) -> tuple[float, float, float] | None:
    """Items-weighted least squares of mean grade against time: (slope per minute, value at
    time 0 = now, standard error of the slope); None when all samples share one minute."""
    weights = sum(n for _, _, n in samples)
    t_mean = sum(t * n for t, _, n in samples) / weights
    y_mean = sum(y * n for _, y, n in samples) / weights
    spread = sum(n * (t - t_mean) ** 2 for t, _, n in samples)
    if spread <= 0:
        return None
    slope = sum(n * (t - t_mean) * (y - y_mean) for t, y, n in samples) / spread
    intercept = y_mean - slope * t_mean
    # A minute's mean of n items scatters with variance σ²/n, so n·residual² estimates σ²:
    # var(slope) = σ² / Σ n (t - t̄)².
    residual = sum(n * (y - intercept - slope * t) ** 2 for t, y, n in samples)
    item_variance = residual / max(len(samples) - 2, 1)
    return slope, intercept, math.sqrt(item_variance / spread)
