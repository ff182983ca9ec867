import asyncio
import re
import shutil
import subprocess

from pymodbus.client import AsyncModbusTcpClient

from gateway.broker import free_port
from plc.registers import (
    ADDRESS,
    HISTORY_LENGTH,
    REGISTER_COUNT,
    RegisterImage,
    ResultCode,
    Status,
    decode_history,
    join32,
)
from plc.server import StationServer
from plc.simulator import PlcSimulator


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
        server = StationServer(image, "127.0.0.1", port)
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
            inputs = await c.read_input_registers(0, count=14, device_id=7)  # any unit id answers
            write = await c.write_register(ADDRESS["reject"], 0, device_id=1)
            beyond = await c.read_holding_registers(REGISTER_COUNT - 1, count=2, device_id=1)
            return holding, inputs, write, beyond
        finally:
            c.close()

    holding, inputs, write, beyond = serve(image, client)
    assert holding.registers == image.snapshot()
    assert inputs.registers == image.snapshot()[:14]
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
        plc = PlcSimulator("127.0.0.1", port, poll_ms=10, record=True)
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


def test_register_map_document_is_current():
    from plc.registers import register_map_markdown

    from .conftest import REPO

    assert (REPO / "docs" / "plc-register-map.md").read_text() == register_map_markdown()


def test_the_plc_writes_only_its_control_block_and_can_ask_for_reject_all():
    from plc.registers import CONTROL_BASE, Control

    image = RegisterImage()

    async def client(port):
        async with AsyncModbusTcpClient("127.0.0.1", port=port) as c:
            refused = await c.write_register(ADDRESS["result_code"], 1, device_id=1)
            accepted = await c.write_register(ADDRESS["plc_control"], int(Control.REJECT_ALL), device_id=1)
            beyond = await c.write_registers(CONTROL_BASE, [0, 0], device_id=1)
            return refused, accepted, beyond

    refused, accepted, beyond = serve(image, client)
    assert refused.isError() and refused.exception_code == 2
    assert not accepted.isError()
    assert beyond.isError() and beyond.exception_code == 2  # past the end of the map
    control, written_at = image.control()
    assert control == Control.REJECT_ALL and written_at is not None
    result = image.publish(5, ResultCode.PASS, False, 40)
    assert result.reject and image.snapshot()[ADDRESS["reject"]] == 1  # rejected while asked to
