"""systemd integration without a dependency: readiness, status and watchdog pings (sd_notify(3)).

Run by systemd with ``Type=notify``, the process finds the service manager's datagram socket in
``$NOTIFY_SOCKET`` (a path, or an abstract socket name written with a leading ``@``), and with
``WatchdogSec=`` the timeout in ``$WATCHDOG_USEC``. Outside systemd every function here does
nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from plc.registers import RegisterImage

log = logging.getLogger(__name__)

# A line with work to do decides an item at least this often; longer without one is a hang.
LINE_STALL_S = 60.0


def notify(message: str) -> bool:
    """Send ``message`` (``VARIABLE=value`` lines) to the service manager. False when not run by
    systemd or when the message could not be sent."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if address.startswith("@"):
        address = "\0" + address[1:]  # Linux abstract socket namespace
    elif not address.startswith("/"):
        return False  # not under systemd (or a socket kind systemd 252 does not use)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message.encode(), address)
    except OSError as exc:
        log.warning("cannot notify systemd (%s): %s", message.split("=", 1)[0], exc)
        return False
    return True


def ready() -> bool:
    """The line is up: systemd considers the start finished and arms the watchdog."""
    return notify("READY=1")


def stopping() -> bool:
    """The line is draining and will exit."""
    return notify("STOPPING=1")


def status(text: str) -> bool:
    """One line for ``systemctl status``."""
    return notify("STATUS=" + " ".join(text.splitlines()))


def watchdog_interval() -> float | None:
    """How often to ping the watchdog, seconds: half its timeout, as sd_watchdog_enabled(3)
    advises. None without a watchdog, or when it watches another process."""
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        timeout_us = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return timeout_us / 2e6 if timeout_us > 0 else None


class Watchdog:
    """Pings ``WATCHDOG=1`` every half watchdog timeout, from a thread of its own, while
    ``alive()`` says the line works. When it says otherwise the pings stop and systemd kills and
    restarts the service once the timeout passes; they resume if the line recovers before."""

    def __init__(self, alive: Callable[[], bool]) -> None:
        self.alive = alive
        self.interval = watchdog_interval()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._ping, name="systemd-watchdog", daemon=True)

    def start(self) -> None:
        if self.interval is not None:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _ping(self) -> None:
        was_alive = True
        while not self._stop.wait(self.interval):
            try:
                alive = self.alive()
            except Exception:  # a broken check must not look like a healthy line
                log.exception("the watchdog's liveness check failed")
                alive = False
            if alive:
                notify("WATCHDOG=1")
                if not was_alive:
                    log.warning("the line makes progress again: watchdog pings resumed")
            elif was_alive:
                log.error("the line makes no progress: watchdog pings stop, systemd will restart the service")
            was_alive = alive


class Progress:
    """Liveness from a counter, checked on each call: alive while the counter changed, or
    ``idle()`` was true, at some call within the last ``stall_s`` seconds."""

    def __init__(
        self,
        count: Callable[[], int],
        idle: Callable[[], bool],
        stall_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._count, self._idle, self._stall_s, self._clock = count, idle, stall_s, clock
        self._last_count = count()
        self._last_ok = clock()

    def __call__(self) -> bool:
        now, count = self._clock(), self._count()
        if count != self._last_count or self._idle():
            self._last_count, self._last_ok = count, now
        return now - self._last_ok <= self._stall_s


def line_liveness(
    pipeline: threading.Thread,
    registers: RegisterImage,
    trigger: str,
    stall_s: float = LINE_STALL_S,
    clock: Callable[[], float] = time.monotonic,
) -> Callable[[], bool]:
    """The running line's liveness for the watchdog: the pipeline thread runs, and an item was
    decided within the last ``stall_s`` seconds or there was nothing to decide. Items decided are
    the station's own counter (register ``count_items``, as the PLC sees it). Nothing to decide
    depends on ``trigger`` (``[source] trigger``): a timer always has the next item coming; with
    PLC triggers a stopped belt sends none, and the line is idle, not hung, while every trigger
    taken (``count_triggers``) has its result; other triggers (photo-eye, camera, I/O board) count
    no waiting triggers here, so only a dead pipeline thread or a stuck process shows."""

    def decided() -> int:
        return registers.counts()["count_items"]

    def nothing_to_decide() -> bool:
        if trigger == "timer":
            return False
        if trigger == "plc":
            counts = registers.counts()
            return counts["count_triggers"] <= counts["count_items"]
        return True

    progress = Progress(decided, nothing_to_decide, stall_s, clock)
    return lambda: pipeline.is_alive() and progress()
