"""The review store: every reject (and every Nth pass, for comparison) with its pictures and
record on disk, indexed in SQLite (``<data_dir>/udigate.db``), plus the per-minute grade trend
of every graded item. :mod:`gateway.review` reads it for the web UI and the CLI.

Per kept item, in ``rejects/<day>/<run>-<item>``: the full frame (``.png``/``.jpg``), the symbol
crop (``-crop.png``), the annotated overlay (``-overlay.png``: grid, module grades, damaged
codewords and finder), a thumbnail (``-thumb.jpg``) and the JSON record (``.json``).

One writer thread owns the writes. Pictures are encoded in memory first, so the writer knows
what an item costs and makes room *before* writing it: the store never exceeds
``max_disk_mb``. Each file goes through a temporary name and an atomic rename, and the index
row comes last: a row never points at a missing or half-written file, even after a kill.
Deleting is the reverse: the rows go and their files are listed in ``doomed_files`` in one
transaction, then the files are unlinked; a kill in between is finished at the next start.
The decision stage never waits for the writer on a line in real time: a PNG of a full frame
costs ~25 ms, so a printer that fails outright (every pack a reject) outruns any writer. When
``picture_backlog`` items with pictures are already waiting, a reject is stored without its
pictures (record, reasons, grade report and content still kept, ``pictures_skipped`` saying why,
counted in :attr:`RejectLog.pictures_skipped`): late PLC results would cost far more than the
pictures of the 33rd identical reject in a row. Frames read as fast as inspected (a folder) wait
instead, so nothing of theirs is dropped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from .config import RejectLogSection

if TYPE_CHECKING:
    from vision.grade import Grade
    from vision.symbol import Symbol

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS rejects (
    id INTEGER PRIMARY KEY,
    record_id TEXT NOT NULL UNIQUE,
    run_id TEXT NOT NULL,
    item_id INTEGER NOT NULL,
    timestamp TEXT NOT NULL,     -- capture, ISO 8601 UTC with milliseconds: sorts as text
    site TEXT NOT NULL,
    line TEXT NOT NULL,
    job TEXT NOT NULL,           -- "" = no active production order
    reason TEXT NOT NULL,        -- the deciding reason code ("" for a kept pass)
    reasons TEXT NOT NULL,       -- JSON list of all reason codes
    data TEXT,                   -- decoded message (GS kept), NULL when unread
    grade REAL,
    image TEXT,                  -- path relative to the data folder, NULL when no frame
    record TEXT NOT NULL         -- path of the JSON record relative to the data folder
);
CREATE INDEX IF NOT EXISTS rejects_timestamp ON rejects (timestamp);
CREATE INDEX IF NOT EXISTS rejects_reason ON rejects (reason, timestamp);
CREATE TABLE IF NOT EXISTS reject_reasons (
    code TEXT NOT NULL,
    reject_id INTEGER NOT NULL,
    PRIMARY KEY (code, reject_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS reject_reasons_item ON reject_reasons (reject_id);
CREATE TABLE IF NOT EXISTS dispositions (  -- every decision, in order: the latest counts
    id INTEGER PRIMARY KEY,
    reject_id INTEGER NOT NULL,
    record_id TEXT NOT NULL,
    disposition TEXT NOT NULL,   -- confirmed_defect | false_reject
    comment TEXT NOT NULL,
    user TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS dispositions_reject ON dispositions (reject_id, id);
CREATE TABLE IF NOT EXISTS grade_trend (  -- every graded item, per UTC minute of capture
    minute TEXT NOT NULL,        -- YYYY-MM-DDTHH:MM
    parameter TEXT NOT NULL,     -- "overall" or a parameter name (SC, MOD …)
    items INTEGER NOT NULL,
    grade_sum REAL NOT NULL,
    grade_min REAL NOT NULL,
    value_sum REAL NOT NULL,
    PRIMARY KEY (minute, parameter)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS doomed_files (path TEXT PRIMARY KEY) WITHOUT ROWID;
"""
# Added in schema 2 (the review UI); ALTER TABLE brings a schema-1 table up to date.
_COLUMNS_2 = {
    "verdict": "TEXT NOT NULL DEFAULT 'reject'",
    "decided_at": "TEXT",
    "quality": "TEXT",  # grade/aperture/wavelength, e.g. 1.0/08/660
    "weakest": "TEXT",  # the lowest graded parameter: what to look at first
    "crop": "TEXT",
    "overlay": "TEXT",
    "thumb": "TEXT",
    "bytes": "INTEGER NOT NULL DEFAULT 0",  # the item's files on disk: the quota counts these
    "disposition": "TEXT",  # the latest of the item's dispositions (NULL: open)
    "disposition_by": "TEXT",
    "disposition_at": "TEXT",
    "disposition_comment": "TEXT",
}
_INDEXES_2 = """
CREATE INDEX IF NOT EXISTS rejects_job ON rejects (job, id);
CREATE INDEX IF NOT EXISTS rejects_verdict ON rejects (verdict, id);
CREATE INDEX IF NOT EXISTS rejects_disposition ON rejects (disposition, id);
"""
FILE_COLUMNS = ("image", "crop", "overlay", "thumb", "record")
_RECORD_KEYS = {"overlay": "grade_report"}  # the overlay's name in the item record (schema udigate.item/1)
THUMB_PX = 160


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
    if version < SCHEMA_VERSION:
        with db:
            db.executescript(_SCHEMA)
            present = {row[1] for row in db.execute("PRAGMA table_info(rejects)")}
            for column, kind in _COLUMNS_2.items():
                if column not in present:
                    db.execute(f"ALTER TABLE rejects ADD COLUMN {column} {kind}")
            db.execute(
                "INSERT OR IGNORE INTO reject_reasons (code, reject_id)"
                " SELECT value, rejects.id FROM rejects, json_each(rejects.reasons)"
            )
            db.executescript(_INDEXES_2)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    return db


@dataclass(frozen=True, slots=True)
class _Kept:
    """One item for the writer: its record, frame and (when read) symbol and grade; ``keep``
    False when only its grade is wanted (for the trend)."""

    keep: bool
    record: dict
    image: np.ndarray | None
    symbol: Symbol | None
    grade: Grade | None


class RejectLog:
    """The store's writer: ``observe`` every decided item, from the decision thread."""

    def __init__(self, data_dir: Path, settings: RejectLogSection | None = None, realtime: bool = False) -> None:
        self.data_dir = data_dir
        self.settings = settings or RejectLogSection()
        self.realtime = realtime  # never wait for the writer: skip pictures instead
        # Records are small: their queue is unbounded. Frames are not (a 1280 × 960 frame is 1.2 MB):
        # the backlog of items with pictures is bounded.
        self._queue: queue.Queue[_Kept | None] = queue.Queue()
        self._picture_slots = threading.BoundedSemaphore(self.settings.picture_backlog)
        open_database(data_dir / "udigate.db").close()  # fail at start, not at the first reject
        self._thread = threading.Thread(target=self._write_all, name="reject-log", daemon=True)
        self._passes_seen = 0
        self.written = 0  # items stored in this run (rejects and kept passes)
        self.passes_written = 0  # of which kept passes
        self.failed = 0
        self.pictures_skipped = 0  # items stored without pictures: the writer was too far behind
        self._skip_logged = 0.0
        self.deleted = 0  # items removed by retention in this run
        self.items = 0  # items in the store
        self.bytes = 0  # their files
        self._trend: dict[tuple[str, str], list[float]] = {}  # (minute, parameter) → [items, sum, min, value sum]
        self._trend_flushed = 0.0
        self._retention_checked = 0.0
        self._free_checked = 0.0

    def start(self) -> None:
        self._thread.start()

    def observe(
        self, record: dict, image: np.ndarray | None, symbol: Symbol | None = None, grade: Grade | None = None
    ) -> None:
        """One decided item: a reject is kept, a pass when it is the Nth since the last kept
        one; its grade goes into the trend either way. With ``picture_backlog`` items with
        pictures waiting, a real-time line stores this one without pictures; otherwise this
        waits for the writer."""
        keep = record["verdict"] == "reject"
        if not keep and self.settings.keep_passes_every:
            self._passes_seen += 1
            keep = self._passes_seen % self.settings.keep_passes_every == 0
        if keep:
            if image is not None and not self._picture_slots.acquire(blocking=not self.realtime):
                record = {**record, "pictures_skipped": self._skipped(record)}
                image = symbol = grade = None
            self._queue.put(_Kept(True, record, image, symbol, grade))
        elif "grade" in record:
            self._queue.put(_Kept(False, record, None, None, None))

    def _skipped(self, record: dict) -> str:
        self.pictures_skipped += 1
        now = time.monotonic()
        if now - self._skip_logged >= 10:
            self._skip_logged = now
            log.warning(
                "reject log: %d items with pictures waiting to be written: item %s kept without its pictures"
                " (%d so far in this run)",
                self.settings.picture_backlog,
                record.get("item_id"),
                self.pictures_skipped,
            )
        return f"the writer was {self.settings.picture_backlog} items with pictures behind"

    def close(self) -> None:
        """Write everything queued, then stop."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    # -- the writer thread ------------------------------------------------------------------------

    def _write_all(self) -> None:
        db = open_database(self.data_dir / "udigate.db")
        try:
            self._finish_deletions(db)
            self.items, self.bytes = db.execute("SELECT count(*), coalesce(sum(bytes), 0) FROM rejects").fetchone()
            self._apply_retention(db, force=True)
            while True:
                try:
                    entry = self._queue.get(timeout=1.0)
                except queue.Empty:
                    entry = False  # idle: housekeeping only
                if entry is None:
                    break
                if entry:
                    try:
                        self._take(db, entry)
                    finally:
                        if entry.image is not None:  # its frame is written (or given up): room for another
                            self._picture_slots.release()
                self._flush_trend(db)
                self._apply_retention(db)
            self._flush_trend(db, force=True)
        finally:
            db.close()

    def _take(self, db: sqlite3.Connection, entry: _Kept) -> None:
        record = entry.record
        grade = record.get("grade")
        if grade and grade.get("overall") is not None:
            self._add_to_trend(record["timestamp"][:16], grade)
        if not entry.keep:
            return
        try:
            self._write(db, entry)
            self.written += 1
            self.passes_written += record["verdict"] == "pass"
        except (OSError, sqlite3.Error, cv2.error) as exc:
            self.failed += 1
            log.error("reject log: could not store item %s: %s", record.get("record_id"), exc)

    def _write(self, db: sqlite3.Connection, entry: _Kept) -> None:
        # here, not at the top: `udigate rejects` reads the store without loading numba
        from vision.report import report_image, symbol_crop

        record, image = entry.record, entry.image
        day = record["timestamp"][:10]
        stem = f"rejects/{day}/{record['run_id']}-{record['item_id']:08d}"
        files: dict[str, tuple[str, bytes]] = {}  # column → (path, encoded bytes)
        if image is not None:
            fmt = self.settings.image_format
            files["image"] = (f"{stem}.{fmt}", _encode(fmt, image))
            crop = symbol_crop(image, entry.symbol)[0] if entry.symbol is not None else None
            if crop is not None:
                files["crop"] = (f"{stem}-crop.png", _encode("png", crop))
            if entry.symbol is not None and entry.grade is not None and entry.grade.centres is not None:
                # drawn here, in the writer thread, to keep it off the decision path
                files["overlay"] = (
                    f"{stem}-overlay.png",
                    _encode("png", report_image(image, entry.symbol, entry.grade)),
                )
            files["thumb"] = (f"{stem}-thumb.jpg", _encode("jpg", _thumbnail(crop if crop is not None else image)))
        record = {**record, **{_RECORD_KEYS.get(column, column): path for column, (path, _) in files.items()}}
        files["record"] = (f"{stem}.json", json.dumps(record, ensure_ascii=False, indent=1).encode())
        size = sum(len(data) for _, data in files.values())
        self._make_room(db, size)
        (self.data_dir / "rejects" / day).mkdir(parents=True, exist_ok=True)
        for path, data in files.values():
            _write_atomically(self.data_dir / path, data)
        grade = record.get("grade") or {}
        parameters = grade.get("parameters") or {}
        weakest = min(parameters, key=lambda name: parameters[name]["grade"]) if parameters else None
        if weakest is not None and parameters[weakest]["grade"] >= 4:
            weakest = None  # all A: nothing is weak
        codes = [r["code"] for r in record["reasons"]]
        row = {
            "record_id": record["record_id"],
            "run_id": record["run_id"],
            "item_id": record["item_id"],
            "timestamp": record["timestamp"],
            "decided_at": record.get("decided_at"),
            "site": record["site"],
            "line": record["line"],
            "job": record["job"] or "",  # "" = no active production order
            "verdict": record["verdict"],
            "reason": codes[0] if codes else "",
            "reasons": json.dumps(codes),
            "data": record.get("data"),
            "grade": grade.get("overall"),
            "quality": grade.get("quality"),
            "weakest": weakest,
            "bytes": size,
        } | {column: files[column][0] if column in files else None for column in FILE_COLUMNS}
        with db:
            names = ", ".join(row)
            cursor = db.execute(
                f"INSERT INTO rejects ({names}) VALUES ({', '.join('?' * len(row))})", list(row.values())
            )
            db.executemany(
                "INSERT OR IGNORE INTO reject_reasons (code, reject_id) VALUES (?, ?)",
                [(code, cursor.lastrowid) for code in codes],
            )
        self.items += 1
        self.bytes += size

    # -- retention --------------------------------------------------------------------------------

    def _make_room(self, db: sqlite3.Connection, size: int) -> None:
        """Delete the oldest items until ``size`` more bytes fit the quota."""
        quota = int(self.settings.max_disk_mb * 1e6)
        while self.items and self.bytes + size > quota:
            # a tenth of the quota more than needed: not a delete transaction per item at the limit
            self._delete_oldest(db, self.bytes + size - quota + quota // 10)

    def _apply_retention(self, db: sqlite3.Connection, force: bool = False) -> None:
        """Items older than max_age_days go (checked every minute); while the data disk has less
        than min_free_mb free, the oldest go too (checked every 5 s)."""
        now = time.monotonic()
        if force or now - self._retention_checked >= 60:
            self._retention_checked = now
            cutoff = datetime.now(UTC) - timedelta(days=self.settings.max_age_days)
            cutoff_text = cutoff.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            expired = "id IN (SELECT id FROM rejects WHERE timestamp < ? LIMIT 1000)"
            while self._delete(db, expired, (cutoff_text,)):
                pass
            with db:
                db.execute("DELETE FROM grade_trend WHERE minute < ?", (cutoff_text[:16],))
        if self.settings.min_free_mb and (force or now - self._free_checked >= 5):
            self._free_checked = now
            wanted = int(self.settings.min_free_mb * 1e6)
            while self.items and (free := shutil.disk_usage(self.data_dir).free) < wanted:
                log.warning(
                    "reject log: %.0f MB free on the data disk (min_free_mb %g): deleting the oldest items",
                    free / 1e6,
                    self.settings.min_free_mb,
                )
                self._delete_oldest(db, max(wanted - free, 1))

    def _delete_oldest(self, db: sqlite3.Connection, at_least_bytes: int) -> None:
        """Delete the oldest items whose files add up to at least ``at_least_bytes``."""
        ids = []
        freed = 0
        for item_id, size in db.execute("SELECT id, bytes FROM rejects ORDER BY id LIMIT 1000"):
            ids.append(item_id)
            freed += size
            if freed >= at_least_bytes:
                break
        if ids:
            self._delete(db, f"id IN ({','.join('?' * len(ids))})", ids)

    def _delete(self, db: sqlite3.Connection, where: str, args) -> int:
        """Delete the items matching ``where``: rows first (with their files listed as doomed, in
        one transaction), then the files. Returns how many went."""
        with db:
            rows = db.execute(
                f"SELECT id, bytes, {', '.join(FILE_COLUMNS)} FROM rejects WHERE {where}", args
            ).fetchall()
            if not rows:
                return 0
            ids = [(row[0],) for row in rows]
            paths = [(path,) for row in rows for path in row[2:] if path]
            db.executemany("INSERT OR IGNORE INTO doomed_files (path) VALUES (?)", paths)
            db.executemany("DELETE FROM reject_reasons WHERE reject_id = ?", ids)
            db.executemany("DELETE FROM dispositions WHERE reject_id = ?", ids)
            db.executemany("DELETE FROM rejects WHERE id = ?", ids)
        self.items -= len(rows)
        self.bytes -= sum(row[1] for row in rows)
        self.deleted += len(rows)
        self._finish_deletions(db)
        return len(rows)

    def _finish_deletions(self, db: sqlite3.Connection) -> None:
        """Unlink the doomed files (and the day folders they leave empty)."""
        paths = [row[0] for row in db.execute("SELECT path FROM doomed_files")]
        folders = set()
        for path in paths:
            target = self.data_dir / path
            target.unlink(missing_ok=True)
            folders.add(target.parent)
        for folder in folders:
            with contextlib.suppress(OSError):  # not empty: a later item of that day is still kept
                folder.rmdir()
        if paths:
            with db:
                db.executemany("DELETE FROM doomed_files WHERE path = ?", [(p,) for p in paths])

    # -- grade trend ------------------------------------------------------------------------------

    def _add_to_trend(self, minute: str, grade: dict) -> None:
        measures = {"overall": (grade["overall"], grade["overall"])}
        measures |= {name: (p["grade"], p["value"]) for name, p in (grade.get("parameters") or {}).items()}
        for parameter, (value_grade, value) in measures.items():
            slot = self._trend.setdefault((minute, parameter), [0, 0.0, value_grade, 0.0])
            slot[0] += 1
            slot[1] += value_grade
            slot[2] = min(slot[2], value_grade)
            slot[3] += value

    def _flush_trend(self, db: sqlite3.Connection, force: bool = False) -> None:
        """Add the collected grades to ``grade_trend`` every 10 s (the charts' freshness)."""
        if not self._trend or (not force and time.monotonic() - self._trend_flushed < 10):
            return
        self._trend_flushed = time.monotonic()
        rows = [(minute, parameter, *slot) for (minute, parameter), slot in self._trend.items()]
        self._trend = {}
        try:
            with db:
                db.executemany(
                    "INSERT INTO grade_trend (minute, parameter, items, grade_sum, grade_min, value_sum)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (minute, parameter) DO UPDATE SET"
                    " items = items + excluded.items, grade_sum = grade_sum + excluded.grade_sum,"
                    " grade_min = min(grade_min, excluded.grade_min), value_sum = value_sum + excluded.value_sum",
                    rows,
                )
        except sqlite3.Error as exc:
            log.error("reject log: could not store the grade trend: %s", exc)


# PNG level 1: fast and lossless; JPEG 90 when disk matters more than exact pixels.
_ENCODE_PARAMS = {"png": [cv2.IMWRITE_PNG_COMPRESSION, 1], "jpg": [cv2.IMWRITE_JPEG_QUALITY, 90]}


def _encode(fmt: str, image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(f".{fmt}", image, _ENCODE_PARAMS[fmt])
    if not ok:
        raise OSError(f"cannot encode a picture as {fmt}")
    return encoded.tobytes()


def _thumbnail(image: np.ndarray) -> np.ndarray:
    scale = THUMB_PX / max(image.shape[:2])
    if scale >= 1:
        return image
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".part")
    with open(temporary, "wb") as f:
        f.write(data)
    os.replace(temporary, path)
