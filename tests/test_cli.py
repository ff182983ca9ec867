"""`udigate demo` and `udigate run` as a user runs them: a real process, watched from outside
with mosquitto_sub and mbpoll, stopped by its duration or by SIGTERM."""

import csv
import io
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from gateway.cli import main
from gateway.config import dump_config, parse_config
from gateway.reasons import REASONS

from .conftest import line_config
from .test_exports import START, fill_store, item_with, stamp

UDIGATE = [sys.executable, "-m", "gateway.cli"]


def start(args, cwd):
    return subprocess.Popen([*UDIGATE, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_banner(process) -> dict:
    """The endpoints the demo prints at start-up."""
    found = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(found) < 2:
        line = process.stdout.readline()
        assert line, f"udigate exited early: {process.stderr.read()}"
        if m := re.search(r"mosquitto_sub -h (\S+) -p (\d+) -t '([^']+)'", line):
            found["mqtt"] = (m[1], m[2], m[3])
        if m := re.search(r"mbpoll .* -p (\d+) .* (\S+)$", line.strip()):
            found["modbus"] = (m[2], m[1])
    return found


def write_config(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "line.toml"
    path.write_text(dump_config(line_config(tmp_path, **changes)))
    return path


def test_demo_can_be_watched_with_mosquitto_sub_and_mbpoll(tmp_path):
    config = write_config(tmp_path, **{"source.simulator.seed": 11})  # the same labels every run
    demo = start(["demo", "--config", str(config), "--duration", "8", "--rate", "600"], tmp_path)
    endpoints = read_banner(demo)
    host, port, topic = endpoints["mqtt"]
    messages = subprocess.run(
        ["mosquitto_sub", "-h", host, "-p", port, "-t", topic, "-v", "-C", "6", "-W", "15"],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.splitlines()
    mb_host, mb_port = endpoints["modbus"]
    registers = subprocess.run(
        ["mbpoll", "-m", "tcp", "-p", mb_port, "-a", "1", "-t", "4", "-r", "1", "-c", "16", "-1", mb_host],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    out, err = demo.communicate(timeout=60)
    assert demo.returncode == 0, err
    assert len(messages) == 6
    assert any(re.match(rf"{topic[:-1]}(verified|rejected) \{{\"schema\":\"udigate.item/1\"", m) for m in messages)
    values = dict(re.findall(r"^\[(\d+)\]:\s+(\d+)", registers, re.M))
    assert int(values["3"]) > 0  # result sequence counter (40003) advancing
    assert int(values["1"]) & 1  # status: ready
    assert "Traceback" not in err
    items = int(re.search(r"udigate: (\d+) items in", out)[1])
    assert items >= 40  # 600/min for 8 s, less start-up
    assert re.search(rf"verdicts = ground truth\s*\S\s*{items} / {items}", out), out
    assert re.search(rf"PLC simulator: {items} results read, \d+ rejects, 0 missed", out), out
    assert re.search(rf"PLC delivery: {items} results taken in time, 0 not", out), out


def test_sigterm_stops_cleanly_and_keeps_every_reject(tmp_path):
    config = write_config(tmp_path, **{"source.simulator.defects": {"no_code": 0.3, "wrong_lot": 0.2}})
    demo = start(["demo", "--config", str(config), "--rate", "900"], tmp_path)
    read_banner(demo)
    time.sleep(5)
    demo.send_signal(signal.SIGTERM)
    out, err = demo.communicate(timeout=60)
    assert demo.returncode == 0, err
    assert "Traceback" not in err and "SIGTERM: finishing the items in progress" in err
    stored = int(re.search(r"reject log: (\d+) rejects stored", out)[1])
    rejected = int(re.search(r"│ rejected\s*│\s*(\d+)", out)[1])
    committed, acked = map(int, re.search(r"MQTT: (\d+) records committed, (\d+) acknowledged", out).groups())
    assert stored == rejected > 0 and committed == acked > 0 and "kept in the outbox" not in out
    passes = int(re.search(r"(\d+) passes kept for comparison", out)[1])  # the demo keeps every 20th
    db = sqlite3.connect(tmp_path / "data" / "udigate.db")
    counts = "SELECT verdict, count(*), count(image) FROM rejects GROUP BY verdict ORDER BY verdict"
    assert db.execute(counts).fetchall() == [("pass", passes, passes), ("reject", rejected, rejected)]
    pictures = list((tmp_path / "data" / "rejects").glob("*/*.png"))
    frames = [p for p in pictures if not p.stem.endswith(("-crop", "-overlay"))]  # the full frames
    assert len(frames) == rejected + passes
    assert not list((tmp_path / "data" / "rejects").glob("*/*.part"))


def test_run_with_a_folder_source_ends_with_the_folder(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "a.png").write_bytes(b"not a png")
    config = write_config(
        tmp_path,
        **{
            "source.kind": "folder",
            "source.trigger": "timer",
            "source.folder": {"path": str(frames)},
            "plc.simulator.enabled": False,
        },
    )
    run = subprocess.run(
        [*UDIGATE, "run", "--config", str(config)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert "image_error" in run.stdout and "reject log: 1 rejects stored" in run.stdout


def test_run_reports_a_missing_folder_and_a_busy_port(tmp_path):
    missing = write_config(tmp_path, **{"source.kind": "folder", "source.folder": {"path": str(tmp_path / "none")}})
    run = subprocess.run(
        [*UDIGATE, "run", "--config", str(missing)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 1
    assert f"source.folder.path: {tmp_path / 'none'} is not a folder" in run.stderr
    assert "Traceback" not in run.stderr

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = write_config(tmp_path, **{"plc.modbus.port": port})
        run = subprocess.run(
            [*UDIGATE, "run", "--config", str(busy)], cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
    assert run.returncode == 1
    assert f"cannot serve Modbus TCP 127.0.0.1:{port}" in run.stderr
    assert "Traceback" not in run.stderr


def test_builtin_demo(tmp_path):
    """README command 1 without options (after ./dev set-up): the demo on its embedded defaults."""
    demo = subprocess.run(
        [*UDIGATE, "demo", "--duration", "4", "--data-dir", str(tmp_path / "demo")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert demo.returncode == 0, demo.stderr
    assert "verdicts = ground truth" in demo.stdout and (tmp_path / "demo" / "udigate.db").exists()


def test_kill_9_loses_no_serial_of_a_passed_item(tmp_path):
    """SIGKILL in the middle of a run: every item the MES was told had passed (its MQTT record)
    has its serial in the registry when the line comes back."""
    config = write_config(tmp_path, **{"source.simulator.defects": {}, "source.simulator.rate_ppm": 1200})
    line = start(["demo", "--config", str(config)], tmp_path)
    host, port, topic = read_banner(line)["mqtt"]
    watcher = subprocess.Popen(
        ["mosquitto_sub", "-h", host, "-p", port, "-t", topic.replace("#", "verified"), "-q", "1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    records = [watcher.stdout.readline() for _ in range(40)]
    line.send_signal(signal.SIGKILL)
    line.wait(timeout=30)
    time.sleep(0.5)  # the broker may still deliver records in flight
    watcher.terminate()
    records += watcher.stdout.read().splitlines()
    verified = [json.loads(r) for r in records if r.strip()]
    assert len(verified) >= 40 and all(r["verdict"] == "pass" for r in verified)
    db = sqlite3.connect(tmp_path / "data" / "udigate.db")
    stored = set(db.execute("SELECT di, serial FROM serial_registry"))
    missing = [(r["fields"]["01"], r["fields"]["21"]) for r in verified]
    missing = [key for key in missing if key not in stored]
    assert missing == []


# -- udigate rejects / user hash ----------------------------------------------------------------


def udigate(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """One command run to its end, outside any terminal (so getpass reads standard input)."""
    return subprocess.run(
        [*UDIGATE, *args],
        input=stdin,
        capture_output=True,
        encoding="utf-8",
        timeout=120,
        start_new_session=True,
    )


@pytest.fixture
def stored(tmp_path):
    """A line configuration whose store holds the four items of test_exports.fill_store."""
    config = write_config(tmp_path)
    index = fill_store(tmp_path / "data")
    yield index, config
    index.close()


def test_rejects_list_filters_the_store(stored, capsys):
    index, config = stored
    index.dispose(item_with(index, 1).id, "false_reject", "ribbon", "anna")

    def listed(*options: str) -> list[int]:  # in this process: a second each saved
        assert main(["rejects", "list", "--config", str(config), "--json", *options]) == 0
        return [json.loads(line)["item_id"] for line in capsys.readouterr().out.splitlines()]

    assert listed() == [4, 2, 1]  # rejects, newest first
    assert listed("--passes") == [3]
    assert listed("--all") == [4, 3, 2, 1]
    assert listed("--open") == [4, 2]
    assert listed("--max-grade", "1.5") == [2]
    assert listed("--reason", "expired") == [2]
    assert listed("--since", stamp(30), "--until", stamp(120)) == [2]
    assert listed("--job", "PO", "--limit", "1") == [4]
    assert listed("--job", "PO-OTHER") == []
    table = udigate("rejects", "list", "--config", str(config), "--limit", "2")
    assert table.returncode == 0, table.stderr
    newest = next(line for line in table.stdout.splitlines() if "no_read" in line)
    assert (START + timedelta(minutes=120)).astimezone().strftime("%Y-%m-%d %H:%M:%S") in newest  # local time
    assert "grade_below_min, expired" in table.stdout and "1.0/08/660" in table.stdout
    assert "false reject" not in table.stdout and table.stdout.rstrip().endswith("2 of 3 matching, newest first")


def test_rejects_show_prints_an_item_in_full(stored):
    index, config = stored
    first, second, lost = (item_with(index, n) for n in (1, 2, 4))
    index.dispose(second.id, "confirmed_defect", "[red]smudge[/] <b>", "li")  # printed as typed, not as markup
    show = udigate("rejects", "show", "--config", str(config), str(second.id))
    assert show.returncode == 0, show.stderr
    assert f"reason expired: {REASONS['expired'].text}" in show.stdout  # the text of the table: the record has none
    assert re.search(r"^  grade D 1\.0/08/660 \(.*weakest SC\)$", show.stdout, re.M)
    assert re.search(r"^    SC +0  grade F 0\.0$", show.stdout, re.M)
    assert re.search(r"^    MOD +0\.5  grade A 4\.0$", show.stdout, re.M)
    assert re.search(r"^  disposition confirmed defect by li, .*: \[red\]smudge\[/\] <b>$", show.stdout, re.M)
    files = dict(line.split() for line in show.stdout.splitlines() if line.startswith(("  image ", "  thumb ")))
    assert len(files) == 2 and all(Path(path).is_absolute() and Path(path).is_file() for path in files.values())

    content = udigate("rejects", "show", "--config", str(config), str(first.id)).stdout
    assert "data =HYPERLINK(1)" in content and "DI   06901234567892, lot 批次A, serial S1, expiry 2028-11-22" in content
    assert "disposition: open" in content

    as_json = json.loads(udigate("rejects", "show", "--config", str(config), str(second.id), "--json").stdout)
    assert as_json["record"]["grade"]["parameters"]["SC"] == {"value": 0.0, "grade": 0.0}
    assert [h["comment"] for h in as_json["history"]] == ["[red]smudge[/] <b>"]
    assert all(Path(path).is_file() for path in as_json["files"].values())

    without_record = udigate("rejects", "show", "--config", str(config), str(lost.id))
    assert without_record.returncode == 0 and "cannot read the record" in without_record.stdout
    assert f"reason no_read: {REASONS['no_read'].text}" in without_record.stdout

    missing = udigate("rejects", "show", "--config", str(config), "999")
    db = config.parent / "data" / "udigate.db"
    assert (missing.returncode, missing.stderr) == (1, f"udigate rejects show: no item 999 in {db}\n")


def test_rejects_export_writes_csv_html_and_pdf(stored, tmp_path):
    _, config = stored
    out = tmp_path / "exports"

    def export(name: str, fmt: str, *options: str) -> Path:
        path = out / f"{name}.{fmt}"
        done = udigate("rejects", "export", "--config", str(config), "--format", fmt, "--output", str(path), *options)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("wrote ") and done.stdout.endswith(f" items to {path}\n")
        return path

    def item_ids(path: Path) -> list[str]:
        text = path.read_bytes().decode("utf-8-sig")
        return [row["item_id"] for row in csv.DictReader(io.StringIO(text, newline=""))]

    assert item_ids(export("rejects", "csv")) == ["1", "2", "4"]
    assert item_ids(export("all", "csv", "--all")) == ["1", "2", "3", "4"]
    assert item_ids(export("since", "csv", "--since", stamp(30), "--job", "PO")) == ["2", "4"]
    html = export("report", "html", "--all").read_text(encoding="utf-8")
    root = (tmp_path / "data").resolve().as_uri()
    assert "Reject report" in html and "<svg" in html and f'src="{root}/rejects/' in html  # opens on this machine
    pdf = export("report", "pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and b"/Subtype /Image" in pdf
    assert not list(out.glob("*.part"))


def test_rejects_commands_refuse_bad_arguments_and_missing_stores(stored, tmp_path):
    _, config = stored
    bad_time = udigate("rejects", "list", "--config", str(config), "--since", "last week")
    assert bad_time.returncode == 2 and bad_time.stderr.startswith("udigate rejects list: --since = 'last week'")
    bad_until = udigate(
        "rejects",
        "export",
        "--config",
        str(config),
        "--until",
        "2026-13-01",
        "--format",
        "csv",
        "--output",
        str(tmp_path / "x.csv"),
    )
    assert bad_until.returncode == 2 and "--until = '2026-13-01'" in bad_until.stderr
    (tmp_path / "a-file").write_text("")
    unwritable = tmp_path / "a-file" / "x.csv"
    failed = udigate("rejects", "export", "--config", str(config), "--format", "csv", "--output", str(unwritable))
    assert failed.returncode == 1 and failed.stderr.startswith("udigate rejects export: ")

    empty = tmp_path / "new-line"
    empty.mkdir()
    for command in (("list",), ("show", "1"), ("export", "--format", "csv", "--output", str(empty / "x.csv"))):
        done = udigate("rejects", *command, "--config", str(write_config(empty)))
        assert done.returncode == 1
        assert done.stderr == (
            f"udigate rejects: no review store in {empty / 'data'} (the line has not stored any item yet)\n"
        )
    assert not (empty / "data" / "udigate.db").exists()  # reading creates no empty store

    (empty / "data").mkdir()
    (empty / "data" / "udigate.db").write_bytes(b"not a database" * 100)
    damaged = udigate("rejects", "list", "--config", str(empty / "line.toml"))
    assert damaged.returncode == 1 and "cannot read the review store" in damaged.stderr
    assert "Traceback" not in damaged.stderr


def test_rejects_commands_read_the_store_of_a_running_line(tmp_path):
    config = write_config(tmp_path, **{"source.simulator.defects": {"wrong_lot": 0.3}, "rejects.keep_passes_every": 5})
    db = tmp_path / "data" / "udigate.db"

    def stored_rejects() -> int:
        if not db.exists():
            return 0
        with sqlite3.connect(db) as store:
            try:
                return store.execute("SELECT count(*) FROM rejects WHERE verdict = 'reject'").fetchone()[0]
            except sqlite3.OperationalError:  # the line is still creating its tables
                return 0

    with open(tmp_path / "line.log", "w") as log:
        line = subprocess.Popen([*UDIGATE, "run", "--config", str(config)], cwd=tmp_path, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 90
        while stored_rejects() < 3:
            assert line.poll() is None and time.monotonic() < deadline, (tmp_path / "line.log").read_text()
            time.sleep(0.2)
        # the line keeps writing while these read
        listing = udigate("rejects", "list", "--config", str(config), "--json", "--limit", "1000")
        export = udigate(
            "rejects", "export", "--config", str(config), "--format", "csv", "--output", str(tmp_path / "live.csv")
        )
    finally:
        line.send_signal(signal.SIGTERM)
        line.wait(timeout=60)
    assert line.returncode == 0, (tmp_path / "line.log").read_text()
    assert listing.returncode == 0 and export.returncode == 0, listing.stderr + export.stderr
    assert len((tmp_path / "live.csv").read_bytes().splitlines()) >= 4  # the header and the rejects so far
    listed = [json.loads(text) for text in listing.stdout.splitlines()]
    assert len(listed) >= 3 and {item["reason"] for item in listed} == {"wrong_lot"}

    after = udigate("rejects", "list", "--config", str(config), "--all", "--json", "--limit", "100000")
    with sqlite3.connect(db) as store:
        assert len(after.stdout.splitlines()) == store.execute("SELECT count(*) FROM rejects").fetchone()[0]
    newest = json.loads(after.stdout.splitlines()[0])
    show = udigate("rejects", "show", "--config", str(config), str(newest["id"]), "--json")
    assert all(Path(path).is_file() for path in json.loads(show.stdout)["files"].values())


def test_user_hash_prints_an_argon2id_hash_and_its_configuration():
    done = udigate("user", "hash", "--password-stdin", stdin="line-1-quality\n")
    hashed = done.stdout.strip()
    assert done.returncode == 0 and hashed.startswith("$argon2id$")
    assert PasswordHasher().verify(hashed, "line-1-quality")
    snippet = done.stderr[done.stderr.index("[[web.users]]") :].replace("…", "anna")
    user = parse_config(snippet).web.all_users()["anna"]  # pasted as printed, the configuration takes it
    assert (user.password_hash, user.role) == (hashed, "engineer")

    asked_twice = udigate("user", "hash", stdin="line-1-quality\nline-1-quality\n")
    assert asked_twice.returncode == 0 and PasswordHasher().verify(asked_twice.stdout.strip(), "line-1-quality")
    differing = udigate("user", "hash", stdin="line-1-quality\nline-2-quality\n")
    assert differing.returncode == 2 and "the two passwords differ" in differing.stderr and not differing.stdout
    for short in ("short\n", ""):
        refused = udigate("user", "hash", "--password-stdin", stdin=short)
        assert refused.returncode == 2 and "at least 8 characters" in refused.stderr and not refused.stdout
