"""Nothing lost on the way to the MES: a running line against a real mosquitto that is stopped
for a minute, and a gateway killed with SIGKILL and started again."""

import json
import signal
import sqlite3
import subprocess
import threading
import time
from collections import defaultdict

from gateway.app import Gateway
from gateway.broker import Mosquitto, free_port

from .conftest import line_config
from .test_cli import UDIGATE, write_config

ROOT = "udigate/demo-site/line1"


def first_copies(messages) -> list[dict]:
    """Item records in arrival order, each record_id once (its first copy)."""
    seen, records = set(), []
    for topic, payload, _ in messages:
        if topic.endswith(("/verified", "/rejected")):
            record = json.loads(payload)
            if record["record_id"] not in seen:
                seen.add(record["record_id"])
                records.append(record)
    return records


def test_broker_stopped_for_60_s_at_300_per_minute_loses_nothing(tmp_path, subscribe):
    broker = Mosquitto("127.0.0.1", free_port(), persistence=True)
    broker.start()
    try:
        # The MES: a persistent session, so the broker queues what arrives while it reconnects.
        mes = subscribe(broker.host, broker.port, f"{ROOT}/+", session="mes-outage-test")
        config = line_config(tmp_path, **{"mqtt.host": "127.0.0.1", "mqtt.port": broker.port})
        gateway = Gateway(config)
        gateway.start()
        stop = threading.Event()
        line = threading.Thread(target=gateway.run, args=(stop,))
        line.start()
        time.sleep(8)
        broker.stop()
        down_at = gateway.stats.snapshot().items
        time.sleep(60)
        waiting = gateway.mqtt.outbox.count
        broker.start()
        time.sleep(10)
        stop.set()
        line.join(60)
        summary = gateway.close()
        items = summary.stats.items

        assert mes.wait_for(lambda: len(first_copies(mes.messages)) >= items, timeout=30)
        records = first_copies(mes.messages)
        assert waiting >= 250  # a minute at 300/min was held in the outbox
        assert down_at >= 30 and items >= down_at + 250 + 40
        assert [r["item_id"] for r in records] == list(range(1, items + 1))  # each once, in order
        assert {r["run_id"] for r in records} == {gateway.context.run_id}
        assert summary.mqtt_pending == 0 and summary.mqtt_acknowledged == summary.mqtt_committed >= items
        assert summary.clean
    finally:
        broker.close()


def spawn(config, log):
    return subprocess.Popen([*UDIGATE, "run", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT)


def wait_for_items(outbox_path, at_least, timeout=60.0):
    """Until the outbox database holds ``at_least`` item records."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if sum(len(items) for items in committed(outbox_path).values()) >= at_least:
                return
        except sqlite3.OperationalError:  # not created or not initialised yet
            pass
        time.sleep(0.2)
    raise AssertionError(f"not {at_least} records in {outbox_path} within {timeout:g} s")


def committed(outbox_path) -> dict[str, set[int]]:
    """run_id → item ids of the records in the outbox (committed, not yet acknowledged)."""
    db = sqlite3.connect(outbox_path)
    try:
        keys = [k for (k,) in db.execute("SELECT key FROM outbox WHERE kind IN ('verified', 'rejected')")]
    finally:
        db.close()
    runs = defaultdict(set)
    for key in keys:
        run_id, item_id = key.rsplit("/", 1)
        runs[run_id].add(int(item_id))
    return runs


def test_sigkill_loses_no_committed_record(tmp_path, subscribe):
    port = free_port()
    config = write_config(
        tmp_path,
        **{"mqtt.host": "127.0.0.1", "mqtt.port": port, "source.trigger": "timer"},
        **{"plc.modbus.enabled": False, "plc.simulator.enabled": False},
    )
    outbox_path = tmp_path / "data" / "mqtt-outbox.db"
    log = open(tmp_path / "udigate.log", "w")  # noqa: SIM115 - shared by the three runs

    # 1. No broker: records pile up in the outbox; the gateway is killed.
    first = spawn(config, log)
    wait_for_items(outbox_path, 25)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    held = committed(outbox_path)
    assert len(held) == 1 and len(next(iter(held.values()))) >= 25

    # 2. The broker is back: the restarted gateway replays, runs on and is killed again.
    broker = Mosquitto("127.0.0.1", port)
    broker.start()
    try:
        mes = subscribe("127.0.0.1", port, f"{ROOT}/+")
        second = spawn(config, log)
        assert mes.wait_for(lambda: len(first_copies(mes.messages)) >= len(next(iter(held.values()))) + 20, 60)
        second.send_signal(signal.SIGKILL)
        second.wait(10)
        left = committed(outbox_path)

        # 3. A third start sends what the second left; it is stopped cleanly.
        third = spawn(config, log)
        time.sleep(8)
        third.send_signal(signal.SIGTERM)
        assert third.wait(60) == 0, (tmp_path / "udigate.log").read_text()[-3000:]
        assert not committed(outbox_path)

        received = defaultdict(set)
        for record in first_copies(mes.messages):
            received[record["run_id"]].add(record["item_id"])
        for run_id, items in held.items():
            assert items <= received[run_id], f"run {run_id} lost {sorted(items - received[run_id])}"
        for run_id, items in left.items():
            assert items <= received[run_id]
        assert len(received) == 3
        for run_id, items in received.items():  # per run: 1..n, no hole anywhere
            assert items == set(range(1, max(items) + 1)), run_id
    finally:
        log.close()
        broker.close()
