"""Where a Modbus peer is: TCP host and port, or an RTU serial line. The one place that builds
pymodbus servers and clients, whose constructors change between minor releases
(../shared/reference/plc-and-mes.md); pymodbus is pinned to one minor release in pyproject.toml.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Literal

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import SimDevice

# pymodbus logs every failed connect and retry; plc/ reports connection state itself, once per change.
logging.getLogger("pymodbus").setLevel(logging.ERROR)


@dataclass(frozen=True, slots=True)
class Link:
    transport: Literal["tcp", "rtu"] = "tcp"
    host: str = "127.0.0.1"
    port: int = 502
    serial_port: str = ""  # rtu: /dev/ttyUSB0, /dev/ttyAMA0 …
    baudrate: int = 19200
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 1

    def __str__(self) -> str:
        if self.transport == "tcp":
            return f"Modbus TCP {self.host}:{self.port}"
        return f"Modbus RTU {self.serial_port} {self.baudrate} 8{self.parity}{self.stopbits}"

    def server(self, device: SimDevice) -> ModbusTcpServer | ModbusSerialServer:
        if self.transport == "tcp":
            return ModbusTcpServer(device, address=(self.host, self.port))
        # pymodbus reports any failure to open the port as "could not start listen": say why first
        if not os.path.exists(self.serial_port):
            raise OSError(f"{self.serial_port}: no such serial device (adapter plugged in? see ls /dev/serial/by-id/)")
        if not os.access(self.serial_port, os.R_OK | os.W_OK):
            raise OSError(f"{self.serial_port}: no permission to open it (add the user to the group dialout)")
        return ModbusSerialServer(
            device, port=self.serial_port, baudrate=self.baudrate, parity=self.parity, stopbits=self.stopbits
        )

    def client(self, timeout_s: float) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        """A client that neither retries nor reconnects by itself (reconnect_delay 0): the
        caller owns reconnecting, with its own backoff, so a lost peer is seen at once."""
        if self.transport == "tcp":
            return AsyncModbusTcpClient(self.host, port=self.port, timeout=timeout_s, retries=0, reconnect_delay=0)
        return AsyncModbusSerialClient(
            self.serial_port,
            baudrate=self.baudrate,
            parity=self.parity,
            stopbits=self.stopbits,
            timeout=timeout_s,
            retries=0,
            reconnect_delay=0,
        )
