"""Client mode: the station writes its registers into the PLC and reads the PLC's block from it.

The PLC holds the same layout as the server's map, offset by ``base_address``. The writer runs on
the I/O loop and only ever reads snapshots of the :class:`RegisterImage`, so a slow or vanished
PLC never holds up the vision pipeline. A lost connection is retried with exponential backoff
(0.1 s doubling to 5 s); after every (re)connect the whole map is written again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from pymodbus.exceptions import ModbusException

from .link import Link
from .registers import CONTROL_BASE, CONTROL_END, REGISTER_COUNT, STATION_RANGES, RegisterImage, seqs_in

log = logging.getLogger(__name__)

MAX_WRITE_WORDS = 123  # one function-code-16 request
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.1, 5.0
REFRESH_S = 5.0  # rewrite everything now and then: a PLC restarted behind a live TCP link has zeros


def changed_runs(old: list[int] | None, new: list[int], gap: int = 8) -> list[tuple[int, list[int]]]:
    """The station's words that differ between two snapshots, as (address, values) writes of at
    most 123 words (changes fewer than ``gap`` words apart share a write), highest address first:
    the history entry and the counters land before the ``result_seq`` that announces them.
    ``old`` None: everything."""
    runs = []
    for start, end in STATION_RANGES:
        run_start = last = None
        for address in range(start, end):
            if old is not None and old[address] == new[address]:
                continue
            if run_start is not None and (address - last > gap or address - run_start >= MAX_WRITE_WORDS):
                runs.append((run_start, new[run_start : last + 1]))
                run_start = None
            if run_start is None:
                run_start = address
            last = address
        if run_start is not None:
            runs.append((run_start, new[run_start : last + 1]))
    return runs[::-1]


class StationClient:
    """Keeps the PLC's copy of the station's registers current (``base_address`` + address).

    ``on_written(seqs)``: the results the PLC now holds (delivery accounting)."""

    def __init__(
        self,
        image: RegisterImage,
        link: Link,
        unit_id: int = 1,
        base_address: int = 0,
        poll_ms: float = 20,
        timeout_ms: float = 500,
        on_written: Callable[[set[int]], None] | None = None,
    ) -> None:
        self.image = image
        self.link = link
        self.unit_id = unit_id
        self.base = base_address
        self.poll_s = poll_ms / 1000
        self.timeout_s = timeout_ms / 1000
        self.on_written = on_written
        self.connected = False
        self.connects = 0
        self._wake: asyncio.Event | None = None  # the image changed
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False

    def notify(self) -> None:
        """The image changed (any thread): write it soon."""
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake, self._stop = asyncio.Event(), asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="modbus-client")

    async def stop(self) -> None:
        """Finish the cycle in progress (a request cut off would leave its answer unclaimed), then stop."""
        if self._task is not None:
            self._stopping = True
            self._stop.set()
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self.timeout_s * 2 + self.poll_s)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None

    async def _run(self) -> None:
        backoff = BACKOFF_MIN_S
        while not self._stopping:
            client = self.link.client(self.timeout_s)
            try:
                if not await client.connect():
                    raise ConnectionError(f"no answer from {self.link}")
                self.connected, backoff = True, BACKOFF_MIN_S
                self.connects += 1
                log.info("writing the station's registers into the PLC at %s", self.link)
                await self._serve(client)
            except (ModbusException, ConnectionError, TimeoutError, OSError) as exc:
                if self.connected:
                    log.error("lost the PLC at %s: %s; reconnecting", self.link, exc)
                elif backoff == BACKOFF_MIN_S:  # the first failed try of an outage; the rest are retries
                    log.warning(
                        "PLC at %s not reachable: %s; retrying every %g-%g s", self.link, exc, backoff, BACKOFF_MAX_S
                    )
                self.connected = False
                client.close()
                with contextlib.suppress(TimeoutError):  # the backoff, cut short only by stop()
                    await asyncio.wait_for(self._stop.wait(), backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
            else:
                client.close()

    async def _serve(self, client) -> None:
        written: list[int] | None = None
        refreshed = time.monotonic()
        while not self._stopping:
            self._wake.clear()
            words = self.image.snapshot()
            if time.monotonic() - refreshed > REFRESH_S:
                written, refreshed = None, time.monotonic()
            for address, values in changed_runs(written, words):
                self._check(await client.write_registers(self.base + address, values, device_id=self.unit_id))
            written = words
            if self.on_written is not None:
                self.on_written(seqs_in(words, 0, REGISTER_COUNT))
            reply = await client.read_holding_registers(
                self.base + CONTROL_BASE, count=CONTROL_END - CONTROL_BASE, device_id=self.unit_id
            )
            self._check(reply)
            self.image.write_control(CONTROL_BASE, reply.registers)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)

    def _check(self, reply) -> None:
        if reply.isError():
            raise ModbusException(f"the PLC refused the request: {reply}")
