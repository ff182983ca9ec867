import json
import os
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from gateway.config import RejectLogSection
from gateway.rejects import SCHEMA_VERSION, RejectLog, open_database
from gateway.review import Filters, ReviewError, ReviewIndex

RUN = "20261123T000000.000000Z"


def record(item_id, reasons=("no_read",), timestamp="2026-11-23T08:00:00.000Z", **extra):
    return {
        "record_id": f"{RUN}/{item_id}",
        "run_id": RUN,
        "item_id": item_id,
        "timestamp": timestamp,
        "site": "s",
        "line": "l",
        "job": "PO",
        "verdict": "reject" if reasons else "pass",
        "reasons": [{"code": c, "text": "", "detail": ""} for c in reasons],
        **extra,
    }


def grade(overall, sc=None):
    sc = overall if sc is None else sc
    return {
        "overall": overall,
        "quality": f"{overall:.1f}/08/660",
        "parameters": {"SC": {"value": 20 * sc, "grade": sc}, "MOD": {"value": 0.5, "grade": 4.0}},
    }


def frame(seed=0, shape=(120, 160)):
    return np.random.default_rng(seed).integers(0, 255, shape, np.uint8)


def run_log(tmp_path, entries, **settings):
    log = RejectLog(tmp_path, RejectLogSection(**settings))
    log.start()
    for rec, image in entries:
        log.observe(rec, image)
    log.close()
    return log


def test_rejects_are_indexed_with_their_files(tmp_path):
    log = run_log(
        tmp_path,
        [
            (record(1, ("grade_below_min", "wrong_lot"), grade=grade(1.0), data="01\x1d21"), frame()),
            (record(2), None),  # an item without a frame (image error)
        ],
        image_format="jpg",
    )
    assert (log.written, log.failed, log.items) == (2, 0, 2)
    db = sqlite3.connect(tmp_path / "udigate.db")
    rows = db.execute(
        "SELECT item_id, reason, reasons, data, grade, quality, weakest, image, thumb, record, bytes FROM rejects"
        " ORDER BY item_id"
    ).fetchall()
    assert rows[0][:7] == (
        1,
        "grade_below_min",
        '["grade_below_min", "wrong_lot"]',
        "01\x1d21",
        1.0,
        "1.0/08/660",
        "SC",
    )
    assert rows[0][7] == f"rejects/2026-11-23/{RUN}-00000001.jpg"
    files = [tmp_path / path for path in (rows[0][7], rows[0][8], rows[0][9])]
    assert rows[0][10] == sum(f.stat().st_size for f in files)  # the quota counts exactly these
    assert json.loads(files[2].read_text())["image"] == rows[0][7]
    assert rows[1][7] is None and rows[1][8] is None
    assert db.execute("SELECT code FROM reject_reasons ORDER BY code").fetchall() == [
        ("grade_below_min",),
        ("no_read",),
        ("wrong_lot",),
    ]
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert not list(tmp_path.rglob("*.part"))


@pytest.mark.parametrize("realtime", [True, False])
def test_a_writer_behind_costs_a_live_line_pictures_never_records_or_time(tmp_path, realtime):
    # A burst of rejects as a printer that fails outright makes them: far faster than full
    # frames can be encoded (~25 ms each).
    burst = [(record(i, ("wrong_lot",), grade=grade(3.0)), frame(i, (960, 1280))) for i in range(1, 61)]
    log = RejectLog(tmp_path, RejectLogSection(picture_backlog=4, min_free_mb=0), realtime=realtime)
    log.start()
    waited = []
    for rec, image in burst:
        started = time.monotonic()
        log.observe(rec, image)
        waited.append(time.monotonic() - started)
    log.close()
    db = sqlite3.connect(tmp_path / "udigate.db")
    rows = db.execute("SELECT item_id, image, record FROM rejects ORDER BY item_id").fetchall()
    assert [r[0] for r in rows] == list(range(1, 61))  # every record kept, in order
    without = [item for item, image, _ in rows if image is None]
    assert log.pictures_skipped == len(without)
    if realtime:
        assert len(without) >= 30 and max(waited) < 0.25  # observe never waited for the writer (~0.1 ms)
        assert 1 not in without  # the first ones, with room in the backlog, have their pictures
        stored = json.loads((tmp_path / rows[without[0] - 1][2]).read_text())
        assert stored["pictures_skipped"] == "the writer was 4 items with pictures behind"
        assert stored["reasons"][0]["code"] == "wrong_lot" and stored["grade"]["overall"] == 3.0
    else:  # frames from a folder: the writer sets the pace, nothing is dropped
        assert without == [] and sum(waited) > 0.3
    assert len(list(tmp_path.rglob("*-thumb.jpg"))) == 60 - len(without)


def test_every_nth_pass_is_kept_and_every_grade_goes_into_the_trend(tmp_path):
    entries = [(record(i, (), grade=grade(3.0 if i % 2 else 2.0)), frame(i)) for i in range(1, 11)]
    entries.append((record(11, ("wrong_lot",), grade=grade(1.0)), frame(11)))
    run_log(tmp_path, entries, keep_passes_every=4)
    index = ReviewIndex(tmp_path)
    kept = index.search(Filters(verdict="pass"))
    assert [i.item_id for i in kept.items] == [8, 4]
    assert kept.items[0].reason == "" and kept.items[0].reasons == ()
    points = {p.parameter: p for p in index.trend("2026-11-23T00:00")}
    assert points["overall"].items == 11  # the passes not kept count too
    assert points["overall"].grade_mean == pytest.approx((5 * 3 + 5 * 2 + 1) / 11)
    assert points["overall"].grade_min == 1.0
    assert points["SC"].value_mean == pytest.approx(20 * (5 * 3 + 5 * 2 + 1) / 11)


def test_the_quota_holds_by_deleting_the_oldest_first(tmp_path):
    settings = {"max_disk_mb": 0.25, "min_free_mb": 0}
    log = RejectLog(tmp_path, RejectLogSection(**settings))
    log.start()
    sizes = []
    for i in range(1, 61):
        log.observe(record(i, timestamp=f"2026-11-23T08:{i // 60:02d}:{i % 60:02d}.000Z"), frame(i))
        if i % 10 == 0:
            time.sleep(0.2)
            sizes.append(sum(f.stat().st_size for f in (tmp_path / "rejects").rglob("*") if f.is_file()))
    log.close()
    assert max(sizes) <= 250_000
    assert log.deleted > 0 and log.items + log.deleted == 60
    ids = [row[0] for row in sqlite3.connect(tmp_path / "udigate.db").execute("SELECT item_id FROM rejects")]
    assert ids == list(range(61 - len(ids), 61))  # the newest, without a hole
    on_disk = {p.relative_to(tmp_path).as_posix() for p in (tmp_path / "rejects").rglob("*") if p.is_file()}
    indexed = {
        path
        for row in sqlite3.connect(tmp_path / "udigate.db").execute("SELECT image, thumb, record FROM rejects")
        for path in row
        if path
    }
    assert on_disk == indexed  # no orphan file, no row without its files


def test_items_older_than_max_age_are_deleted_at_start(tmp_path):
    old = record(1, timestamp="2020-01-01T00:00:00.000Z", grade=grade(2.0))
    run_log(tmp_path, [(old, frame()), (record(2, timestamp=_now()), frame())], max_age_days=30)
    log = run_log(tmp_path, [], max_age_days=30)
    assert log.deleted == 1
    assert [i.item_id for i in ReviewIndex(tmp_path).search().items] == [2]
    assert not (tmp_path / "rejects" / "2020-01-01").exists()  # the emptied day folder went too
    assert ReviewIndex(tmp_path).trend("2019-01-01T00:00") == []


def test_a_kill_between_index_and_unlink_is_finished_at_the_next_start(tmp_path):
    run_log(tmp_path, [(record(1), frame())])
    db = open_database(tmp_path / "udigate.db")
    paths = [p for p in db.execute("SELECT image, thumb, record FROM rejects").fetchone()]
    with db:  # what _delete commits before unlinking
        db.executemany("INSERT INTO doomed_files (path) VALUES (?)", [(p,) for p in paths])
        db.execute("DELETE FROM rejects")
    db.close()
    assert all((tmp_path / p).exists() for p in paths)
    run_log(tmp_path, [])
    assert not any((tmp_path / p).exists() for p in paths)


def test_a_kill_mid_write_leaves_a_consistent_store(tmp_path):
    """A writer process SIGKILLed while storing: every indexed row has its files."""
    script = f"""
import numpy as np, sys
sys.path.insert(0, {str(os.getcwd())!r})
from gateway.config import RejectLogSection
from gateway.rejects import RejectLog
from tests.test_rejects import record
log = RejectLog(__import__("pathlib").Path({str(tmp_path)!r}), RejectLogSection())
log.start()
image = np.random.default_rng(0).integers(0, 255, (480, 640), np.uint8)
for i in range(1, 100000):
    log.observe(record(i), image)
    if i == 5:
        print("writing", flush=True)
"""
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    time.sleep(0.5)
    writer.kill()
    writer.wait()
    index = ReviewIndex(tmp_path)
    items = list(index.iterate())
    assert len(items) >= 5
    for item in items:
        for path in item.files.values():
            assert (tmp_path / path).stat().st_size > 0
    log = run_log(tmp_path, [(record(10**6), frame())])  # and the store goes on
    assert log.failed == 0


def test_search_filters_and_pages(tmp_path):
    entries = []
    for i in range(1, 121):
        reasons = ("grade_below_min",) if i % 3 == 0 else ("wrong_lot", "expired") if i % 3 == 1 else ("no_read",)
        rec = record(i, reasons, timestamp=f"2026-11-23T{8 + i // 60:02d}:{i % 60:02d}:00.000Z")
        if i % 3 == 0:
            rec["grade"] = grade(1.0 if i % 2 else 0.0)
            rec["data"] = f"0106901234567892\x1d21SER{i:04d}"
        if i > 100:
            rec["job"] = "PO2"
        entries.append((rec, None))
    run_log(tmp_path, entries)
    index = ReviewIndex(tmp_path)
    first = index.search(limit=50)
    assert first.total == 120 and [i.item_id for i in first.items] == list(range(120, 70, -1))
    second = index.search(before=first.next_before, limit=50)
    third = index.search(before=second.next_before, limit=50)
    assert [i.item_id for i in second.items + third.items] == list(range(70, 0, -1)) and third.next_before is None
    assert index.search(Filters(reason="expired")).total == 40  # any of the reasons, not only the first
    assert index.search(Filters(job="PO2")).total == 20
    assert index.search(Filters(max_grade=0.5)).total == 20
    assert [i.item_id for i in index.search(Filters(text="SER0042")).items] == [42]
    window = index.search(Filters(since="2026-11-23T08:30Z", until="2026-11-23T08:40Z"))
    assert [i.item_id for i in window.items] == list(range(39, 29, -1))
    assert sorted(index.jobs()) == ["PO", "PO2"]
    with pytest.raises(ReviewError, match="since = 'yesterday'"):
        Filters(since="yesterday")


def test_dispositions_are_kept_with_their_history(tmp_path):
    run_log(tmp_path, [(record(1), None), (record(2), None)])
    index = ReviewIndex(tmp_path)
    first = index.search().items[-1]
    index.dispose(first.id, "false_reject", "  smudge on the lens ", "anna")
    index.dispose(first.id, "confirmed_defect", "printhead nozzle 3", "li")
    detail = index.get(first.id)
    assert [(d.disposition, d.user, d.comment) for d in detail.history] == [
        ("false_reject", "anna", "smudge on the lens"),
        ("confirmed_defect", "li", "printhead nozzle 3"),
    ]
    assert detail.item.disposition.disposition == "confirmed_defect"
    assert index.search(Filters(disposition="open")).total == 1
    assert index.totals().by_disposition == {"open": 1, "confirmed_defect": 1}
    with pytest.raises(ReviewError, match="disposition = 'maybe'"):
        index.dispose(first.id, "maybe", "", "anna")
    with pytest.raises(ReviewError, match="no item 999"):
        index.dispose(999, "false_reject", "", "anna")


def test_a_schema_1_database_is_migrated(tmp_path):
    db = sqlite3.connect(tmp_path / "udigate.db")
    db.executescript(
        """
        CREATE TABLE rejects (id INTEGER PRIMARY KEY, record_id TEXT NOT NULL UNIQUE, run_id TEXT NOT NULL,
            item_id INTEGER NOT NULL, timestamp TEXT NOT NULL, site TEXT NOT NULL, line TEXT NOT NULL,
            job TEXT NOT NULL, reason TEXT NOT NULL, reasons TEXT NOT NULL, data TEXT, grade REAL, image TEXT,
            record TEXT NOT NULL);
        INSERT INTO rejects VALUES (1, 'r/1', 'r', 1, '2026-01-01T00:00:00.000Z', 's', 'l', 'PO', 'no_read',
            '["no_read", "expired"]', NULL, NULL, NULL, 'rejects/2026-01-01/r-00000001.json');
        PRAGMA user_version = 1;
        """
    )
    db.close()
    index = ReviewIndex(tmp_path)
    (item,) = index.search().items
    assert (item.verdict, item.reasons, item.disposition) == ("reject", ("no_read", "expired"), None)
    assert index.search(Filters(reason="expired")).total == 1


def test_a_failing_disk_is_counted_not_fatal(tmp_path):
    log = RejectLog(tmp_path)
    log.start()
    (tmp_path / "rejects").write_text("a file where the folder should be")
    log.observe(record(1), np.zeros((10, 10), np.uint8))
    log.close()
    assert (log.written, log.failed) == (0, 1)


def test_newer_database_is_refused(tmp_path):
    db = sqlite3.connect(tmp_path / "udigate.db")
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(RuntimeError, match="written by a newer udigate"):
        open_database(tmp_path / "udigate.db")


def test_a_reject_without_a_production_order_is_kept(tmp_path):
    run_log(tmp_path, [({**record(1, ("no_active_job",)), "job": None}, None)])  # the MES stopped the order
    db = sqlite3.connect(tmp_path / "udigate.db")
    assert db.execute("SELECT job, reason FROM rejects").fetchall() == [("", "no_active_job")]


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
