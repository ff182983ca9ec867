"""The reject log: per rejected item the frame image, its grade report picture (when the code was
graded) and its JSON record on disk, indexed in SQLite (``<data_dir>/udigate.db``, table
``rejects``).

One writer thread owns the database. Each entry is written image first, then record, then index
row, each file through a temporary name and an atomic rename: an index row never points at a
missing or half-written file, even after a kill. The queue in front of the writer is bounded;
when it is full the decision stage waits (back-pressure) rather than drop a reject.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sqlite3
import threading
from pathlib import Path

import cv2
import numpy as np

from vision.grade import Grade
from vision.report import report_image
from vision.symbol import Symbol

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS rejects (
    id INTEGER PRIMARY KEY,
    record_id TEXT NOT NULL UNIQUE,
    run_id TEXT NOT NULL,
    item_id INTEGER NOT NULL,
    timestamp TEXT NOT NULL,
    site TEXT NOT NULL,
    line TEXT NOT NULL,
    job TEXT NOT NULL,
    reason TEXT NOT NULL,        -- the deciding reason code
    reasons TEXT NOT NULL,       -- JSON list of all reason codes
    data TEXT,                   -- decoded message (GS kept), NULL when unread
    grade REAL,
    image TEXT,                  -- path relative to the data folder, NULL when no frame
    record TEXT NOT NULL         -- path of the JSON record relative to the data folder
);
CREATE INDEX IF NOT EXISTS rejects_timestamp ON rejects (timestamp);
CREATE INDEX IF NOT EXISTS rejects_reason ON rejects (reason, timestamp);
"""


def open_database(path: Path) -> sqlite3.Connection:
    """The gateway database, created or migrated as needed (WAL: readers never block the writer)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=10)
    db.execute("PRAGMA journal_mode=WAL")
    # NORMAL survives a killed process; surviving power loss needs FULL (see docs/architecture.md).
    db.execute("PRAGMA synchronous=NORMAL")
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"{path} was written by a newer udigate (schema {version} > {SCHEMA_VERSION})")
    db.executescript(_SCHEMA)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    return db


class RejectLog:
    def __init__(self, data_dir: Path, image_format: str = "png", queue_size: int = 256) -> None:
        self.data_dir = data_dir
        self.image_format = image_format
        self._queue: queue.Queue[tuple[dict, np.ndarray | None, tuple[Symbol, Grade] | None] | None] = queue.Queue(
            queue_size
        )
        open_database(data_dir / "udigate.db").close()  # fail at start, not at the first reject
        self._thread = threading.Thread(target=self._write_all, name="reject-log", daemon=True)
        self.written = 0
        self.failed = 0

    def start(self) -> None:
        self._thread.start()

    def submit(self, record: dict, image: np.ndarray | None, graded: tuple[Symbol, Grade] | None = None) -> None:
        """Queue one reject (waits while the writer is ``queue_size`` entries behind); with
        ``graded`` (the symbol and its grade) the writer also draws the grade report picture."""
        self._queue.put((record, image, graded))

    def close(self) -> None:
        """Write everything queued, then stop."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _write_all(self) -> None:
        db = open_database(self.data_dir / "udigate.db")
        try:
            while (entry := self._queue.get()) is not None:
                try:
                    self._write(db, *entry)
                    self.written += 1
                except (OSError, sqlite3.Error, cv2.error) as exc:
                    self.failed += 1
                    log.error("reject log: could not store item %s: %s", entry[0].get("record_id"), exc)
        finally:
            db.close()

    def _write(
        self, db: sqlite3.Connection, record: dict, image: np.ndarray | None, graded: tuple[Symbol, Grade] | None
    ) -> None:
        day = record["timestamp"][:10]
        stem = f"rejects/{day}/{record['run_id']}-{record['item_id']:08d}"
        folder = self.data_dir / "rejects" / day
        folder.mkdir(parents=True, exist_ok=True)
        image_path = None
        if image is not None:
            image_path = f"{stem}.{self.image_format}"
            ok, encoded = cv2.imencode(f".{self.image_format}", image, _ENCODE_PARAMS[self.image_format])
            if not ok:
                raise OSError(f"cannot encode the frame as {self.image_format}")
            _write_atomically(self.data_dir / image_path, encoded.tobytes())
        record = {**record, "image": image_path}
        if image is not None and graded is not None and graded[1].centres is not None:
            # drawn here, in the writer thread, to keep it off the decision path
            report_path = f"{stem}-grade.png"
            ok, encoded = cv2.imencode(".png", report_image(image, *graded), _ENCODE_PARAMS["png"])
            if not ok:
                raise OSError("cannot encode the grade report picture")
            _write_atomically(self.data_dir / report_path, encoded.tobytes())
            record["grade_report"] = report_path
        record_path = f"{stem}.json"
        _write_atomically(self.data_dir / record_path, json.dumps(record, ensure_ascii=False, indent=1).encode())
        grade = record.get("grade", {}).get("overall")
        codes = [r["code"] for r in record["reasons"]]
        with db:
            db.execute(
                "INSERT OR REPLACE INTO rejects (record_id, run_id, item_id, timestamp, site, line, job, reason,"
                " reasons, data, grade, image, record) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    record["record_id"],
                    record["run_id"],
                    record["item_id"],
                    record["timestamp"],
                    record["site"],
                    record["line"],
                    record["job"] or "",  # "" = no active production order
                    codes[0],
                    json.dumps(codes),
                    record.get("data"),
                    grade,
                    image_path,
                    record_path,
                ),
            )


# PNG level 1: fast and lossless; JPEG 90 when disk matters more than exact pixels.
_ENCODE_PARAMS = {"png": [cv2.IMWRITE_PNG_COMPRESSION, 1], "jpg": [cv2.IMWRITE_JPEG_QUALITY, 90]}


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".part")
    with open(temporary, "wb") as f:
        f.write(data)
    os.replace(temporary, path)
