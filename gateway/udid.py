"""The product master: China's national UDI database (UDID) public download, imported into the
gateway database (``udigate.db``, tables ``udid_*``) and looked up per scanned DI.

Import (:func:`import_releases`). Full releases (``UDID_FULL_RELEASE_*.zip``, about 5.5 M devices
in about 1,100 XML parts) and incremental ones (``UDID_DAY_UPDATE_*.zip``, weekly, monthly) are
applied in the order given. A ZIP's ``*.xml`` members are read in PART order, not ZIP order; a
bare ``.xml`` file is read as is. Records are applied by version, not by file: per
``deviceRecordKey`` a newer (``versionNumber``, ``versionTime``) replaces the stored one, an older
or equal one is ignored, a deletion (``versionStauts`` 删除) removes the device and its package DIs
and leaves a tombstone, so an older release imported later cannot bring the device back (at an
equal version the deletion wins). Hence re-importing a file changes nothing, and importing
releases out of order converges to the newest state.

Streaming, bounded memory: every member is decompressed, sanitised and parsed in 1 MB chunks with
expat (no element tree is built) and each record is applied as soon as it is complete; memory does
not grow with the size of a release.

Real files are not well-formed XML: they hold stray control characters (illegal in XML 1.0) and
bare ``&``. :class:`SanitisingReader` repairs the byte stream on the fly, holding back a chunk's
tail that could be the start of an entity so that chunk boundaries never change the result:
illegal characters (and character references to them) become a space, a ``&`` that does not start
a predefined entity or character reference becomes ``&amp;``, invalid UTF-8 becomes U+FFFD. The
repairs are counted and reported per member.

Failure semantics (chosen so that a bad download never leaves a silent half-applied state):

- Before anything is written, every file is checked: ZIPs open, every member passes its CRC (a
  truncated or corrupt member fails here, naming it), and the PART numbers are complete. Costs
  one extra decompression, about 4 % of the import time.
- A record that parses as XML but is not usable (no key, no DI, a version that is not a number,
  an unknown status, a flag that is not 是/否, a date that is not a date) is skipped, counted and
  listed in :attr:`ImportReport.problems` with its member and position; the rest is applied.
- XML that is not well-formed even after sanitising stops the import with :class:`UdidImportError`
  naming the file, the member, the record number and the line. Writes are committed every
  10,000 devices and at the end of every member, and the open transaction is rolled back on error:
  with real parts (about 5,000 devices each) a broken member is not applied at all, earlier
  members are, and later files are not touched. Every file has a row in ``udid_imports`` (status
  running / done / failed, counts, error) written in the same transactions as the data, so what
  was applied is always on record; importing the file again once repaired completes it
  (idempotent, see above).

Readers (:class:`ProductMaster`) never wait for an import (WAL); during a full import they see
whole devices, old or new.

Schema versioning: ``PRAGMA user_version`` belongs to the whole database file and the reject log
(``gateway/rejects.py``) resets it to its own version and refuses a higher one, so the UDID tables
keep their own schema version in ``udid_meta`` instead.
"""

from __future__ import annotations

import hashlib
import re
import resource
import sqlite3
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import BinaryIO
from xml.parsers import expat

SCHEMA_VERSION = 1
BATCH_DEVICES = 10_000  # devices per transaction
MAX_PROBLEMS = 100  # problem messages kept in a report (all are counted)
_CHUNK = 1 << 20

ADDED, CHANGED, DELETED = "新增", "变更", "删除"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS udid_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS udid_devices (
    id INTEGER PRIMARY KEY,
    record_key TEXT NOT NULL UNIQUE,       -- deviceRecordKey
    primary_di TEXT NOT NULL,              -- zxxsdycpbs, DI of the minimum sales unit
    use_unit_di TEXT,                      -- sydycpbs when it differs from primary_di
    coding_system TEXT NOT NULL,           -- cpbsbmtxmc: GS1, MA码（IDcode）, …
    name TEXT NOT NULL,                    -- cpmctymc
    model TEXT NOT NULL,                   -- ggxh
    ybbm TEXT,                             -- medical-insurance consumables code, NULL when empty
    withdrawn TEXT,                        -- tsrq as YYYY-MM-DD, NULL when on the market
    pi_lot INTEGER NOT NULL,               -- scbssfbhph: the PI carries a lot
    pi_serial INTEGER NOT NULL,            -- scbssfbhxlh
    pi_production_date INTEGER NOT NULL,   -- scbssfbhscrq
    pi_expiry INTEGER NOT NULL,            -- scbssfbhsxrq
    registration TEXT NOT NULL,            -- zczbhhzbapzbh
    registrant TEXT NOT NULL,              -- ylqxzcrbarmc
    version INTEGER NOT NULL,              -- versionNumber
    version_time TEXT NOT NULL,            -- versionTime as published
    import_id INTEGER NOT NULL             -- udid_imports.id that wrote this version
);
CREATE INDEX IF NOT EXISTS udid_devices_primary_di ON udid_devices (primary_di);
CREATE INDEX IF NOT EXISTS udid_devices_use_unit_di ON udid_devices (use_unit_di) WHERE use_unit_di IS NOT NULL;
CREATE TABLE IF NOT EXISTS udid_packages (
    device_id INTEGER NOT NULL,            -- udid_devices.id
    di TEXT NOT NULL,                      -- bzcpbs
    level TEXT NOT NULL,                   -- cpbzjb: 盒, 箱, …
    quantity INTEGER,                      -- bznhxyjcpbssl, items of the next level down
    next_di TEXT NOT NULL,                 -- bznhxyjbzcpbs
    units INTEGER,                         -- minimum sales units inside (chain multiplied), NULL if broken
    PRIMARY KEY (device_id, di)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS udid_packages_di ON udid_packages (di);
CREATE TABLE IF NOT EXISTS udid_deleted (
    record_key TEXT PRIMARY KEY,           -- tombstones: a deletion outranks older versions
    version INTEGER NOT NULL,
    version_time TEXT NOT NULL,
    import_id INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS udid_imports (
    id INTEGER PRIMARY KEY,
    file TEXT NOT NULL,                    -- file name
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    kind TEXT NOT NULL,                    -- full / incremental / unknown, from the file name
    started TEXT NOT NULL,                 -- UTC, ISO 8601
    finished TEXT,
    status TEXT NOT NULL,                  -- running / done / failed
    position TEXT,                         -- last member committed (or failing)
    records INTEGER NOT NULL DEFAULT 0,
    added INTEGER NOT NULL DEFAULT 0,
    changed INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0,
    ignored INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0,
    error TEXT
);
"""


class UdidImportError(ValueError):
    """A file that cannot be imported: names the file, the member and (for XML errors) the record
    number and line. ``source`` is ``file`` or ``file!member``."""

    def __init__(self, message: str, source: str, record: int | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.source = source
        self.record = record
        self.line = line


@dataclass(frozen=True)
class Product:
    """What the UDID says about one scanned DI."""

    di: str  # the DI looked up
    primary_di: str  # DI of the minimum sales unit
    package_level: str  # "unit", "use_unit" or the package level name (盒, 箱, …)
    units_per_package: int | None  # minimum sales units in the scanned item; None: use unit or broken chain
    name: str
    model: str
    ybbm: str | None
    withdrawn: date | None  # tsrq; the device is off the market from this day
    pi_lot: bool
    pi_serial: bool
    pi_production_date: bool
    pi_expiry: bool
    registration: str
    registrant: str
    coding_system: str
    record_key: str
    version: int
    version_time: str

    def is_withdrawn(self, on: date | None = None) -> bool:
        return self.withdrawn is not None and self.withdrawn <= (on or date.today())


@dataclass(frozen=True)
class ImportReport:
    files: tuple[str, ...]
    records: int  # device records read
    devices_added: int
    devices_changed: int
    devices_deleted: int
    ignored: int  # same or older version than stored, or deletion of an unknown device
    skipped: int  # unusable records, not applied (see problems)
    warnings: int  # applied with a remark (broken package chain, header count, repaired characters)
    problems: tuple[str, ...]  # the first MAX_PROBLEMS skip reasons and warnings, with their position
    seconds: float
    peak_rss_mb: float  # of the whole process (ru_maxrss), not of the import alone


@dataclass(frozen=True)
class ImportRecord:
    """One row of ``udid_imports``: what was imported when."""

    id: int
    file: str
    kind: str
    sha256: str
    started: str
    finished: str | None
    status: str
    records: int
    added: int
    changed: int
    deleted: int
    ignored: int
    skipped: int
    error: str | None


def open_udid_database(path: Path) -> sqlite3.Connection:
    """The gateway database with the UDID tables created or migrated (autocommit mode: callers
    open their own transactions)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    # NORMAL survives a killed process; surviving power loss needs FULL (see docs/architecture.md).
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE IF NOT EXISTS udid_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    row = db.execute("SELECT value FROM udid_meta WHERE key = 'schema_version'").fetchone()
    version = int(row[0]) if row else 0
    if version > SCHEMA_VERSION:
        db.close()
        raise RuntimeError(f"{path}: UDID tables written by a newer udigate (schema {version} > {SCHEMA_VERSION})")
    if version < SCHEMA_VERSION:
        db.execute("BEGIN IMMEDIATE")
        for statement in _statements(_SCHEMA):
            db.execute(statement)
        db.execute("INSERT OR REPLACE INTO udid_meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        db.execute("COMMIT")
    return db


def _statements(script: str) -> Iterator[str]:
    text = "\n".join(line.split("--")[0] for line in script.splitlines())
    return (s.strip() for s in text.split(";") if s.strip())


# --- the sanitising reader -------------------------------------------------------------------------

# XML 1.0 allows tab, LF, CR and U+0020 up; below that every byte is a stray control character. These
# are single ASCII bytes, never part of a multi-byte UTF-8 (or GB 18030) sequence.
_CONTROL = bytes(b for b in range(0x20) if b not in b"\t\n\r")
_TO_SPACE = bytes.maketrans(_CONTROL, b" " * len(_CONTROL))
_NON_CHARACTER = re.compile(rb"\xef\xbf[\xbe\xbf]")  # U+FFFE, U+FFFF: illegal too, but UTF-8 only
_BARE_AMP = re.compile(rb"&(?!(?:amp|lt|gt|quot|apos|#[0-9]{1,8}|#x[0-9a-fA-F]{1,8});)")
_CHAR_REF = re.compile(rb"&#(x[0-9a-fA-F]{1,8}|[0-9]{1,8});")
_LONGEST_REF = len(b"&#x00000000;")
_ENCODING = re.compile(rb"""^(?:\xef\xbb\xbf)?\s*<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9._-]+)""")


def _xml_char(code: int) -> bool:
    return code in (0x9, 0xA, 0xD) or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD or 0x10000 <= code <= 0x10FFFF


def _legal_char_ref(ref: bytes) -> bool:
    return _xml_char(int(ref[1:], 16) if ref[:1] == b"x" else int(ref))


class SanitisingReader:
    """A binary file-like wrapper that makes a UDID XML stream parseable (see the module notes);
    ``repairs`` counts what it changed. Works on bytes, so it is exact for UTF-8 and any
    ASCII-compatible encoding (the UTF-8 repairs are skipped when another encoding is declared).
    It does not know about CDATA sections or comments: a ``&`` inside one would come out as
    ``&amp;`` (not expected in UDID downloads, but not verified against a real one)."""

    def __init__(self, raw: BinaryIO, chunk_size: int = _CHUNK) -> None:
        self._raw = raw
        self._chunk = chunk_size
        self._carry = b""
        self._buf = b""
        self._pos = 0
        self._eof = False
        self._utf8: bool | None = None
        self.repairs = 0

    def read(self, size: int = -1) -> bytes:
        while not self._eof and (size < 0 or len(self._buf) - self._pos < size):
            self._fill()
        if size < 0 or self._pos + size >= len(self._buf):
            out = self._buf[self._pos :]
            self._buf, self._pos = b"", 0
            return out
        out = self._buf[self._pos : self._pos + size]
        self._pos += size
        return out

    def _fill(self) -> None:
        data = self._raw.read(self._chunk)
        if not data:
            self._eof = True
            data, self._carry = self._carry, b""
        else:
            data = self._carry + data
            if self._utf8 is None:
                found = _ENCODING.match(data)
                self._utf8 = found is None or found.group(1).lower().replace(b"_", b"-") in (b"utf-8", b"utf8")
            end = self._safe_end(data)
            data, self._carry = data[:end], data[end:]
        if data:
            self._buf = self._buf[self._pos :] + self._clean(data)
            self._pos = 0

    def _safe_end(self, data: bytes) -> int:
        """Where ``data`` can be cut without splitting an entity or a UTF-8 sequence."""
        end = len(data)
        amp = data.rfind(b"&", max(0, end - _LONGEST_REF))
        if amp >= 0:
            end = amp
        if self._utf8:
            for back in range(1, min(4, end) + 1):
                byte = data[end - back]
                if byte < 0x80:
                    break
                if byte >= 0xC0:  # a lead byte: keep it for the next chunk unless its sequence is whole
                    if back < (2 if byte < 0xE0 else 3 if byte < 0xF0 else 4):
                        end -= back
                    break
        return end

    def _char_ref(self, match: re.Match[bytes]) -> bytes:
        if _legal_char_ref(match.group(1)):
            return match.group(0)
        self.repairs += 1
        return b" "

    def _clean(self, data: bytes) -> bytes:
        if self._utf8:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                before = data.count(b"\xef\xbf\xbd")
                data = data.decode("utf-8", "replace").encode("utf-8")
                self.repairs += data.count(b"\xef\xbf\xbd") - before
            if b"\xef\xbf\xbe" in data or b"\xef\xbf\xbf" in data:
                data, n = _NON_CHARACTER.subn(b" ", data)
                self.repairs += n
        # two C passes over the bytes, several times faster than a regular expression
        n = len(data) - len(data.translate(None, _CONTROL))
        if n:
            data = data.translate(_TO_SPACE)
            self.repairs += n
        if b"&" in data:
            if b"&#" in data:
                data = _CHAR_REF.sub(self._char_ref, data)
            data, n = _BARE_AMP.subn(b"&amp;", data)
            self.repairs += n
        return data


# --- parsing -----------------------------------------------------------------------------------------

# A record as read: the flat fields (tag -> text, stripped later) and the packing levels.
_Raw = tuple[dict[str, str], list[tuple[str, str, str, str]]]


class _Parser:
    """Expat with three small handlers (no element tree): each finished ``<device>`` is queued as
    its flat fields and packing levels. Text is collected since the previous end tag, so values
    are stripped when used."""

    def __init__(self) -> None:
        self.records: list[_Raw] = []
        self.header_count: str | None = None
        self.root: str | None = None
        text: list[str] = []
        fields: dict[str, str] = {}
        packings: list[tuple[str, str, str, str]] = []
        join = "".join
        records = self.records
        special = frozenset(("device", "packing", "numberRkeyecordXML", "header"))

        def end(name: str) -> None:
            nonlocal fields, packings
            if name not in special:
                fields[name] = join(text)
            elif name == "device":
                records.append((fields, packings))
                fields, packings = {}, []
            elif name == "packing":
                pop = fields.pop
                packings.append(
                    (pop("bzcpbs", ""), pop("cpbzjb", ""), pop("bznhxyjcpbssl", ""), pop("bznhxyjbzcpbs", ""))
                )
            elif name == "numberRkeyecordXML":
                self.header_count = join(text).strip()
            elif name == "header":
                fields.clear()
            text.clear()

        def start(name: str, attributes: object) -> None:
            self.root = name
            self.parser.StartElementHandler = None  # only the root is checked: saves a call per element

        self.parser = expat.ParserCreate()
        self.parser.buffer_text = True
        self.parser.buffer_size = 1 << 16
        self.parser.StartElementHandler = start
        self.parser.EndElementHandler = end
        self.parser.CharacterDataHandler = text.append


def _flag(value: str, tag: str) -> bool:
    value = value.strip()
    if value in ("是", "1", "Y", "y", "true", "TRUE", "True"):
        return True
    if value in ("否", "0", "N", "n", "false", "FALSE", "False", ""):
        return False  # empty: the registrant did not declare the PI element
    raise ValueError(f"{tag} is {value!r}, not 是/否")


_DATE = re.compile(r"(\d{4})[-/.年]?(\d{1,2})[-/.月]?(\d{1,2})")


def _date(value: str, tag: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    found = _DATE.match(value)
    try:
        if found is None:
            raise ValueError
        return date(int(found.group(1)), int(found.group(2)), int(found.group(3))).isoformat()
    except ValueError:
        raise ValueError(f"{tag} is {value!r}, not a date") from None


def _units(packings: list[tuple[str, str, int | None, str]], unit_di: str) -> list[int | None]:
    """Minimum sales units in each package: its quantity times the units of the level below, down to
    the unit DI; None when the chain is broken (unknown DI below, missing quantity, a loop)."""
    by_di = {p[0]: p for p in packings}
    result = []
    for di, _, _, _ in packings:
        units: int | None = 1
        for _ in range(len(packings) + 1):
            _, _, quantity, below = by_di[di]
            if quantity is None:
                units = None
                break
            units *= quantity
            if below == unit_di:
                break
            if below not in by_di:
                units = None
                break
            di = below
        else:
            units = None  # a loop
        result.append(units)
    return result


# --- import --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _File:
    path: Path
    members: tuple[str, ...] | None  # None: a bare XML file
    sha256: str
    size: int
    kind: str


_PART = re.compile(r"PART(\d+)_Of_(\d+)", re.IGNORECASE)


def _kind(name: str) -> str:
    upper = name.upper()
    if "FULL" in upper:
        return "full"
    if any(word in upper for word in ("INCREMENT", "UPDATE", "DAY", "WEEK", "MONTH")):
        return "incremental"
    return "unknown"


def _check_file(path: Path) -> _File:
    """Everything about a file that can go wrong before a record is applied: it exists, a ZIP opens,
    holds XML members with complete PART numbers and every member passes its CRC."""
    name = path.name
    if not path.is_file():
        raise UdidImportError(f"{path}: no such file", name)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    members = None
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                xml = [i.filename for i in zf.infolist() if i.filename.lower().endswith(".xml") and not i.is_dir()]
                if not xml:
                    raise UdidImportError(f"{name}: no *.xml member in the ZIP", name)
                xml.sort(key=lambda m: (int(p.group(1)) if (p := _PART.search(m)) else 0, m))
                parts = [(int(p.group(1)), int(p.group(2))) for m in xml if (p := _PART.search(m))]
                if parts:
                    total = parts[0][1]
                    missing = sorted(set(range(1, total + 1)) - {n for n, _ in parts})
                    if missing or any(m != total for _, m in parts) or len(parts) != total:
                        raise UdidImportError(
                            f"{name}: PART numbers incomplete or inconsistent (of {total}; missing {missing[:10]})",
                            name,
                        )
                for member in xml:
                    try:
                        with zf.open(member) as stream:
                            while stream.read(_CHUNK):
                                pass
                    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
                        raise UdidImportError(
                            f"{name}!{member}: corrupt ZIP member: {exc}", f"{name}!{member}"
                        ) from exc
                members = tuple(xml)
        except (zipfile.BadZipFile, OSError) as exc:
            raise UdidImportError(f"{name}: not a readable ZIP: {exc}", name) from exc
    elif path.suffix.lower() == ".zip":
        raise UdidImportError(f"{name}: not a ZIP file (truncated download?)", name)
    return _File(path, members, digest.hexdigest(), path.stat().st_size, _kind(name))


_TOMBSTONE = "SELECT version, version_time FROM udid_deleted WHERE record_key=?"


class _Importer:
    def __init__(self, db: sqlite3.Connection, progress: Callable[[str, int], None] | None) -> None:
        self.db = db
        self.progress = progress
        self.problems: list[str] = []
        self.warnings = 0
        self.total = {"records": 0, "added": 0, "changed": 0, "deleted": 0, "ignored": 0, "skipped": 0}
        self.tombstones = db.execute("SELECT EXISTS (SELECT 1 FROM udid_deleted)").fetchone()[0] == 1

    def note(self, message: str, warning: bool = True) -> None:
        if warning:
            self.warnings += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(message)

    def run(self, file: _File) -> None:
        now = _utc_now()
        cur = self.db.execute(
            "INSERT INTO udid_imports (file, path, sha256, size, kind, started, status) VALUES (?,?,?,?,?,?,'running')",
            (file.path.name, str(file.path), file.sha256, file.size, file.kind, now),
        )
        self.import_id = cur.lastrowid
        self.counts = dict.fromkeys(self.total, 0)
        self.committed = dict(self.counts)
        self.pending = 0
        self.db.execute("BEGIN IMMEDIATE")
        source = file.path.name
        try:
            if file.members is None:
                with open(file.path, "rb") as f:
                    self._member(f, source)
            else:
                with zipfile.ZipFile(file.path) as zf:
                    for member in file.members:
                        source = f"{file.path.name}!{member}"
                        with zf.open(member) as f:
                            self._member(f, source)
            self._commit(source, final=True)
        except BaseException as exc:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            message = str(exc) if isinstance(exc, UdidImportError) else f"{source}: {type(exc).__name__}: {exc}"
            self.db.execute(
                "UPDATE udid_imports SET status='failed', finished=?, error=? WHERE id=?",
                (_utc_now(), message, self.import_id),
            )
            self._write_counts(self.committed)
            for key in self.total:
                self.total[key] += self.committed[key]
            if isinstance(exc, UdidImportError) or not isinstance(exc, Exception):
                raise
            raise UdidImportError(message, source) from exc
        for key in self.total:
            self.total[key] += self.counts[key]

    def _member(self, raw: BinaryIO, source: str) -> None:
        reader = SanitisingReader(raw)
        parser = _Parser()
        records = parser.records
        position = 0
        try:
            while True:
                chunk = reader.read(_CHUNK)
                parser.parser.Parse(chunk, not chunk)
                if parser.root is not None and parser.root != "udid":
                    raise UdidImportError(f"{source}: not a UDID download (root element <{parser.root}>)", source)
                for raw_record in records:
                    position += 1
                    self._record(raw_record, source, position)
                    self.pending += 1
                    if self.pending >= BATCH_DEVICES:
                        self._commit(source)
                records.clear()
                if not chunk:
                    break
        except expat.ExpatError as exc:
            line = parser.parser.ErrorLineNumber
            raise UdidImportError(
                f"{source}: XML not well-formed at line {line}, column {parser.parser.ErrorColumnNumber}, "
                f"in or after record {position + len(records) + 1}: {expat.ErrorString(exc.code)}",
                source,
                position + len(records) + 1,
                line,
            ) from exc
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
            raise UdidImportError(f"{source}: read error after record {position}: {exc}", source, position) from exc
        if reader.repairs:
            self.note(f"{source}: {reader.repairs} illegal characters or bare & repaired")
        if parser.header_count is None:
            self.note(f"{source}: no <numberRkeyecordXML> header")
        elif not parser.header_count.isdigit() or int(parser.header_count) != position:
            self.note(f"{source}: header announces {parser.header_count} records, the file holds {position}")
        self._commit(source)  # every member on its own (with real parts, a broken one is not applied at all)

    def _commit(self, source: str, final: bool = False) -> None:
        self._write_counts(self.counts)
        if final:
            self.db.execute(
                "UPDATE udid_imports SET status='done', finished=?, position=? WHERE id=?",
                (_utc_now(), source, self.import_id),
            )
        else:
            self.db.execute("UPDATE udid_imports SET position=? WHERE id=?", (source, self.import_id))
        self.db.execute("COMMIT")
        self.committed = dict(self.counts)
        if self.progress is not None and self.pending:
            self.progress(source, self.total["records"] + self.counts["records"])
        self.pending = 0
        if not final:
            self.db.execute("BEGIN IMMEDIATE")

    def _write_counts(self, counts: dict[str, int]) -> None:
        self.db.execute(
            "UPDATE udid_imports SET records=?, added=?, changed=?, deleted=?, ignored=?, skipped=? WHERE id=?",
            (*counts.values(), self.import_id),
        )

    def _record(self, raw: _Raw, source: str, position: int) -> None:
        fields, packing_texts = raw
        counts = self.counts
        counts["records"] += 1
        get = fields.get
        key = get("deviceRecordKey", "").strip()
        try:
            if not key:
                raise ValueError("no deviceRecordKey")
            number = get("versionNumber", "").strip()
            if not number.isdigit():
                raise ValueError(f"versionNumber {number!r} is not a number")
            version = (int(number), get("versionTime", "").strip())
            status = get("versionStauts", "").strip()
            if status == DELETED:
                self._delete(key, version)
                return
            if status not in (ADDED, CHANGED):
                raise ValueError(f"versionStauts {status!r} is none of 新增/变更/删除")
            unit_di = get("zxxsdycpbs", "").strip()
            if not unit_di:
                raise ValueError("no zxxsdycpbs (primary DI)")
            use_unit = get("sydycpbs", "").strip()
            device = (
                unit_di,
                use_unit if use_unit and use_unit != unit_di else None,
                get("cpbsbmtxmc", "").strip(),
                get("cpmctymc", "").strip(),
                get("ggxh", "").strip(),
                get("ybbm", "").strip() or None,
                _date(get("tsrq", ""), "tsrq"),
                _flag(get("scbssfbhph", ""), "scbssfbhph"),
                _flag(get("scbssfbhxlh", ""), "scbssfbhxlh"),
                _flag(get("scbssfbhscrq", ""), "scbssfbhscrq"),
                _flag(get("scbssfbhsxrq", ""), "scbssfbhsxrq"),
                get("zczbhhzbapzbh", "").strip(),
                get("ylqxzcrbarmc", "").strip(),
                version[0],
                version[1],
                self.import_id,
            )
        except ValueError as exc:
            counts["skipped"] += 1
            self.note(f"{source} record {position} ({key or 'no key'}): skipped: {exc}", warning=False)
            return
        packings = []
        seen = set()
        for di, level, quantity, below in packing_texts:
            di, quantity, below = di.strip(), quantity.strip(), below.strip()
            if not di or di in seen:
                self.note(f"{source} record {position} ({key}): packing without DI or repeated: {di!r} ignored")
                continue
            seen.add(di)
            packings.append((di, level.strip(), int(quantity) if quantity.isdigit() else None, below))
        units = _units(packings, unit_di)
        if None in units:
            self.note(f"{source} record {position} ({key}): package chain does not reach {unit_di}: units unknown")
        self._store(key, version, device, [(*p, u) for p, u in zip(packings, units, strict=True)])

    def _store(self, key: str, version: tuple[int, str], device: tuple, packages: list[tuple]) -> None:
        db = self.db
        old = db.execute("SELECT id, version, version_time FROM udid_devices WHERE record_key=?", (key,)).fetchone()
        if old is not None:
            if version <= (old[1], old[2]):
                self.counts["ignored"] += 1
                return
            device_id = old[0]
            db.execute(
                "UPDATE udid_devices SET primary_di=?, use_unit_di=?, coding_system=?, name=?, model=?, ybbm=?,"
                " withdrawn=?, pi_lot=?, pi_serial=?, pi_production_date=?, pi_expiry=?, registration=?,"
                " registrant=?, version=?, version_time=?, import_id=? WHERE id=?",
                (*device, device_id),
            )
            db.execute("DELETE FROM udid_packages WHERE device_id=?", (device_id,))
            self.counts["changed"] += 1
        else:
            if self.tombstones:
                gone = db.execute(
                    "SELECT version, version_time FROM udid_deleted WHERE record_key=?", (key,)
                ).fetchone()
                if gone is not None:
                    if version <= tuple(gone):
                        self.counts["ignored"] += 1
                        return
                    db.execute("DELETE FROM udid_deleted WHERE record_key=?", (key,))
            device_id = db.execute(
                "INSERT INTO udid_devices (record_key, primary_di, use_unit_di, coding_system, name, model, ybbm,"
                " withdrawn, pi_lot, pi_serial, pi_production_date, pi_expiry, registration, registrant, version,"
                " version_time, import_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (key, *device),
            ).lastrowid
            self.counts["added"] += 1
        if packages:
            db.executemany(
                "INSERT INTO udid_packages (device_id, di, level, quantity, next_di, units) VALUES (?,?,?,?,?,?)",
                [(device_id, *p) for p in packages],
            )

    def _delete(self, key: str, version: tuple[int, str]) -> None:
        db = self.db
        old = db.execute("SELECT id, version, version_time FROM udid_devices WHERE record_key=?", (key,)).fetchone()
        if old is not None and version < (old[1], old[2]):
            self.counts["ignored"] += 1  # deletes a version older than the stored one
            return
        gone = db.execute(_TOMBSTONE, (key,)).fetchone()
        if gone is None or version > tuple(gone):
            db.execute("INSERT OR REPLACE INTO udid_deleted VALUES (?,?,?,?)", (key, *version, self.import_id))
            self.tombstones = True
        if old is None:
            self.counts["ignored"] += 1
            return
        db.execute("DELETE FROM udid_packages WHERE device_id=?", (old[0],))
        db.execute("DELETE FROM udid_devices WHERE id=?", (old[0],))
        self.counts["deleted"] += 1


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def import_releases(
    paths: list[Path], db_path: Path, progress: Callable[[str, int], None] | None = None
) -> ImportReport:
    """Import UDID downloads (ZIPs or bare XML files) into ``db_path``, in the order given.

    ``progress(source, records)`` is called after every commit with ``file!member`` and the number
    of records read so far in this call. Raises :class:`UdidImportError` for a file that cannot be
    read (before anything is written if it is a ZIP problem; see the module notes for what stays
    applied after an XML error).
    """
    started = time.monotonic()
    files = [_check_file(Path(p)) for p in paths]  # all files checked before the first write
    db = open_udid_database(db_path)
    try:
        db.execute("PRAGMA cache_size=-65536")  # 64 MB: the indexes of a full release stay mostly cached
        importer = _Importer(db, progress)
        for file in files:
            importer.run(file)
        db.execute("PRAGMA wal_checkpoint(PASSIVE)")
    finally:
        db.close()
    total = importer.total
    return ImportReport(
        files=tuple(f.path.name for f in files),
        records=total["records"],
        devices_added=total["added"],
        devices_changed=total["changed"],
        devices_deleted=total["deleted"],
        ignored=total["ignored"],
        skipped=total["skipped"],
        warnings=importer.warnings,
        problems=tuple(importer.problems),
        seconds=time.monotonic() - started,
        peak_rss_mb=_peak_rss_mb(),
    )


# --- lookup --------------------------------------------------------------------------------------------

_COLUMNS = (
    "d.primary_di, d.name, d.model, d.ybbm, d.withdrawn, d.pi_lot, d.pi_serial, d.pi_production_date, d.pi_expiry,"
    " d.registration, d.registrant, d.coding_system, d.record_key, d.version, d.version_time"
)
# Three index probes, one statement: the unit DI, a package DI, a use-unit DI.
_LOOKUP = (
    f"SELECT 'unit', 1, {_COLUMNS} FROM udid_devices d WHERE d.primary_di = :di"
    f" UNION ALL SELECT p.level, p.units, {_COLUMNS} FROM udid_packages p"
    f" JOIN udid_devices d ON d.id = p.device_id WHERE p.di = :di"
    f" UNION ALL SELECT 'use_unit', NULL, {_COLUMNS} FROM udid_devices d WHERE d.use_unit_di = :di"
)


class ProductMaster:
    """Lookups in the imported UDID. Thread-safe: every thread gets its own read-only connection
    (WAL: lookups never wait for an import and always see whole devices)."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        open_udid_database(db_path).close()  # fail at start, and an empty master answers None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.db_path, timeout=10, check_same_thread=False)
            db.execute("PRAGMA query_only=ON")
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    def lookup(self, di: str) -> Product | None:
        """The device that ``di`` (unit, package or use-unit DI) belongs to, or None. Should a DI be
        registered under several records (it happens), the newest version wins."""
        di = di.strip()
        rows = self._db().execute(_LOOKUP, {"di": di}).fetchall()
        if not rows:
            return None
        row = max(rows, key=lambda r: (r[16], r[15]))
        withdrawn = date.fromisoformat(row[6]) if row[6] else None
        return Product(di, row[2], row[0], row[1], row[3], row[4], row[5], withdrawn, *map(bool, row[7:11]), *row[11:])

    def count(self) -> int:
        return self._db().execute("SELECT count(*) FROM udid_devices").fetchone()[0]

    def last_imports(self, limit: int = 10) -> list[ImportRecord]:
        """The newest imports first."""
        rows = self._db().execute(
            "SELECT id, file, kind, sha256, started, finished, status, records, added, changed, deleted, ignored,"
            " skipped, error FROM udid_imports ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [ImportRecord(*row) for row in rows]

    def close(self) -> None:
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
        self._local = threading.local()
