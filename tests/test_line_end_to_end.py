"""The whole line against real peers: simulated camera → vision → rules → a real mosquitto, a real
Modbus TCP client (the PLC simulator over loopback) and the SQLite reject log."""

import json
import sqlite3
import threading
from datetime import date

import cv2

from gateway.app import Gateway
from gateway.reasons import result_code
from gateway.sources.simulator import DEFECTS, LineSimulator

from .conftest import line_config

ITEMS = 240


def twin_truths(config):
    """The ground truth of the same seeded line, from a second simulator."""
    sim = LineSimulator(config.source.simulator, config.job, today=date.today())
    return {f.item_id: f.truth for f in sim.frames(threading.Event())}


def test_every_item_reaches_every_output_with_the_right_verdict(tmp_path, mosquitto, subscribe):
    config = line_config(
        tmp_path,
        **{
            "mqtt.host": "127.0.0.1",
            "mqtt.port": mosquitto.port,
            "source.simulator.rate_ppm": 0,
            "source.simulator.items": ITEMS,
            "source.simulator.seed": 5,
            "source.simulator.defects": {d: 0.07 for d in DEFECTS},
            "plc.simulator.poll_ms": 5,
        },
    )
    truths = twin_truths(config)
    expected_pass = {i for i, t in truths.items() if not t.expected_reasons}
    assert {t.defect for t in truths.values()} == {"good", *DEFECTS}

    subscriber = subscribe("127.0.0.1", mosquitto.port, "udigate/#")
    gateway = Gateway(config)
    gateway.start()
    gateway.plc_simulator.record = True
    assert gateway.run(threading.Event()) == ITEMS
    summary = gateway.close()

    # The station's verdicts agree with the ground truth for every item.
    assert summary.stats.truth_mismatches == []
    assert summary.stats.truth_agreed == summary.stats.truth_checked == ITEMS
    assert summary.clean

    # MQTT: every good item published exactly once, every reject once, with its reasons.
    assert subscriber.wait_for(
        lambda: len(subscriber.json_on("/verified")) + len(subscriber.json_on("/rejected")) >= ITEMS
    )
    verified = subscriber.json_on("/verified")
    rejected = subscriber.json_on("/rejected")
    assert sorted(r["item_id"] for r in verified) == sorted(expected_pass)
    assert sorted(r["item_id"] for r in rejected) == sorted(set(truths) - expected_pass)
    for record in verified:
        truth = truths[record["item_id"]]
        assert record["schema"] == "udigate.item/1" and record["verdict"] == "pass"
        assert record["data"] == truth.element_string  # GS separators kept
        assert record["symbology_identifier"] == "]d2"
        assert record["fields"]["01"] == "06901234567892" and record["job"] == "PO-DEMO-0001"
        grade = record["grade"]  # every verified item carries its ISO/IEC 15415 grade
        assert grade["overall"] >= 1.5 and grade["quality"] == f"{grade['overall']:.1f}/08/660"
        assert set(grade["parameters"]) == {"Decode", "SC", "MOD", "RM", "FPD", "AN", "GN", "UEC", "PG"}
    for record in rejected:
        expected = truths[record["item_id"]].expected_reasons
        assert {r["code"] for r in record["reasons"]} == set(expected)
        assert record["result_code"] == int(result_code(expected))
    assert len({r["record_id"] for r in verified + rejected}) == ITEMS

    def states():
        return [json.loads(p)["state"] for t, p, _ in subscriber.messages if t.endswith("/status")]

    assert subscriber.wait_for(lambda: states()[-1:] == ["offline"])  # published last, at close
    assert states()[0] == "online"

    # Modbus: the PLC saw every result, in order, with the right reject flag.
    plc = summary.plc
    assert plc.missed == 0
    # the demo's PLC triggers every capture and numbers its items from 1001: the results echo that
    assert [r.item_id - 1000 for r in plc.seen] == list(range(1, ITEMS + 1))
    assert [r.reject for r in plc.seen] == [i not in expected_pass for i in range(1, ITEMS + 1)]
    assert [r.code for r in plc.seen] == [result_code(truths[i].expected_reasons) for i in range(1, ITEMS + 1)]
    assert sorted(i - 1000 for i in plc.ejected) == sorted(set(truths) - expected_pass)  # the ejector

    # Reject log: one indexed entry per reject, with its frame and record on disk; and every 20th
    # pass (the demo's rejects.keep_passes_every) for comparison.
    db = sqlite3.connect(config.line.data_dir / "udigate.db")
    rows = db.execute(
        "SELECT item_id, reason, reasons, image, record FROM rejects WHERE verdict = 'reject' ORDER BY item_id"
    ).fetchall()
    assert [r[0] for r in rows] == sorted(set(truths) - expected_pass)
    kept_passes = [r[0] for r in db.execute("SELECT item_id FROM rejects WHERE verdict = 'pass' ORDER BY item_id")]
    assert kept_passes == sorted(expected_pass)[19::20] and summary.passes_kept == len(kept_passes)
    assert summary.rejects_logged == len(rows)
    reports = 0
    for item_id, reason, reasons, image, record in rows:
        assert set(json.loads(reasons)) == set(truths[item_id].expected_reasons)
        assert reason == json.loads(reasons)[0]
        frame = cv2.imread(str(config.line.data_dir / image), cv2.IMREAD_GRAYSCALE)
        assert frame.shape == (config.source.simulator.height, config.source.simulator.width)
        stored = json.loads((config.line.data_dir / record).read_text())
        assert stored["item_id"] == item_id and stored["image"] == image
        if "grade_below_min" in json.loads(reasons):  # the quality engineer's grade report picture
            report = cv2.imread(str(config.line.data_dir / stored["grade_report"]))
            assert report is not None and report.ndim == 3 and stored["grade"]["overall"] < 1.5
            reports += 1
    assert reports == sum(t.defect == "low_contrast" for t in truths.values()) > 0
