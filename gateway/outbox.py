"""The MQTT outbox: records wait here, on disk, until the broker has acknowledged them.

paho-mqtt keeps unsent messages only in memory, so a broker outage that outlasts the process, or a
killed gateway, would lose them. Every record is therefore committed to this SQLite file before it
is published and deleted only when the broker's PUBACK (QoS 1) arrives; after a reconnect or a
restart the remaining entries are sent again, oldest first. A record whose acknowledgement was lost
in a cut is sent twice: each carries its idempotency key (``record_id``) so consumers de-duplicate.

The quota counts the records' bytes (payload, key, kind and a fixed per-row overhead), not the
file's size, which SQLite only returns to the system on VACUUM.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

ROW_OVERHEAD = 48  # bytes per entry besides its fields: rowid, timestamps, b-tree cell


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int  # order of commitment; never reused
    kind: str  # topic under the line's root: "verified", "rejected", "plc/undelivered", "epcis"
    key: str  # idempotency id (the record_id)
    payload: bytes  # the record as UTF-8 JSON
    created: float  # epoch seconds when committed


class OutboxFull(Exception):
    """The quota is reached: the record was not kept."""


class OutboxDamaged(Exception):
    """The outbox file cannot be read as a database."""


class Outbox:
    """A durable FIFO of records. ``put`` (the pipeline's thread) and ``after``/``remove`` (the
    publisher's thread) may run concurrently."""

    def __init__(self, path: Path, max_bytes: int, durability: Literal["process", "power"] = "process") -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if durability == 'power' else 'NORMAL'}")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, "
                "key TEXT NOT NULL, payload BLOB NOT NULL, created REAL NOT NULL)"
            )
            count, size = self._db.execute(
                f"SELECT count(*), total(length(payload) + length(key) + length(kind) + {ROW_OVERHEAD}) FROM outbox"
            ).fetchone()
        except sqlite3.DatabaseError as exc:
            raise OutboxDamaged(
                f"the MQTT outbox {path} cannot be opened ({exc}); move it aside to start with an empty one "
                "(records in it were not acknowledged by the broker)"
            ) from None
        self.count, self.size_bytes = count, int(size)
        self.committed = 0  # put in this process
        self.removed = 0  # acknowledged and deleted in this process
        if count:
            log.info("MQTT outbox %s holds %d records from before; they are sent first", path, count)

    @property
    def fill(self) -> float:
        """Share of the quota in use (0–1+)."""
        return self.size_bytes / self.max_bytes

    def put(self, kind: str, key: str, payload: bytes) -> int:
        """Commit one record; returns its sequence number. Raises :class:`OutboxFull` when the
        quota has no room for it."""
        size = len(payload) + len(key.encode()) + len(kind) + ROW_OVERHEAD
        with self._lock:
            if self.size_bytes + size > self.max_bytes:
                raise OutboxFull(
                    f"the MQTT outbox is full ({self.count} records, {self.size_bytes / 1e6:.1f} of "
                    f"{self.max_bytes / 1e6:.1f} MB): the broker has not acknowledged them"
                )
            seq = self._db.execute(
                "INSERT INTO outbox (kind, key, payload, created) VALUES (?, ?, ?, ?)",
                (kind, key, payload, time.time()),
            ).lastrowid
            self.count += 1
            self.size_bytes += size
            self.committed += 1
        return seq

    def after(self, seq: int, limit: int) -> list[Entry]:
        """Up to ``limit`` entries committed after ``seq``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, kind, key, payload, created FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
            ).fetchall()
        return [Entry(*row) for row in rows]

    def remove(self, seqs: Iterable[int]) -> None:
        """Delete acknowledged entries (one transaction); unknown numbers are ignored."""
        seqs = list(seqs)
        with self._lock:
            self._db.execute("BEGIN")
            for start in range(0, len(seqs), 500):  # SQLite's limit on bound parameters
                chunk = seqs[start : start + 500]
                marks = ",".join("?" * len(chunk))
                count, size = self._db.execute(
                    f"SELECT count(*), total(length(payload) + length(key) + length(kind) + {ROW_OVERHEAD}) "
                    f"FROM outbox WHERE seq IN ({marks})",
                    chunk,
                ).fetchone()
                self._db.execute(f"DELETE FROM outbox WHERE seq IN ({marks})", chunk)
                self.count -= count
                self.size_bytes -= int(size)
                self.removed += count
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()
