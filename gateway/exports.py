"""Exports of the review store for a time range or a production order: CSV (every item with its
grade parameters, for a spreadsheet) and a printable report (HTML, and PDF through WeasyPrint)
with the totals, the grade charts and the list of items. Used by the web UI and
``udigate rejects export``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote

import jinja2

from vision.report import grade_letter

from .charts import trend_chart_svg
from .config import GRADE_PARAMETERS, Config
from .reasons import REASONS
from .review import DISPOSITIONS, Filters, Item, ReviewIndex
from .trends import TrendPoint

REPORT_ROWS = 2000  # the printable report lists at most this many items (the CSV has them all)
CSV_CHUNK_ROWS = 200  # a CSV goes out in chunks of this many rows, never whole in memory
MAX_CHART_POINTS = 240
# Every parameter any grading method reports, in a stable order (the CSV's columns).
PARAMETERS = tuple(dict.fromkeys(name for names in GRADE_PARAMETERS.values() for name in names))
# What the parameters of ISO/IEC 15415 and TR 29158 measure, for titles and the grade table.
PARAMETER_NAMES = {
    "Decode": "decode",
    "SC": "symbol contrast",
    "CC": "cell contrast",
    "MOD": "modulation",
    "CM": "cell modulation",
    "RM": "reflectance margin",
    "MR": "minimum reflectance",
    "FPD": "fixed pattern damage",
    "AN": "axial non-uniformity",
    "GN": "grid non-uniformity",
    "UEC": "unused error correction",
    "PG": "print growth",
}


class ExportError(RuntimeError):
    """An export that cannot be made, with why."""


def safe_name(text: str) -> str:
    """``text`` reduced to letters, digits, '-', '_' and '.' (for a file name); never starting
    or ending with '.' or '-' (no "..", no hidden file, no name read as a command's option)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.-") or "_"


def local_time(timestamp: str | None, milliseconds: bool = False) -> str:
    """A stored UTC timestamp in the gateway's local time, as the plant reads clocks."""
    if not timestamp:
        return ""
    moment = datetime.fromisoformat(timestamp).astimezone()
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    return f"{text}.{moment.microsecond // 1000:03d}" if milliseconds else text


def minimums(config: Config, parameters) -> dict[str, float]:
    """The grade each measure must keep: min_grade, or a parameter's own higher minimum."""
    grading = config.grading
    found = {"overall": grading.min_grade}
    for name in parameters:
        if name != "overall":
            found[name] = max(grading.min_grade, grading.min_parameters.get(name, 0.0))
    return found


def bucketed(points: list[TrendPoint], minutes: int) -> list[TrendPoint]:
    """Per-minute points merged into ``minutes``-wide buckets (items-weighted), for long periods."""
    if minutes <= 1:
        return points
    merged: dict[tuple[str, str], list[float]] = {}
    for p in points:
        moment = datetime.fromisoformat(p.minute + ":00+00:00")
        start = moment - timedelta(minutes=(moment.hour * 60 + moment.minute) % minutes)
        slot = merged.setdefault((start.strftime("%Y-%m-%dT%H:%M"), p.parameter), [0, 0.0, math.inf, 0.0])
        slot[0] += p.items
        slot[1] += p.grade_mean * p.items
        slot[2] = min(slot[2], p.grade_min)
        slot[3] += p.value_mean * p.items
    return [
        TrendPoint(minute, parameter, int(n), total / n, low, values / n)
        for (minute, parameter), (n, total, low, values) in sorted(merged.items())
    ]


def trend_charts(
    index: ReviewIndex, config: Config, since: datetime, until: datetime | None, warnings=()
) -> list[tuple[str, str]]:
    """(measure, SVG) for "overall" and every parameter graded in the period, at most
    MAX_CHART_POINTS points each; a drift warning's projection is drawn on its chart."""
    end = until or datetime.now(UTC)
    points = index.trend(since.strftime("%Y-%m-%dT%H:%M"), until.strftime("%Y-%m-%dT%H:%M") if until else None)
    points = bucketed(points, max(1, math.ceil((end - since).total_seconds() / 60 / MAX_CHART_POINTS)))
    limits = minimums(config, {p.parameter for p in points})
    by_parameter = {w.parameter: w for w in warnings}
    charts = []
    # the standard's order; Decode is A for every graded item, nothing to watch
    charted = ["overall", *(name for name in PARAMETERS if name in limits and name != "Decode")]
    for name in charted + sorted(set(limits) - set(charted) - {"Decode"}):
        title = "overall grade" if name == "overall" else f"{name}: {PARAMETER_NAMES.get(name, name)}"
        svg = trend_chart_svg(
            points, name, limits[name], config.grading.warn_margin, title, warning=by_parameter.get(name)
        )
        charts.append((name, svg))
    return charts


def report_charts(index: ReviewIndex, config: Config, filters: Filters, warnings=()) -> list[tuple[str, str]]:
    """The charts of a report: over its period, the one asked for, else from its first item on
    (the last day when it has none)."""
    since = filters.since or index.totals(filters).first
    start = datetime.fromisoformat(since) if since else datetime.now(UTC) - timedelta(days=1)
    until = datetime.fromisoformat(filters.until) if filters.until else None
    return trend_charts(index, config, start, until, warnings)


# -- CSV ------------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "id record_id time_utc time_local site line job run_id item_id verdict reason reasons grade quality weakest"
    " data di lot serial expiry"
).split()
CSV_TAIL = "damaged_codewords disposition disposition_by disposition_at disposition_comment image".split()


def csv_chunks(index: ReviewIndex, filters: Filters, data_dir: Path) -> Iterator[bytes]:
    """The matching items, oldest first, as UTF-8 CSV with a byte order mark (so that a
    spreadsheet opens Chinese text right), in chunks of CSV_CHUNK_ROWS rows."""
    header = [*CSV_COLUMNS, *(f"{p}_{kind}" for p in PARAMETERS for kind in ("grade", "value")), *CSV_TAIL]
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer)
    writer.writerow(header)
    for rows, item in enumerate(index.iterate(filters), 1):
        writer.writerow([_cell(value) for value in _csv_row(item, data_dir)])
        if rows % CSV_CHUNK_ROWS == 0:
            yield _take(buffer)
    if rest := _take(buffer):
        yield rest


def _take(buffer: io.StringIO) -> bytes:
    """What the buffer holds, encoded; the buffer emptied."""
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text.encode("utf-8")


def _csv_row(item: Item, data_dir: Path) -> list:
    record = _read_record(data_dir, item)
    pi = record.get("pi") or {}
    grade = record.get("grade") or {}
    parameters = grade.get("parameters") or {}
    disposition = item.disposition
    return [
        item.id,
        item.record_id,
        item.timestamp,
        local_time(item.timestamp, milliseconds=True),
        item.site,
        item.line,
        item.job,
        item.run_id,
        item.item_id,
        item.verdict,
        item.reason,
        ";".join(item.reasons),
        item.grade,
        item.quality,
        item.weakest,
        None if item.data is None else item.data.replace("\x1d", "<GS>"),
        record.get("di"),
        pi.get("lot"),
        pi.get("serial"),
        pi.get("expiry"),
        *(value for name in PARAMETERS for value in _parameter(parameters, name)),
        " ".join(str(k) for k in grade.get("damaged_codewords") or ()),
        disposition.disposition if disposition else None,
        disposition.user if disposition else None,
        disposition.at if disposition else None,
        disposition.comment if disposition else None,
        item.files.get("image"),
    ]


def _parameter(parameters: dict, name: str) -> tuple:
    p = parameters.get(name)
    return (p["grade"], p["value"]) if p else (None, None)


def _cell(value):
    """Text that a spreadsheet would run as a formula gets a leading apostrophe: label data and
    comments come from outside."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _read_record(data_dir: Path, item: Item) -> dict:
    try:
        return json.loads((data_dir / item.files["record"]).read_text(encoding="utf-8"))
    except (KeyError, OSError, ValueError):
        return {}  # the index row still goes out; its record-only columns stay empty


# -- the printable report ---------------------------------------------------------------------------

_templates = jinja2.Environment(loader=jinja2.PackageLoader("gateway.web", "templates"), autoescape=True)


def report_html(
    index: ReviewIndex,
    filters: Filters,
    config: Config,
    charts: list[tuple[str, str]],
    generated_by: str,
    image_root: str = "",
) -> str:
    """The report as one self-contained HTML page (inline CSS and SVG; pictures from
    ``image_root``, by default the web UI's /files/)."""
    totals = index.totals(filters)
    items = []
    for item in index.iterate(filters):
        if len(items) == REPORT_ROWS:
            break
        items.append(item)
    try:
        version = metadata.version("udigate")
    except metadata.PackageNotFoundError:
        version = "(not installed)"
    return _templates.get_template("report.html").render(
        line=config.line,
        filters=filters,
        totals=totals,
        charts=charts,
        items=items,
        left_out=totals.items - len(items),
        reasons=REASONS,
        dispositions={"open": "open", **DISPOSITIONS},
        generated_at=datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z"),
        generated_by=generated_by,
        version=version,
        image_root=image_root or "/files/",
        local=local_time,
        letter=grade_letter,
    )


def report_pdf(html: str, data_dir: Path) -> bytes:
    """The report as PDF (WeasyPrint); its pictures may only come from files under ``data_dir``."""
    try:
        import weasyprint
    except (ImportError, OSError) as exc:  # OSError: Pango missing
        raise ExportError(
            f"PDF reports need WeasyPrint and Pango (Debian: libpango-1.0-0 libpangoft2-1.0-0; ./dev installs them): "
            f"{exc}"
        ) from None
    root = data_dir.resolve()

    class StoreOnly(weasyprint.URLFetcher):
        """Pictures of the store only: a report never reaches out to the network."""

        def fetch(self, url, headers=None):
            path = Path(unquote(url.removeprefix("file://"))).resolve() if url.startswith("file://") else None
            if path is None or not path.is_relative_to(root):
                raise ValueError(f"the report may only show pictures of the store, not {url}")
            return super().fetch(url, headers)

    return weasyprint.HTML(string=html, base_url=root.as_uri() + "/", url_fetcher=StoreOnly()).write_pdf()
