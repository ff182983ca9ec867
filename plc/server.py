"""Modbus TCP server mode: the PLC polls the station's registers.

pymodbus changes its API between minor releases (../shared/reference/plc-and-mes.md), so it is
used only here and in plc/simulator.py, pinned to one minor release in pyproject.toml.
"""

from __future__ import annotations

import logging

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from .registers import REGISTER_COUNT, RegisterImage

log = logging.getLogger(__name__)


class StationServer:
    """Serves a :class:`RegisterImage` over Modbus TCP on the running loop; the PLC may write the
    control block only."""

    def __init__(self, image: RegisterImage, host: str, port: int) -> None:
        self.image = image
        self.host = host
        self.port = port
        self._server: ModbusTcpServer | None = None

    async def start(self) -> None:
        device = SimDevice(
            id=0,  # answer every unit id: PLCs differ in what they send
            simdata=SimData(0, count=REGISTER_COUNT, datatype=DataType.REGISTERS),
            action=self._on_request,
        )
        self._server = ModbusTcpServer(device, address=(self.host, self.port))
        try:
            await self._server.serve_forever(background=True)
        except RuntimeError as exc:  # pymodbus reports a failed bind only this way
            raise OSError(f"cannot listen for Modbus TCP on {self.host}:{self.port}: {exc}") from None
        log.info("Modbus TCP server listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
            self._server = None

    async def _on_request(self, function_code, start_address, address, count, registers, values):
        if values is not None:  # a write: only the PLC's control block takes one
            if not self.image.write_control(address, list(values)):
                return ExcCodes.ILLEGAL_ADDRESS
            return None
        # Serve one consistent snapshot: a result is never seen half-written.
        registers[:] = self.image.snapshot()
        return None
