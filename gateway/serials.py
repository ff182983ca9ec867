"""The persistent serial registry: DI + serial of every verified item, kept in SQLite
(``<data_dir>/udigate.db``, tables ``serial_registry``, ``serial_runs``, ``serial_schema``), so a
duplicate is caught across restarts, runs and production orders.

A serial is a duplicate when the same DI + serial was already verified within the scope:

* ``"job"``: by the same production order (job id; any line sharing the database);
* ``"line"``: on the same line (any job, any run);
* ``"all"``: anywhere (any line and job sharing this database).

Rows always record line, job and run, whatever the scope: the scope is only the question asked,
so changing it later needs no migration.

Durability: :meth:`SerialStore.add` commits before it returns. With ``durability="process"``
(WAL, ``synchronous=NORMAL``) an acknowledged serial survives a killed process; with ``"power"``
(``synchronous=FULL``, one fsync per commit) it also survives a power cut.

Memory is bounded by SQLite's page cache (``cache_mb``) whatever the number of stored serials:
lookups go through the primary key, nothing is held in Python.

The pipeline's decision thread, per item (``timestamp`` = the frame's UTC trigger time)::

    first = store.seen(gtin, serial)          # None, or where/when it was first verified
    ...                                       # reject as duplicate_serial when first is not None
    if passed:
        first = store.add(gtin, serial, item_id=item_id, timestamp=timestamp)  # committed here
        # first is not None only if another writer stored it since seen(): treat as a duplicate
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

Scope = Literal["job", "line", "all"]
Durability = Literal["process", "power"]

# Own version row: PRAGMA user_version is one number for the whole (shared) database file and
# belongs to gateway.rejects.open_database; two modules cannot both version through it.
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS serial_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS serial_runs (
    id INTEGER PRIMARY KEY,          -- allocation order = first-use order
    run_id TEXT NOT NULL,
    line TEXT NOT NULL,
    job TEXT NOT NULL,
    UNIQUE (run_id, line, job)
);
CREATE TABLE IF NOT EXISTS serial_registry (
    di TEXT NOT NULL,                -- device identifier (GTIN-14 for GS1)
    serial TEXT NOT NULL,
    run INTEGER NOT NULL REFERENCES serial_runs (id),  -- where: run, line, job
    item_id INTEGER NOT NULL,
    verified_ms INTEGER NOT NULL,    -- when: trigger time, Unix milliseconds (UTC)
    PRIMARY KEY (di, serial, run)
) WITHOUT ROWID;
"""
# CROSS JOIN: SQLite keeps the written join order, so the lookup always starts from the primary key.
_SEEN = (
    "SELECT s.item_id, r.run_id, r.job, r.line, s.verified_ms FROM serial_registry s"
    " CROSS JOIN serial_runs r ON r.id = s.run WHERE s.di = ? AND s.serial = ?{} ORDER BY s.run, s.item_id LIMIT 1"
)
_SEEN_IN = {"job": _SEEN.format(" AND r.job = ?"), "line": _SEEN.format(" AND r.line = ?"), "all": _SEEN.format("")}
_INSERT = "INSERT OR IGNORE INTO serial_registry (di, serial, run, item_id, verified_ms) VALUES (?, ?, ?, ?, ?)"

SerialItem = tuple[str, str, int, datetime]  # di, serial, item_id, timestamp


@dataclass(frozen=True, slots=True)
class Seen:
    """Where and when a DI + serial was first verified (within the scope asked)."""

    item_id: int
    run_id: str
    job: str
    line: str
    timestamp: datetime  # UTC, millisecond resolution

    def __str__(self) -> str:
        when = self.timestamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        job = f", job {self.job}" if self.job else ""
        return f"first verified at {when} on {self.line}{job}, run {self.run_id}, item {self.item_id}"


class SerialStore:
    """DI + serial uniqueness within ``scope``, persistent in the SQLite file ``db_path``.

    ``line``, ``job`` and ``run_id`` say where this store's serials are verified (and, through the
    scope, which earlier ones count as duplicates); :meth:`set_job` switches the production order.
    One connection, serialised by a lock: meant for the one decision thread (importers open their
    own store; SQLite's WAL lets them work alongside).
    """

    def __init__(
        self,
        db_path: Path,
        *,
        scope: Scope = "line",
        line: str = "line1",
        job: str = "",
        run_id: str = "",
        durability: Durability = "process",
        cache_mb: int = 32,
    ) -> None:
        if scope not in _SEEN_IN:
            raise ValueError(f"scope must be job, line or all, not {scope!r}")
        if durability not in ("process", "power"):
            raise ValueError(f"durability must be process or power, not {durability!r}")
        self.path = Path(db_path)
        self.scope: Scope = scope
        self.line = line
        self.run_id = run_id
        self.job = job
        self._lock = threading.Lock()
        self._runs: dict[str, int] = {}  # job → serial_runs.id of (run_id, line, job), once committed
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: no implicit transactions; every write below is an explicit one.
        # check_same_thread=False: built in one thread, used by the decision thread (under the lock).
        self._db = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if durability == 'power' else 'NORMAL'}")
            self._db.execute(f"PRAGMA cache_size=-{int(cache_mb) * 1024}")  # KiB: bounded page cache
            # the WAL grows to the largest transaction (a big import); truncate it back after checkpoints
            self._db.execute(f"PRAGMA journal_size_limit={64 * 1024 * 1024}")
            self._migrate()
        except BaseException:
            self._db.close()
            raise
        self._query = _SEEN_IN[scope]
        self._scope_key: tuple[str, ...] = ()
        self.set_job(job)

    # -- the decision thread's API -------------------------------------------------------------

    def set_job(self, job: str) -> None:
        """Switch to another production order: later serials are recorded under ``job`` (and
        with scope "job", only this order's serials count as duplicates)."""
        with self._lock:
            self.job = job
            self._scope_key = {"job": (job,), "line": (self.line,), "all": ()}[self.scope]

    def seen(self, di: str, serial: str) -> Seen | None:
        """Where and when ``di`` + ``serial`` was first verified within the scope, None if never."""
        with self._lock:
            return self._seen(di, serial)

    def add(self, di: str, serial: str, *, item_id: int, timestamp: datetime) -> Seen | None:
        """Record a verified item, committed (durably, as ``durability`` says) before returning.

        Returns None when stored; if the serial is already in scope (another writer got there
        since :meth:`seen`), stores nothing and returns the first verification instead."""
        return self.check_and_add_many([(di, serial, item_id, timestamp)])[0]

    def check_and_add_many(self, items: Iterable[SerialItem]) -> list[Seen | None]:
        """Check and record ``(di, serial, item_id, timestamp)`` items in order, in one transaction.

        Per item: the first verification in scope (a duplicate, not stored) or None (new, stored).
        A repeat within ``items`` is a duplicate of its first occurrence. All or nothing: on an
        error no item of the call is stored."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")  # the write lock first: no stale read between check and insert
            try:
                run = self._run()
                results: list[Seen | None] = []
                for di, serial, item_id, timestamp in items:
                    first = self._seen(di, serial)
                    if first is None:
                        db.execute(_INSERT, (di, serial, run, item_id, _ms(timestamp)))
                    results.append(first)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                self._runs.pop(self.job, None)  # its row may have been rolled back
                raise
            return results

    def count(self) -> int:
        """Stored serials (all scopes; a full scan of the table: not for the decision path)."""
        with self._lock:
            return self._db.execute("SELECT count(*) FROM serial_registry").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> SerialStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------------

    def _seen(self, di: str, serial: str) -> Seen | None:
        row = self._db.execute(self._query, (di, serial, *self._scope_key)).fetchone()
        if row is None:
            return None
        item_id, run_id, job, line, ms = row
        return Seen(item_id, run_id, job, line, datetime.fromtimestamp(ms / 1000, UTC))

    def _run(self) -> int:
        """The serial_runs id of (run_id, line, job), created inside the caller's transaction."""
        run = self._runs.get(self.job)
        if run is None:
            key = (self.run_id, self.line, self.job)
            self._db.execute("INSERT OR IGNORE INTO serial_runs (run_id, line, job) VALUES (?, ?, ?)", key)
            run = self._db.execute(
                "SELECT id FROM serial_runs WHERE run_id = ? AND line = ? AND job = ?", key
            ).fetchone()[0]
            self._runs[self.job] = run
        return run

    def _migrate(self) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in filter(str.strip, _SCHEMA.split(";")):  # not executescript: it would COMMIT
                db.execute(statement)
            row = db.execute("SELECT version FROM serial_schema").fetchone()
            if row is None:
                db.execute("INSERT INTO serial_schema (version) VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path}: serial registry written by a newer udigate (schema {row[0]} > {SCHEMA_VERSION})"
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise


def _ms(timestamp: datetime) -> int:
    if timestamp.tzinfo is None:
        raise ValueError(f"timestamp {timestamp} has no time zone (pass the frame's UTC time)")
    return round(timestamp.timestamp() * 1000)
