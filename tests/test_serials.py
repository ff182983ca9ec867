import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from gateway.serials import SCHEMA_VERSION, Seen, SerialStore

REPO = Path(__file__).resolve().parent.parent
GTIN = "06901234567892"
T0 = datetime(2026, 11, 23, 8, 0, 0, 123000, tzinfo=UTC)


def add(store, serial, item_id=1, di=GTIN):
    return store.add(di, serial, item_id=item_id, timestamp=T0 + timedelta(seconds=item_id))


def test_line_scope_spans_jobs_and_runs_not_lines(tmp_path):
    db = tmp_path / "udigate.db"
    with SerialStore(db, line="line1", job="PO-1", run_id="r1") as store:
        assert store.seen(GTIN, "S1") is None
        assert add(store, "S1") is None
        assert store.seen(GTIN, "S1") is not None
        assert store.seen(GTIN, "S2") is None
        assert store.seen("04012345678901", "S1") is None  # another DI, same serial: not a duplicate
        store.set_job("PO-2")
        assert store.seen(GTIN, "S1").job == "PO-1"  # same line, another order: duplicate
    with SerialStore(db, line="line1", job="PO-3", run_id="r2") as store:
        assert store.seen(GTIN, "S1").run_id == "r1"
    with SerialStore(db, line="line2", job="PO-1", run_id="r3") as store:
        assert store.seen(GTIN, "S1") is None  # another line
        assert add(store, "S1") is None


def test_job_scope_spans_lines_not_jobs(tmp_path):
    db = tmp_path / "udigate.db"
    with SerialStore(db, scope="job", line="line1", job="PO-1", run_id="r1") as store:
        assert add(store, "S1") is None
        store.set_job("PO-2")
        assert store.seen(GTIN, "S1") is None  # another order may reuse the serial
        assert add(store, "S1", item_id=2) is None
        store.set_job("PO-1")
        assert store.seen(GTIN, "S1").item_id == 1
    with SerialStore(db, scope="job", line="line2", job="PO-2", run_id="r2") as store:
        seen = store.seen(GTIN, "S1")
        assert (seen.line, seen.job, seen.item_id) == ("line1", "PO-2", 2)


def test_all_scope_spans_lines_and_jobs(tmp_path):
    db = tmp_path / "udigate.db"
    with SerialStore(db, scope="all", line="line1", job="PO-1", run_id="r1") as store:
        assert add(store, "S1") is None
    with SerialStore(db, scope="all", line="line2", job="PO-9", run_id="r2") as store:
        assert store.seen(GTIN, "S1").line == "line1"
        assert store.seen(GTIN, "S2") is None


def test_the_scope_is_only_the_question_asked(tmp_path):
    """Rows record line and job whatever the scope: a store reopened with another scope answers it."""
    db = tmp_path / "udigate.db"
    with SerialStore(db, scope="job", line="line1", job="PO-1", run_id="r1") as store:
        assert add(store, "S1") is None
    with SerialStore(db, scope="line", line="line1", job="PO-2", run_id="r2") as store:
        assert store.seen(GTIN, "S1") is not None
    with SerialStore(db, scope="all", line="line7", job="PO-3", run_id="r3") as store:
        assert store.seen(GTIN, "S1") is not None


def test_seen_tells_where_and_when_after_reopening(tmp_path):
    db = tmp_path / "udigate.db"
    with SerialStore(db, line="line1", job="PO-1", run_id="20261123T080000.000000Z") as store:
        assert store.add(GTIN, "ABC\u00e9", item_id=17, timestamp=T0) is None
        cet = timezone(timedelta(hours=1))
        assert store.add(GTIN, "X", item_id=18, timestamp=datetime(2026, 11, 23, 10, tzinfo=cet)) is None
        with pytest.raises(ValueError, match="time zone"):
            store.add(GTIN, "naive", item_id=19, timestamp=datetime(2026, 11, 23, 8))
    with SerialStore(db, line="line1", job="PO-2", run_id="later") as store:
        seen = store.seen(GTIN, "ABC\u00e9")
        assert seen == Seen(17, "20261123T080000.000000Z", "PO-1", "line1", T0)
        assert (
            str(seen)
            == "first verified at 2026-11-23T08:00:00.123Z on line1, job PO-1, run 20261123T080000.000000Z, item 17"
        )
        assert store.seen(GTIN, "X").timestamp == datetime(2026, 11, 23, 9, tzinfo=UTC)
        assert store.seen(GTIN, "naive") is None
        assert store.count() == 2


def test_add_refuses_a_serial_already_in_scope(tmp_path):
    db = tmp_path / "udigate.db"
    with SerialStore(db, line="line1", run_id="r1") as line, SerialStore(db, line="line1", run_id="import") as other:
        assert line.seen(GTIN, "S1") is None
        assert add(other, "S1", item_id=5) is None  # another writer gets there between seen() and add()
        assert add(line, "S1", item_id=6).run_id == "import"
        assert add(line, "S1", item_id=7).item_id == 5
        assert line.count() == 1


def test_batch_checks_and_adds_in_order(tmp_path):
    db = tmp_path / "udigate.db"
    with SerialStore(db, line="line1", job="PO-1", run_id="r1") as store:
        assert add(store, "old", item_id=1) is None
        items = [(GTIN, s, i, T0 + timedelta(seconds=i)) for i, s in enumerate(["a", "old", "b", "a", "c"], 10)]
        results = store.check_and_add_many(items)
        assert [r and r.item_id for r in results] == [None, 1, None, 10, None]  # "a" again: its first time
        assert store.check_and_add_many([]) == []
        assert store.count() == 4
    with SerialStore(db, line="line1", run_id="r2") as store:
        assert store.seen(GTIN, "c").item_id == 14


def test_batch_is_all_or_nothing(tmp_path):
    db = tmp_path / "udigate.db"
    with SerialStore(db, line="line1", job="PO-1", run_id="r1") as store:
        items = [(GTIN, "a", 1, T0), (GTIN, "b", 2, datetime(2026, 1, 1)), (GTIN, "c", 3, T0)]
        with pytest.raises(ValueError):
            store.check_and_add_many(items)
        assert store.count() == 0
        assert store.check_and_add_many([(GTIN, "a", 1, T0)]) == [None]  # usable after the rollback
    with SerialStore(db, line="line1", run_id="r2") as store:
        assert store.seen(GTIN, "a") == Seen(1, "r1", "PO-1", "line1", T0)


def test_schema_shares_the_gateway_database(tmp_path):
    from gateway.rejects import SCHEMA_VERSION as REJECTS_VERSION
    from gateway.rejects import open_database

    db = tmp_path / "udigate.db"
    open_database(db).close()
    with SerialStore(db, durability="power") as store:
        assert add(store, "S1") is None
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert store._db.execute("PRAGMA cache_size").fetchone()[0] == -32 * 1024
    with SerialStore(db) as store:
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    open_database(db).close()  # the rejects table's own versioning is untouched
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == REJECTS_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT version FROM serial_schema").fetchall() == [(SCHEMA_VERSION,)]
    ddl = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'serial_registry'").fetchone()[0]
    assert "WITHOUT ROWID" in ddl and "PRIMARY KEY (di, serial, run)" in ddl
    plan = conn.execute(
        "EXPLAIN QUERY PLAN SELECT 1 FROM serial_registry WHERE di = ? AND serial = ?", (GTIN, "S1")
    ).fetchall()
    assert "PRIMARY KEY (di=? AND serial=?)" in plan[0][3]


def test_newer_registry_is_refused(tmp_path):
    db = tmp_path / "udigate.db"
    SerialStore(db).close()
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE serial_schema SET version = ?", (SCHEMA_VERSION + 1,))
    conn.close()
    with pytest.raises(RuntimeError, match="newer udigate"):
        SerialStore(db)


def test_wrong_options_are_refused(tmp_path):
    with pytest.raises(ValueError, match="scope"):
        SerialStore(tmp_path / "a.db", scope="site")
    with pytest.raises(ValueError, match="durability"):
        SerialStore(tmp_path / "a.db", durability="fsync")


CHILD = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime
    from pathlib import Path
    from gateway.serials import SerialStore

    store = SerialStore(Path(sys.argv[1]), line="line1", job="PO-1", run_id="killed")
    i = 0
    while True:
        i += 1
        assert store.add("06901234567892", f"K{i}", item_id=i, timestamp=datetime.now(UTC)) is None
        print(i, flush=True)  # acknowledged: the line would report the item as passed now
    """
)


def test_acknowledged_serials_survive_kill_9(tmp_path):
    db = tmp_path / "udigate.db"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        acknowledged = [int(child.stdout.readline()) for _ in range(300)]
    finally:
        os.kill(child.pid, signal.SIGKILL)
    # through the same buffered reader: communicate() would read the raw pipe and skip lines
    # readline() has already buffered
    out = child.stdout.read()
    err = child.stderr.read()
    child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL, err
    acknowledged += [int(line) for line in out.split()]  # printed before the kill, still in the pipe
    assert acknowledged == list(range(1, len(acknowledged) + 1))
    with SerialStore(db, line="line1", run_id="after") as store:
        missing = [i for i in acknowledged if store.seen(GTIN, f"K{i}") is None]
        assert missing == []
        assert store.count() >= len(acknowledged)
