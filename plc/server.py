"""Server mode: the PLC polls the station's registers over Modbus TCP or RTU."""

from __future__ import annotations

import logging
from collections.abc import Callable

from pymodbus.constants import ExcCodes
from pymodbus.simulator import DataType, SimData, SimDevice

from .link import Link
from .registers import REGISTER_COUNT, RegisterImage, seqs_in

log = logging.getLogger(__name__)


class StationServer:
    """Serves a :class:`RegisterImage` on the running loop; the PLC may write its block only.

    ``on_read(seqs)`` is called with the results each read gave the PLC (delivery accounting)."""

    def __init__(self, image: RegisterImage, link: Link, on_read: Callable[[set[int]], None] | None = None) -> None:
        self.image = image
        self.link = link
        self.on_read = on_read
        self._server = None

    async def start(self) -> None:
        device = SimDevice(
            id=0,  # answer every unit id: PLCs differ in what they send
            simdata=SimData(0, count=REGISTER_COUNT, datatype=DataType.REGISTERS),
            action=self._on_request,
        )
        try:
            self._server = self.link.server(device)
            await self._server.serve_forever(background=True)
        except (RuntimeError, OSError) as exc:  # pymodbus reports a failed bind as RuntimeError
            raise OSError(f"cannot serve {self.link}: {exc}") from None
        log.info("serving the station's registers on %s", self.link)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
            self._server = None

    async def _on_request(self, function_code, start_address, address, count, registers, values):
        if values is not None:  # a write: only the PLC's block takes one
            if not self.image.write_control(address, list(values)):
                return ExcCodes.ILLEGAL_ADDRESS
            return None
        # Serve one consistent snapshot: a result is never seen half-written.
        registers[:] = self.image.snapshot()
        if self.on_read is not None:
            self.on_read(seqs_in(registers, address, count))
        return None
