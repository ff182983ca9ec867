"""One asyncio loop in a background thread for the gateway's network I/O (Modbus, the PLC
simulator, the in-process broker). Nothing on the frame path waits on it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any


class IoLoop:
    def __init__(self, name: str = "io-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float | None = 30) -> Any:
        """Run ``coroutine`` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Future:
        """Start ``coroutine`` on the loop without waiting (cancel the returned future to stop it)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return

        async def cancel_remaining():
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_remaining(), timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()
