"""The optional MES outputs on a running line with a real mosquitto: Sparkplug B (births, host
STATE gating, historical replay, rebirth, deaths), EPCIS 2.0 events, and the outbox quota."""

import json
import threading
import time

import paho.mqtt.publish as publish
import pytest
from pysparkplug import DataType, DBirth, DData, Metric, NBirth, NCmd, NDeath

from gateway.app import Gateway
from gateway.broker import free_port
from gateway.config import ConfigError, override

from .conftest import line_config

GROUP, NODE, HOST = "plant", "demo-site-line1", "scada"
SPB = f"spBv1.0/{GROUP}"


def run_line(config):
    gateway = Gateway(config)
    gateway.start()
    stop = threading.Event()
    line = threading.Thread(target=gateway.run, args=(stop,))
    line.start()
    return gateway, stop, line


def host_state(port, online: bool) -> None:
    payload = json.dumps({"online": online, "timestamp": int(time.time() * 1000)})
    publish.single(f"spBv1.0/STATE/{HOST}", payload, qos=1, retain=True, hostname="127.0.0.1", port=port)


def sparkplug_line(tmp_path, port, **changes):
    """A line publishing Sparkplug B to the broker on ``port``, gated by the primary host."""
    return run_line(
        line_config(
            tmp_path,
            **{"mqtt.host": "127.0.0.1", "mqtt.port": port, "mqtt.format": "sparkplug"},
            **{"mqtt.sparkplug": {"group_id": GROUP, "primary_host_id": HOST, "data_qos": 1}},
            **changes,
        )
    )


def sparkplug_items(messages) -> list[tuple[int, bool]]:
    """(item id, historical) of every item record in the DDATA, each decoded with its DBIRTH."""
    dbirth, items = None, []
    for topic, payload, _ in messages:
        if "/DBIRTH/" in topic:
            dbirth = DBirth.decode(payload)
        elif "/DDATA/" in topic:
            by_name = {m.name: m for m in DData.decode(payload, birth=dbirth).metrics}
            if "Item/ID" in by_name:
                items.append((by_name["Item/ID"].value, by_name["Item/ID"].is_historical))
    return items


def test_sparkplug_waits_for_the_primary_host_replays_history_and_rebirths(tmp_path, mosquitto, subscribe):
    host_state(mosquitto.port, online=False)
    scada = subscribe("127.0.0.1", mosquitto.port, f"{SPB}/#")
    gateway, stop, line = sparkplug_line(tmp_path, mosquitto.port, **{"mqtt.counters_interval_s": 1})
    time.sleep(4)
    assert gateway.mqtt.outbox.count >= 10  # the host is offline: records wait, nothing is born
    assert not scada.messages

    host_state(mosquitto.port, online=True)
    assert scada.wait_for(lambda: any(t.endswith("/DDATA/" + NODE + "/station") for t, _, _ in scada.messages))
    time.sleep(2)
    rebirth = Metric(timestamp=1, name="Node Control/Rebirth", datatype=DataType.BOOLEAN, value=True)
    publish.single(
        f"{SPB}/NCMD/{NODE}", NCmd(timestamp=1, metrics=(rebirth,)).encode(), hostname="127.0.0.1", port=mosquitto.port
    )
    time.sleep(2)
    stop.set()
    line.join(30)
    summary = gateway.close()

    kinds = [t.split("/")[2] for t, _, _ in scada.messages]
    assert kinds[:2] == ["NBIRTH", "DBIRTH"] and kinds[-2:] == ["DDEATH", "NDEATH"]
    assert kinds.count("NBIRTH") == 2  # the first birth and the rebirth
    births = [NBirth.decode(p) for t, p, _ in scada.messages if "/NBIRTH/" in t]
    bd_seq = {m.value for b in births for m in b.metrics if m.name == "bdSeq"}
    death = NDeath.decode(scada.messages[-1][1])
    assert bd_seq == {death.bd_seq_metric.value}  # one connection: the same bdSeq throughout

    dbirth, seqs = None, []
    for topic, payload, _ in scada.messages:
        if "/DBIRTH/" in topic:
            dbirth = DBirth.decode(payload)
            seqs.append(dbirth.seq)
        elif "/DDATA/" in topic:
            seqs.append(DData.decode(payload, birth=dbirth).seq)
    items = sparkplug_items(scada.messages)
    assert [i for i, _ in items] == list(range(1, summary.stats.items + 1))  # every record, in order
    historical = [i for i, h in items if h]
    assert len(historical) >= 10 and historical == list(range(1, len(historical) + 1))  # the buffered ones
    assert all(not h for _, h in items[len(historical) :])  # then live data
    assert all((b - a) % 256 == 1 for a, b in zip(seqs, seqs[1:], strict=False) if b != 1)  # seq counts on
    assert summary.mqtt_pending == 0


def test_epcis_events_for_every_identified_pack(tmp_path, mosquitto, subscribe):
    mes = subscribe("127.0.0.1", mosquitto.port, "udigate/#")
    config = line_config(
        tmp_path,
        **{"mqtt.host": "127.0.0.1", "mqtt.port": mosquitto.port, "mqtt.epcis": True},
        **{"mqtt.epcis_read_point": "https://id.gs1.org/414/6901234000004/254/line1"},
        **{"source.simulator.items": 60, "source.simulator.seed": 3},
    )
    gateway, stop, line = run_line(config)
    line.join(120)
    gateway.close()
    records = mes.json_on("/verified") + mes.json_on("/rejected")
    documents = {d["epcisBody"]["eventList"][0]["udigate:recordID"]: d for d in mes.json_on("/epcis")}
    assert len(records) == 60
    for record in records:
        if record.get("di") is None:  # no code on the pack: no identifier, no event
            assert record["record_id"] not in documents
            continue
        event = documents[record["record_id"]]["epcisBody"]["eventList"][0]
        assert event["readPoint"] == {"id": "https://id.gs1.org/414/6901234000004/254/line1"}
        if record["verdict"] == "pass":
            gtin, serial = record["di"], record["pi"]["serial"]
            assert (event["action"], event["bizStep"]) == ("ADD", "commissioning")
            assert event["epcList"] == [f"https://id.gs1.org/01/{gtin}/21/{serial}"]
            assert event["ilmd"]["cbvmda:lotNumber"] == record["pi"]["lot"]
        else:
            assert (event["bizStep"], event["disposition"]) == ("inspecting", "non_conformant")
    assert any(r["verdict"] == "reject" and r["record_id"] in documents for r in records)


def test_a_full_outbox_raises_the_alarm_and_stops_the_line(tmp_path, subscribe):
    """No broker at all and a tiny quota: the outbox fills, the alarm is raised, the PLC is asked
    to stop the line and every item becomes a reject, so no pack ships without its record."""
    config = line_config(
        tmp_path,
        **{"mqtt.host": "127.0.0.1", "mqtt.port": free_port(), "mqtt.outbox.max_mb": 0.02},
        **{"mqtt.outbox.on_full": "stop_line"},
    )
    gateway, stop, line = run_line(config)
    deadline = time.monotonic() + 60
    while not gateway.alarms["outbox_full"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gateway.alarms["outbox_full"] and gateway.alarms["outbox_filling"]
    time.sleep(1.5)
    status = gateway.registers.snapshot()[0]
    refused_before = gateway.mqtt_refused
    time.sleep(2)
    stop.set()
    line.join(30)
    summary = gateway.close()
    assert status & (1 << 9) and status & (1 << 4)  # stop-line and reject-all status bits
    assert summary.mqtt_refused > refused_before > 0 and not summary.clean
    assert summary.mqtt_pending == gateway.mqtt.outbox.count > 0  # kept for the next start
    assert gateway.mqtt.outbox.size_bytes <= 20_000
    assert summary.plc is not None and len(summary.plc.ejected) >= summary.mqtt_refused - 5


@pytest.mark.parametrize(
    "bad", [{"mqtt.outbox.max_mb": 0}, {"mqtt.outbox.on_full": "drop"}, {"mqtt.sparkplug.data_qos": 2}]
)
def test_outbox_and_sparkplug_configuration_is_checked(tmp_path, bad):
    with pytest.raises(ConfigError, match=next(iter(bad)).replace(".", r"\.")):
        override(line_config(tmp_path), **bad)


def test_sparkplug_host_going_offline_ends_the_session_and_the_next_birth_replays(tmp_path, mosquitto, subscribe):
    host_state(mosquitto.port, online=True)
    scada = subscribe("127.0.0.1", mosquitto.port, f"{SPB}/#")
    gateway, stop, line = sparkplug_line(tmp_path, mosquitto.port)
    assert scada.wait_for(lambda: any("/DDATA/" in t for t, _, _ in scada.messages))
    time.sleep(0.5)  # STATE timestamps are in ms: the offline one must be newer
    host_state(mosquitto.port, online=False)
    assert scada.wait_for(lambda: any("/NDEATH/" in t for t, _, _ in scada.messages))
    time.sleep(3)
    waiting = gateway.mqtt.outbox.count
    host_state(mosquitto.port, online=True)
    time.sleep(3)
    stop.set()
    line.join(30)
    summary = gateway.close()

    kinds = [t.split("/")[2] for t, _, _ in scada.messages]
    first_death = kinds.index("NDEATH")
    assert "NBIRTH" in kinds[first_death:]  # born again once the host is back
    bd_seqs = [
        m.value for t, p, _ in scada.messages if "/NBIRTH/" in t for m in NBirth.decode(p).metrics if m.name == "bdSeq"
    ]
    assert bd_seqs == [0, 1]  # a new session, a new bdSeq
    assert waiting >= 5  # records waited while the host was away
    items = [item_id for item_id, _ in sparkplug_items(scada.messages)]
    assert items == list(range(1, summary.stats.items + 1))
    assert summary.mqtt_pending == 0
