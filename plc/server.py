"""Server mode: the PLC polls the station's registers over Modbus TCP or RTU."""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable

from pymodbus.constants import ExcCodes
from pymodbus.simulator import DataType, SimData, SimDevice

from .link import Link
from .registers import REGISTER_COUNT, RegisterImage, seqs_in

log = logging.getLogger(__name__)


def _bind_problem(link: Link) -> str | None:
    """Why the system refuses the TCP address, with what to do (pymodbus only says that it failed)."""
    if link.transport != "tcp":
        return None
    try:
        socket.create_server((link.host, link.port)).close()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return (
                f"{exc.strerror}: another program serves port {link.port} (another udigate? `ss -ltnp | grep"
                f" :{link.port}`), or choose another plc.modbus.port"
            )
        if exc.errno == errno.EACCES:
            return f"{exc.strerror}: ports below 1024 need CAP_NET_BIND_SERVICE (docs/deployment.md)"
        return exc.strerror
    return None


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
            raise OSError(f"cannot serve {self.link}: {_bind_problem(self.link) or exc}") from None
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
