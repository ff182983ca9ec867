"""MQTT adapter: item records, line status and counters to the plant's broker.

Topics under ``topic_root`` (default ``udigate/<site>/<line>``):

* ``…/verified``  one record per item that passed (QoS ``mqtt.qos``, not retained)
* ``…/rejected``  one record per rejected item
* ``…/status``    ``{"state": "online"|"offline", …}`` retained; the broker publishes
  ``offline`` as the MQTT will if the gateway vanishes
* ``…/counters``  totals and throughput every ``counters_interval_s``, retained
* ``…/alarms``    ``{"plc_heartbeat_lost": bool, "timestamp", "detail"}`` retained
* ``…/job``       the active production order (``null`` when stopped), retained
* ``…/job/set``   subscribed: job commands from the MES (see gateway/jobs.py), answered on
  ``…/job/ack``

paho-mqtt keeps messages published while the broker is away in memory and sends them after
reconnecting; nothing is persisted to disk yet.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import paho.mqtt.client as paho

from .config import MqttSection

log = logging.getLogger(__name__)


class MqttPublisher:
    def __init__(
        self,
        config: MqttSection,
        site: str,
        line: str,
        host: str,
        port: int,
        on_job_command: Callable[[bytes], dict] | None = None,
    ) -> None:
        self.config = config
        self.host, self.port = host, port
        self.root = config.topic_root.format(site=site, line=line)
        self.status_topic = f"{self.root}/status"
        self._client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=config.client_id or f"udigate-{site}-{line}",
            protocol=paho.MQTTv311,
        )
        self._client.will_set(self.status_topic, self._status("offline"), qos=1, retain=True)
        self._client.reconnect_delay_set(1, 30)
        self._client.max_queued_messages_set(0)  # unbounded: never refuse a record while away
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.on_message = self._on_message
        self._on_job_command = on_job_command
        self._acked = threading.Condition()
        self._pending: set[int] = set()
        self._early_acks: set[int] = set()
        self.sent = 0
        self.acknowledged = 0
        self.dropped = 0
        self.connected = threading.Event()
        self._closing = False

    def start(self) -> None:
        self._client.connect_async(self.host, self.port, keepalive=self.config.keepalive_s)
        self._client.loop_start()

    def publish_item(self, record: dict) -> None:
        topic = f"{self.root}/{'verified' if record['verdict'] == 'pass' else 'rejected'}"
        self._publish(topic, json.dumps(record, separators=(",", ":")), self.config.qos)

    def publish_counters(self, counters: dict) -> None:
        self._publish(f"{self.root}/counters", json.dumps(counters, separators=(",", ":")), 1, retain=True)

    def publish_alarms(self, alarms: dict) -> None:
        self._publish(f"{self.root}/alarms", json.dumps({**alarms, "timestamp": _now()}), 1, retain=True)

    def publish_undelivered(self, event: dict) -> None:
        """A result the PLC did not get within its deadline (the PLC rejects that item)."""
        self._publish(f"{self.root}/plc/undelivered", json.dumps({**event, "timestamp": _now()}), self.config.qos)

    def publish_job(self, job: dict | None) -> None:
        self._publish(f"{self.root}/job", json.dumps(job, separators=(",", ":")), 1, retain=True)

    def close(self, timeout: float = 10.0) -> bool:
        """Announce ``offline``, wait up to ``timeout`` s for the broker to acknowledge
        everything sent, and disconnect. Returns False when records were still unacknowledged."""
        if self.connected.is_set():
            self._publish(self.status_topic, self._status("offline"), qos=1, retain=True)
        with self._acked:
            complete = self._acked.wait_for(lambda: self.acknowledged >= self.sent, timeout)
        if not complete:
            log.error(
                "MQTT: %d records not acknowledged by %s:%d at shutdown",
                self.sent - self.acknowledged,
                self.host,
                self.port,
            )
        self._closing = True
        self._client.disconnect()
        self._client.loop_stop()
        return complete

    def _publish(self, topic: str, payload: str, qos: int, retain: bool = False) -> None:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if qos == 0 and info.rc != paho.MQTT_ERR_SUCCESS:
            self.dropped += 1  # QoS 0 while disconnected: paho does not keep it
            return
        with self._acked:
            self.sent += 1
            # The broker's acknowledgement can arrive before publish() returns the message id.
            if info.mid in self._early_acks:
                self._early_acks.remove(info.mid)
                self._ack_one()
            else:
                self._pending.add(info.mid)

    def _ack_one(self) -> None:
        self.acknowledged += 1
        self._acked.notify_all()

    def _status(self, state: str) -> str:
        return json.dumps({"state": state, "timestamp": _now()})

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT broker %s:%d refused the connection: %s", self.host, self.port, reason_code)
            return
        log.info("MQTT connected to %s:%d", self.host, self.port)
        self._publish(self.status_topic, self._status("online"), qos=1, retain=True)
        if self._on_job_command is not None:
            client.subscribe(f"{self.root}/job/set", qos=1)
        self.connected.set()

    def _on_message(self, client, userdata, message) -> None:
        if message.topic == f"{self.root}/job/set" and self._on_job_command is not None:
            ack = self._on_job_command(message.payload)  # the job change publishes …/job itself
            self._publish(f"{self.root}/job/ack", json.dumps(ack, separators=(",", ":")), 1)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self.connected.is_set() and not self._closing:
            log.warning("MQTT disconnected from %s:%d (%s); reconnecting", self.host, self.port, reason_code)
        self.connected.clear()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._acked:
            if mid in self._pending:
                self._pending.remove(mid)
                self._ack_one()
            else:
                self._early_acks.add(mid)


def _now() -> str:
    """UTC to the second, ``2026-11-23T08:00:00Z``."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
