import random
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta

from gateway.charts import trend_chart_svg
from gateway.trends import TrendPoint, drift_warnings

NOW = datetime(2026, 11, 23, 10, 0)
SVG = "{http://www.w3.org/2000/svg}"


def series(grade_at, minutes=40, items=10, parameter="SC"):
    """Per-minute points ending at NOW; grade_at(minutes before now) gives the mean."""
    return [
        TrendPoint((NOW - timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M"), parameter, items, g, g - 0.5, 20 * g)
        for m in range(minutes, -1, -1)
        if (g := grade_at(m)) is not None
    ]


def warnings(points, **options):
    return drift_warnings(points, {"SC": 1.5, "overall": 1.5}, NOW.strftime("%Y-%m-%dT%H:%M"), **options)


def test_a_steady_fall_warns_with_the_time_left():
    (warning,) = warnings(series(lambda m: 2.5 + m / 60))  # 1 grade an hour, 2.5 now
    assert warning.parameter == "SC" and abs(warning.slope_per_hour + 1.0) < 1e-6
    assert abs(warning.current - 2.5) < 1e-6 and abs(warning.minutes_to_minimum - 60) < 1e-6
    assert (
        warning.text
        == "SC falling 1.0 grade/h: 2.5 now, reaches the minimum 1.5 in about 60 min (trend of the last 60 min)"
    )


def test_a_fall_beyond_the_horizon_does_not_warn_until_it_nears_the_minimum():
    assert warnings(series(lambda m: 3.5 + m / 120)) == []  # 4 h away
    (close,) = warnings(series(lambda m: 1.8 + m / 600))  # slow, but within the margin already
    assert close.minutes_to_minimum > 60 and close.current < 2.0


def test_flat_rising_and_noisy_series_do_not_warn():
    assert warnings(series(lambda m: 3.0)) == []
    assert warnings(series(lambda m: 2.0 - m / 60)) == []
    rng = random.Random(4)
    noisy = series(lambda m: 2.2 + rng.gauss(0, 0.4))
    assert warnings(noisy) == []


def test_too_little_data_does_not_warn():
    assert warnings(series(lambda m: 2.5 + m / 60, minutes=3)) == []  # 4 minutes
    assert warnings(series(lambda m: 2.5 + m / 60, minutes=10, items=2)) == []  # 22 items
    assert warnings(series(lambda m: 2.5 + m / 60, items=1))  # 41 items, one a minute, are enough


def test_already_below_the_minimum_warns_first():
    points = series(lambda m: 1.4 + m / 60, parameter="SC") + series(lambda m: 2.3 + m / 60, parameter="overall")
    below, soon = warnings(points)
    assert (below.parameter, below.minutes_to_minimum) == ("SC", None)
    assert below.text.startswith("SC falling 1.0 grade/h: 1.4 now, below the minimum 1.5")
    assert soon.parameter == "overall" and 45 < soon.minutes_to_minimum < 50
    assert soon.text.startswith("overall grade falling 1.0 grade/h: 2.3 now, reaches the minimum 1.5 in about 48 min")


def test_points_outside_the_window_and_unknown_parameters_are_ignored():
    old_fall = series(lambda m: 2.0 + m / 30 if m > 70 else None, minutes=120)
    assert warnings(old_fall + series(lambda m: 3.0, minutes=30)) == []
    assert warnings(series(lambda m: 2.5 + m / 60, parameter="MOD")) == []
    # The last 60 minutes are the minutes 0 … 59 before now: one more point 60 minutes back
    # would be the fifth minute this fall needs.
    four_minutes = series(lambda m: 2.0 + m / 10 if m < 4 or m == 60 else None, minutes=60, items=20)
    assert len(four_minutes) == 5 and warnings(four_minutes) == []
    assert warnings(four_minutes, window_minutes=61)


def test_minutes_are_counted_once_however_many_rows_they_have():
    """The fall needs 5 distinct minutes: rows of two stores for the same 4 minutes are not 8."""
    four_minutes = series(lambda m: 2.5 + m / 60, minutes=3, items=20)
    assert warnings(four_minutes + four_minutes) == []
    assert warnings(series(lambda m: 2.5 + m / 60, minutes=4, items=20))


def test_the_chart_draws_every_minute_the_minimum_and_the_projection():
    points = series(lambda m: 2.5 + m / 60)
    (warning,) = warnings(points)
    svg = trend_chart_svg(points, "SC", 1.5, 0.5, "SC <symbol contrast> & more", warning=warning)
    root = ET.fromstring(svg)
    mean = root.find(f"{SVG}polyline[@class='mean']")
    assert len(mean.get("points").split()) == len(points)
    ys = [float(p.split(",")[1]) for p in mean.get("points").split()]
    assert ys == sorted(ys)  # falling grade: y grows down the page
    projection = root.find(f"{SVG}polyline[@class='projection']")
    xs = [float(p.split(",")[0]) for p in projection.get("points").split()]
    assert xs == sorted(xs) and xs[-1] <= 640 - 10  # carried forward, inside the plot
    labels = [t.text for t in root.iter(f"{SVG}text")]
    assert any(len(label) == 5 and label[2] == ":" for label in labels)  # HH:MM ticks
    assert {"A", "B", "C", "D", "F"} <= set(labels)
    assert root.find(f"{SVG}text").text == "SC <symbol contrast> & more"  # escaped in the markup
    assert "&lt;symbol contrast&gt; &amp; more" in svg
    dashed = [line for line in root.iter(f"{SVG}line") if line.get("stroke") == "#c0262d"]
    assert len(dashed) == 1  # the minimum


def test_an_empty_period_says_so_and_one_point_is_visible():
    empty = ET.fromstring(trend_chart_svg([], "SC", 1.5, 0.5, "SC"))
    assert any(t.text == "no graded items in this period" for t in empty.iter(f"{SVG}text"))
    one = ET.fromstring(trend_chart_svg(series(lambda m: 3.0, minutes=0), "SC", 1.5, 0.5, "SC"))
    assert one.find(f"{SVG}circle") is not None
