"""Sparkplug B format: every payload is decoded with pysparkplug (as a host would) and checked
against the rules of Sparkplug 3.0 that the edge node is responsible for."""

from __future__ import annotations

import calendar
import json
import logging

import pytest
from pysparkplug import DataType, DBirth, DCmd, DData, DDeath, Metric, NBirth, NCmd, NDeath
from pysparkplug._protobuf import Payload as WirePayload  # wire-level checks: what is absent

from gateway.sparkplug import SparkplugNode

GROUP, NODE, DEVICE, HOST = "plant1", "udigate-L3", "L3", "mes-primary"


class Clock:
    """Milliseconds since the epoch, advancing 7 ms per reading."""

    def __init__(self, start: int = 1_790_000_000_000) -> None:
        self.now = start

    def __call__(self) -> int:
        self.now += 7
        return self.now


def epoch_ms(year: int, month: int, day: int, hour: int, minute: int, second: int, ms: int) -> int:
    return calendar.timegm((year, month, day, hour, minute, second)) * 1000 + ms


CAPTURED = epoch_ms(2026, 11, 23, 8, 0, 0, 123)


def item_record(item_id: int = 17, **changes) -> dict:
    record = {
        "schema": "udigate.item/1",
        "record_id": f"20261123T075900.000000Z/{item_id}",
        "site": "suzhou",
        "line": "L3",
        "job": "PO-4711",
        "run_id": "20261123T075900.000000Z",
        "item_id": item_id,
        "timestamp": "2026-11-23T08:00:00.123Z",
        "verdict": "reject",
        "result_code": 12,
        "reasons": [
            {"code": "GRADE_LOW", "text": "grade below minimum", "detail": "1.0 < 1.5"},
            {"code": "EXPIRED", "text": "expired", "detail": "2026-01-31"},
        ],
        "data": "\x1d0104012345678901\x1d17270131",
        "hri": "(01)04012345678901(17)270131(10)LOT-9(21)SN-0017",
        "di": "04012345678901",
        "pi": {"lot": "LOT-9", "serial": "SN-0017", "production_date": None, "expiry": "2027-01-31"},
        "digital_link": "https://id.example.com/01/04012345678901/10/LOT-9/21/SN-0017",
        "decided_at": "2026-11-23T08:00:00.150Z",
        "grade": {"overall": 2.5, "parameters": {"SC": {"value": 71.0, "grade": 4.0}}},
        "product": {"name": "输液器", "ybbm": "C1234567890123456789"},
    }
    record.update(changes)
    return record


# What the DBIRTH must declare, written out independently of the module's own table.
DEVICE_METRICS = {
    "Item/RecordID": DataType.STRING,
    "Item/ID": DataType.UINT64,
    "Item/Verdict": DataType.STRING,
    "Item/ResultCode": DataType.INT32,
    "Item/Reasons": DataType.STRING,
    "Item/DI": DataType.STRING,
    "Item/Lot": DataType.STRING,
    "Item/Serial": DataType.STRING,
    "Item/Expiry": DataType.STRING,
    "Item/HRI": DataType.STRING,
    "Item/DigitalLink": DataType.STRING,
    "Item/Grade": DataType.FLOAT,
    "Item/Job": DataType.STRING,
    "Item/Record": DataType.STRING,
    "PLC/Undelivered": DataType.STRING,
    "Job/Ack": DataType.STRING,
}
COUNTERS = {"items": 120, "passed": 117, "rejected": 3, "items_per_s": 4.5}


def node(primary_host: str | None = HOST) -> SparkplugNode:
    return SparkplugNode(GROUP, NODE, DEVICE, primary_host, clock=Clock())


def born(counters: dict | None = None) -> tuple[SparkplugNode, NBirth, DBirth]:
    n = node()
    n.will()
    nbirth, dbirth = n.birth(COUNTERS if counters is None else counters)
    return n, NBirth.decode(nbirth.payload), DBirth.decode(dbirth.payload)


def metrics(payload) -> dict[str, Metric]:
    by_name = {m.name: m for m in payload.metrics}
    assert len(by_name) == len(payload.metrics), "duplicate metric names"
    return by_name


def seq_of(message) -> int:
    wire = WirePayload.FromString(message.payload)
    assert wire.HasField("seq")
    return wire.seq


# -- topics and MQTT flags ------------------------------------------------------------------------


def test_topics_qos_and_retain_of_every_message():
    n = node()
    will = n.will()
    nbirth, dbirth = n.birth(COUNTERS)
    ddata = n.data("verified", item_record(verdict="pass"), historical=False)
    counters = n.counters({**COUNTERS, "items": 121})
    ddeath = n.death_device()
    ndeath = n.death_node()

    assert (will.topic, will.qos, will.retain) == (f"spBv1.0/{GROUP}/NDEATH/{NODE}", 1, False)
    assert (nbirth.topic, nbirth.qos, nbirth.retain) == (f"spBv1.0/{GROUP}/NBIRTH/{NODE}", 0, False)
    assert (dbirth.topic, dbirth.qos, dbirth.retain) == (f"spBv1.0/{GROUP}/DBIRTH/{NODE}/{DEVICE}", 0, False)
    assert (ddata.topic, ddata.qos, ddata.retain) == (f"spBv1.0/{GROUP}/DDATA/{NODE}/{DEVICE}", 0, False)
    assert [(m.topic, m.qos, m.retain) for m in counters] == [(f"spBv1.0/{GROUP}/DDATA/{NODE}/{DEVICE}", 0, False)]
    assert (ddeath.topic, ddeath.qos, ddeath.retain) == (f"spBv1.0/{GROUP}/DDEATH/{NODE}/{DEVICE}", 0, False)
    assert (ndeath.topic, ndeath.qos, ndeath.retain) == (will.topic, 1, False)
    assert all(isinstance(m.payload, bytes) for m in (will, nbirth, dbirth, ddata, ddeath, ndeath))


def test_subscriptions_are_commands_and_the_primary_hosts_state():
    assert node().subscriptions == (
        f"spBv1.0/{GROUP}/NCMD/{NODE}",
        f"spBv1.0/{GROUP}/DCMD/{NODE}/{DEVICE}",
        f"spBv1.0/STATE/{HOST}",
    )
    assert node(primary_host=None).subscriptions == (
        f"spBv1.0/{GROUP}/NCMD/{NODE}",
        f"spBv1.0/{GROUP}/DCMD/{NODE}/{DEVICE}",
    )


@pytest.mark.parametrize(
    "ids",
    [
        ("plant/1", NODE, DEVICE, None),
        (GROUP, "node+", DEVICE, None),
        (GROUP, NODE, "L#3", None),
        (GROUP, NODE, DEVICE, "mes/primary"),
        ("", NODE, DEVICE, None),
        (GROUP, "", DEVICE, None),
        (GROUP, NODE, "", None),
        (GROUP, NODE, DEVICE, ""),
    ],
)
def test_ids_that_would_break_the_topic_namespace_are_refused(ids):
    with pytest.raises(ValueError):
        SparkplugNode(*ids)


# -- bdSeq and the death certificate --------------------------------------------------------------


def test_the_will_carries_only_bdseq_as_int64_without_seq():
    n = node()
    will = n.will()
    death = NDeath.decode(will.payload)
    assert death.bd_seq_metric.name == "bdSeq"
    assert death.bd_seq_metric.datatype == DataType.INT64
    assert death.bd_seq_metric.value == 0
    wire = WirePayload.FromString(will.payload)
    assert len(wire.metrics) == 1
    assert not wire.HasField("seq")  # tck-id-payloads-ndeath-seq


def test_bdseq_starts_at_zero_increments_per_will_and_wraps():
    n = node()
    assert n.bd_seq is None
    values = [NDeath.decode(n.will().payload).bd_seq_metric.value for _ in range(258)]
    assert values[:3] == [0, 1, 2]
    assert values[255:] == [255, 0, 1]
    assert values == [i % 256 for i in range(258)]
    assert n.bd_seq == 1


def test_the_birth_repeats_the_bdseq_of_the_will_before_it():
    n = node()
    for _ in range(3):
        will_bd_seq = NDeath.decode(n.will().payload).bd_seq_metric.value
        nbirth = NBirth.decode(n.birth(COUNTERS)[0].payload)
        assert metrics(nbirth)["bdSeq"].value == will_bd_seq
        assert metrics(nbirth)["bdSeq"].datatype == DataType.INT64
        # a rebirth within the same connection keeps the bdSeq of its will
        again = NBirth.decode(n.birth()[0].payload)
        assert metrics(again)["bdSeq"].value == will_bd_seq
    assert will_bd_seq == 2


def test_the_bdseq_wraps_in_the_birth_too():
    n = node()
    for _ in range(257):
        n.will()
    assert metrics(NBirth.decode(n.birth()[0].payload))["bdSeq"].value == 0


def test_the_node_death_on_a_clean_shutdown_is_the_will_of_this_connection():
    n = node()
    n.will()
    will = n.will()  # second connection
    n.birth(COUNTERS)
    ndeath = n.death_node()
    assert ndeath.payload == will.payload
    assert NDeath.decode(ndeath.payload).bd_seq_metric.value == 1


def test_order_of_the_session_is_enforced():
    n = node()
    with pytest.raises(RuntimeError):
        n.birth(COUNTERS)  # no will registered: the birth's bdSeq would match nothing
    with pytest.raises(RuntimeError):
        n.death_node()
    n.will()
    with pytest.raises(RuntimeError):
        n.data("verified", item_record(), historical=False)  # nothing declared yet
    with pytest.raises(RuntimeError):
        n.counters(COUNTERS)
    with pytest.raises(RuntimeError):
        n.death_device()
    n.birth(COUNTERS)
    n.death_device()
    with pytest.raises(RuntimeError):
        n.data("verified", item_record(), historical=False)  # the device is dead
    n.birth()
    n.data("verified", item_record(), historical=False)
    n.will()  # a new connection: its birth comes first again
    with pytest.raises(RuntimeError):
        n.data("verified", item_record(), historical=False)


# -- seq ------------------------------------------------------------------------------------------


def test_seq_is_zero_in_nbirth_then_counts_every_message_and_wraps():
    n = node()
    n.will()
    nbirth, dbirth = n.birth(COUNTERS)
    assert NBirth.decode(nbirth.payload).seq == 0
    assert DBirth.decode(dbirth.payload).seq == 1
    seqs = []
    for i in range(300):
        if i % 3 == 0:
            message = n.data("verified", item_record(i), historical=False)
        elif i % 3 == 1:
            message = n.data("undelivered", {"item_id": i}, historical=False)
        else:
            (message,) = n.counters({**COUNTERS, "items": 1000 + i})
        seqs.append(seq_of(message))
    seqs.append(DDeath.decode(n.death_device().payload).seq)
    assert seqs[:3] == [2, 3, 4]
    assert seqs[253:256] == [255, 0, 1]
    assert seqs == [(2 + i) % 256 for i in range(301)]


def test_a_rebirth_and_a_new_connection_restart_seq_at_zero():
    n = node()
    n.will()
    n.birth(COUNTERS)
    for i in range(5):
        n.data("verified", item_record(i), historical=False)
    assert [seq_of(m) for m in n.birth()] == [0, 1]
    assert seq_of(n.data("verified", item_record(9), historical=False)) == 2
    n.will()
    assert [seq_of(m) for m in n.birth()] == [0, 1]
    assert seq_of(n.data("job_ack", {"ok": True}, historical=False)) == 2


# -- births ---------------------------------------------------------------------------------------


def test_nbirth_has_bdseq_and_rebirth_false_and_a_timestamp():
    clock = Clock()
    n = SparkplugNode(GROUP, NODE, DEVICE, clock=clock)
    n.will()
    nbirth = NBirth.decode(n.birth(COUNTERS)[0].payload)
    by_name = metrics(nbirth)
    assert set(by_name) == {"bdSeq", "Node Control/Rebirth"}
    rebirth = by_name["Node Control/Rebirth"]
    assert (rebirth.datatype, rebirth.value, rebirth.alias) == (DataType.BOOLEAN, False, None)
    assert clock.now - 100 < nbirth.timestamp <= clock.now


def test_dbirth_declares_every_device_metric_with_type_and_current_value():
    _, _, dbirth = born()
    by_name = metrics(dbirth)
    line = {f"Line/{k}" for k in COUNTERS}
    assert set(by_name) == set(DEVICE_METRICS) | line
    for name, datatype in DEVICE_METRICS.items():
        assert by_name[name].datatype == datatype, name
        # nothing reported yet: an explicit null, not an invented value
        assert by_name[name].is_null and by_name[name].value is None, name
        assert not by_name[name].is_historical
        assert by_name[name].timestamp == dbirth.timestamp
    assert by_name["Line/items"].datatype == DataType.INT64 and by_name["Line/items"].value == 120
    assert by_name["Line/passed"].value == 117 and by_name["Line/rejected"].value == 3
    assert by_name["Line/items_per_s"].datatype == DataType.DOUBLE and by_name["Line/items_per_s"].value == 4.5
    wire = WirePayload.FromString(born()[0].birth()[1].payload)
    assert all(m.HasField("datatype") for m in wire.metrics)  # tck-id-payloads-metric-datatype-req


def test_a_rebirth_carries_the_latest_values_and_history_does_not_overwrite_them():
    n, _, _ = born()
    n.data("verified", item_record(5, timestamp="2026-11-23T08:00:05.000Z"), historical=False)
    # replayed after the host was away: captured earlier than what was already reported
    n.data("rejected", item_record(3, timestamp="2026-11-23T07:59:58.000Z"), historical=True)
    n.data("undelivered", {"item_id": 4, "timestamp": "2026-11-23T08:00:04Z"}, historical=False)
    dbirth = DBirth.decode(n.birth()[1].payload)
    by_name = metrics(dbirth)
    assert by_name["Item/ID"].value == 5
    assert by_name["Item/RecordID"].value == "20261123T075900.000000Z/5"
    assert by_name["Item/ID"].timestamp == epoch_ms(2026, 11, 23, 8, 0, 5, 0)
    assert json.loads(by_name["PLC/Undelivered"].value)["item_id"] == 4
    assert by_name["Job/Ack"].is_null
    assert not any(m.is_historical for m in dbirth.metrics)  # births carry current values
    # a historical record newer than anything reported does become the current value
    n.data("rejected", item_record(8, timestamp="2026-11-23T08:00:09.000Z"), historical=True)
    assert metrics(DBirth.decode(n.birth()[1].payload))["Item/ID"].value == 8


# -- data -----------------------------------------------------------------------------------------


def test_an_item_record_becomes_typed_metrics_at_its_capture_time():
    n, _, dbirth = born()
    record = item_record()
    message = n.data("rejected", record, historical=False)
    ddata = DData.decode(message.payload, birth=dbirth)
    by_name = metrics(ddata)
    expected = {
        "Item/RecordID": "20261123T075900.000000Z/17",
        "Item/ID": 17,
        "Item/Verdict": "reject",
        "Item/ResultCode": 12,
        "Item/Reasons": "GRADE_LOW,EXPIRED",
        "Item/DI": "04012345678901",
        "Item/Lot": "LOT-9",
        "Item/Serial": "SN-0017",
        "Item/Expiry": "2027-01-31",
        "Item/HRI": "(01)04012345678901(17)270131(10)LOT-9(21)SN-0017",
        "Item/DigitalLink": "https://id.example.com/01/04012345678901/10/LOT-9/21/SN-0017",
        "Item/Grade": 2.5,
        "Item/Job": "PO-4711",
    }
    for name, value in expected.items():
        assert by_name[name].value == value, name
        assert by_name[name].datatype == DEVICE_METRICS[name], name
        assert not by_name[name].is_null, name
    assert json.loads(by_name["Item/Record"].value) == record  # the whole record, GS separators and all
    assert set(by_name) == {name for name in DEVICE_METRICS if name.startswith("Item/")}
    assert all(m.timestamp == CAPTURED for m in ddata.metrics)
    assert not any(m.is_historical for m in ddata.metrics)
    assert ddata.timestamp != CAPTURED  # the payload timestamp is the send time
    wire = WirePayload.FromString(message.payload)
    assert not any(m.HasField("datatype") for m in wire.metrics)  # tck-id-payloads-metric-datatype-not-req


def test_item_id_and_result_code_keep_their_range_on_the_wire():
    n, _, dbirth = born()
    big = 2**40 + 3
    by_name = metrics(
        DData.decode(n.data("verified", item_record(big, result_code=-1), historical=False).payload, birth=dbirth)
    )
    assert by_name["Item/ID"].value == big
    assert by_name["Item/ResultCode"].value == -1


def test_missing_fields_are_sparkplug_nulls():
    n, _, dbirth = born()
    record = item_record(verdict="pass", result_code=0, reasons=[], pi={"lot": "LOT-9", "serial": None})
    for key in ("di", "hri", "digital_link", "grade", "job"):
        del record[key]
    message = n.data("verified", record, historical=False)
    by_name = metrics(DData.decode(message.payload, birth=dbirth))
    for name in ("Item/DI", "Item/Serial", "Item/Expiry", "Item/HRI", "Item/DigitalLink", "Item/Grade", "Item/Job"):
        assert by_name[name].is_null and by_name[name].value is None, name
    assert by_name["Item/Reasons"].value == "" and not by_name["Item/Reasons"].is_null  # no reasons ≠ unknown
    assert by_name["Item/Lot"].value == "LOT-9"
    wire = {m.name: m for m in WirePayload.FromString(message.payload).metrics}
    assert wire["Item/Serial"].is_null and wire["Item/Serial"].WhichOneof("value") is None


def test_expiry_falls_back_to_the_records_own_expiry_and_a_graded_none_is_null():
    n, _, dbirth = born()
    record = item_record(pi=None, expiry="2028-02-29", grade={"overall": None})
    by_name = metrics(DData.decode(n.data("verified", record, historical=False).payload, birth=dbirth))
    assert by_name["Item/Expiry"].value == "2028-02-29"
    assert by_name["Item/Grade"].is_null


def test_historical_replay_flags_every_metric():
    n, _, dbirth = born()
    ddata = DData.decode(n.data("verified", item_record(verdict="pass"), historical=True).payload, birth=dbirth)
    assert len(ddata.metrics) == 14
    assert all(m.is_historical for m in ddata.metrics)
    undelivered = DData.decode(n.data("undelivered", {"item_id": 1}, historical=True).payload, birth=dbirth)
    assert [m.is_historical for m in undelivered.metrics] == [True]


def test_undelivered_and_job_ack_are_json_metrics():
    clock = Clock()
    n = SparkplugNode(GROUP, NODE, DEVICE, clock=clock)
    n.will()
    dbirth = DBirth.decode(n.birth(COUNTERS)[1].payload)
    event = {"item_id": 41, "plc_item_id": 7, "seq": 3, "result_code": 12, "reject": True, "detail": "late",
             "timestamp": "2026-11-23T08:00:01Z"}  # fmt: skip
    ddata = DData.decode(n.data("undelivered", event, historical=False).payload, birth=dbirth)
    (metric,) = ddata.metrics
    assert (metric.name, metric.datatype, metric.is_historical) == ("PLC/Undelivered", DataType.STRING, False)
    assert json.loads(metric.value) == event
    assert metric.timestamp == epoch_ms(2026, 11, 23, 8, 0, 1, 0)

    ack = {"request_id": "r-9", "ok": False, "error": "unknown job", "job": None}
    ddata = DData.decode(n.data("job_ack", ack, historical=False).payload, birth=dbirth)
    (metric,) = ddata.metrics
    assert (metric.name, metric.datatype) == ("Job/Ack", DataType.STRING)
    assert json.loads(metric.value) == ack
    assert metric.timestamp == ddata.timestamp == clock.now  # no time in an ack: the send time


def test_unknown_kinds_are_refused():
    n, _, _ = born()
    with pytest.raises(ValueError, match="unknown record kind"):
        n.data("passed", item_record(), historical=False)


def test_a_record_without_a_usable_timestamp_is_sent_at_the_send_time(caplog):
    n, _, dbirth = born()
    with caplog.at_level(logging.WARNING, logger="gateway.sparkplug"):
        ddata = DData.decode(n.data("verified", item_record(timestamp="08:00"), historical=False).payload, birth=dbirth)
    assert all(m.timestamp == ddata.timestamp for m in ddata.metrics)
    assert "no usable timestamp" in caplog.text


# -- counters -------------------------------------------------------------------------------------


def test_counters_report_only_what_changed():
    n, _, dbirth = born()
    assert n.counters(COUNTERS) == []  # as declared in the birth: nothing to report
    (message,) = n.counters({**COUNTERS, "items": 121, "rejected": 4})
    ddata = DData.decode(message.payload, birth=dbirth)
    assert {m.name: m.value for m in ddata.metrics} == {"Line/items": 121, "Line/rejected": 4}
    assert all(m.timestamp == ddata.timestamp and not m.is_historical for m in ddata.metrics)
    (message,) = n.counters({**COUNTERS, "items": 121, "rejected": 4, "items_per_s": 3})  # an int into a Double
    ddata = DData.decode(message.payload, birth=dbirth)
    assert [(m.name, m.value) for m in ddata.metrics] == [("Line/items_per_s", 3.0)]


def test_a_new_counter_or_a_changed_type_is_announced_by_a_rebirth():
    n, _, _ = born({"items": 1, "grade_mean": None, "by_reason": {"GRADE_LOW": 1}})
    messages = n.counters({"items": 2, "grade_mean": None, "by_reason": {"GRADE_LOW": 1}, "grade_warning": "low"})
    assert [m.topic.split("/")[2] for m in messages] == ["NBIRTH", "DBIRTH"]
    assert [seq_of(m) for m in messages] == [0, 1]
    dbirth = DBirth.decode(messages[1].payload)
    by_name = metrics(dbirth)
    assert (by_name["Line/grade_warning"].datatype, by_name["Line/grade_warning"].value) == (DataType.STRING, "low")
    assert by_name["Line/items"].value == 2
    assert by_name["Line/grade_mean"].datatype == DataType.DOUBLE and by_name["Line/grade_mean"].is_null
    assert json.loads(by_name["Line/by_reason"].value) == {"GRADE_LOW": 1}
    # a float now fits the declared Double: plain data, no rebirth
    (message,) = n.counters({"items": 2, "grade_mean": 2.25, "by_reason": {"GRADE_LOW": 1}, "grade_warning": "low"})
    assert metrics(DData.decode(message.payload, birth=dbirth))["Line/grade_mean"].value == 2.25
    # text where a number was declared: the declaration must change, so a rebirth
    messages = n.counters({"grade_mean": "n/a"})
    assert [m.topic.split("/")[2] for m in messages] == ["NBIRTH", "DBIRTH"]
    assert metrics(DBirth.decode(messages[1].payload))["Line/grade_mean"].datatype == DataType.STRING


def test_a_rebirth_for_new_counters_happens_once():
    n, _, _ = born({"items": 1})
    huge = 2**64  # beyond Int64: declared as text
    for counters in ({"items": 1, "grade_weakest": "SC"}, {"items": 1, "total_ns": huge}, {"items": 2.5}):
        assert [m.topic.split("/")[2] for m in n.counters(counters)] == ["NBIRTH", "DBIRTH"]
        assert n.counters(counters) == []  # declared now: no rebirth loop
    by_name = metrics(DBirth.decode(n.birth()[1].payload))
    assert (by_name["Line/total_ns"].datatype, by_name["Line/total_ns"].value) == (DataType.STRING, str(huge))
    assert (by_name["Line/items"].datatype, by_name["Line/items"].value) == (DataType.DOUBLE, 2.5)


def test_reordered_nested_counters_are_not_a_change():
    n, _, _ = born({"by_reason": {"A": 1, "B": 2}})
    assert n.counters({"by_reason": {"B": 2, "A": 1}}) == []


# -- device death ---------------------------------------------------------------------------------


def test_the_device_death_has_the_next_seq_and_a_timestamp():
    clock = Clock()
    n = SparkplugNode(GROUP, NODE, DEVICE, clock=clock)
    n.will()
    n.birth(COUNTERS)
    n.data("verified", item_record(), historical=False)
    death = DDeath.decode(n.death_device().payload)
    assert death.seq == 3
    assert death.timestamp == clock.now


# -- commands -------------------------------------------------------------------------------------

NCMD = f"spBv1.0/{GROUP}/NCMD/{NODE}"
DCMD = f"spBv1.0/{GROUP}/DCMD/{NODE}/{DEVICE}"


def ncmd(*metrics: Metric, include_dtypes: bool = True) -> bytes:
    return NCmd(timestamp=1_790_000_000_000, metrics=metrics).encode(include_dtypes=include_dtypes)


def rebirth(value: bool = True) -> Metric:
    return Metric(timestamp=1_790_000_000_000, name="Node Control/Rebirth", datatype=DataType.BOOLEAN, value=value)


def test_a_rebirth_request_is_recognised():
    n = node()
    assert n.command(NCMD, ncmd(rebirth())) == "rebirth"
    # hosts may leave the datatype out of command metrics (tck-id-payloads-metric-datatype-not-req)
    assert n.command(NCMD, ncmd(rebirth(), include_dtypes=False)) == "rebirth"
    other = Metric(timestamp=None, name="Node Control/Scan Rate", datatype=DataType.INT32, value=500)
    assert n.command(NCMD, ncmd(other, rebirth())) == "rebirth"


def test_other_commands_are_ignored(caplog):
    n = node()
    with caplog.at_level(logging.INFO, logger="gateway.sparkplug"):
        assert n.command(NCMD, ncmd(rebirth(False))) is None
        reboot = Metric(timestamp=None, name="Node Control/Reboot", datatype=DataType.BOOLEAN, value=True)
        assert n.command(NCMD, ncmd(reboot)) is None
        assert n.command(NCMD, ncmd()) is None
        # a rebirth of the node is an NCMD; the same metric in a DCMD is not one
        dcmd = DCmd(timestamp=1, metrics=(rebirth(),)).encode(include_dtypes=True)
        assert n.command(DCMD, dcmd) is None
    assert "Node Control/Reboot" in caplog.text
    # addressed to someone else
    assert n.command(f"spBv1.0/{GROUP}/NCMD/other-node", ncmd(rebirth())) is None
    assert n.command(f"spBv1.0/other-group/NCMD/{NODE}", ncmd(rebirth())) is None
    assert n.command(f"spBv1.0/STATE/{HOST}", ncmd(rebirth())) is None


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff\xfe garbage \x00\x01",
        b'{"metrics": [{"name": "Node Control/Rebirth", "value": true}]}',
        NCmd(timestamp=1, metrics=(rebirth(),)).encode(include_dtypes=True)[:-3],  # truncated
        # no payload timestamp (tck-id-topics-ncmd-timestamp)
        WirePayload(metrics=[rebirth().to_pb(True)]).SerializeToString(),
        # an unknown metric without a datatype cannot be decoded
        ncmd(Metric(timestamp=None, name="Mystery", datatype=DataType.INT32, value=1), include_dtypes=False),
    ],
)
def test_malformed_commands_are_logged_and_ignored(payload, caplog):
    with caplog.at_level(logging.WARNING, logger="gateway.sparkplug"):
        assert node().command(NCMD, payload) is None
    assert "undecodable command" in caplog.text


# -- the primary host's STATE ---------------------------------------------------------------------

STATE = f"spBv1.0/STATE/{HOST}"


def state(online, timestamp) -> bytes:
    return json.dumps({"online": online, "timestamp": timestamp}).encode()


def test_the_primary_hosts_state_is_read():
    n = node()
    assert n.host_online(STATE, state(True, 1000)) is True
    assert n.host_online(STATE, state(False, 1000)) is False  # its will repeats the birth's timestamp
    assert n.host_online(STATE, state(True, 2000)) is True
    assert n.host_online(STATE, state(False, 1500)) is None  # older than the last: a stale leftover
    assert n.host_online(STATE, state(False, 2500)) is False


def test_state_of_other_topics_or_hosts_is_not_for_us():
    assert node().host_online("spBv1.0/STATE/other-host", state(True, 1)) is None
    assert node().host_online(NCMD, state(True, 1)) is None
    assert node(primary_host=None).host_online(STATE, state(True, 1)) is None


@pytest.mark.parametrize(
    "payload",
    [b"", b"ONLINE", b"[true, 1]", b'{"online": true}', b'{"timestamp": 5}', state("true", 5), state(True, "5"),
     state(1, 5), state(True, True), b"\xff"],
)  # fmt: skip
def test_unreadable_state_is_logged_and_ignored(payload, caplog):
    n = node()
    assert n.host_online(STATE, state(True, 1)) is True
    with caplog.at_level(logging.WARNING, logger="gateway.sparkplug"):
        assert n.host_online(STATE, payload) is None
    assert "unreadable STATE" in caplog.text
