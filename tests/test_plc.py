import asyncio
import re
import shutil
import socket
import subprocess
import time

import pytest
from pymodbus.client import AsyncModbusTcpClient

from gateway.broker import free_port
from plc.client import StationClient, changed_runs
from plc.delivery import DeliveryLog
from plc.link import Link
from plc.registers import (
    ADDRESS,
    CONTROL_BASE,
    HISTORY_LENGTH,
    REGISTER_COUNT,
    REGISTERS,
    STATION_RANGES,
    Control,
    RegisterImage,
    ResultCode,
    Status,
    decode_history,
    history_slot,
    join32,
    seqs_in,
)
from plc.server import StationServer
from plc.simulator import Conveyor, PlcMemory, PlcSimulator


def test_register_image_publishes_results_and_history():
    image = RegisterImage()
    for item in range(1, 21):
        image.publish(70000 + item, ResultCode.NO_READ if item % 4 == 0 else ResultCode.PASS, item % 4 == 0, 35)
    words = image.snapshot()
    assert words[ADDRESS["result_seq"]] == 20
    assert join32(words[5], words[6]) == 70020  # uint32, high word first
    assert (words[ADDRESS["result_code"]], words[ADDRESS["reject"]], words[ADDRESS["grade_x10"]]) == (2, 1, 35)
    assert [join32(words[a], words[a + 1]) for a in (8, 10, 12)] == [20, 15, 5]
    assert words[0] & Status.RESULT_TOGGLE == 0  # flipped 20 times
    history = decode_history(words)
    assert [r.seq for r in history] == list(range(5, 21))  # the last 16, oldest first
    assert [r.item_id for r in history] == list(range(70005, 70021))
    assert [r.reject for r in history] == [s % 4 == 0 for s in range(5, 21)]


def test_sequence_wraps_past_65535():
    image = RegisterImage()
    for item in range(65535 + 3):
        image.publish(item, ResultCode.PASS, False, 40)
    words = image.snapshot()
    assert words[ADDRESS["result_seq"]] == 3
    assert [r.seq for r in decode_history(words)][-4:] == [65535, 1, 2, 3]


def test_heartbeat():
    image = RegisterImage()
    image.beat()
    image.beat()
    words = image.snapshot()
    assert words[ADDRESS["heartbeat"]] == 2 and not words[0] & Status.HEARTBEAT


def serve(image, coroutine_factory):
    """Run a station server on a free port around ``coroutine_factory(port)``."""

    async def main():
        port = free_port()
        server = StationServer(image, Link("tcp", "127.0.0.1", port))
        await server.start()
        try:
            return await coroutine_factory(port)
        finally:
            await server.stop()

    return asyncio.run(main())


def test_server_serves_a_consistent_map_and_refuses_writes():
    image = RegisterImage()
    image.set_status(Status.READY, True)
    image.publish(123456, ResultCode.DUPLICATE, True, 30)

    async def client(port):
        c = AsyncModbusTcpClient("127.0.0.1", port=port)
        await c.connect()
        try:
            holding = await c.read_holding_registers(0, count=REGISTER_COUNT, device_id=1)
            inputs = await c.read_input_registers(0, count=16, device_id=7)  # any unit id answers
            write = await c.write_register(ADDRESS["reject"], 0, device_id=1)
            beyond = await c.read_holding_registers(REGISTER_COUNT - 1, count=2, device_id=1)
            return holding, inputs, write, beyond
        finally:
            c.close()

    holding, inputs, write, beyond = serve(image, client)
    assert holding.registers == image.snapshot()
    assert inputs.registers == image.snapshot()[:16]
    assert write.isError() and write.exception_code == 2  # illegal address: the station's own registers
    assert beyond.isError()


def test_mbpoll_reads_the_documented_addresses():
    """Debian's mbpoll as an independent Modbus client, with 1-based references as documented."""
    assert shutil.which("mbpoll"), "mbpoll is missing: run the tests through ./dev test"
    image = RegisterImage()
    image.publish(0x0001_0002, ResultCode.GRADE_FAIL, True, 10)

    async def poll(port):
        result = await asyncio.to_thread(
            subprocess.run,
            ["mbpoll", "-m", "tcp", "-p", str(port), "-a", "1", "-t", "4", "-r", "1", "-c", "8", "-1", "127.0.0.1"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        return result.stdout

    out = serve(image, poll)
    values = {int(ref): int(v) for ref, v in re.findall(r"^\[(\d+)\]:\s+(-?\d+)", out, re.M)}
    # reference n (1-based, 4000n) = address n-1
    assert values[ADDRESS["result_seq"] + 1] == 1
    assert values[ADDRESS["result_code"] + 1] == ResultCode.GRADE_FAIL
    assert values[ADDRESS["reject"] + 1] == 1
    assert (values[ADDRESS["item_id"] + 1], values[ADDRESS["item_id"] + 2]) == (1, 2)
    assert values[ADDRESS["grade_x10"] + 1] == 10


def test_plc_simulator_catches_up_from_history_and_counts_missed_results():
    image = RegisterImage()

    async def run(port):
        plc = PlcSimulator(Link("tcp", "127.0.0.1", port), poll_ms=10, record=True)
        await plc.start()
        for item in range(1, 11):  # bursts within one poll period: the history carries them
            image.publish(item, ResultCode.PASS if item % 3 else ResultCode.NO_READ, item % 3 == 0, 40)
        await asyncio.sleep(0.2)
        plc.poll_s = 10  # a PLC that stops polling for a while …
        await asyncio.sleep(0.05)
        for item in range(11, 11 + HISTORY_LENGTH + 5):  # … while more results than the history holds arrive
            image.publish(item, ResultCode.PASS, False, 40)
        await plc.stop()  # takes a last poll
        return plc.counts

    counts = serve(image, run)
    assert counts.missed == 5
    assert counts.results == 10 + HISTORY_LENGTH
    assert counts.rejects == 3
    assert [r.item_id for r in counts.seen] == [*range(1, 11), *range(16, 11 + HISTORY_LENGTH + 5)]


def test_the_simulated_belt_runs_only_while_the_station_is_ready():
    triggered = []
    image = RegisterImage(on_trigger=lambda trigger: triggered.append(trigger.item_id) or True)

    async def run(port):
        belt = Conveyor(speed_mm_s=1000, pitch_mm=(50, 50))  # an item every 50 ms once running
        plc = PlcSimulator(Link("tcp", "127.0.0.1", port), poll_ms=5, conveyor=belt)
        await plc.start()
        await asyncio.sleep(0.4)  # the station is still starting: nothing may pass the camera
        before_ready = plc.counts.items
        image.set_status(Status.READY, True)
        await _until(lambda: len(triggered) >= 3)
        image.set_status(Status.READY, False)  # the station stops: so does the belt
        await asyncio.sleep(0.1)
        stopped_at = plc.counts.items
        await asyncio.sleep(0.4)
        await plc.stop()
        return before_ready, stopped_at, plc.counts.items

    before_ready, stopped_at, at_end = serve(image, run)
    assert before_ready == 0
    assert triggered[:3] == [1001, 1002, 1003]
    assert at_end == stopped_at


def test_register_map_document_is_current():
    from plc.registers import register_map_markdown

    from .conftest import REPO

    assert (REPO / "docs" / "plc-register-map.md").read_text() == register_map_markdown()


def test_the_plc_writes_only_its_control_block_and_can_ask_for_reject_all():
    from plc.registers import CONTROL_END, Control

    image = RegisterImage()

    async def client(port):
        async with AsyncModbusTcpClient("127.0.0.1", port=port) as c:
            refused = await c.write_register(ADDRESS["result_code"], 1, device_id=1)
            accepted = await c.write_register(ADDRESS["plc_control"], int(Control.REJECT_ALL), device_id=1)
            beyond = await c.write_registers(CONTROL_END - 1, [0, 0], device_id=1)  # into count_triggers
            return refused, accepted, beyond

    refused, accepted, beyond = serve(image, client)
    assert refused.isError() and refused.exception_code == 2
    assert not accepted.isError()
    assert beyond.isError() and beyond.exception_code == 2  # past the PLC's block
    control, written_at = image.control()
    assert control == Control.REJECT_ALL and written_at is not None
    result = image.publish(5, ResultCode.PASS, False, 40)
    assert result.reject and image.snapshot()[ADDRESS["reject"]] == 1  # rejected while asked to


# --- trigger handshake, result acknowledge, reset -------------------------------------------------


def test_a_trigger_edge_carries_the_plcs_item_id_and_encoder_and_is_acknowledged():
    taken = []
    image = RegisterImage(on_trigger=lambda trigger: taken.append(trigger) or True)
    # one request: control word with the trigger bit, item id 70000 (uint32), encoder 123456
    image.write_control(CONTROL_BASE, [int(Control.TRIGGER), 1, 70000 - 65536, 1, 123456 - 65536])
    assert [(t.item_id, t.encoder) for t in taken] == [(70000, 123456)]
    words = image.snapshot()
    assert words[0] & Status.TRIGGER_ACK
    image.write_control(CONTROL_BASE, [int(Control.TRIGGER)])  # still high: no new edge
    assert len(taken) == 1
    image.write_control(CONTROL_BASE, [0])  # the PLC lowers it: the ack follows
    assert not image.snapshot()[0] & Status.TRIGGER_ACK
    image.write_control(CONTROL_BASE, [int(Control.TRIGGER | Control.HEARTBEAT), 0, 5, 0, 9])
    assert [(t.item_id, t.encoder) for t in taken][-1] == (5, 9)
    words = image.snapshot()
    assert join32(*words[ADDRESS["count_triggers"] : ADDRESS["count_triggers"] + 2]) == 2
    # the result echoes the PLC's id and encoder count
    image.publish(70000, ResultCode.PASS, False, 38, encoder=123456)
    words = image.snapshot()
    assert join32(words[5], words[6]) == 70000 and join32(words[14], words[15]) == 123456


def test_without_plc_triggers_configured_a_trigger_is_not_acknowledged():
    image = RegisterImage()
    image.write_control(CONTROL_BASE, [int(Control.TRIGGER), 0, 1, 0, 1])
    assert not image.snapshot()[0] & Status.TRIGGER_ACK


def test_a_full_capture_queue_is_an_overrun_until_the_plc_resets():
    image = RegisterImage(on_trigger=lambda trigger: False)
    for item in range(3):
        image.write_control(CONTROL_BASE, [int(Control.TRIGGER), 0, item, 0, 0])
        image.write_control(CONTROL_BASE, [0])
    words = image.snapshot()
    assert words[0] & Status.OVERRUN
    assert join32(*words[ADDRESS["count_overruns"] : ADDRESS["count_overruns"] + 2]) == 3
    image.publish(1, ResultCode.PASS, False, 40)
    image.write_control(CONTROL_BASE, [int(Control.RESET)])
    words = image.snapshot()
    assert not words[0] & Status.OVERRUN
    assert all(words[ADDRESS[name]] == words[ADDRESS[name] + 1] == 0 for name in ("count_items", "count_overruns"))


def test_result_valid_is_cleared_by_the_plcs_acknowledge_edge():
    image = RegisterImage()
    image.publish(1, ResultCode.NO_READ, True, 0)
    assert image.snapshot()[0] & Status.RESULT_VALID
    image.write_control(CONTROL_BASE, [int(Control.RESULT_ACK)])
    assert not image.snapshot()[0] & Status.RESULT_VALID
    image.publish(2, ResultCode.PASS, False, 40)
    assert image.snapshot()[0] & Status.RESULT_VALID  # the ack bit still high: not an edge
    image.write_control(CONTROL_BASE, [0])
    image.write_control(CONTROL_BASE, [int(Control.RESULT_ACK)])
    assert not image.snapshot()[0] & Status.RESULT_VALID


# --- client-mode writes and delivery accounting ---------------------------------------------------


def test_changed_runs_write_only_the_stations_registers_history_before_header():
    image = RegisterImage()
    first = image.snapshot()
    runs = changed_runs(None, first)
    covered = sorted(a for address, values in runs for a in range(address, address + len(values)))
    assert covered == [a for start, end in STATION_RANGES for a in range(start, end)]
    assert all(len(values) <= 123 for _, values in runs)
    image.publish(77, ResultCode.DUPLICATE, True, 20)  # seq 1: history slot at 21
    runs = changed_runs(first, image.snapshot())
    assert [address for address, _ in runs] == sorted((address for address, _ in runs), reverse=True)
    assert runs[-1][0] == 0  # the header (status, result_seq) goes last
    written = list(first)
    for address, values in runs:
        written[address : address + len(values)] = values
    assert written == image.snapshot()


def test_delivery_log_accounts_late_and_missing_results_once():
    log = DeliveryLog(deadline_s=0.5)
    image = RegisterImage()
    t0 = 100.0
    for item in range(1, 5):
        code = ResultCode.TIMEOUT if item == 4 else ResultCode.PASS
        log.published(image.publish(item, code, item == 4, 40), item, t_trigger=t0, t_decided=t0 + 0.1)
    assert log.taken([1], now=t0 + 0.2) == []  # in time
    late = log.taken([1, 2], now=t0 + 0.7)  # after the deadline: the ejector has passed
    assert [u.station_item_id for u in late] == [2] and "after the deadline" in late[0].detail
    gone = log.expire(now=t0 + 1.0)  # 3 never taken; 4 was decided late and is reported as such already
    assert [u.station_item_id for u in gone] == [3]
    assert (log.delivered, log.undelivered, log.pending()) == (1, 2, 0)
    assert len(log.latencies_ms) == 2


def test_a_plc_read_delivers_the_results_it_covers_and_no_older_ones():
    image = RegisterImage()
    for item in range(1, 21):  # 20 results: the first 4 have scrolled out of the history
        image.publish(item, ResultCode.PASS, False, 40)
    words = image.snapshot()
    assert sorted(seqs_in(words, 0, REGISTER_COUNT)) == list(range(5, 21))
    assert seqs_in(words, 0, 16) == {20}  # the latest-result registers only
    assert seqs_in(words, 0, 5) == set()  # result_seq without the item id is not a result
    assert sorted(seqs_in(words, history_slot(7), 5)) == [7]
    for item in range(65535 - 20 + 3):  # across the wrap 65535 → 1
        image.publish(item, ResultCode.PASS, False, 40)
    # slot 0 is not reused in the round that wraps (sequence 0 is skipped): it still holds 65520
    assert sorted(seqs_in(image.snapshot(), 0, REGISTER_COUNT)) == [1, 2, 3, 65520, *range(65524, 65536)]


def test_client_mode_keeps_the_plcs_copy_current_and_reconnects_after_the_plc_restarts():
    """The station writes into a real Modbus TCP server (the PLC simulator's memory) at a base
    address, takes a trigger the PLC puts in its own memory, and rewrites everything after the
    PLC came back."""
    taken = []
    image = RegisterImage(on_trigger=lambda trigger: taken.append(trigger) or True)
    base = 200

    async def main():
        port = free_port()
        link = Link("tcp", "127.0.0.1", port)
        plc = PlcMemory(link, base_address=base)  # the PLC's registers, nothing else
        await plc.open()
        client = StationClient(image, link, base_address=base, poll_ms=10, timeout_ms=300)
        image.on_change = client.notify
        await client.start()
        try:
            image.publish(4242, ResultCode.GRADE_FAIL, True, 12)
            await _until(lambda: plc.words[base + ADDRESS["result_seq"]] == 1)
            station = [a for start, end in STATION_RANGES for a in range(start, end)]
            assert [plc.words[base + a] for a in station] == [image.snapshot()[a] for a in station]
            # the PLC triggers through its own memory; the station reads it within a poll
            await plc.write(CONTROL_BASE, [int(Control.TRIGGER), 0, 31, 0, 500])
            await _until(lambda: taken)
            await _until(lambda: plc.words[base] & Status.TRIGGER_ACK)
            assert (taken[0].item_id, taken[0].encoder) == (31, 500)
            # the PLC goes away (power cycle: memory lost) and comes back on the same port
            await plc.shutdown()
            plc.words = [0] * len(plc.words)
            image.publish(4243, ResultCode.PASS, False, 40)  # published while the PLC is gone
            await asyncio.sleep(0.5)
            assert not client.connected
            await plc.open()
            await _until(lambda: client.connected and plc.words[base + ADDRESS["result_seq"]] == 2, timeout=10)
            assert decode_history(plc.words[base:])[-2:] == decode_history(image.snapshot())[-2:]
            return client.connects
        finally:
            await client.stop()
            await plc.shutdown()

    assert asyncio.run(main()) == 2


async def _until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


# --- Modbus RTU over a pseudo-terminal pair -------------------------------------------------------


def test_rtu_server_mode_answers_pymodbus_and_mbpoll_over_a_serial_line(serial_pair):
    station_end, plc_end = serial_pair
    # 8N1: the sandbox's pseudo-terminals refuse parity settings (tcsetattr EINVAL); a USB RS-485
    # adapter takes the default 8E1.
    image = RegisterImage()
    image.set_status(Status.READY, True)
    image.publish(90001, ResultCode.CONTENT_MISMATCH, True, 25)

    async def main():
        server = StationServer(image, Link("rtu", serial_port=station_end, baudrate=19200, parity="N"))
        await server.start()
        try:
            client = Link("rtu", serial_port=plc_end, baudrate=19200, parity="N").client(timeout_s=2)
            assert await client.connect()
            try:
                reply = await client.read_holding_registers(0, count=REGISTER_COUNT, device_id=1)
                write = await client.write_registers(CONTROL_BASE, [int(Control.REJECT_ALL)], device_id=1)
            finally:
                client.close()
            mbpoll = await asyncio.to_thread(
                subprocess.run,
                ["mbpoll", "-m", "rtu", "-b", "19200", "-P", "none", "-a", "1", "-t", "4", "-r", "1", "-c", "8"]
                + ["-1", plc_end],
                capture_output=True,
                text=True,
                timeout=20,
            )
            return reply, write, mbpoll.stdout
        finally:
            await server.stop()

    reply, write, out = asyncio.run(main())
    assert not reply.isError() and reply.registers[:CONTROL_BASE] == image.snapshot()[:CONTROL_BASE]
    assert not write.isError() and image.control()[0] == Control.REJECT_ALL
    values = {int(ref): int(v) for ref, v in re.findall(r"^\[(\d+)\]:\s+(-?\d+)", out, re.M)}
    assert values[ADDRESS["result_code"] + 1] == ResultCode.CONTENT_MISMATCH
    assert (values[ADDRESS["item_id"] + 1], values[ADDRESS["item_id"] + 2]) == (1, 90001 - 65536)


def test_rtu_client_mode_writes_into_a_plc_on_the_serial_line(serial_pair):
    station_end, plc_end = serial_pair
    image = RegisterImage()

    async def main():
        plc = PlcSimulator(Link("rtu", serial_port=plc_end, baudrate=38400, parity="N"), poll_ms=10, serve=True)
        await plc.start()
        client = StationClient(image, Link("rtu", serial_port=station_end, baudrate=38400, parity="N"), poll_ms=20)
        image.on_change = client.notify
        await client.start()
        try:
            for item in range(1, 4):
                image.publish(item * 11, ResultCode.PASS, False, 40)
            await _until(lambda: plc.side.words[ADDRESS["result_seq"]] == 3, timeout=10)
            return plc.side.words[:CONTROL_BASE]
        finally:
            await client.stop()
            await plc.stop()

    assert asyncio.run(main()) == image.snapshot()[:CONTROL_BASE]


def test_mbpoll_reads_every_documented_address_and_writes_the_plc_block():
    """The whole map through mbpoll's 1-based references, and a trigger written by mbpoll."""
    taken = []
    image = RegisterImage(on_trigger=lambda trigger: taken.append(trigger) or True)
    image.publish(0x0003_0004, ResultCode.DUPLICATE, True, 30, encoder=0x0005_0006)

    def mbpoll(port, *args):
        return subprocess.run(
            ["mbpoll", "-m", "tcp", "-p", str(port), "-a", "1", "-t", "4", *args],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout

    async def run(port):
        # write trigger + item id 4242 + encoder 99 at reference 400097 (address 96), then read all
        await asyncio.to_thread(mbpoll, port, "-r", str(CONTROL_BASE + 1), "127.0.0.1", "4", "0", "4242", "0", "99")
        return await asyncio.to_thread(mbpoll, port, "-r", "1", "-c", str(REGISTER_COUNT), "-1", "127.0.0.1")

    out = serve(image, run)
    values = {int(ref): int(v) & 0xFFFF for ref, v in re.findall(r"^\[(\d+)\]:\s+(-?\d+)", out, re.M)}
    words = image.snapshot()
    assert [values[address + 1] for address in range(REGISTER_COUNT)] == words
    for register in REGISTERS:  # each documented name at its documented reference
        assert register.address + register.words <= REGISTER_COUNT
    assert (values[ADDRESS["encoder"] + 1], values[ADDRESS["encoder"] + 2]) == (5, 6)
    assert [(t.item_id, t.encoder) for t in taken] == [(4242, 99)]
    assert values[ADDRESS["status"] + 1] & Status.TRIGGER_ACK
    assert join32(values[ADDRESS["count_triggers"] + 1], values[ADDRESS["count_triggers"] + 2]) == 1


def test_a_missing_serial_device_is_named_at_start(tmp_path):
    server = StationServer(RegisterImage(), Link("rtu", serial_port=str(tmp_path / "ttyUSB9")))
    with pytest.raises(OSError, match=r"cannot serve Modbus RTU .*ttyUSB9: no such serial device"):
        asyncio.run(server.start())


def test_a_port_in_use_is_named_with_what_to_do():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        server = StationServer(RegisterImage(), Link("tcp", "127.0.0.1", port))
        with pytest.raises(OSError, match=rf"cannot serve Modbus TCP 127.0.0.1:{port}: .*another program serves port"):
            asyncio.run(server.start())
