import json
import socket

import pytest

from gateway.broker import InProcessBroker, free_port, port_is_free, start_embedded_broker
from gateway.config import MqttSection
from gateway.ioloop import IoLoop
from gateway.mqtt import MqttPublisher


def record(item_id, verdict="pass"):
    return {"schema": "udigate.item/1", "record_id": f"run/{item_id}", "item_id": item_id, "verdict": verdict}


def publish_and_close(host, port, subscribe, count=50):
    subscriber = subscribe(host, port, "udigate/#")
    publisher = MqttPublisher(MqttSection(), "site-a", "line-7", host, port)
    publisher.start()
    assert publisher.connected.wait(10)
    for i in range(1, count + 1):
        publisher.publish_item(record(i, "pass" if i % 5 else "reject"))
    publisher.publish_counters({"items": count})
    assert publisher.close(timeout=10)
    assert publisher.sent == publisher.acknowledged == count + 3  # + online, counters, offline
    assert subscriber.wait_for(lambda: len(subscriber.messages) >= count + 3)
    return subscriber


def test_records_status_and_counters_reach_mosquitto(mosquitto, subscribe):
    subscriber = publish_and_close("127.0.0.1", mosquitto.port, subscribe)
    assert [r["item_id"] for r in subscriber.json_on("udigate/site-a/line-7/verified")] == [
        i for i in range(1, 51) if i % 5
    ]
    assert [r["item_id"] for r in subscriber.json_on("udigate/site-a/line-7/rejected")] == list(range(5, 51, 5))
    assert subscriber.json_on("udigate/site-a/line-7/counters") == [{"items": 50}]
    assert [s["state"] for s in subscriber.json_on("udigate/site-a/line-7/status")] == ["online", "offline"]

    late = subscribe("127.0.0.1", mosquitto.port, "udigate/site-a/line-7/status")  # retained
    assert late.wait_for(lambda: late.messages)
    topic, payload, retained = late.messages[0]
    assert retained and json.loads(payload)["state"] == "offline"


def test_in_process_broker_when_mosquitto_is_absent(subscribe):
    io = IoLoop()
    io.start()
    broker = InProcessBroker("127.0.0.1", free_port(), io.loop)
    broker.start()
    try:
        subscriber = publish_and_close(broker.host, broker.port, subscribe, count=20)
        assert len(subscriber.json_on("/verified")) == 16
        subscriber.close()
    finally:
        broker.close()
        io.stop()


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


def test_publisher_waits_for_a_broker_that_is_not_there():
    publisher = MqttPublisher(MqttSection(), "s", "l", "127.0.0.1", free_port())
    publisher.start()
    publisher.publish_item(record(1))
    assert publisher.close(timeout=0.5) is False
    assert publisher.sent == 1 and publisher.acknowledged == 0


@pytest.mark.parametrize("root", ["plant/{site}/packaging/{line}", "udigate/{site}/{line}"])
def test_topic_root(root):
    publisher = MqttPublisher(MqttSection(topic_root=root), "s1", "l2", "127.0.0.1", 1)
    assert publisher.status_topic == root.format(site="s1", line="l2") + "/status"
