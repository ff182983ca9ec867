import json
import sqlite3

import numpy as np
import pytest

from gateway.rejects import SCHEMA_VERSION, RejectLog, open_database


def reject(item_id, reasons=("no_read",)):
    return {
        "record_id": f"20261123T000000.000000Z/{item_id}",
        "run_id": "20261123T000000.000000Z",
        "item_id": item_id,
        "timestamp": "2026-11-23T08:00:00.000Z",
        "site": "s",
        "line": "l",
        "job": "PO",
        "reasons": [{"code": c, "text": "", "detail": ""} for c in reasons],
    }


def test_rejects_are_indexed_with_their_files(tmp_path):
    log = RejectLog(tmp_path, "jpg")
    log.start()
    frame = np.random.default_rng(0).integers(0, 255, (120, 160), np.uint8)
    log.submit({**reject(1, ("grade_below_min", "wrong_lot")), "grade": {"overall": 1.0}, "data": "01\x1d21"}, frame)
    log.submit(reject(2), None)  # an item without a frame (image error)
    log.close()
    assert (log.written, log.failed) == (2, 0)
    db = sqlite3.connect(tmp_path / "udigate.db")
    rows = db.execute(
        "SELECT item_id, reason, reasons, data, grade, image, record FROM rejects ORDER BY item_id"
    ).fetchall()
    assert rows[0][:5] == (1, "grade_below_min", '["grade_below_min", "wrong_lot"]', "01\x1d21", 1.0)
    assert rows[0][5] == "rejects/2026-11-23/20261123T000000.000000Z-00000001.jpg"
    assert (tmp_path / rows[0][5]).stat().st_size > 0
    assert json.loads((tmp_path / rows[0][6]).read_text())["image"] == rows[0][5]
    assert rows[1][5] is None
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_failing_disk_is_counted_not_fatal(tmp_path):
    log = RejectLog(tmp_path)
    log.start()
    (tmp_path / "rejects").write_text("a file where the folder should be")
    log.submit(reject(1), np.zeros((10, 10), np.uint8))
    log.close()
    assert (log.written, log.failed) == (0, 1)


def test_newer_database_is_refused(tmp_path):
    db = sqlite3.connect(tmp_path / "udigate.db")
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(RuntimeError, match="written by a newer udigate"):
        open_database(tmp_path / "udigate.db")


def test_a_reject_without_a_production_order_is_kept(tmp_path):
    log = RejectLog(tmp_path, "png")
    log.start()
    log.submit({**reject(1, ("no_active_job",)), "job": None}, None)  # the MES stopped the order
    log.close()
    assert (log.written, log.failed) == (1, 0)
    db = sqlite3.connect(tmp_path / "udigate.db")
    assert db.execute("SELECT job, reason FROM rejects").fetchall() == [("", "no_active_job")]
