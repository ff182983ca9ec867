"""`udigate demo` and `udigate run` as a user runs them: a real process, watched from outside
with mosquitto_sub and mbpoll, stopped by its duration or by SIGTERM."""

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from gateway.config import dump_config

from .conftest import line_config

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
    config = write_config(tmp_path)
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
    assert re.search(rf"verdicts = ground truth\s*\S\s*{items} / {items}", out)
    assert re.search(rf"PLC simulator: {items} results read, \d+ rejects, 0 missed", out)
    assert re.search(rf"PLC delivery: {items} results taken in time, 0 not", out)


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
