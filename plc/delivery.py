"""Accounts for every result until the PLC has it.

A result is *delivered* when the PLC reads its history entry, or the latest-result registers while
it is the latest (server mode), or when a write that put it into the PLC succeeded (client mode):
a result that scrolled out of the history before the PLC read it is not delivered. On a line (a
realtime source) a result the PLC does not have within the item's deadline, counted from its
trigger, is *undelivered*: the PLC's ejector has passed it, so the station reports it (timeout
counter, log, MQTT) instead of letting it vanish. The time from the decision to the delivery is
kept for the latency benchmark.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass

from .registers import Result, ResultCode


@dataclass(frozen=True, slots=True)
class Undelivered:
    """A result the PLC did not get in time."""

    result: Result
    station_item_id: int  # the pipeline's item id (result.item_id is the PLC's when it triggered)
    detail: str


@dataclass(frozen=True, slots=True)
class _Pending:
    result: Result
    station_item_id: int
    t_trigger: float
    t_decided: float


class DeliveryLog:
    """Thread-safe: results are published from the pipeline's thread, delivered on the I/O loop.

    ``deadline_s`` None: no deadline (replay); results are still tracked for latency.
    """

    def __init__(self, deadline_s: float | None, latency_samples: int = 100_000) -> None:
        self.deadline_s = deadline_s
        self._pending: OrderedDict[int, _Pending] = OrderedDict()  # by sequence number, oldest first
        self._lock = threading.Lock()
        self.latencies_ms: deque[float] = deque(maxlen=latency_samples)
        self.delivered = 0
        self.undelivered = 0

    def published(self, result: Result, station_item_id: int, t_trigger: float, t_decided: float) -> None:
        with self._lock:
            self._pending[result.seq] = _Pending(result, station_item_id, t_trigger, t_decided)

    def taken(self, seqs: Iterable[int], now: float) -> list[Undelivered]:
        """The PLC has the results with these sequence numbers; returns those it got too late."""
        late = []
        with self._lock:
            for seq in seqs:
                entry = self._pending.pop(seq, None)
                if entry is None:
                    continue
                self.latencies_ms.append((now - entry.t_decided) * 1000)
                overdue = self._overdue_ms(entry, now)
                if overdue > 0 and entry.result.code != ResultCode.TIMEOUT:
                    late.append(self._undelivered(entry, f"taken by the PLC {overdue:.0f} ms after the deadline"))
                else:
                    self.delivered += 1
        return late

    def expire(self, now: float) -> list[Undelivered]:
        """Results whose deadline passed without delivery (none without a deadline)."""
        gone = []
        with self._lock:
            while self._pending and self._overdue_ms(next(iter(self._pending.values())), now) > 0:
                _, entry = self._pending.popitem(last=False)
                if entry.result.code != ResultCode.TIMEOUT:  # a late decision is reported as such already
                    ms = self.deadline_s * 1000
                    gone.append(self._undelivered(entry, f"the PLC had not taken it {ms:g} ms after the trigger"))
        return gone

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def discard(self) -> None:
        """Forget what is pending (end of a replay, where there is no deadline to miss)."""
        with self._lock:
            self._pending.clear()

    def _overdue_ms(self, entry: _Pending, now: float) -> float:
        if self.deadline_s is None:
            return 0.0
        return (now - entry.t_trigger - self.deadline_s) * 1000

    def _undelivered(self, entry: _Pending, detail: str) -> Undelivered:
        self.undelivered += 1
        return Undelivered(entry.result, entry.station_item_id, detail)
