"""Sparkplug B 3.0 for the plant MES: the same item records as the plain JSON topics, in the shape
SCADA/MES host applications (Ignition, HiveMQ Edge, Cirrus Link MQTT Engine, …) discover on their
own: one *edge node* (the gateway) with one *device* (the line station) whose metrics are declared
once in a birth certificate and then updated by data messages.

This module is the format only: it builds topics and protobuf payloads (with ``pysparkplug``) and
keeps the bits of session state Sparkplug makes part of the format (``bdSeq``, ``seq``, the metric
set and the current values a rebirth must repeat). It never touches the network; the publisher
(gateway/mqtt.py) owns the connection, the outbox and the retries, and must honour this contract:

1. ``will()`` once before every CONNECT (clean session), registering the returned NDEATH as the
   MQTT will. A new bdSeq per connection is how a host tells this session's death from a stale one.
2. After CONNACK: subscribe to ``subscriptions`` (QoS ``SUBSCRIBE_QOS``); with a primary host, wait
   until ``host_online()`` says True before birthing (Sparkplug's "phid-wait" rule); then publish
   ``birth()``.
3. Build every later message with ``data()`` / ``counters()`` *at the moment it is handed to the
   client*, in the order it is handed over: ``seq`` must increase by one per message on the wire,
   so a payload built earlier (e.g. stored in the outbox) is stale after any rebirth or reconnect.
   Store the record in the outbox, not the payload.
4. ``command()`` returning ``"rebirth"``: publish ``birth()`` again (same bdSeq, seq back to 0).
5. ``host_online()`` returning False while born: Sparkplug 3.0 has the node publish
   ``death_node()``, disconnect and start over at 1 (its "termination-host-offline" rule), so
   records wait in the outbox until the host is back.
6. Clean shutdown: ``death_device()``, then ``death_node()``, then DISCONNECT (a clean DISCONNECT
   discards the will, so the node must announce its death itself).

Delivery: Sparkplug publishes births and data at QoS 0, so the broker acknowledges nothing; an
outbox cannot learn from PUBACKs that a record reached the MES. Sparkplug's own answer is the
primary host's STATE: while the host is offline, keep records, and once it is back replay those
captured before the current birth with ``historical=True`` (the host files them without
overwriting live values).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pysparkplug import (
    DataType,
    DBirth,
    DCmd,
    DData,
    DDeath,
    MessageType,
    Metric,
    NBirth,
    NCmd,
    NDeath,
    State,
    Topic,
    get_current_timestamp,
)

log = logging.getLogger(__name__)

SEQ_MODULUS = 256  # seq and bdSeq both run 0..255 and wrap
SUBSCRIBE_QOS = 1  # NCMD/DCMD subscriptions at QoS 1 (tck-id-message-flow-edge-node-ncmd-subscribe)
BD_SEQ = "bdSeq"
REBIRTH = "Node Control/Rebirth"
KINDS = ("verified", "rejected", "undelivered", "job_ack")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT publication, ready for ``client.publish(topic, payload, qos, retain)``."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


# Device metrics of an item record: name, datatype, value from the record (None = Sparkplug null).
# The set is fixed so the DBIRTH can declare it up front, as Sparkplug requires of every metric a
# device will ever report (tck-id-topics-dbirth-metric-reqs).
def _pi(record: Mapping[str, Any], key: str) -> Any:
    pi = record.get("pi")
    return pi.get(key) if isinstance(pi, Mapping) else None


def _grade(record: Mapping[str, Any]) -> float | None:
    grade = record.get("grade")
    overall = grade.get("overall") if isinstance(grade, Mapping) else None
    return None if overall is None else float(overall)


def _reasons(record: Mapping[str, Any]) -> str:
    return ",".join(r["code"] if isinstance(r, Mapping) else str(r) for r in record.get("reasons") or ())


_ITEM_METRICS: tuple[tuple[str, DataType, Callable[[Mapping[str, Any]], Any]], ...] = (
    ("Item/RecordID", DataType.STRING, lambda r: r.get("record_id")),  # the consumers' idempotency key
    ("Item/ID", DataType.UINT64, lambda r: r.get("item_id")),
    ("Item/Verdict", DataType.STRING, lambda r: r.get("verdict")),
    ("Item/ResultCode", DataType.INT32, lambda r: r.get("result_code")),
    ("Item/Reasons", DataType.STRING, _reasons),
    ("Item/DI", DataType.STRING, lambda r: r.get("di")),
    ("Item/Lot", DataType.STRING, lambda r: _pi(r, "lot")),
    ("Item/Serial", DataType.STRING, lambda r: _pi(r, "serial")),
    ("Item/Expiry", DataType.STRING, lambda r: _pi(r, "expiry") or r.get("expiry")),
    ("Item/HRI", DataType.STRING, lambda r: r.get("hri")),
    ("Item/DigitalLink", DataType.STRING, lambda r: r.get("digital_link")),
    ("Item/Grade", DataType.FLOAT, _grade),
    ("Item/Job", DataType.STRING, lambda r: r.get("job")),
    ("Item/Record", DataType.STRING, lambda r: _json(r)),  # everything, so consumers lose nothing
)
UNDELIVERED = "PLC/Undelivered"  # String: the undelivered-result event as JSON
JOB_ACK = "Job/Ack"  # String: the acknowledgement of an MES job command as JSON
LINE_PREFIX = "Line/"  # counters: "Line/<key>" for each key of the counters mapping


class SparkplugNode:
    """The gateway as a Sparkplug edge node ``group_id/edge_node_id`` with one device
    ``device_id``. Methods return the messages to publish and advance the session state they
    imply; they are thread-safe, but the caller must publish in the order it built the messages
    (see the module docstring)."""

    def __init__(
        self,
        group_id: str,
        edge_node_id: str,
        device_id: str,
        primary_host_id: str | None = None,
        *,
        clock: Callable[[], int] = get_current_timestamp,
    ) -> None:
        """``clock`` returns the current UTC time in ms since the epoch (payload timestamps)."""
        for what, value in (("group_id", group_id), ("edge_node_id", edge_node_id), ("device_id", device_id)):
            if not value:
                raise ValueError(f"Sparkplug {what} must not be empty")
        if primary_host_id is not None and not primary_host_id:
            raise ValueError("Sparkplug primary_host_id must not be empty (None for no primary host)")
        self.group_id, self.edge_node_id, self.device_id = group_id, edge_node_id, device_id
        self.primary_host_id = primary_host_id
        self._clock = clock
        # Topic() rejects ids with "/", "+" or "#" (tck-id-topic-structure-namespace-valid-*).
        self._topics = {t: self._topic(t) for t in MessageType if t is not MessageType.STATE}
        self.state_topic: str | None = (
            str(Topic(message_type=MessageType.STATE, sparkplug_host_id=primary_host_id))
            if primary_host_id is not None
            else None
        )
        subscriptions = [self._topics[MessageType.NCMD], self._topics[MessageType.DCMD]]
        if self.state_topic is not None:
            subscriptions.append(self.state_topic)
        self.subscriptions: tuple[str, ...] = tuple(subscriptions)

        self._lock = threading.Lock()
        self._bd_seq: int | None = None  # of the connection the last will() was made for
        self._seq: int | None = None  # the next seq; None until the first birth of a connection
        self._device_alive = False
        self._current: dict[str, Metric] = {}  # device metric → its latest value (for rebirths)
        self._line_types: dict[str, DataType] = {}  # counter metric → its datatype, sticky across births
        self._line_born: dict[str, DataType] = {}  # the counter metrics declared by the last DBIRTH
        self._host_timestamp: int | None = None  # of the latest STATE accepted from the primary host

    # -- session -------------------------------------------------------------------------------

    @property
    def bd_seq(self) -> int | None:
        """The bdSeq of the current (or upcoming) connection; None before the first ``will()``."""
        return self._bd_seq

    def will(self) -> Message:
        """The NDEATH to register as the will of the next CONNECT. Each call starts a new session:
        bdSeq advances (0 first, wrapping 255 → 0) and the next ``birth()`` carries the same value,
        which is how a host pairs a death with its birth. QoS 1, not retained
        (tck-id-payloads-ndeath-will-message-qos/-retain)."""
        with self._lock:
            self._bd_seq = 0 if self._bd_seq is None else (self._bd_seq + 1) % SEQ_MODULUS
            self._seq = None
            self._device_alive = False
            return self._ndeath()

    def death_node(self) -> Message:
        """The NDEATH to publish before an intentional DISCONNECT: the broker drops the will on a
        clean disconnect, so without it hosts would keep the node online
        (tck-id-operational-behavior-edge-node-intentional-disconnect-ndeath)."""
        with self._lock:
            self._require_will()
            self._seq = None
            self._device_alive = False
            return self._ndeath()

    def birth(self, counters: Mapping[str, Any] | None = None) -> list[Message]:
        """NBIRTH (seq 0) and DBIRTH (seq 1) for the connection of the last ``will()``. The NBIRTH
        carries bdSeq and ``Node Control/Rebirth`` = false; the DBIRTH declares every device
        metric with its current value (null until first reported). Also the answer to a rebirth
        request; ``counters`` updates the ``Line/…`` metrics (None keeps the last reported)."""
        with self._lock:
            return self._birth(counters)

    def data(self, kind: str, record: Mapping[str, Any], *, historical: bool) -> Message:
        """DDATA for one record. ``kind``: "verified"/"rejected" (an item record, all ``Item/…``
        metrics), "undelivered" (a result the PLC missed) or "job_ack" (an MES job command's
        acknowledgement). ``historical`` marks records replayed after the primary host was away,
        so the host files them without overwriting live values."""
        if kind not in KINDS:
            raise ValueError(f"unknown record kind {kind!r} (expected one of {', '.join(KINDS)})")
        with self._lock:
            self._require_birth()
            now = self._clock()
            if kind in ("verified", "rejected"):
                at = _timestamp_ms(record, now)
                values = [(name, datatype, get(record)) for name, datatype, get in _ITEM_METRICS]
            else:
                at = _timestamp_ms(record, now) if "timestamp" in record else now
                values = [(UNDELIVERED if kind == "undelivered" else JOB_ACK, DataType.STRING, _json(record))]
            metrics = tuple(
                _metric(name, datatype, value, at, historical=historical) for name, datatype, value in values
            )
            for metric in metrics:
                self._remember(metric)
            return self._ddata(now, metrics)

    def counters(self, counters: Mapping[str, Any]) -> list[Message]:
        """The line counters as ``Line/<key>`` metrics: a DDATA of those that changed since they
        were last reported (empty list when none did). A key or a type the last DBIRTH did not
        declare cannot be sent in DDATA (tck-id-topics-dbirth-metric-reqs), so then the answer is
        a rebirth (NBIRTH + DBIRTH) carrying the new set. Values: bool, int (Int64), float
        (Double), str, None (null); nested mappings and lists as JSON strings."""
        with self._lock:
            self._require_birth()
            values = _line_values(counters)
            if any(name not in self._line_born or not _fits(self._line_born[name], v) for name, v in values.items()):
                return self._birth(counters)
            now = self._clock()
            changed = []
            for name, value in values.items():
                metric = _metric(name, self._line_born[name], value, now, historical=False)
                previous = self._current.get(name)
                if previous is None or (previous.value, previous.is_null) != (metric.value, metric.is_null):
                    changed.append(metric)
                    self._current[name] = metric
            return [self._ddata(now, tuple(changed))] if changed else []

    def death_device(self) -> Message:
        """DDEATH for the line station, before the node's own death on a clean shutdown, so hosts
        mark its metrics stale at once. No data is accepted after it until the next birth."""
        with self._lock:
            self._require_birth()
            self._device_alive = False
            payload = DDeath(timestamp=self._clock(), seq=self._next_seq())
            return Message(self._topics[MessageType.DDEATH], payload.encode(), 0, False)

    # -- incoming ------------------------------------------------------------------------------

    def command(self, topic: str, payload: bytes) -> str | None:
        """Interpret an NCMD/DCMD addressed to this node: "rebirth" for ``Node Control/Rebirth`` =
        true in an NCMD (the only command a host may send us: no metric is writable), else None.
        Other metrics are logged and ignored; an undecodable payload is logged and ignored."""
        if topic == self._topics[MessageType.NCMD]:
            payload_class: type[NCmd] | type[DCmd] = NCmd
        elif topic == self._topics[MessageType.DCMD]:
            payload_class = DCmd
        else:
            return None
        try:
            # The schema supplies the datatype a host may leave out of command metrics
            # (tck-id-payloads-metric-datatype-not-req); a metric outside it must carry its own.
            decoded = payload_class.decode(payload, birth=_COMMAND_SCHEMA)
        except Exception as exc:  # untrusted bytes: protobuf and pysparkplug raise many kinds
            log.warning("Sparkplug: ignoring undecodable command on %s: %s: %s", topic, type(exc).__name__, exc)
            return None
        action = None
        for metric in decoded.metrics:
            if payload_class is NCmd and metric.name == REBIRTH and metric.value is True:
                action = "rebirth"
            else:
                log.info("Sparkplug: ignoring command metric %r = %r on %s", metric.name, metric.value, topic)
        return action

    def host_online(self, topic: str, payload: bytes) -> bool | None:
        """The primary host's STATE: True/False when it says online/offline, None when the message
        is not its STATE, is older than the last one accepted (a retained or replayed leftover,
        tck-id-message-flow-edge-node-birth-publish-phid-wait-timestamp), or is unreadable (logged).
        An equal timestamp counts: the host's offline will repeats its online timestamp."""
        if self.state_topic is None or topic != self.state_topic:
            return None
        try:
            state = State.decode(payload)
            online, timestamp = state.online, state.timestamp
            if not isinstance(online, bool) or not isinstance(timestamp, int) or isinstance(timestamp, bool):
                raise TypeError(f"online must be a boolean and timestamp an integer, got {online!r}, {timestamp!r}")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("Sparkplug: ignoring unreadable STATE on %s: %s: %s", topic, type(exc).__name__, exc)
            return None
        with self._lock:
            if self._host_timestamp is not None and timestamp < self._host_timestamp:
                log.info("Sparkplug: ignoring STATE older than the last one (%d < %d)", timestamp, self._host_timestamp)
                return None
            self._host_timestamp = timestamp
        return online

    # -- internals (called with the lock held) -------------------------------------------------

    def _topic(self, message_type: MessageType) -> str:
        device = self.device_id if message_type.name.startswith("D") else None
        return str(Topic(self.group_id, message_type, self.edge_node_id, device))

    def _ndeath(self) -> Message:
        # No timestamps: the will is composed at CONNECT and published whenever the broker notices
        # the loss, so any time in it would be wrong; hosts use their receive time.
        bd_seq = Metric(timestamp=None, name=BD_SEQ, datatype=DataType.INT64, value=self._bd_seq)
        return Message(self._topics[MessageType.NDEATH], NDeath(None, bd_seq).encode(), 1, False)

    def _birth(self, counters: Mapping[str, Any] | None) -> list[Message]:
        self._require_will()
        now = self._clock()
        if counters is not None:
            values = _line_values(counters)
            for name, value in values.items():
                datatype = self._line_types.get(name)
                if datatype is None or not _fits(datatype, value):
                    datatype = _datatype_of(value, default=datatype)
                self._line_types[name] = datatype
                self._current[name] = _metric(name, datatype, value, now, historical=False)
        self._line_born = dict(self._line_types)
        self._seq = 0
        node_metrics = (
            Metric(timestamp=now, name=BD_SEQ, datatype=DataType.INT64, value=self._bd_seq),
            Metric(timestamp=now, name=REBIRTH, datatype=DataType.BOOLEAN, value=False),
        )
        nbirth = NBirth(timestamp=now, seq=self._next_seq(), metrics=node_metrics)
        declared = [(name, datatype) for name, datatype, _ in _ITEM_METRICS]
        declared += [(UNDELIVERED, DataType.STRING), (JOB_ACK, DataType.STRING)]
        declared += list(self._line_born.items())
        device_metrics = tuple(
            self._current.get(name) or _metric(name, datatype, None, now, historical=False)
            for name, datatype in declared
        )
        dbirth = DBirth(timestamp=now, seq=self._next_seq(), metrics=device_metrics)
        self._device_alive = True
        return [
            Message(self._topics[MessageType.NBIRTH], nbirth.encode(), 0, False),
            Message(self._topics[MessageType.DBIRTH], dbirth.encode(), 0, False),
        ]

    def _ddata(self, now: int, metrics: tuple[Metric, ...]) -> Message:
        # Datatypes left out: the DBIRTH declared them (tck-id-payloads-metric-datatype-not-req).
        payload = DData(timestamp=now, seq=self._next_seq(), metrics=metrics)
        return Message(self._topics[MessageType.DDATA], payload.encode(), 0, False)

    def _remember(self, metric: Metric) -> None:
        """Keep the newest value of each metric for the next DBIRTH: a replayed (historical) record
        is older than what a live one already reported, so the capture time decides."""
        previous = self._current.get(metric.name)
        if previous is None or previous.timestamp is None or (metric.timestamp or 0) >= previous.timestamp:
            self._current[metric.name] = _metric(
                metric.name, metric.datatype, metric.value, metric.timestamp, historical=False
            )

    def _next_seq(self) -> int:
        assert self._seq is not None
        seq, self._seq = self._seq, (self._seq + 1) % SEQ_MODULUS
        return seq

    def _require_will(self) -> None:
        if self._bd_seq is None:
            raise RuntimeError("Sparkplug: will() must register the NDEATH before the node is born")

    def _require_birth(self) -> None:
        if self._seq is None or not self._device_alive:
            raise RuntimeError("Sparkplug: no birth in this session (or the device is dead): call birth() first")


# A command payload may omit datatypes; decoding needs them for the metrics we know.
_COMMAND_SCHEMA = NBirth(
    timestamp=0,
    seq=0,
    metrics=(
        Metric(timestamp=None, name=REBIRTH, datatype=DataType.BOOLEAN, value=False),
        Metric(timestamp=None, name=BD_SEQ, datatype=DataType.INT64, value=0),
    ),
)


def _metric(name: str, datatype: DataType, value: Any, at: int | None, *, historical: bool) -> Metric:
    """A metric whose missing value is a Sparkplug null (is_null, no value field) rather than a
    stand-in like "" or -1 that a consumer could take for data."""
    if value is not None:
        if datatype in (DataType.STRING, DataType.TEXT):
            if not isinstance(value, str):
                value = _json(value, sort_keys=True)  # stable text: a reordered dict is not a change
        elif datatype in (DataType.FLOAT, DataType.DOUBLE):
            value = float(value)
        elif datatype is DataType.BOOLEAN:
            value = bool(value)
        else:
            value = int(value)
    return Metric(
        timestamp=at, name=name, datatype=datatype, value=value, is_historical=historical, is_null=value is None
    )


def _json(value: Any, *, sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys, default=str)


def _timestamp_ms(record: Mapping[str, Any], fallback: int) -> int:
    """The record's capture time (ISO 8601 with offset, "2026-11-23T08:00:00.123Z") in ms since
    the epoch: the metric timestamp is when the item was seen, not when the message was sent."""
    text = record.get("timestamp")
    try:
        when = datetime.fromisoformat(text)  # type: ignore[arg-type]
        if when.tzinfo is None:
            raise ValueError("no UTC offset")
    except (TypeError, ValueError) as exc:
        log.warning(
            "Sparkplug: record %s has no usable timestamp (%r: %s); using the send time",
            record.get("record_id"),
            text,
            exc,
        )
        return fallback
    return (when - _EPOCH) // _MS


def _line_values(counters: Mapping[str, Any]) -> dict[str, Any]:
    return {f"{LINE_PREFIX}{key}": value for key, value in counters.items()}


def _datatype_of(value: Any, *, default: DataType | None) -> DataType:
    """The datatype a counter is declared with. A counter first seen as None gets Double (counters
    are mostly numbers); if it later turns out to be text, the change triggers a rebirth."""
    if value is None:
        return default or DataType.DOUBLE
    if isinstance(value, bool):
        return DataType.BOOLEAN
    if isinstance(value, int):
        return DataType.INT64 if -(2**63) <= value < 2**63 else DataType.STRING
    if isinstance(value, float):
        return DataType.DOUBLE
    return DataType.STRING  # str, and nested mappings/lists as JSON


def _fits(datatype: DataType, value: Any) -> bool:
    """Whether ``value`` can be reported under a metric declared with ``datatype``: null always,
    an int under Double (close enough for counters), otherwise only its own datatype."""
    if value is None:
        return True
    natural = _datatype_of(value, default=None)
    return natural is datatype or (datatype is DataType.DOUBLE and natural is DataType.INT64)
