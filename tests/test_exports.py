"""Exports of a real store (written by RejectLog) and the ``udigate rejects`` / ``user hash``
commands run as a user would."""

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from argon2 import PasswordHasher

from gateway import exports
from gateway.config import RejectLogSection, parse_config
from gateway.rejects import RejectLog
from gateway.review import Filters, ReviewIndex

from .test_rejects import grade, record

UDIGATE = [sys.executable, "-m", "gateway.cli"]


@pytest.fixture
def filled(tmp_path):
    """A store of four items: two rejects with grades, a kept pass, a reject whose record was lost."""
    data_dir = tmp_path / "data"
    log = RejectLog(data_dir, RejectLogSection(keep_passes_every=1))
    log.start()
    frame = np.random.default_rng(0).integers(0, 255, (120, 160), np.uint8)
    log.observe(
        record(1, ("wrong_lot",), grade=grade(3.0), data="=HYPERLINK(1)", pi={"lot": "批次A", "serial": "S1"}),
        frame,
    )
    log.observe(
        record(2, ("grade_below_min", "expired"), grade=grade(1.0, sc=0.0), timestamp="2026-11-23T09:00:00.000Z"), frame
    )
    log.observe(record(3, (), grade=grade(4.0), timestamp="2026-11-23T09:30:00.000Z"), frame)
    log.observe(record(4, ("no_read",), timestamp="2026-11-23T10:00:00.000Z"), None)
    log.close()
    index = ReviewIndex(data_dir)
    lost = next(i for i in index.iterate() if i.item_id == 4)
    (data_dir / lost.files["record"]).unlink()
    config_file = tmp_path / "line.toml"
    config_file.write_text(f'[line]\ndata_dir = "{data_dir}"\n')
    return index, parse_config(config_file.read_text()), config_file


def read_csv(data: bytes) -> list[dict]:
    assert data.startswith(b"\xef\xbb\xbf")  # the BOM: spreadsheets open UTF-8 right
    return list(csv.DictReader(io.StringIO(data[3:].decode("utf-8"))))


def test_csv_has_every_item_with_its_grades_and_guards_formulas(filled):
    index, config, _ = filled
    index.dispose(next(index.iterate()).id, "false_reject", "@SUM(A1) ribbon", "anna")
    rows = read_csv(b"".join(exports.csv_chunks(index, Filters(), config.line.data_dir)))
    assert [r["item_id"] for r in rows] == ["1", "2", "3", "4"]  # oldest first, the pass included
    first, second, _, lost = rows
    assert first["data"] == "'=HYPERLINK(1)" and first["lot"] == "批次A" and first["serial"] == "S1"
    assert (first["disposition"], first["disposition_by"], first["disposition_comment"]) == (
        "false_reject",
        "anna",
        "'@SUM(A1) ribbon",
    )
    assert second["reasons"] == "grade_below_min;expired" and second["SC_grade"] == "0.0"
    assert second["MOD_grade"] == "4.0" and second["SC_value"] == "0.0" and second["weakest"] == "SC"
    assert lost["reason"] == "no_read" and lost["lot"] == "" and lost["SC_grade"] == ""  # record gone, row kept
    only_rejects = read_csv(b"".join(exports.csv_chunks(index, Filters(verdict="reject"), config.line.data_dir)))
    assert [r["item_id"] for r in only_rejects] == ["1", "2", "4"]


def test_the_report_has_totals_charts_and_escaped_text(filled):
    index, config, _ = filled
    item = next(index.iterate())
    index.dispose(item.id, "confirmed_defect", "<script>alert(1)</script>", "li")
    charts = [("overall", "<svg id='chart'></svg>")]
    html = exports.report_html(index, Filters(verdict="reject"), config, charts, "tester")
    assert "Reject report" in html and "<svg id='chart'></svg>" in html and "by tester" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert "the lot is not the production order" in html  # reason texts
    assert "<tr><td>confirmed defect</td><td>1</td></tr>" in html and "<tr><td>open</td><td>2</td></tr>" in html
    assert html.count('class="thumb"') == 2  # items 1 and 2 have pictures, item 4 has none
    assert 'src="/files/rejects/' in html


def test_the_pdf_report_embeds_the_store_pictures_only(filled, tmp_path):
    index, config, _ = filled
    root = config.line.data_dir.resolve().as_uri() + "/"
    html = exports.report_html(index, Filters(), config, [], "tester", image_root=root)
    pdf = exports.report_pdf(html, config.line.data_dir)
    assert pdf.startswith(b"%PDF") and b"/Subtype /Image" in pdf
    outside = tmp_path / "outside.png"
    outside.write_bytes((config.line.data_dir / next(index.iterate()).files["thumb"]).read_bytes())
    sneaky = exports.report_pdf(f'<p>x</p><img src="{outside.as_uri()}">', config.line.data_dir)
    assert b"/Subtype /Image" not in sneaky  # refused: not a picture of the store


def udigate(*args, stdin=None, cwd=None):
    return subprocess.run([*UDIGATE, *args], capture_output=True, text=True, input=stdin, timeout=120, cwd=cwd)


def test_rejects_list_show_and_export_commands(filled, tmp_path):
    index, _, config_file = filled
    listing = udigate("rejects", "list", "--config", str(config_file), "--json")
    assert listing.returncode == 0, listing.stderr
    assert [json.loads(line)["item_id"] for line in listing.stdout.splitlines()] == [4, 2, 1]
    passes = udigate("rejects", "list", "--config", str(config_file), "--passes", "--json")
    assert [json.loads(line)["item_id"] for line in passes.stdout.splitlines()] == [3]
    table = udigate("rejects", "list", "--config", str(config_file), "--reason", "expired", "--since", "2026-11-23")
    assert "grade_below_min, expired" in table.stdout and "1 of 1 matching" in table.stdout

    item_id = next(i.id for i in index.iterate() if i.item_id == 2)
    show = udigate("rejects", "show", "--config", str(config_file), str(item_id))
    assert show.returncode == 0 and "reason grade_below_min" in show.stdout and "SC" in show.stdout
    overlay_line = next(line for line in show.stdout.splitlines() if line.strip().startswith("thumb"))
    assert Path(overlay_line.split()[-1]).is_file()  # absolute paths the engineer can open
    missing = udigate("rejects", "show", "--config", str(config_file), "999")
    assert missing.returncode == 1 and "no item 999" in missing.stderr

    for fmt in ("csv", "html", "pdf"):
        out = tmp_path / f"export.{fmt}"
        done = udigate("rejects", "export", "--config", str(config_file), "--format", fmt, "--output", str(out))
        assert done.returncode == 0 and f"wrote 3 items to {out}" in done.stdout, done.stderr
    assert len(read_csv((tmp_path / "export.csv").read_bytes())) == 3
    assert (tmp_path / "export.pdf").read_bytes().startswith(b"%PDF")
    assert "Reject report" in (tmp_path / "export.html").read_text()

    bad = udigate("rejects", "list", "--config", str(config_file), "--since", "last week")
    assert bad.returncode == 2 and "since = 'last week'" in bad.stderr


def test_reading_commands_do_not_create_a_store(tmp_path):
    config_file = tmp_path / "line.toml"
    config_file.write_text(f'[line]\ndata_dir = "{tmp_path / "empty"}"\n')
    result = udigate("rejects", "list", "--config", str(config_file))
    assert result.returncode == 1 and "no review store in" in result.stderr
    assert not (tmp_path / "empty" / "udigate.db").exists()


def test_user_hash_makes_a_hash_that_verifies():
    done = udigate("user", "hash", "--password-stdin", stdin="line-1-quality\n")
    assert done.returncode == 0 and "[[web.users]]" in done.stderr
    assert PasswordHasher().verify(done.stdout.strip(), "line-1-quality")
    short = udigate("user", "hash", "--password-stdin", stdin="short\n")
    assert short.returncode == 2 and "at least 8 characters" in short.stderr
