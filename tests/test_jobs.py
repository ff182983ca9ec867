"""The production order: persisted, replaced by the MES over MQTT (acknowledged) or by
`udigate job`, and applied to the items decided after the change."""

import json
import subprocess
import sys
import threading
import time

import paho.mqtt.publish as publish
import pytest

from gateway.app import Gateway
from gateway.config import JobSection
from gateway.jobs import JobControl, JobError, read_job_file

from .conftest import line_config

UDIGATE = [sys.executable, "-m", "gateway.cli"]


def test_a_started_job_survives_a_restart_and_a_stop_is_remembered(tmp_path):
    changes = []
    configured = JobSection(id="PO-1", lot="A1")
    jobs = JobControl(configured, tmp_path, changes.append)
    assert jobs.active == configured
    jobs.start(JobSection(id="PO-2", lot="B2"), by="test")
    assert changes[-1].id == "PO-2"
    assert JobControl(configured, tmp_path, changes.append).active.id == "PO-2"  # the restart resumes PO-2
    jobs.stop(by="test")
    assert changes[-1] is None and JobControl(configured, tmp_path, changes.append).active is None
    (tmp_path / "job.json").write_text("{broken")
    with pytest.raises(JobError, match="cannot read the job"):
        JobControl(configured, tmp_path, changes.append)


def test_job_commands_are_checked_and_acknowledged(tmp_path):
    jobs = JobControl(JobSection(id="PO-1"), tmp_path, lambda job: None)
    ack = jobs.command(b'{"command": "start", "request_id": "7", "job": {"id": "PO-9", "gtin": "06901234567893"}}')
    assert ack["ok"] is False and ack["request_id"] == "7"
    assert "job.gtin = '06901234567893': expected a GTIN-14 with a valid check digit" in ack["error"]
    assert jobs.active.id == "PO-1"  # unchanged
    assert jobs.command(b"not json")["error"].startswith("not JSON")
    assert "expected 'start' or 'stop'" in jobs.command(b'{"command": "pause"}')["error"]
    assert jobs.command(b'{"command": "stop", "request_id": 8}') == {
        "request_id": 8,
        "ok": True,
        "error": None,
        "job": None,
    }


def test_the_cli_writes_the_job_a_running_line_picks_up(tmp_path):
    config = tmp_path / "line.toml"
    config.write_text(f'[line]\ndata_dir = "{tmp_path / "data"}"\n[job]\nid = "PO-1"\n')
    order = tmp_path / "po2.toml"
    order.write_text('[job]\nid = "PO-2"\nlot = "B2"\n')
    seen = []
    jobs = JobControl(JobSection(id="PO-1"), tmp_path / "data", seen.append)
    shown = subprocess.run([*UDIGATE, "job", "show", "--config", str(config)], capture_output=True, text=True)
    assert json.loads(shown.stdout)["active"]["id"] == "PO-1"
    started = subprocess.run(
        [*UDIGATE, "job", "start", "--config", str(config), str(order)], capture_output=True, text=True
    )
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["active"] == {"id": "PO-2", "lot": "B2", **_defaults()}
    time.sleep(0.01)
    jobs.poll_file()
    assert seen[-1].id == "PO-2" and jobs.active.lot == "B2"
    subprocess.run([*UDIGATE, "job", "stop", "--config", str(config)], check=True, capture_output=True)
    jobs.poll_file()
    assert seen[-1] is None and read_job_file(tmp_path / "data" / "job.json") == (True, None)


def _defaults():
    job = JobSection().model_dump(mode="json", exclude_none=True)
    return {k: v for k, v in job.items() if k not in ("id", "lot")}


def test_the_mes_switches_the_order_of_a_running_line(tmp_path, mosquitto, subscribe):
    config = line_config(
        tmp_path,
        **{
            "mqtt.host": "127.0.0.1",
            "mqtt.port": mosquitto.port,
            "source.simulator.rate_ppm": 900,
            "source.simulator.items": 60,
            "source.simulator.defects": {},
        },
    )
    root = f"udigate/{config.line.site}/{config.line.name}"
    subscriber = subscribe("127.0.0.1", mosquitto.port, f"{root}/#")
    gateway = Gateway(config)
    gateway.start()
    runner = threading.Thread(target=gateway.run, args=(threading.Event(),))
    runner.start()
    assert subscriber.wait_for(lambda: len(subscriber.json_on("/verified")) >= 5)
    command = {"command": "start", "request_id": "r1", "job": {"id": "PO-NEW", "lot": "OTHER"}}
    publish.single(f"{root}/job/set", json.dumps(command), qos=1, hostname="127.0.0.1", port=mosquitto.port)
    assert subscriber.wait_for(lambda: subscriber.json_on("/job/ack"))
    ack = subscriber.json_on("/job/ack")[0]
    assert ack["ok"] and ack["request_id"] == "r1" and ack["job"]["id"] == "PO-NEW"
    runner.join(60)
    gateway.close()
    records = sorted(subscriber.json_on("/verified") + subscriber.json_on("/rejected"), key=lambda r: r["item_id"])
    jobs = [r["job"] for r in records]
    switch = jobs.index("PO-NEW")
    assert switch >= 5 and set(jobs[:switch]) == {config.job.id} and set(jobs[switch:]) == {"PO-NEW"}
    assert all(r["verdict"] == "pass" for r in records[:switch])
    assert all([c["code"] for c in r["reasons"]] == ["wrong_lot"] for r in records[switch:])
    retained = [json.loads(p) for t, p, _ in subscriber.messages if t == f"{root}/job"]
    assert retained[0]["id"] == config.job.id and retained[-1]["id"] == "PO-NEW"
    assert read_job_file(config.line.data_dir / "job.json")[1].id == "PO-NEW"  # persisted


def test_a_stopped_line_rejects_every_item(tmp_path):
    from gateway.config import override
    from gateway.pipeline import Pipeline
    from gateway.sources import open_source
    from vision.reader import open_reader

    config = override(
        line_config(tmp_path),
        **{"source.simulator.rate_ppm": 0, "source.simulator.items": 5, "source.simulator.defects": {}},
    )
    verdicts = []
    pipeline = Pipeline(config, open_reader("zxing"), verdicts.append, grading=None)
    pipeline.set_job(None)
    pipeline.run(open_source(config), threading.Event())
    assert len(verdicts) == 5
    assert all(v.reasons[0] == "no_active_job" and v.job_id is None for v in verdicts)
