"""Grade trend charts as inline SVG: no script and no external file, so the same markup works in
the web UI, in a printed page and in the PDF report (WeasyPrint renders inline SVG)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from xml.sax.saxutils import escape

from .trends import DriftWarning, TrendPoint, minutes_between

LETTERS = ((4, "A"), (3, "B"), (2, "C"), (1, "D"), (0, "F"))
LEFT, RIGHT, TOP, BOTTOM = 34, 10, 24, 22  # plot margins, px


def trend_chart_svg(
    points: Sequence[TrendPoint],
    parameter: str,
    minimum: float,
    warn_margin: float,
    title: str,
    width: int = 640,
    height: int = 180,
    warning: DriftWarning | None = None,
) -> str:
    """The per-minute mean grade of ``parameter`` (dark line), its lowest grade (light line), the
    minimum (red, dashed) with the warning margin above it (amber band) and, with a warning,
    the fitted trend carried on to where it meets the minimum."""
    series = sorted((p for p in points if p.parameter == parameter), key=lambda p: p.minute)
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}"'
        f' role="img" aria-label="{escape(title, {chr(34): "&quot;"})}" font-family="sans-serif" font-size="10">',
        f'<text x="{LEFT}" y="14" font-size="12" font-weight="bold" fill="#1d2430">{escape(title)}</text>',
    ]

    def y_of(grade: float) -> float:
        return TOP + plot_h * (1 - max(0.0, min(4.0, grade)) / 4)

    band_top, band_bottom = y_of(minimum + warn_margin), y_of(minimum)
    parts.append(
        f'<rect x="{LEFT}" y="{band_top:.1f}" width="{plot_w}" height="{band_bottom - band_top:.1f}" fill="#fff1d6"/>'
    )
    for grade, letter in LETTERS:
        y = y_of(grade)
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e7ee"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 3.5:.1f}" text-anchor="end" fill="#667085">{letter}</text>')
    parts.append(
        f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{band_bottom:.1f}" y2="{band_bottom:.1f}" stroke="#c0262d"'
        f' stroke-dasharray="5 3" stroke-width="1.5"><title>minimum {minimum:g}</title></line>'
    )
    if not series:
        parts.append(
            f'<text x="{LEFT + plot_w / 2}" y="{TOP + plot_h / 2}" text-anchor="middle" fill="#667085">'
            "no graded items in this period</text></svg>"
        )
        return "".join(parts)

    start, end = series[0].minute, series[-1].minute
    measured = max(minutes_between(start, end), 1.0)
    # Room after the last minute for the projection to the minimum, at most as long again as the
    # measured period so that the measurements keep at least half the width.
    ahead = 0.0
    if warning is not None and warning.minutes_to_minimum is not None:
        ahead = min(warning.minutes_to_minimum, measured)
    span = measured + ahead

    def x_of(minute: str) -> float:
        return LEFT + plot_w * minutes_between(start, minute) / span

    for tick, label in _ticks(start, span):
        x = x_of(tick)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{TOP + plot_h}" stroke="#eef1f5"/>')
        anchor = "end" if x > LEFT + plot_w - 14 else "middle"  # the last label inside the picture
        parts.append(f'<text x="{x:.1f}" y="{height - 6}" text-anchor="{anchor}" fill="#667085">{label}</text>')
    lowest = " ".join(f"{x_of(p.minute):.1f},{y_of(p.grade_min):.1f}" for p in series)
    mean = " ".join(f"{x_of(p.minute):.1f},{y_of(p.grade_mean):.1f}" for p in series)
    parts.append(f'<polyline class="lowest" points="{lowest}" fill="none" stroke="#9fb3d1" stroke-width="1"/>')
    parts.append(f'<polyline class="mean" points="{mean}" fill="none" stroke="#1f5fbf" stroke-width="2"/>')
    if len(series) == 1:
        x, y = x_of(series[0].minute), y_of(series[0].grade_mean)
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#1f5fbf"/>')
    if warning is not None:
        x_now, y_now = x_of(end), y_of(warning.current)
        x_then = x_now + plot_w * ahead / span
        y_then = y_of(warning.current + warning.slope_per_hour / 60 * ahead)
        back = min(minutes_between(start, end), warning.window_minutes)  # over the minutes it was fitted to
        x_back = x_now - plot_w * back / span
        y_back = y_of(warning.current - warning.slope_per_hour / 60 * back)
        parts.append(
            f'<polyline class="projection" points="{x_back:.1f},{y_back:.1f} {x_now:.1f},{y_now:.1f}'
            f' {x_then:.1f},{y_then:.1f}" fill="none" stroke="#b86e00" stroke-width="2" stroke-dasharray="6 3">'
            f"<title>{escape(warning.text)}</title></polyline>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _ticks(start: str, span_minutes: float) -> list[tuple[str, str]]:
    """About six (minute, label) ticks on round times, labelled HH:MM (MM-DD for spans of days) in
    the gateway's local time."""
    step = next((s for s in (1, 2, 5, 10, 15, 30, 60, 120, 240, 360, 720, 1440) if span_minutes / s <= 6), 2880)
    first = datetime.fromisoformat(start).replace(tzinfo=UTC)
    # Round in local time, so that a plant half an hour off UTC still gets ticks on its full hours.
    first_local = first.astimezone()
    moment = first + timedelta(minutes=(-(first_local.hour * 60 + first_local.minute)) % step)
    ticks = []
    while (moment - first).total_seconds() / 60 <= span_minutes:
        label = moment.astimezone().strftime("%m-%d" if step >= 720 else "%H:%M")  # as the plant's clocks read
        ticks.append((moment.strftime("%Y-%m-%dT%H:%M"), label))
        moment += timedelta(minutes=step)
    return ticks
