"""A PLC simulator: what a line PLC does with the station, for the demo, the tests and commissioning.

It talks to the station in either mode: it polls the station (the station is the Modbus server) or
it is the Modbus server the station writes into (client mode). Each cycle it reads the station's
map, takes every result it has not seen from the history, toggles its heartbeat and, with a
:class:`Conveyor`, runs the line:

* the belt runs only while the station reports ready (status bit 0), as a line interlocked with its
  inspection station does: no item passes the camera while the station is still starting;
* an encoder counts the belt's travel; items arrive at random spacing, the belt speed can change;
* when an item passes the camera the PLC latches the encoder count, puts the item in its FIFO and
  triggers the station (trigger bit edge + item id + encoder count, acknowledged);
* when the belt has moved the item to the ejector (``ejector_mm`` downstream) the ejector fires if
  the station's result for that item says reject, or if no result has come (fail-safe).

``python -m plc.simulator --help`` runs it against a station from the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusException
from pymodbus.simulator import DataType, SimData, SimDevice

from .link import Link
from .registers import (
    ADDRESS,
    CONTROL_BASE,
    HISTORY_LENGTH,
    REGISTER_COUNT,
    Control,
    Result,
    Status,
    decode_history,
    seq_behind,
    split32,
)

log = logging.getLogger(__name__)
COMM_ERRORS = (TimeoutError, ModbusException, ConnectionError, OSError)


@dataclass
class Conveyor:
    """The belt between the camera and the ejector."""

    speed_mm_s: float = 250.0  # may be changed while running
    pitch_mm: tuple[float, float] = (40.0, 60.0)  # distance to the next item, drawn uniformly
    ejector_mm: float = 300.0  # camera to ejector
    counts_per_mm: float = 10.0  # encoder resolution
    items: int = 0  # stop feeding items after this many; 0 = never
    first_item_id: int = 1001  # the PLC's own numbering, unrelated to the station's
    seed: int | None = None


@dataclass
class PlcCounts:
    results: int = 0
    rejects: int = 0
    missed: int = 0  # results that scrolled out of the history between two reads
    by_code: Counter = field(default_factory=Counter)
    heartbeat_timeouts: int = 0
    connected: bool = False
    seen: list[Result] = field(default_factory=list)  # kept only when record=True
    # with a conveyor
    items: int = 0  # items that passed the camera (and were triggered)
    ejected: list[int] = field(default_factory=list)  # PLC item ids the ejector kicked out
    kept: list[int] = field(default_factory=list)  # PLC item ids that went on
    no_result: int = 0  # ejected because no result had come when they reached the ejector
    late_results: int = 0  # results for items already past the ejector
    trigger_timeouts: int = 0  # triggers the station did not acknowledge within a second
    overruns: int = 0  # cycles in which the station showed its overrun bit rising


@dataclass
class _Tracked:
    item_id: int
    encoder: int  # latched when the item passed the camera
    result: Result | None = None


class StationPoller:
    """The station is the Modbus server: read its map, write the PLC's block into it.

    Both sides of the simulator offer: ``open()`` (True when ready to read), ``connected``,
    ``read()``, ``write()``, ``close()`` (after a failure) and ``shutdown()`` (at stop)."""

    def __init__(self, link: Link, timeout_s: float) -> None:
        self.link, self.timeout_s = link, timeout_s
        self._client = None

    async def open(self) -> bool:
        if self._client is None or not self._client.connected:
            self.close()
            self._client = self.link.client(self.timeout_s)
            return await self._client.connect()
        return True

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    async def read(self) -> list[int]:
        reply = await self._client.read_holding_registers(0, count=REGISTER_COUNT)
        if reply.isError():
            raise ModbusException(f"station answered {reply}")
        return reply.registers

    async def write(self, address: int, values: list[int]) -> None:
        reply = await self._client.write_registers(address, values)
        if reply.isError():
            raise ModbusException(f"station refused the write: {reply}")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def shutdown(self) -> None:
        self.close()


class PlcMemory:
    """The station is the Modbus client: serve PLC memory that the station writes its map into at
    ``base_address``, and read the PLC's block from."""

    def __init__(self, link: Link, base_address: int) -> None:
        self.link, self.base = link, base_address
        self.words = [0] * (base_address + REGISTER_COUNT)
        self.on_write: Callable[[], None] | None = None  # after each station write, before the reply
        self.last_station_write: float | None = None
        self._server = None

    async def open(self) -> bool:
        if self._server is None:
            device = SimDevice(
                id=0, simdata=SimData(0, count=len(self.words), datatype=DataType.REGISTERS), action=self._on_request
            )
            self._server = self.link.server(device)
            await self._server.serve_forever(background=True)
        return True  # the memory is always there to read

    @property
    def connected(self) -> bool:
        """The station wrote within the last 2 s."""
        return self.last_station_write is not None and time.monotonic() - self.last_station_write < 2.0

    async def _on_request(self, function_code, start_address, address, count, registers, values):
        if values is not None:
            if address + len(values) > len(self.words):
                return ExcCodes.ILLEGAL_ADDRESS
            self.words[address : address + len(values)] = list(values)
            self.last_station_write = time.monotonic()
            if self.on_write is not None:
                self.on_write()
            return None
        registers[:] = self.words
        return None

    async def read(self) -> list[int]:
        return self.words[self.base : self.base + REGISTER_COUNT]

    async def write(self, address: int, values: list[int]) -> None:
        self.words[self.base + address : self.base + address + len(values)] = values

    async def shutdown(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
            self._server = None

    def close(self) -> None:
        pass  # the server stays up: the station reconnects to it


class PlcSimulator:
    """A PLC for the station at ``link``: polls it (``serve=False``) or serves memory the station
    writes into (``serve=True``, client mode, at ``base_address``). Runs every ``poll_ms`` until
    :meth:`stop`."""

    def __init__(
        self,
        link: Link,
        poll_ms: float = 20,
        heartbeat_timeout_s: float = 3.0,
        record: bool = False,
        send_heartbeat: bool = True,
        conveyor: Conveyor | None = None,
        serve: bool = False,
        base_address: int = 0,
        on_result: Callable[[Result], None] | None = None,
    ) -> None:
        self.link = link
        self.poll_s = poll_ms / 1000
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.record = record
        self.send_heartbeat = send_heartbeat
        self.conveyor = conveyor
        self.on_result = on_result
        if serve:  # results are taken as the station writes them, before its write is answered
            self.side = PlcMemory(link, base_address)
            self.side.on_write = lambda: self._take(self.side.words[base_address : base_address + REGISTER_COUNT])
        else:
            self.side = StationPoller(link, timeout_s=0.5)
        self.counts = PlcCounts()
        self._last_seq = 0
        self._task: asyncio.Task | None = None
        self._rng = random.Random(conveyor.seed if conveyor else None)
        self._encoder = 0.0
        self._next_item_at = 0.0
        self._fifo: deque[_Tracked] = deque()
        self._by_id: dict[int, _Tracked] = {}
        self._to_trigger: deque[_Tracked] = deque()
        self._control = Control(0)
        self._written_control: Control | None = None
        self._trigger_state, self._trigger_since = "idle", 0.0
        self._beat_at = 0.0
        self._station_beat, self._station_beat_seen = None, time.monotonic()
        self._overrun = False
        self._station_ready = False  # the belt's interlock: it runs while the station is ready

    async def start(self) -> None:
        with contextlib.suppress(*COMM_ERRORS):  # a served memory listens before the station connects
            await self.side.open()
        self._task = asyncio.create_task(self._run(), name="plc-simulator")

    async def stop(self) -> None:
        """Take a last read so results published just before stopping are counted, let the belt
        carry the tracked items to the ejector, then stop."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        # A request cancelled with the task can leave its client waiting on an answer that never
        # comes: the last read goes through a fresh connection, and is bounded.
        self.side.close()
        with contextlib.suppress(*COMM_ERRORS, TimeoutError):
            async with asyncio.timeout(5):
                if await self.side.open():
                    self._take(await self.side.read())
        while self._fifo:
            self._eject(self._fifo.popleft())
        await self.side.shutdown()

    async def _run(self) -> None:
        last = time.monotonic()
        retry_at = 0.0
        while True:
            now = time.monotonic()
            if self.conveyor is not None and self._station_ready:
                self._advance(now - last)
            last = now
            if now >= retry_at:
                try:
                    ready = await self.side.open()
                    self.counts.connected = self.side.connected
                    if ready:
                        await self._cycle(await self.side.read(), now)
                except COMM_ERRORS as exc:
                    if self.counts.connected:
                        log.warning("PLC simulator lost the station: %s", exc)
                    self.counts.connected = False
                    self._written_control = None  # write the control word again once back
                    self.side.close()
                    retry_at = time.monotonic() + 0.5
            await asyncio.sleep(self.poll_s)

    async def _cycle(self, words: list[int], now: float) -> None:
        self._take(words)
        status = Status(words[ADDRESS["status"]])
        self._station_ready = bool(status & Status.READY)
        if status & Status.OVERRUN and not self._overrun:
            self.counts.overruns += 1
        self._overrun = bool(status & Status.OVERRUN)
        if self.send_heartbeat and now - self._beat_at >= 0.5:  # the PLC's side of the heartbeat
            self._control ^= Control.HEARTBEAT
            self._beat_at = now
        # acknowledge each result: a rising edge while result-valid is up, released when it drops
        if status & Status.RESULT_VALID:
            self._control |= Control.RESULT_ACK
        else:
            self._control &= ~Control.RESULT_ACK
        await self._trigger_handshake(status, now)
        if self._control != self._written_control:
            await self.side.write(CONTROL_BASE, [int(self._control)])
            self._written_control = self._control
        beat = words[ADDRESS["heartbeat"]]
        if beat != self._station_beat:
            self._station_beat, self._station_beat_seen = beat, now
        elif now - self._station_beat_seen > self.heartbeat_timeout_s:
            self.counts.heartbeat_timeouts += 1
            self._station_beat_seen = now

    async def _trigger_handshake(self, status: Status, now: float) -> None:
        acked = bool(status & Status.TRIGGER_ACK)
        if self._trigger_state == "raised" and (acked or now - self._trigger_since > 1.0):
            if not acked:
                self.counts.trigger_timeouts += 1
            self._control &= ~Control.TRIGGER
            self._trigger_state, self._trigger_since = "lowering", now
        elif self._trigger_state == "lowering" and (not acked or now - self._trigger_since > 1.0):
            self._trigger_state = "idle"
        if self._trigger_state == "idle" and self._to_trigger:
            item = self._to_trigger.popleft()
            self._control |= Control.TRIGGER
            # one request: the edge and the id it belongs to arrive together
            words = [int(self._control), *split32(item.item_id), *split32(item.encoder)]
            await self.side.write(CONTROL_BASE, words)
            self._written_control = self._control
            self._trigger_state, self._trigger_since = "raised", now

    def _advance(self, dt: float) -> None:
        """Move the belt by ``dt`` seconds: new items at the camera, tracked items at the ejector."""
        c = self.conveyor
        self._encoder += c.speed_mm_s * dt * c.counts_per_mm
        while self._encoder >= self._next_item_at and (not c.items or self.counts.items < c.items):
            item = _Tracked(c.first_item_id + self.counts.items, int(self._next_item_at))
            self.counts.items += 1
            self._fifo.append(item)
            self._by_id[item.item_id] = item
            self._to_trigger.append(item)
            self._next_item_at += self._rng.uniform(*c.pitch_mm) * c.counts_per_mm
        reach = c.ejector_mm * c.counts_per_mm
        while self._fifo and self._encoder >= self._fifo[0].encoder + reach:
            self._eject(self._fifo.popleft())

    def _eject(self, item: _Tracked) -> None:
        self._by_id.pop(item.item_id, None)
        if item.result is None:
            self.counts.no_result += 1
        if item.result is None or item.result.reject:
            self.counts.ejected.append(item.item_id)
        else:
            self.counts.kept.append(item.item_id)

    def _take(self, words: list[int]) -> None:
        newest = words[ADDRESS["result_seq"]]
        if newest == self._last_seq:
            return
        behind = seq_behind(newest, self._last_seq)
        if behind > HISTORY_LENGTH:
            self.counts.missed += behind - HISTORY_LENGTH
        for result in decode_history(words):
            if seq_behind(newest, result.seq) < behind:
                self._count(result)
        self._last_seq = newest

    def _count(self, result: Result) -> None:
        self.counts.results += 1
        self.counts.by_code[result.code] += 1
        if result.reject:
            self.counts.rejects += 1
        if self.record:
            self.counts.seen.append(result)
        if self.on_result is not None:
            self.on_result(result)
        if self.conveyor is not None:
            item = self._by_id.get(result.item_id)
            if item is None:
                self.counts.late_results += 1
            else:
                item.result = result


def parse_link(text: str) -> Link:
    """``tcp:HOST:PORT`` or ``rtu:DEVICE[:BAUD[:PARITY[:STOPBITS]]]``."""
    kind, _, rest = text.partition(":")
    try:
        if kind == "tcp":
            host, _, port = rest.rpartition(":")
            return Link("tcp", host or "127.0.0.1", int(port))
        if kind == "rtu":
            device, *serial = rest.split(":")
            baud, parity, stopbits = (serial + ["19200", "E", "1"][len(serial) :])[:3]
            return Link("rtu", serial_port=device, baudrate=int(baud), parity=parity, stopbits=int(stopbits))
    except ValueError:
        pass
    raise ValueError(f"{text!r}: expected tcp:HOST:PORT or rtu:DEVICE[:BAUD[:PARITY[:STOPBITS]]]")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plc.simulator", description=__doc__.split("\n\n")[0])
    parser.add_argument("link", type=parse_link, help="the station (tcp:HOST:PORT or rtu:DEVICE[:BAUD[:P[:S]]])")
    parser.add_argument("--serve", action="store_true", help="be the server the station writes into (client mode)")
    parser.add_argument("--base-address", type=int, default=0, help="client mode: where the station writes")
    parser.add_argument("--poll-ms", type=float, default=20)
    parser.add_argument("--conveyor", action="store_true", help="run a belt that triggers the station")
    parser.add_argument("--speed", type=float, default=250, help="belt speed, mm/s")
    parser.add_argument("--pitch", type=float, nargs=2, default=(40, 60), help="item spacing range, mm")
    parser.add_argument("--ejector", type=float, default=300, help="camera to ejector, mm")
    parser.add_argument("--items", type=int, default=0, help="items to feed (0 = until stopped)")
    parser.add_argument("--first-item-id", type=int, default=1001)
    parser.add_argument("--log", help="append every result taken as a JSON line to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    conveyor = (
        Conveyor(args.speed, tuple(args.pitch), args.ejector, items=args.items, first_item_id=args.first_item_id)
        if args.conveyor
        else None
    )
    out = open(args.log, "a", buffering=1) if args.log else None  # line-buffered: each result survives a kill

    def write_result(result: Result) -> None:
        out.write(
            json.dumps(
                {
                    "seq": result.seq,
                    "item_id": result.item_id,
                    "code": result.code.name,
                    "reject": result.reject,
                    "t": time.time(),
                }
            )
            + "\n"
        )

    plc = PlcSimulator(
        args.link,
        args.poll_ms,
        conveyor=conveyor,
        serve=args.serve,
        base_address=args.base_address,
        on_result=write_result if out else None,
    )

    async def run() -> None:
        await plc.start()
        print(f"PLC simulator on {args.link} ({'serving' if args.serve else 'polling'})", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await plc.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
