"""Shared fixtures: real brokers and peers on loopback, never mocks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from gateway.broker import Mosquitto, free_port
from gateway.config import Config, demo_config_text, override, parse_config

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    """A real mosquitto on a free loopback port (installed by ./dev)."""
    assert shutil.which("mosquitto"), "mosquitto is missing: run the tests through ./dev test"
    broker = Mosquitto("127.0.0.1", free_port())
    broker.start()
    yield broker
    broker.close()


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.02) -> bool:
    """Whether ``predicate()`` comes true within ``timeout`` seconds, checked every ``interval``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class Subscriber:
    """Collects every message under a topic filter, in arrival order. ``session`` names a
    persistent session (MQTT 3.1.1, clean_session false) that the broker keeps, with the QoS 1
    messages it queues, while the subscriber is away; ``mqtt5`` subscribes with MQTT 5 to see
    user properties."""

    def __init__(
        self,
        host: str,
        port: int,
        topic: str,
        session: str | None = None,
        mqtt5: bool = False,
        auth: tuple[str, str] | None = None,
        **tls,
    ) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.user_properties: list[dict[str, str]] = []  # per message, MQTT 5 only
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        client_id = session or f"test-sub-{time.monotonic_ns()}"
        if mqtt5:
            self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        else:
            self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not session)
        if tls:
            self.client.tls_set(**tls)
        if auth:
            self.client.username_pw_set(*auth)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.connect(host, port)
        self.client.loop_start()
        assert self._subscribed.wait(5), "test subscriber could not subscribe"

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.messages.append((message.topic, message.payload, message.retain))
            self.user_properties.append(dict(getattr(message.properties, "UserProperty", [])))

    def json_on(self, suffix: str) -> list[dict]:
        with self._lock:
            return [json.loads(p) for t, p, _ in self.messages if t.endswith(suffix)]

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        return wait_for(predicate, timeout, interval=0.05)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscribe():
    subscribers: list[Subscriber] = []

    def make(host: str, port: int, topic: str = "#", **options) -> Subscriber:
        subscribers.append(Subscriber(host, port, topic, **options))
        return subscribers[-1]

    yield make
    for s in subscribers:
        s.close()


@pytest.fixture
def serial_pair(tmp_path) -> Iterator[tuple[str, str]]:
    """Two pseudo-terminals joined like the two ends of an RS-485 cable (socat), for Modbus RTU."""
    assert shutil.which("socat"), "socat is missing: run the tests through ./dev test"
    ends = (tmp_path / "ttyA", tmp_path / "ttyB")
    socat = subprocess.Popen(["socat", *(f"pty,raw,echo=0,link={end}" for end in ends)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not all(end.exists() for end in ends):
        assert socat.poll() is None and time.monotonic() < deadline, "socat did not create the pty pair"
        time.sleep(0.02)
    yield str(ends[0]), str(ends[1])
    socat.terminate()
    socat.wait(5)


def line_config(tmp_path: Path, **changes) -> Config:
    """The demo configuration on free ports with its data in ``tmp_path``, plus ``changes``."""
    base = parse_config(demo_config_text())
    return override(
        base,
        **{
            "line.data_dir": str(tmp_path / "data"),
            "plc.modbus.port": free_port(),
            "mqtt.port": free_port(),
            "web.port": 0,  # any free port: never the demo's 8080
            **changes,
        },
    )


@pytest.fixture
def pty_pair():
    """A pseudo-terminal: the master's fd (the board's end) and the slave's path (the gateway's)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    yield master, os.ttyname(slave)
    os.close(master)
    os.close(slave)
