"""The review store's read side, for the web UI and ``udigate rejects``: search with filters,
one item in full, dispositions, the grade trend. :mod:`gateway.rejects` writes the store.

Every method opens nothing new: one connection per thread (SQLite connections are not shared
across threads), read from the WAL so the line's writer is never blocked.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .rejects import FILE_COLUMNS, open_database
from .trends import TrendPoint

DISPOSITIONS = {"confirmed_defect": "confirmed defect", "false_reject": "false reject"}
PAGE_SIZE = 50


class ReviewError(ValueError):
    """A request the store cannot answer (bad filter value, unknown disposition …), with why."""


@dataclass(frozen=True, slots=True)
class Filters:
    """What to show; every field optional. Times are ISO 8601 (UTC, ``Z``) or a date."""

    since: str | None = None
    until: str | None = None
    job: str | None = None
    reason: str | None = None  # any of the item's reasons
    max_grade: float | None = None  # overall grade at most this (ungraded items excluded)
    verdict: str | None = None  # "reject" or "pass" (the kept sample)
    disposition: str | None = None  # "open", "confirmed_defect" or "false_reject"
    text: str | None = None  # part of the decoded data (serial, lot …)

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, normalise_time(value, name))
        if self.verdict not in (None, "reject", "pass"):
            raise ReviewError(f"verdict = {self.verdict!r}: expected reject or pass")
        if self.disposition not in (None, "open", *DISPOSITIONS):
            raise ReviewError(f"disposition = {self.disposition!r}: expected open, {', '.join(DISPOSITIONS)}")
        if self.max_grade is not None and not 0 <= self.max_grade <= 4:
            raise ReviewError(f"max_grade = {self.max_grade!r}: expected a grade from 0 to 4")

    def where(self, paging: bool = False) -> tuple[str, list]:
        """The SQL condition and its arguments. ``paging``: for newest-first pages, where walking
        the ids down and skipping what is out of the time range beats collecting the whole range
        through the timestamp index and sorting it (the unary + keeps SQLite off that index)."""
        terms, args = ["1"], []
        stamp = "+timestamp" if paging else "timestamp"
        if self.since:
            terms.append(f"{stamp} >= ?")
            args.append(self.since)
        if self.until:
            terms.append(f"{stamp} < ?")
            args.append(self.until)
        if self.job is not None:
            terms.append("job = ?")
            args.append(self.job)
        if self.reason:
            terms.append("id IN (SELECT reject_id FROM reject_reasons WHERE code = ?)")
            args.append(self.reason)
        if self.max_grade is not None:
            terms.append("grade <= ?")
            args.append(self.max_grade)
        if self.verdict:
            terms.append("verdict = ?")
            args.append(self.verdict)
        if self.disposition == "open":
            terms.append("disposition IS NULL")
        elif self.disposition:
            terms.append("disposition = ?")
            args.append(self.disposition)
        if self.text:
            terms.append("instr(data, ?) > 0")
            args.append(self.text)
        return " AND ".join(terms), args

    def query(self) -> dict[str, str]:
        """The filters as URL query parameters (unset ones left out)."""
        return {name: str(value) for name in self.__slots__ if (value := getattr(self, name)) is not None}


def normalise_time(value: str, name: str = "time") -> str:
    """``2026-11-23``, ``2026-11-23T08:00``, ``…+08:00``, ``…Z`` → UTC ``2026-11-23T00:00:00.000Z``
    (comparable with the stored timestamps as text). A time without a zone is the gateway's
    local time: what the plant's clocks show."""
    text = value.strip().replace(" ", "T")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ReviewError(f"{name} = {value!r}: expected a date or time like 2026-11-23 or 2026-11-23T08:00Z") from None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Disposition:
    disposition: str
    comment: str
    user: str
    at: str

    @property
    def label(self) -> str:
        return DISPOSITIONS[self.disposition]


@dataclass(frozen=True, slots=True)
class Item:
    """One kept item as indexed (the list shows these)."""

    id: int
    record_id: str
    run_id: str
    item_id: int
    timestamp: str
    decided_at: str | None
    site: str
    line: str
    job: str
    verdict: str
    reason: str
    reasons: tuple[str, ...]
    data: str | None
    grade: float | None
    quality: str | None
    weakest: str | None
    files: dict[str, str]  # column (image, crop, overlay, thumb, record) → path in the data folder
    bytes: int
    disposition: Disposition | None

    @property
    def hri(self) -> str | None:
        """The data as a person reads it (GS shown as ⟨GS⟩)."""
        return None if self.data is None else self.data.replace("\x1d", "⟨GS⟩")


@dataclass(frozen=True, slots=True)
class Detail:
    """One item in full: its index row, its JSON record and every disposition made."""

    item: Item
    record: dict | None
    record_problem: str | None  # why the record could not be read
    history: tuple[Disposition, ...]
    previous_id: int | None  # the neighbours in the store (older, newer)
    next_id: int | None


@dataclass(frozen=True, slots=True)
class Page:
    items: tuple[Item, ...]
    total: int  # matching the filters
    next_before: int | None  # pass as ``before`` for the next (older) page


@dataclass(frozen=True, slots=True)
class Totals:
    """Counts for reports and exports."""

    items: int
    rejects: int
    passes: int
    by_reason: dict[str, int]
    by_disposition: dict[str, int] = field(default_factory=dict)  # "open" included
    first: str | None = None
    last: str | None = None


_COLUMNS = (
    "id, record_id, run_id, item_id, timestamp, decided_at, site, line, job, verdict, reason, reasons, data, grade,"
    f" quality, weakest, {', '.join(FILE_COLUMNS)}, bytes, disposition, disposition_comment, disposition_by,"
    " disposition_at"
)


def _item(row: sqlite3.Row) -> Item:
    values = dict(row)
    files = {column: path for column in FILE_COLUMNS if (path := values.pop(column))}
    disposition = values.pop("disposition")
    comment, by, at = values.pop("disposition_comment"), values.pop("disposition_by"), values.pop("disposition_at")
    values["reasons"] = tuple(json.loads(values["reasons"]))
    return Item(
        **values,
        files=files,
        disposition=Disposition(disposition, comment or "", by or "", at or "") if disposition else None,
    )


class ReviewIndex:
    """Queries over the store of one data folder."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        open_database(data_dir / "udigate.db").close()  # created or migrated; fails early when newer
        self._local = threading.local()

    @property
    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = sqlite3.connect(self.data_dir / "udigate.db", timeout=10)
            db.row_factory = sqlite3.Row
        return db

    def search(self, filters: Filters = Filters(), before: int | None = None, limit: int = PAGE_SIZE) -> Page:
        """Newest first, ``limit`` at a time; ``before`` = an id: only older ones (the next page)."""
        where, args = filters.where(paging=True)
        paged = f"{where} AND id < ?" if before is not None else where
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM rejects WHERE {paged} ORDER BY id DESC LIMIT ?",
            [*args, *([before] if before is not None else []), limit + 1],
        ).fetchall()
        items = tuple(_item(row) for row in rows[:limit])
        if before is None and len(rows) <= limit:
            total = len(rows)  # the first page holds them all: no second pass to count
        else:
            where, args = filters.where()
            total = self._db.execute(f"SELECT count(*) FROM rejects WHERE {where}", args).fetchone()[0]
        return Page(items, total, items[-1].id if len(rows) > limit else None)

    def iterate(self, filters: Filters = Filters()) -> Iterator[Item]:
        """Every matching item, oldest first (exports)."""
        where, args = filters.where()
        after = 0
        while True:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM rejects WHERE {where} AND id > ? ORDER BY id LIMIT 500", [*args, after]
            ).fetchall()
            if not rows:
                return
            for row in rows:
                yield _item(row)
            after = rows[-1][0]

    def get(self, item_id: int) -> Detail | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM rejects WHERE id = ?", (item_id,)).fetchone()
        if row is None:
            return None
        item = _item(row)
        record, problem = None, None
        try:
            record = json.loads((self.data_dir / item.files["record"]).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            problem = f"cannot read the record {item.files['record']}: {exc}"
        history = tuple(
            Disposition(*r)
            for r in self._db.execute(
                "SELECT disposition, comment, user, at FROM dispositions WHERE reject_id = ? ORDER BY id", (item_id,)
            )
        )
        previous = self._db.execute("SELECT max(id) FROM rejects WHERE id < ?", (item_id,)).fetchone()[0]
        following = self._db.execute("SELECT min(id) FROM rejects WHERE id > ?", (item_id,)).fetchone()[0]
        return Detail(item, record, problem, history, previous, following)

    def dispose(self, item_id: int, disposition: str, comment: str, user: str) -> Disposition:
        """Record a quality engineer's decision on an item (kept in its history)."""
        if disposition not in DISPOSITIONS:
            raise ReviewError(f"disposition = {disposition!r}: expected one of {', '.join(DISPOSITIONS)}")
        comment = comment.strip()
        if len(comment) > 2000:
            raise ReviewError("comment: at most 2000 characters")
        at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        with self._db as db:
            row = db.execute("SELECT record_id FROM rejects WHERE id = ?", (item_id,)).fetchone()
            if row is None:
                raise ReviewError(f"no item {item_id} in the store (deleted by retention?)")
            db.execute(
                "INSERT INTO dispositions (reject_id, record_id, disposition, comment, user, at) VALUES (?,?,?,?,?,?)",
                (item_id, row[0], disposition, comment, user, at),
            )
            db.execute(
                "UPDATE rejects SET disposition = ?, disposition_comment = ?, disposition_by = ?, disposition_at = ?"
                " WHERE id = ?",
                (disposition, comment, user, at, item_id),
            )
        return Disposition(disposition, comment, user, at)

    def totals(self, filters: Filters = Filters()) -> Totals:
        where, args = filters.where()
        items, rejects, first, last = self._db.execute(
            f"SELECT count(*), count(*) FILTER (WHERE verdict = 'reject'), min(timestamp), max(timestamp)"
            f" FROM rejects WHERE {where}",
            args,
        ).fetchone()
        by_reason = dict(
            self._db.execute(
                f"SELECT code, count(*) FROM reject_reasons WHERE reject_id IN (SELECT id FROM rejects WHERE {where})"
                " GROUP BY code ORDER BY count(*) DESC, code",
                args,
            ).fetchall()
        )
        by_disposition = {
            (d or "open"): n
            for d, n in self._db.execute(
                f"SELECT disposition, count(*) FROM rejects WHERE {where} AND verdict = 'reject' GROUP BY disposition",
                args,
            )
        }
        return Totals(items, rejects, items - rejects, by_reason, by_disposition, first, last)

    def jobs(self) -> list[str]:
        return [row[0] for row in self._db.execute("SELECT DISTINCT job FROM rejects ORDER BY job")]

    def reasons(self) -> list[str]:
        return [row[0] for row in self._db.execute("SELECT DISTINCT code FROM reject_reasons ORDER BY code")]

    def trend(self, since: str, until: str | None = None) -> list[TrendPoint]:
        """Per-minute grade statistics of every graded item from ``since`` (ISO) on."""
        args = [since[:16]] + ([until[:16]] if until else [])
        rows = self._db.execute(
            "SELECT minute, parameter, items, grade_sum / items, grade_min, value_sum / items FROM grade_trend"
            f" WHERE minute >= ?{' AND minute < ?' if until else ''} ORDER BY minute, parameter",
            args,
        ).fetchall()
        return [TrendPoint(*row) for row in rows]

    def store_size(self) -> tuple[int, int]:
        """Items and bytes in the store."""
        return tuple(self._db.execute("SELECT count(*), coalesce(sum(bytes), 0) FROM rejects").fetchone())

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
