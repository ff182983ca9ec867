"""A PLC simulator that polls the station like a line PLC would and counts what it sees.

It reads the whole register map in one request per poll, takes every result it has not seen yet
from the result history and fires a (simulated) reject for each result with the reject flag. The
demo and the end-to-end tests use its counts to prove that every decision reached the PLC.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from .registers import ADDRESS, HISTORY_LENGTH, REGISTER_COUNT, Control, Result, decode_history

log = logging.getLogger(__name__)


@dataclass
class PlcCounts:
    results: int = 0
    rejects: int = 0
    missed: int = 0  # results that scrolled out of the history between two polls
    by_code: Counter = field(default_factory=Counter)
    heartbeat_timeouts: int = 0
    connected: bool = False
    seen: list[Result] = field(default_factory=list)  # kept only when record=True


class PlcSimulator:
    """Polls a station at ``host:port`` every ``poll_ms`` until :meth:`stop`."""

    def __init__(
        self,
        host: str,
        port: int,
        poll_ms: float = 20,
        heartbeat_timeout_s: float = 3.0,
        record: bool = False,
        send_heartbeat: bool = True,
    ) -> None:
        self.host, self.port = host, port
        self.poll_s = poll_ms / 1000
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.record = record
        self.send_heartbeat = send_heartbeat
        self.counts = PlcCounts()
        self._last_seq = 0
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="plc-simulator")

    async def stop(self) -> None:
        """Take a last poll so results published just before stopping are counted, then stop."""
        if self._task is None:
            return
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None
        client = AsyncModbusTcpClient(self.host, port=self.port, timeout=1, retries=0)
        try:
            if await client.connect():
                await self._poll(client)
        finally:
            client.close()

    async def _run(self) -> None:
        client = AsyncModbusTcpClient(self.host, port=self.port, timeout=1, retries=0)
        heartbeat, heartbeat_seen = None, time.monotonic()
        own_beat, own_beat_at = 0, 0.0
        try:
            while True:
                if not client.connected:
                    self.counts.connected = await client.connect()
                    if not self.counts.connected:
                        await asyncio.sleep(0.5)
                        continue
                try:
                    registers = await self._poll(client)
                except (TimeoutError, ModbusException, ConnectionError) as exc:
                    log.warning("PLC simulator lost the station: %s", exc)
                    self.counts.connected = False
                    client.close()
                    continue
                now = time.monotonic()
                if self.send_heartbeat and now - own_beat_at >= 0.5:  # the PLC's side of the heartbeat
                    own_beat, own_beat_at = own_beat ^ Control.HEARTBEAT, now
                    await client.write_register(ADDRESS["plc_control"], int(own_beat))
                if registers[ADDRESS["heartbeat"]] != heartbeat:
                    heartbeat, heartbeat_seen = registers[ADDRESS["heartbeat"]], now
                elif now - heartbeat_seen > self.heartbeat_timeout_s:
                    self.counts.heartbeat_timeouts += 1
                    heartbeat_seen = now
                await asyncio.sleep(self.poll_s)
        finally:
            client.close()

    async def _poll(self, client: AsyncModbusTcpClient) -> list[int]:
        reply = await client.read_holding_registers(0, count=REGISTER_COUNT)
        if reply.isError():
            raise ModbusException(f"station answered {reply}")
        registers = reply.registers
        newest = registers[ADDRESS["result_seq"]]
        if newest == self._last_seq:
            return registers
        behind = (newest - self._last_seq) % 65535
        if behind > HISTORY_LENGTH:
            self.counts.missed += behind - HISTORY_LENGTH
        for result in decode_history(registers):
            if (newest - result.seq) % 65535 < behind:
                self._take(result)
        self._last_seq = newest
        return registers

    def _take(self, result: Result) -> None:
        self.counts.results += 1
        self.counts.by_code[result.code] += 1
        if result.reject:
            self.counts.rejects += 1
        if self.record:
            self.counts.seen.append(result)
