import json
import socket
import threading
import time

import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.broker import InProcessBroker, Mosquitto, free_port, port_is_free, start_embedded_broker
from gateway.config import MqttSection
from gateway.ioloop import IoLoop
from gateway.mqtt import MqttPublisher
from gateway.outbox import Outbox

NAMES = {"enterprise": "acme", "site": "site-a", "area": "packaging", "line": "line-7"}
ROOT = "udigate/site-a/line-7"


def record(item_id, verdict="pass"):
    return {"schema": "udigate.item/1", "record_id": f"run/{item_id}", "item_id": item_id, "verdict": verdict}


def publisher_for(tmp_path, host, port, config=None, **options) -> MqttPublisher:
    outbox = Outbox(tmp_path / "outbox.db", 10_000_000)
    return MqttPublisher(config or MqttSection(), NAMES, host, port, outbox, **options)


def commit(publisher, items):
    for i in items:
        kind = "verified" if i % 5 else "rejected"
        publisher.publish_record(kind, f"run/{i}", record(i, "pass" if i % 5 else "reject"))


def test_records_status_and_counters_reach_mosquitto(tmp_path, mosquitto, subscribe):
    subscriber = subscribe("127.0.0.1", mosquitto.port, "udigate/#", mqtt5=True)
    publisher = publisher_for(tmp_path, "127.0.0.1", mosquitto.port)
    publisher.start()
    assert publisher.connected.wait(10) and publisher.protocol == paho.MQTTv5
    commit(publisher, range(1, 51))
    publisher.set_state("counters", {"items": 49})
    publisher.set_state("counters", {"items": 50})  # state: the latest value is what counts
    assert publisher.close(timeout=10)
    assert publisher.outbox.count == 0 and publisher.acknowledged == 50
    assert subscriber.wait_for(lambda: len(subscriber.json_on("/status")) >= 2)
    assert subscriber.wait_for(lambda: len(subscriber.json_on("ed")) >= 50)

    assert [r["item_id"] for r in subscriber.json_on(f"{ROOT}/verified")] == [i for i in range(1, 51) if i % 5]
    assert [r["item_id"] for r in subscriber.json_on(f"{ROOT}/rejected")] == list(range(5, 51, 5))
    assert subscriber.json_on(f"{ROOT}/counters")[-1] == {"items": 50}
    assert [s["state"] for s in subscriber.json_on(f"{ROOT}/status")] == ["online", "offline"]
    pairs = zip(subscriber.messages, subscriber.user_properties, strict=True)
    ids = [p.get("record_id") for (t, _, _), p in pairs if "ed" in t]
    assert ids == [f"run/{i}" for i in range(1, 51)]  # MQTT 5 user property: the idempotency key

    late = subscribe("127.0.0.1", mosquitto.port, f"{ROOT}/status")  # retained
    assert late.wait_for(lambda: late.messages)
    topic, payload, retained = late.messages[0]
    assert retained and json.loads(payload)["state"] == "offline"


def test_records_wait_in_the_outbox_for_a_broker_and_go_out_in_order(tmp_path, subscribe):
    port = free_port()
    publisher = publisher_for(tmp_path, "127.0.0.1", port)
    publisher.start()
    commit(publisher, range(1, 31))
    assert publisher.close(timeout=1.0) is False
    assert "cannot connect" in publisher.problem
    publisher.outbox.close()

    reopened = Outbox(tmp_path / "outbox.db", 10_000_000)  # as after a restart
    assert reopened.count == 30
    broker = Mosquitto("127.0.0.1", port)
    broker.start()
    try:
        subscriber = subscribe("127.0.0.1", port, f"{ROOT}/+")
        later = MqttPublisher(MqttSection(), NAMES, "127.0.0.1", port, reopened)
        later.start()
        commit(later, range(31, 41))
        assert later.close(timeout=10)
        assert subscriber.wait_for(lambda: len(subscriber.json_on("ed")) >= 40)
        arrived = [r["item_id"] for t, p, _ in subscriber.messages if t.endswith("ed") for r in [json.loads(p)]]
        assert arrived == list(range(1, 41))
    finally:
        broker.close()


def test_falls_back_to_mqtt_3_on_a_broker_without_mqtt_5(tmp_path, subscribe):
    io = IoLoop()
    io.start()
    broker = InProcessBroker("127.0.0.1", free_port(), io.loop)  # amqtt speaks 3.1.1 only
    broker.start()
    try:
        subscriber = subscribe(broker.host, broker.port, "udigate/#")
        publisher = publisher_for(tmp_path, broker.host, broker.port)
        publisher.start()
        assert publisher.connected.wait(15)
        assert publisher.protocol == paho.MQTTv311
        commit(publisher, range(1, 21))
        assert publisher.close(timeout=10)
        assert subscriber.wait_for(lambda: len(subscriber.json_on("/verified")) == 16)
        subscriber.close()
    finally:
        broker.close()
        io.stop()


def test_job_command_answered_on_the_mqtt5_response_topic(tmp_path, mosquitto):
    commands = []

    def on_job_command(payload: bytes) -> dict:
        commands.append(json.loads(payload))
        return {"request_id": commands[-1]["request_id"], "ok": True}

    publisher = publisher_for(tmp_path, "127.0.0.1", mosquitto.port, on_job_command=on_job_command)
    publisher.start()
    assert publisher.connected.wait(10)
    replies, got_reply = [], threading.Event()
    mes = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="mes", protocol=paho.MQTTv5)

    def on_reply(client, userdata, message):
        replies.append((message.topic, message.payload, message.properties.CorrelationData))
        got_reply.set()

    mes.on_message = on_reply
    mes.connect("127.0.0.1", mosquitto.port)
    mes.loop_start()
    try:
        mes.subscribe("mes/replies/7", qos=1)[1]
        time.sleep(0.3)
        request = Properties(PacketTypes.PUBLISH)
        request.ResponseTopic, request.CorrelationData = "mes/replies/7", b"req-42"
        mes.publish(f"{ROOT}/job/set", json.dumps({"command": "stop", "request_id": "r1"}), 1, properties=request)
        assert got_reply.wait(10)
    finally:
        mes.disconnect()
        mes.loop_stop()
        publisher.close()
    assert commands == [{"command": "stop", "request_id": "r1"}]
    assert replies == [("mes/replies/7", b'{"request_id":"r1","ok":true}', b"req-42")]


def test_embedded_broker_moves_off_a_taken_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert not port_is_free("127.0.0.1", port)
        io = IoLoop()
        io.start()
        broker = start_embedded_broker(port, io.loop)
        try:
            assert broker.port != port and broker.kind == "mosquitto"
            with socket.create_connection(("127.0.0.1", broker.port), timeout=2):
                pass
        finally:
            broker.close()
            io.stop()
    assert port_is_free("127.0.0.1", broker.port)


@pytest.mark.parametrize(
    ("root", "expected"),
    [
        ("{enterprise}/{site}/{area}/{line}/udigate", "acme/site-a/packaging/line-7/udigate"),
        ("udigate/{site}/{line}", ROOT),
    ],
)
def test_topic_root_in_isa95_levels(tmp_path, root, expected):
    publisher = publisher_for(tmp_path, "127.0.0.1", 1, MqttSection(topic_root=root))
    assert publisher.status_topic == f"{expected}/status"
