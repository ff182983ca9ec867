"""Exports of a real store (written by RejectLog): the CSV, the printable report as HTML and PDF."""

import csv
import io
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from gateway import exports
from gateway.config import RejectLogSection, parse_config
from gateway.rejects import RejectLog
from gateway.review import Filters, ReviewIndex

from .test_rejects import grade, record

START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)  # inside any retention period


def stamp(minutes: float) -> str:
    """A capture time ``minutes`` after START, as the records store it."""
    return (START + timedelta(minutes=minutes)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def fill_store(data_dir: Path) -> ReviewIndex:
    """Items 1 … 4 of one run: a reject with Chinese text and a data field that reads like a
    spreadsheet formula, a reject failing on two reasons with a low SC, a kept pass and a
    no-read without a frame whose JSON record is then lost."""
    log = RejectLog(data_dir, RejectLogSection(keep_passes_every=1, min_free_mb=0))
    log.start()
    frame = np.random.default_rng(0).integers(0, 255, (120, 160), np.uint8)
    pi = {"lot": "批次A", "serial": "S1", "expiry": "2028-11-22"}
    log.observe(
        record(1, ("wrong_lot",), stamp(0), grade=grade(3.0), data="=HYPERLINK(1)", di="06901234567892", pi=pi),
        frame,
    )
    log.observe(record(2, ("grade_below_min", "expired"), stamp(60), grade=grade(1.0, sc=0.0)), frame)
    log.observe(record(3, (), stamp(90), grade=grade(4.0), data="01\x1d21X"), frame)
    log.observe(record(4, ("no_read",), stamp(120)), None)
    log.close()
    index = ReviewIndex(data_dir)
    lost = next(i for i in index.iterate() if i.item_id == 4)
    (data_dir / lost.files["record"]).unlink()
    return index


@pytest.fixture
def store(tmp_path):
    data_dir = tmp_path / "data"
    index = fill_store(data_dir)
    yield index, parse_config(f'[line]\ndata_dir = "{data_dir}"\n')
    index.close()


def item_with(index: ReviewIndex, item_id: int):
    return next(i for i in index.iterate() if i.item_id == item_id)


def read_csv(data: bytes) -> tuple[list[str], list[dict]]:
    """Header and rows of an exported CSV, after checking its byte order mark."""
    assert data.startswith(b"\xef\xbb\xbf") and not data.startswith(b"\xef\xbb\xbf" * 2)
    reader = csv.DictReader(io.StringIO(data[3:].decode("utf-8"), newline=""))
    rows = list(reader)
    return list(reader.fieldnames), rows


def test_csv_has_every_item_oldest_first_with_its_grades(store):
    index, config = store
    header, rows = read_csv(b"".join(exports.csv_chunks(index, Filters(), config.line.data_dir)))
    assert header[:4] == ["id", "record_id", "time_utc", "time_local"] and header[-1] == "image"
    assert header.index("SC_grade") + 1 == header.index("SC_value")
    assert {"CC_grade", "MR_value", "PG_grade"} <= set(header)  # every method's parameters
    assert [r["item_id"] for r in rows] == ["1", "2", "3", "4"]  # the kept pass included
    first, second, passed, lost = rows
    assert first["time_utc"] == stamp(0)
    local = (START.astimezone()).strftime("%Y-%m-%d %H:%M:%S") + ".000"
    assert first["time_local"] == local
    assert (first["di"], first["lot"], first["serial"], first["expiry"]) == (
        "06901234567892",
        "批次A",
        "S1",
        "2028-11-22",
    )
    assert (first["grade"], first["quality"], first["weakest"]) == ("3.0", "3.0/08/660", "SC")
    assert Path(config.line.data_dir / first["image"]).is_file()
    assert (second["reason"], second["reasons"]) == ("grade_below_min", "grade_below_min;expired")
    assert (second["SC_grade"], second["SC_value"], second["MOD_grade"], second["CC_grade"]) == (
        "0.0",
        "0.0",
        "4.0",
        "",
    )
    assert (passed["verdict"], passed["data"], passed["disposition"]) == ("pass", "01<GS>21X", "")
    # the record is gone: the index's columns still go out, the record's stay empty
    assert (lost["reason"], lost["time_utc"], lost["image"]) == ("no_read", stamp(120), "")
    assert lost["di"] == lost["lot"] == lost["SC_grade"] == lost["damaged_codewords"] == ""
    _, rejects = read_csv(b"".join(exports.csv_chunks(index, Filters(verdict="reject"), config.line.data_dir)))
    assert [r["item_id"] for r in rejects] == ["1", "2", "4"]


def test_csv_cells_that_a_spreadsheet_would_run_get_an_apostrophe(store):
    index, config = store
    index.dispose(item_with(index, 1).id, "false_reject", "@SUM(A1) 色带褶皱", "anna")
    index.dispose(item_with(index, 2).id, "confirmed_defect", "-2+3", "li")
    _, rows = read_csv(b"".join(exports.csv_chunks(index, Filters(), config.line.data_dir)))
    assert rows[0]["data"] == "'=HYPERLINK(1)"
    assert (rows[0]["disposition"], rows[0]["disposition_by"]) == ("false_reject", "anna")
    assert rows[0]["disposition_comment"] == "'@SUM(A1) 色带褶皱"
    assert rows[1]["disposition_comment"] == "'-2+3"
    assert rows[2]["data"] == "01<GS>21X"  # harmless text unchanged


def test_csv_comes_in_chunks_of_200_rows_with_one_byte_order_mark(tmp_path):
    log = RejectLog(tmp_path, RejectLogSection(min_free_mb=0))
    log.start()
    for n in range(1, 451):
        log.observe(record(n, ("no_read",), stamp(n / 60)), None)
    log.close()
    index = ReviewIndex(tmp_path)
    chunks = list(exports.csv_chunks(index, Filters(), tmp_path))
    index.close()
    assert [chunk.count(b"\r\n") for chunk in chunks] == [201, 200, 50]  # the header rides with the first
    assert all(not chunk.startswith(b"\xef\xbb\xbf") for chunk in chunks[1:])
    _, rows = read_csv(b"".join(chunks))
    assert [int(r["item_id"]) for r in rows] == list(range(1, 451))


def test_the_report_has_totals_reason_texts_and_escaped_text(store):
    index, config = store
    index.dispose(item_with(index, 1).id, "confirmed_defect", "<script>alert(1)</script> 色带", "li")
    charts = [("overall", "<svg id='chart'></svg>")]
    html = exports.report_html(index, Filters(), config, charts, "<b>tester</b>")
    assert "<h1>Reject report</h1>" in html and "<svg id='chart'></svg>" in html  # the chart as it is
    assert "&lt;script&gt;alert(1)&lt;/script&gt; 色带" in html and "<script>" not in html
    assert "by &lt;b&gt;tester&lt;/b&gt;" in html
    totals = {k: int(v) for k, v in re.findall(r"<tr><th>([^<]+)</th><td>(\d+)</td></tr>", html)}
    assert totals == {"items in the report": 4, "rejects": 3, "kept passes (sample)": 1}
    assert '<td>grade_below_min</td><td class="muted">print quality grade below the line&#39;s minimum</td>' in html
    assert "the lot is not the production order" in html and "no readable Data Matrix on the pack" in html
    dispositions = dict(re.findall(r"<tr><td>(open|confirmed defect|false reject)</td><td>(\d+)</td></tr>", html))
    assert dispositions == {"open": "2", "confirmed defect": "1", "false reject": "0"}
    local = START.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    assert f"<td>{local} to " in html  # the period: from the first item, in local time
    assert "<td>D 1.0/08/660</td>" in html  # grade letter and quality
    thumbs = re.findall(r'<img class="thumb" src="([^"]+)"', html)
    assert len(thumbs) == 3 and all(src.startswith("/files/rejects/") for src in thumbs)  # item 4 has no frame
    assert (config.line.data_dir / thumbs[0].removeprefix("/files/")).is_file()
    root = config.line.data_dir.resolve().as_uri() + "/"
    standalone = exports.report_html(index, Filters(verdict="reject"), config, [], "tester", image_root=root)
    assert f'src="{root}rejects/' in standalone and "rejects and kept passes" not in standalone


def test_the_report_lists_at_most_report_rows_items(store, monkeypatch):
    index, config = store
    monkeypatch.setattr(exports, "REPORT_ROWS", 2)
    html = exports.report_html(index, Filters(), config, [], "tester")
    assert html.count('<td class="data">') == 2
    assert "2 more items are not listed here: the CSV export has every item." in html


def test_the_pdf_report_embeds_the_store_pictures_only(store, tmp_path):
    index, config = store
    root = config.line.data_dir.resolve().as_uri() + "/"
    html = exports.report_html(index, Filters(), config, [], "tester", image_root=root)
    pdf = exports.report_pdf(html, config.line.data_dir)
    assert pdf.startswith(b"%PDF") and b"/Subtype /Image" in pdf
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True).stdout
        assert "Reject report" in text.decode()
    outside = tmp_path / "outside.jpg"
    outside.write_bytes((config.line.data_dir / item_with(index, 1).files["thumb"]).read_bytes())
    sneaky = exports.report_pdf(f'<p>x</p><img src="{outside.as_uri()}">', config.line.data_dir)
    assert sneaky.startswith(b"%PDF") and b"/Subtype /Image" not in sneaky  # not a picture of the store


def test_a_pdf_without_weasyprint_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "weasyprint", None)  # import weasyprint raises ImportError
    with pytest.raises(exports.ExportError, match="libpango-1.0-0 libpangoft2-1.0-0"):
        exports.report_pdf("<p>x</p>", Path("."))


def test_safe_name():
    assert exports.safe_name("PO 12/批次A") == "PO_12_A"
    assert exports.safe_name("line-1.v2") == "line-1.v2"
    assert exports.safe_name("..") == exports.safe_name("") == "_"
    assert exports.safe_name("-rf .hidden") == "rf_.hidden"
