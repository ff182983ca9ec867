"""The station and its PLC while the line runs: the simulated PLC's belt triggers every capture and
ejects exactly the rejected packs, whatever the spacing and speed; a PLC peer killed mid-run loses
no result silently; the PLC's heartbeat is watched and its loss handled by the line's policy."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from gateway.app import Gateway
from gateway.broker import free_port
from plc.registers import ADDRESS, Status, join32

from .conftest import REPO, line_config


def run_line(gateway: Gateway, during=None, timeout: float = 120):
    """Start ``gateway``, run its line to the end (``during()`` meanwhile, in this thread), close."""
    gateway.start()
    stop = threading.Event()
    runner = threading.Thread(target=gateway.run, args=(stop,))
    runner.start()
    try:
        if during is not None:
            during()
        runner.join(timeout)
        assert not runner.is_alive(), "the line did not finish"
    finally:
        stop.set()
        runner.join(60)
    return gateway.close()


@pytest.mark.parametrize("mode", ["server", "client"])
def test_the_ejector_kicks_out_exactly_the_rejected_packs_at_any_spacing_and_speed(
    tmp_path, mosquitto, subscribe, mode
):
    items = 150
    changes = {
        "mqtt.host": "127.0.0.1",
        "mqtt.port": mosquitto.port,
        "source.trigger": "plc",
        "source.simulator.items": items,
        "source.simulator.defects": {"no_code": 0.1, "wrong_lot": 0.1, "low_contrast": 0.05, "expired": 0.05},
        "plc.simulator.enabled": True,
        "plc.simulator.poll_ms": 5,
        "plc.simulator.pitch_mm": [15, 120],  # gaps from almost touching to far apart
        "plc.simulator.ejector_mm": 400,
        "plc.modbus.mode": mode,
    }
    if mode == "client":
        changes.update({"plc.modbus.host": "127.0.0.1", "plc.modbus.base_address": 1000, "plc.modbus.poll_ms": 5})
    config = line_config(tmp_path, **changes)
    root = f"udigate/{config.line.site}/{config.line.name}"
    subscriber = subscribe("127.0.0.1", mosquitto.port, f"{root}/#")
    gateway = Gateway(config)

    def vary_the_belt():
        belt = gateway.plc_simulator.conveyor
        for speed in (500, 150, 800, 300):  # mm/s: 5 to 30 packs a second
            time.sleep(2.0)
            belt.speed_mm_s = speed

    summary = run_line(gateway, vary_the_belt)
    records = subscriber.json_on("/verified") + subscriber.json_on("/rejected")
    assert len(records) == items
    assert summary.stats.truth_mismatches == [] and summary.stats.items == items
    plc = summary.plc
    assert plc.items == items and plc.no_result == 0 and plc.late_results == 0
    rejected = {r["plc"]["item_id"] for r in records if r["verdict"] == "reject"}
    passed = {r["plc"]["item_id"] for r in records if r["verdict"] == "pass"}
    assert rejected and passed
    assert set(plc.ejected) == rejected and set(plc.kept) == passed  # the right pack, every time
    assert sorted(rejected | passed) == list(range(1001, 1001 + items))  # the PLC's own numbering
    # each record carries the item id the PLC triggered it with, in trigger order
    by_station_id = sorted(records, key=lambda r: r["item_id"])
    assert [r["plc"]["item_id"] for r in by_station_id] == list(range(1001, 1001 + items))
    assert summary.plc_undelivered == 0 and summary.plc_delivered == items
    assert subscriber.json_on("/plc/undelivered") == []


def start_plc_peer(log_path, *args) -> subprocess.Popen:
    """The PLC as its own process (so it can be killed), logging each result it takes."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    peer = subprocess.Popen(
        [sys.executable, "-m", "plc.simulator", *args, "--poll-ms", "10", "--log", str(log_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert "PLC simulator on" in peer.stdout.readline()
    return peer


@pytest.mark.parametrize("mode", ["server", "client"])
def test_a_plc_killed_and_restarted_mid_run_loses_no_result_silently(tmp_path, mosquitto, subscribe, mode):
    """Every result either reached the PLC (in its log) or is accounted as undelivered (MQTT event,
    timeout counter): their union is every item."""
    items, port = 160, free_port()
    changes = {
        "mqtt.host": "127.0.0.1",
        "mqtt.port": mosquitto.port,
        "source.simulator.rate_ppm": 1200,  # 20 items/s, 8 s
        "source.simulator.items": items,
        "source.trigger": "timer",
        "plc.simulator.enabled": False,
        "plc.deadline_ms": 500,
        "plc.plc_heartbeat_timeout_s": 0,
        "plc.modbus.mode": mode,
        "plc.modbus.host": "127.0.0.1",
        "plc.modbus.port": port,
        "plc.modbus.timeout_ms": 200,
    }
    config = line_config(tmp_path, **changes)
    root = f"udigate/{config.line.site}/{config.line.name}"
    subscriber = subscribe("127.0.0.1", mosquitto.port, f"{root}/#")
    log = tmp_path / "plc-results.jsonl"
    peer_args = [f"tcp:127.0.0.1:{port}", *(["--serve"] if mode == "client" else [])]
    gateway = Gateway(config)
    peers = []

    def pull_the_cable():
        if mode == "client":  # the PLC is the server: it must be up for the station to connect
            peers.append(start_plc_peer(log, *peer_args))
        else:
            peers.append(None)
        time.sleep(0.5)
        if mode == "server":
            peers.append(start_plc_peer(log, *peer_args))
        time.sleep(2.5)
        peers[-1].send_signal(signal.SIGKILL)  # mid-run, no goodbye
        peers[-1].wait()
        time.sleep(2.0)  # ~40 items decided while the PLC is gone
        peers.append(start_plc_peer(log, *peer_args))

    try:
        summary = run_line(gateway, pull_the_cable)
        time.sleep(0.3)
    finally:
        for peer in peers:
            if peer is not None and peer.poll() is None:
                peer.send_signal(signal.SIGINT)
                peer.wait(10)
    taken = {json.loads(line)["item_id"] for line in log.read_text().splitlines()}
    undelivered_events = subscriber.json_on("/plc/undelivered")
    undelivered = {e["item_id"] for e in undelivered_events}
    assert summary.stats.items == items
    assert taken | undelivered == set(range(1, items + 1))  # nothing lost silently
    assert len(undelivered) >= 20  # the outage was real
    assert summary.plc_undelivered == len(undelivered_events) == len(undelivered)
    assert summary.plc_delivered + summary.plc_undelivered == items
    assert all(
        re.match(r"(the PLC had not taken it|taken by the PLC \d+ ms after)", e["detail"]) for e in undelivered_events
    )
    words = gateway.registers.snapshot()
    assert join32(*words[ADDRESS["count_timeouts"] : ADDRESS["count_timeouts"] + 2]) == len(undelivered)
    if mode == "client":
        assert gateway.plc_client.connects >= 2  # reconnected after the restart


@pytest.mark.parametrize("policy", ["alarm", "stop_line"])
def test_a_silent_plc_raises_the_alarm_and_the_fail_safe_until_its_heartbeat_returns(
    tmp_path, mosquitto, subscribe, policy
):
    config = line_config(
        tmp_path,
        **{
            "mqtt.host": "127.0.0.1",
            "mqtt.port": mosquitto.port,
            "source.trigger": "timer",
            "source.simulator.rate_ppm": 600,
            "source.simulator.items": 100,
            "source.simulator.defects": {},
            "plc.simulator.enabled": True,
            "plc.plc_heartbeat_timeout_s": 1.0,
            "plc.on_heartbeat_lost": policy,
        },
    )
    root = f"udigate/{config.line.site}/{config.line.name}"
    subscriber = subscribe("127.0.0.1", mosquitto.port, f"{root}/#")
    gateway = Gateway(config)

    def alarms():
        return [a["plc_heartbeat_lost"] for a in subscriber.json_on("/alarms")]

    def status():
        return gateway.registers.snapshot()[ADDRESS["status"]]

    def heartbeat_stops_and_returns():
        assert subscriber.wait_for(lambda: alarms() == [False])  # retained at start: no alarm
        time.sleep(1.5)  # longer than the timeout, with the simulated PLC toggling its bit
        assert alarms() == [False]
        gateway.plc_simulator.send_heartbeat = False  # the PLC program stops
        assert subscriber.wait_for(lambda: alarms() == [False, True], timeout=5)
        assert status() & Status.PLC_ALARM
        assert bool(status() & Status.STOP_LINE) == (policy == "stop_line")
        assert bool(status() & Status.REJECT_ALL) == (policy == "stop_line")
        time.sleep(1.0)  # items decided during the alarm
        gateway.plc_simulator.send_heartbeat = True
        assert subscriber.wait_for(lambda: alarms() == [False, True, False], timeout=5)
        assert not status() & (Status.PLC_ALARM | Status.STOP_LINE | Status.REJECT_ALL)

    summary = run_line(gateway, heartbeat_stops_and_returns)
    message = subscriber.json_on("/alarms")[1]
    assert message["detail"] == "no PLC heartbeat for 1 s" and message["action"] == policy
    records = sorted(subscriber.json_on("/verified"), key=lambda r: r["item_id"])
    assert len(records) == summary.stats.items == 100  # every label good: all verified
    forced = [r["item_id"] for r in records if r["plc"]["reject"]]
    if policy == "alarm":
        assert forced == []
    else:  # the PLC was told to reject a contiguous run of items while its heartbeat was gone
        assert len(forced) >= 8 and forced == list(range(forced[0], forced[-1] + 1))
        assert summary.plc.rejects == len(forced)
