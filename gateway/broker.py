"""An embedded MQTT broker for the demo and for lines without one: mosquitto when installed,
otherwise amqtt running in-process on the I/O loop."""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on ``host:port`` (connections lingering in TIME_WAIT don't count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float, alive=lambda: True) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def die_with_parent(command: list[str]) -> list[str]:
    """``command`` wrapped so that it gets SIGTERM when the process that started it dies, even by
    SIGKILL (util-linux setpriv; the signal follows the starting thread, so start children from
    a thread that lives as long as the gateway)."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", *command] if setpriv else command


class Mosquitto:
    """A private mosquitto process listening on ``host:port``. ``listener_config`` adds lines to
    its listener (TLS, authentication); with ``persistence`` it keeps sessions and queued
    messages across stop/start."""

    kind = "mosquitto"

    def __init__(self, host: str, port: int, listener_config: str = "", persistence: bool = False) -> None:
        self.host, self.port = host, port
        self.listener_config = listener_config
        self.persistence = persistence
        self._folder = tempfile.TemporaryDirectory(prefix="udigate-mosquitto-")
        self.log_path = Path(self._folder.name) / "mosquitto.log"
        self._process: subprocess.Popen | None = None

    def start(self) -> None:
        config = Path(self._folder.name) / "mosquitto.conf"
        # Run it as our own user: started as root, mosquitto would switch to its "mosquitto"
        # user, and that switch cancels the parent-death signal that stops it if we are killed.
        listener = self.listener_config or "allow_anonymous true"
        persistence = f"persistence true\npersistence_location {self._folder.name}/" if self.persistence else ""
        config.write_text(
            f"user {pwd.getpwuid(os.geteuid()).pw_name}\n{persistence or 'persistence false'}\n"
            f"log_dest file {self.log_path}\nlog_type error\nlog_type warning\n"
            f"listener {self.port} {self.host}\n{listener}\n"
        )
        with open(self.log_path, "ab") as output:
            # Its own session: a Ctrl-C in the terminal reaches the gateway, which then flushes
            # its last messages through the broker before stopping it.
            self._process = subprocess.Popen(
                die_with_parent([shutil.which("mosquitto") or "mosquitto", "-c", str(config)]),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                start_new_session=True,
            )
        if not wait_for_port(self.host, self.port, 10, alive=lambda: self._process.poll() is None):
            self.stop()
            raise RuntimeError(
                f"mosquitto did not start on {self.host}:{self.port}: {self.log_path.read_text()[-500:]}"
            )

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def close(self) -> None:
        self.stop()
        self._folder.cleanup()


class InProcessBroker:
    """amqtt on the given asyncio loop (for machines without mosquitto)."""

    kind = "amqtt"

    def __init__(self, host: str, port: int, loop: asyncio.AbstractEventLoop) -> None:
        self.host, self.port, self.loop = host, port, loop
        self._broker = None

    def start(self) -> None:
        from amqtt.broker import Broker

        async def start():
            self._broker = Broker(
                {
                    "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
                    "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
                }
            )
            await self._broker.start()

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)

    def close(self) -> None:
        """Stop the broker; clients still connected (a subscriber left open) are cut off after
        a few seconds rather than holding the gateway's shutdown."""
        if self._broker is not None:
            done = asyncio.run_coroutine_threadsafe(asyncio.wait_for(self._broker.shutdown(), 5), self.loop)
            try:
                done.result(10)
            except TimeoutError:
                log.warning("the in-process MQTT broker did not stop cleanly within 5 s")
            self._broker = None


def start_embedded_broker(preferred_port: int, loop: asyncio.AbstractEventLoop, host: str = "127.0.0.1"):
    """Start a broker on ``preferred_port`` (or a free port when it is taken); returns it."""
    port = preferred_port if port_is_free(host, preferred_port) else free_port(host)
    if port != preferred_port:
        log.warning("MQTT port %d is in use; the embedded broker listens on %d instead", preferred_port, port)
    broker = Mosquitto(host, port) if shutil.which("mosquitto") else InProcessBroker(host, port, loop)
    broker.start()
    log.info("embedded MQTT broker (%s) listening on %s:%d", broker.kind, host, port)
    return broker
