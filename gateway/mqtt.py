"""MQTT adapter: the line's records, state and commands on the plant's broker.

Topics under ``topic_root`` (default ``udigate/<site>/<line>``; ISA-95 fields {enterprise} {site}
{area} {line}), schema in docs/mqtt.md:

* ``…/verified``, ``…/rejected``  one record per item (QoS 1, through the outbox)
* ``…/plc/undelivered``          a result the PLC did not take in time (through the outbox)
* ``…/epcis``                    the record as an EPCIS 2.0 ObjectEvent (``mqtt.epcis``)
* ``…/status``    ``{"state": "online"|"offline", …}`` retained; ``offline`` is also the MQTT will
* ``…/counters``, ``…/alarms``, ``…/job``   retained state, latest value only
* ``…/job/set``   subscribed: job commands from the MES, answered on ``…/job/ack`` (or on the
  MQTT 5 response topic, with the request's correlation data)

Records go through :class:`gateway.outbox.Outbox`: committed to disk first, deleted when the broker
acknowledges them, replayed in order after a reconnect or restart. Retained state is not queued:
after a reconnect the current value is published, not its history.

One thread (``mqtt``) owns the connection and is the only one that publishes, so records, state
and replies leave in the order they were decided. Each connection gets a fresh paho client: paho
would otherwise resend its own in-flight copies on reconnect, interleaved with the outbox's replay.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .config import MqttSection
from .outbox import Entry, Outbox

log = logging.getLogger(__name__)

WINDOW = 1000  # records handed to paho and not yet acknowledged
REMOVE_BATCH = 64
CONNECT_TIMEOUT_S = 10.0
RECONNECT_DELAYS_S = (0.5, 10.0)  # first retry, cap (doubling in between)
# CONNACK reason codes meaning "this broker does not speak MQTT 5" (3.1.1 code 1 and its v5 name)
UNSUPPORTED_PROTOCOL = {1, 132}
# outbox kinds Sparkplug carries as device data (the EPCIS documents stay JSON-LD on …/epcis)
SPARKPLUG_KINDS = {"verified": "verified", "rejected": "rejected", "plc/undelivered": "undelivered"}


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool = False
    properties: dict = field(default_factory=dict)  # MQTT 5 properties by paho name


class MqttPublisher:
    """Publishes through the outbox; reconnects with backoff; replies to job commands."""

    def __init__(
        self,
        config: MqttSection,
        names: dict[str, str],
        host: str,
        port: int,
        outbox: Outbox,
        on_job_command: Callable[[bytes], dict] | None = None,
    ) -> None:
        self.config = config
        self.host, self.port = host, port
        self.outbox = outbox
        self.root = config.topic_root.format(**names)
        self.client_id = config.client_id or f"udigate-{names['site']}-{names['line']}"
        self.status_topic = f"{self.root}/status"
        self.command_topic = f"{self.root}/job/set"
        self._on_job_command = on_job_command
        self.sparkplug = _sparkplug_node(config, names) if config.format == "sparkplug" else None
        self._host_online = self.sparkplug is None or self.sparkplug.state_topic is None
        self._born_at: float | None = None  # Sparkplug: when this connection's birth went out
        self._rebirth = False
        self._counters: dict | None = None  # Sparkplug: line counters not yet sent as DDATA
        self._lock = threading.Condition()
        self._states: dict[str, bytes] = {}  # retained topic → latest payload
        self._dirty: list[str] = []  # state topics to (re)publish
        self._replies: list[Message] = []
        self._inflight: dict[int, int | None] = {}  # paho mid → outbox seq (None: state or reply)
        self._early_acks: set[int] = set()  # acknowledged before publish() returned the mid
        self._acked: list[int] = []
        self._session_alive = False
        self._connack: threading.Event | None = None
        self._refusal: paho.ReasonCode | None = None
        self.protocol = paho.MQTTv311 if config.protocol == "3.1.1" else paho.MQTTv5
        self.connected = threading.Event()
        self.sent = 0  # records handed to the broker, resends included
        self.problem: str | None = None  # why the broker is not reachable, while it is not
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)

    # -- the gateway's side -------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def publish_record(self, kind: str, key: str, record: dict) -> int:
        """Commit a record for ``…/<kind>``; returns its outbox sequence number. Raises
        :class:`gateway.outbox.OutboxFull` when the quota has no room."""
        seq = self.outbox.put(kind, key, json.dumps(record, separators=(",", ":")).encode())
        with self._lock:
            self._lock.notify()
        return seq

    def set_state(self, name: str, value) -> None:
        """Retained state under ``…/<name>`` (counters, alarms, job): the latest value wins."""
        topic = f"{self.root}/{name}"
        with self._lock:
            self._states[topic] = json.dumps(value, separators=(",", ":")).encode()
            if topic not in self._dirty:
                self._dirty.append(topic)
            self._lock.notify()

    def publish_counters(self, counters: dict) -> None:
        """Retained ``…/counters``; with Sparkplug also the device's ``Line/…`` metrics."""
        self.set_state("counters", counters)
        if self.sparkplug is not None:
            with self._lock:
                self._counters = counters

    @property
    def acknowledged(self) -> int:
        return self.outbox.removed

    def close(self, timeout: float = 10.0) -> bool:
        """Wait up to ``timeout`` s for the broker to acknowledge every record, announce
        ``offline`` and disconnect. Returns False when records stayed in the outbox (they are
        sent at the next start)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._lock.wait_for(lambda: self.outbox.count == 0, max(0.0, deadline - time.monotonic()))
            self._stop.set()
            self._lock.notify_all()
        if self._thread.is_alive():
            self._thread.join(CONNECT_TIMEOUT_S + 5)
        if self.outbox.count:
            log.error(
                "MQTT: %d records not acknowledged by %s:%d; they stay in %s for the next start",
                self.outbox.count,
                self.host,
                self.port,
                self.outbox.path,
            )
        return self.outbox.count == 0

    # -- the connection thread ----------------------------------------------------------------

    def _run(self) -> None:
        delay = RECONNECT_DELAYS_S[0]
        while not self._stop.is_set():
            outcome = self._session()
            if self._stop.is_set():
                break
            # "auto": a broker that refuses MQTT 5, or drops a v5 CONNECT unanswered (some 3.1.1-only
            # brokers do), gets 3.1.1 next; the two alternate until one connects.
            if self.config.protocol == "auto" and outcome in ("unanswered", "refused_version"):
                self.protocol = paho.MQTTv311 if self.protocol == paho.MQTTv5 else paho.MQTTv5
                if outcome == "refused_version":
                    continue
            delay = RECONNECT_DELAYS_S[0] if outcome == "up" else min(delay * 2, RECONNECT_DELAYS_S[1])
            self._stop.wait(delay)

    def _session(self) -> str:
        """One connection, from connect to its loss or to stop. Returns "up" (it was), "unreachable",
        "refused", "refused_version" or "unanswered"."""
        client = self._client()
        self._connack, self._refusal = threading.Event(), None
        try:
            client.connect(self.host, self.port, keepalive=self.config.keepalive_s)
        except (OSError, ssl.SSLError, ValueError) as exc:
            self._report(f"cannot connect to {self.host}:{self.port}: {exc}")
            return "unreachable"
        client.loop_start()
        try:
            if not self._connack.wait(CONNECT_TIMEOUT_S) or not self._session_alive:
                refusal = self._refusal
                self._report(f"broker {self.host}:{self.port} refused the connection: {refusal or 'no CONNACK'}")
                if refusal is None:
                    return "unanswered"
                return "refused_version" if refusal.value in UNSUPPORTED_PROTOCOL else "refused"
            self._report(None)
            self._pump(client)
            return "up"
        finally:
            client.loop_stop()
            self.connected.clear()
            with self._lock:
                self._session_alive = False
                self._inflight.clear()
                self._early_acks.clear()
                acked, self._acked = self._acked, []
            self.outbox.remove(acked)

    def _pump(self, client: paho.Client) -> None:
        """Hand records to the broker in order, keeping at most WINDOW unacknowledged; delete
        what it acknowledged; publish changed state and replies."""
        with self._lock:
            self._states[self.status_topic] = _status("online")
            self._dirty = list(self._states)
            self._born_at, self._rebirth = None, False
        topics = [self.command_topic] if self._on_job_command is not None else []
        topics += self.sparkplug.subscriptions if self.sparkplug is not None else []
        for topic in topics:
            client.subscribe(topic, qos=1)
        self.connected.set()
        cursor = 0  # the last outbox seq handed to this connection
        unremoved: list[int] = []  # acknowledged, not yet deleted
        try:
            self._pump_loop(client, cursor, unremoved)
        finally:
            self.outbox.remove(unremoved)

    def _pump_loop(self, client: paho.Client, cursor: int, unremoved: list[int]) -> None:
        while True:
            with self._lock:
                if not self._session_alive:
                    return
                if self._stop.is_set():
                    break
                acked, self._acked = self._acked, []
                dirty, self._dirty = self._dirty, []
                states = [Message(t, self._states[t], 1, retain=True) for t in dirty]
                replies, self._replies = self._replies, []
                room = WINDOW - len(self._inflight)
                sparkplug = self._sparkplug_messages() if self.sparkplug is not None else []
                if self.sparkplug is not None and self._born_at is None:
                    room = 0  # records wait for the birth
            if sparkplug is None:  # the primary host went offline: Sparkplug starts over
                self._send(client, self.sparkplug.death_node(), None)
                client.disconnect()
                return
            # Deletes are batched (one transaction per REMOVE_BATCH acknowledgements, or when
            # nothing else is waiting): a crash in between only resends a few acknowledged records.
            unremoved += acked
            if unremoved and (len(unremoved) >= REMOVE_BATCH or self.outbox.count <= len(unremoved)):
                self.outbox.remove(unremoved)
                unremoved.clear()
                with self._lock:
                    self._lock.notify_all()  # close() waits for the outbox to empty
            for message in states + replies + sparkplug:
                self._send(client, message, None)
            entries = self.outbox.after(cursor, room) if room > 0 else []
            for entry in entries:
                self._send(client, self._record_message(entry), entry.seq)
                cursor = entry.seq
            self.sent += len(entries)
            if not (acked or states or replies or sparkplug or entries):
                with self._lock:
                    if self._session_alive and not self._acked and not self._dirty and not self._replies:
                        self._lock.wait(0.5)
        self._sign_off(client)

    def _sparkplug_messages(self) -> list | None:
        """Births when due (connected and the primary host online, or a rebirth request) and
        changed counters; None when the host went offline after the birth. Lock held."""
        node = self.sparkplug
        if self._born_at is not None and not self._host_online:
            return None
        if self._born_at is None and self._host_online or self._rebirth and self._born_at is not None:
            self._born_at = self._born_at or time.time()
            self._rebirth = False
            messages, self._counters = node.birth(self._counters), None
            return messages
        if self._counters is not None and self._born_at is not None:
            messages, self._counters = node.counters(self._counters), None
            return messages
        return []

    def _sign_off(self, client: paho.Client) -> None:
        """Sparkplug's deaths and the retained ``offline`` (a clean disconnect sends no will),
        then disconnect."""
        if self.sparkplug is not None:
            if self._born_at is not None:
                self._send(client, self.sparkplug.death_device(), None)
            self._send(client, self.sparkplug.death_node(), None)
        self._states[self.status_topic] = _status("offline")
        info = self._send(client, Message(self.status_topic, self._states[self.status_topic], 1, retain=True), None)
        try:
            info.wait_for_publish(2.0)
        except (RuntimeError, ValueError):  # the connection went while waiting
            pass
        client.disconnect()

    def _record_message(self, entry: Entry):
        """The record as JSON on ``…/<kind>``; with Sparkplug as DDATA (historical when it was
        committed before this connection's birth), EPCIS documents staying JSON-LD."""
        if self.sparkplug is not None and entry.kind in SPARKPLUG_KINDS:
            record = json.loads(entry.payload)
            message = self.sparkplug.data(SPARKPLUG_KINDS[entry.kind], record, historical=entry.created < self._born_at)
            return replace(message, qos=self.config.sparkplug.data_qos)
        properties = {"UserProperty": [("record_id", entry.key)], "ContentType": "application/json"}
        return Message(f"{self.root}/{entry.kind}", entry.payload, self.config.qos, properties=properties)

    def _send(self, client: paho.Client, message, seq: int | None) -> paho.MQTTMessageInfo:
        """Publish ``message`` (this module's or Sparkplug's), remembering which outbox entry
        its acknowledgement frees."""
        properties = None
        if self.protocol == paho.MQTTv5 and getattr(message, "properties", None):
            properties = Properties(PacketTypes.PUBLISH)
            for name, value in message.properties.items():
                setattr(properties, name, value)
        info = client.publish(message.topic, message.payload, message.qos, message.retain, properties)
        with self._lock:
            if info.mid in self._early_acks:  # QoS 0 counts as acknowledged once written
                self._early_acks.discard(info.mid)
                if seq is not None:
                    self._acked.append(seq)
            else:
                self._inflight[info.mid] = seq
        return info

    def _client(self) -> paho.Client:
        config = self.config
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=self.protocol)
        if self.sparkplug is not None:  # the node's death certificate, with this connection's bdSeq
            will = self.sparkplug.will()
            client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        else:
            client.will_set(self.status_topic, _status("offline"), qos=1, retain=True)
        client.max_queued_messages_set(0)
        client.max_inflight_messages_set(WINDOW)
        if config.username:
            client.username_pw_set(config.username, config.secret())
        if config.tls.enabled:
            client.tls_set(
                ca_certs=str(config.tls.ca_file) if config.tls.ca_file else None,
                certfile=str(config.tls.cert_file) if config.tls.cert_file else None,
                keyfile=str(config.tls.key_file) if config.tls.key_file else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
            client.tls_insecure_set(not config.tls.check_hostname)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _report(self, problem: str | None) -> None:
        """One log line per change of the connection's state."""
        if problem == self.problem:
            return
        if problem is None:
            log.info("MQTT connected to %s:%d (MQTT %s)", self.host, self.port, _version(self.protocol))
        else:
            log.warning("MQTT: %s; records wait in the outbox (%d now), retrying", problem, self.outbox.count)
        self.problem = problem

    # -- paho's network thread ----------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._lock:
            if reason_code.is_failure:
                self._refusal = reason_code
            else:
                self._session_alive = True
        self._connack.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._lock:
            if self._session_alive and not self._stop.is_set():
                log.warning("MQTT disconnected from %s:%d (%s)", self.host, self.port, reason_code)
                self.problem = f"disconnected ({reason_code})"
            self._session_alive = False
            self._lock.notify_all()
        self._connack.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            if mid not in self._inflight:
                self._early_acks.add(mid)
                return
            seq = self._inflight.pop(mid)
            if seq is not None:
                if reason_code.is_failure:  # MQTT 5: the broker refused it (e.g. not authorised)
                    log.error("MQTT broker refused record %d: %s", seq, reason_code)
                else:
                    self._acked.append(seq)
            self._lock.notify()

    def _on_message(self, client, userdata, message) -> None:
        if self.sparkplug is not None and message.topic != self.command_topic:
            online = self.sparkplug.host_online(message.topic, message.payload)
            with self._lock:
                if online is not None:
                    self._host_online = online
                    log.warning("Sparkplug primary host %s", "online" if online else "offline: records wait")
                elif self.sparkplug.command(message.topic, message.payload) == "rebirth":
                    self._rebirth = True
                self._lock.notify()
            return
        if message.topic != self.command_topic or self._on_job_command is None:
            return
        ack = json.dumps(self._on_job_command(message.payload), separators=(",", ":")).encode()
        request = message.properties
        topic = getattr(request, "ResponseTopic", None) or f"{self.root}/job/ack"
        properties = {}
        if getattr(request, "CorrelationData", None) is not None:
            properties["CorrelationData"] = request.CorrelationData
        with self._lock:
            self._replies.append(Message(topic, ack, 1, properties=properties))
            self._lock.notify()


def _sparkplug_node(config: MqttSection, names: dict[str, str]):
    try:
        from .sparkplug import SparkplugNode
    except ImportError as exc:  # pysparkplug is installed by ./dev, without its paho-mqtt<2 pin
        raise RuntimeError(
            f'mqtt.format = "sparkplug" needs pysparkplug ({exc}): pip install --no-deps pysparkplug==0.6.1'
        ) from None
    sparkplug = config.sparkplug
    return SparkplugNode(
        sparkplug.group_id,
        sparkplug.edge_node_id.format(**names),
        sparkplug.device_id,
        sparkplug.primary_host_id or None,
    )


def _status(state: str) -> bytes:
    return json.dumps({"state": state, "timestamp": now_utc()}).encode()


def _version(protocol: int) -> str:
    return "5" if protocol == paho.MQTTv5 else "3.1.1"


def now_utc() -> str:
    """UTC to the second, ``2026-11-23T08:00:00Z``."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
