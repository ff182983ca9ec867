"""Photo-eye triggers from a GPIO line through libgpiod's character device (``/dev/gpiochip*``),
with the kernel's debounce and edge timestamps.

Uses the libgpiod v2 Python bindings (``pip install gpiod``, imported only here). The edge
timestamp comes from the kernel (CLOCK_MONOTONIC, taken in the interrupt), so a busy gateway
does not shift the capture: the trigger time is when the pack broke the beam, not when the event
was read.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from ..config import GpioSection
from . import Trigger


class GpioError(RuntimeError):
    """The GPIO line cannot be used, with what to check."""


class GpioTriggers:
    def __init__(self, settings: GpioSection) -> None:
        try:
            import gpiod
            from gpiod.line import Edge
        except ImportError:
            raise GpioError(
                'source.trigger = "gpio" needs the libgpiod v2 Python bindings: `pip install gpiod` in udigate\'s'
                " virtual environment"
            ) from None
        self.settings = settings
        line = gpiod.LineSettings(
            edge_detection=Edge.RISING,  # the active edge: with active_low, the line falling
            active_low=settings.active_low,
            debounce_period=timedelta(milliseconds=settings.debounce_ms),
        )
        try:
            self._request = gpiod.request_lines(settings.chip, consumer="udigate", config={settings.line: line})
        except OSError as exc:
            raise GpioError(
                f"source.gpio: cannot use line {settings.line} of {settings.chip}: {exc.strerror or exc}"
                " (the user needs the gpio group; is the line used by another program? `gpioinfo`)"
            ) from None

    def triggers(self, stop: threading.Event) -> Iterator[Trigger]:
        """One trigger per active edge until ``stop``, timed by the kernel's edge timestamp."""
        item_ids = itertools.count(1)
        try:
            while not stop.is_set():
                if not self._request.wait_edge_events(timedelta(milliseconds=50)):
                    continue
                for event in self._request.read_edge_events():
                    edge_t = event.timestamp_ns / 1e9  # CLOCK_MONOTONIC, as time.monotonic()
                    age = timedelta(seconds=time.monotonic() - edge_t)
                    yield Trigger(next(item_ids), edge_t, datetime.now(UTC) - age)
        finally:
            self._request.release()
