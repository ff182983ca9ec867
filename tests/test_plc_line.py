"""The station and its PLC while the line runs: the PLC's heartbeat watched, its loss raised as an
alarm over Modbus status and MQTT, and cleared when it comes back."""

import threading
import time

from gateway.app import Gateway
from plc.registers import ADDRESS, Status

from .conftest import line_config


def test_a_silent_plc_raises_the_alarm_until_its_heartbeat_returns(tmp_path, mosquitto, subscribe):
    config = line_config(
        tmp_path,
        **{
            "mqtt.host": "127.0.0.1",
            "mqtt.port": mosquitto.port,
            "source.simulator.rate_ppm": 600,
            "source.simulator.items": 80,
            "source.simulator.defects": {},
            "plc.simulator.enabled": True,
            "plc.plc_heartbeat_timeout_s": 1.0,
        },
    )
    root = f"udigate/{config.line.site}/{config.line.name}"
    subscriber = subscribe("127.0.0.1", mosquitto.port, f"{root}/alarms")
    gateway = Gateway(config)
    gateway.start()
    stop = threading.Event()
    runner = threading.Thread(target=gateway.run, args=(stop,))
    runner.start()
    try:

        def alarms():
            return [a["plc_heartbeat_lost"] for a in subscriber.json_on("/alarms")]

        def status():
            return gateway.registers.snapshot()[ADDRESS["status"]]

        assert subscriber.wait_for(lambda: alarms() == [False])  # retained at start: no alarm
        time.sleep(1.5)  # longer than the timeout, with the simulated PLC toggling its bit
        assert alarms() == [False]
        gateway.plc_simulator.send_heartbeat = False  # the PLC program stops
        assert subscriber.wait_for(lambda: alarms() == [False, True], timeout=5)
        assert status() & Status.PLC_ALARM
        gateway.plc_simulator.send_heartbeat = True
        assert subscriber.wait_for(lambda: alarms() == [False, True, False], timeout=5)
        assert not status() & Status.PLC_ALARM
        message = subscriber.json_on("/alarms")[1]
        assert message["detail"] == "no PLC heartbeat for 1 s"
    finally:
        stop.set()
        runner.join(60)
        gateway.close()
