"""Line statistics: counts by verdict and reason, throughput, latency percentiles per stage.

Memory is bounded for runs of any length: latencies go into log-spaced histograms (2 %
resolution), not lists.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np

from .pipeline import STAGES, Verdict


class LatencyHistogram:
    """Counts of durations in buckets growing by 2 %, from 1 µs to about 30 minutes."""

    _LOWEST_MS = 0.001
    _GROWTH = 1.02
    _BUCKETS = int(math.log(2e9) / math.log(1.02)) + 2

    def __init__(self) -> None:
        self.counts = np.zeros(self._BUCKETS, np.int64)
        self.total = 0

    def add(self, ms: float) -> None:
        index = 0 if ms <= self._LOWEST_MS else int(math.log(ms / self._LOWEST_MS) / math.log(self._GROWTH)) + 1
        self.counts[min(index, self._BUCKETS - 1)] += 1
        self.total += 1

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile (0–100) in ms, to within 2 %; None when empty."""
        if not self.total:
            return None
        rank = max(1, math.ceil(self.total * q / 100))
        index = int(np.searchsorted(np.cumsum(self.counts), rank))
        return self._LOWEST_MS * self._GROWTH ** max(0, index - 0.5)


@dataclass(frozen=True)
class Snapshot:
    items: int
    passed: int
    rejected: int
    by_reason: dict[str, int]
    items_per_s: float  # over the last 10 s
    elapsed_s: float
    latency_ms: dict[str, dict[str, float | None]]  # stage → {"p50", "p95", "p99"}
    truth_checked: int
    truth_agreed: int
    truth_mismatches: list[str]  # the first few, "item 17: expected …, got …"
    grade_count: int = 0  # graded items in the rolling window (at most LineStats.GRADE_WINDOW)
    grade_mean: float | None = None  # mean overall grade of those items
    grade_lowest: float | None = None  # their lowest overall grade
    grade_weakest: str | None = None  # the parameter most often lowest among them
    grade_warning: str | None = None  # print quality drifting towards the minimum


class LineStats:
    """Thread-safe accumulator fed with every verdict."""

    _RATE_WINDOW_S = 10.0
    GRADE_WINDOW = 100

    def __init__(self, min_grade: float = 1.5, warn_margin: float = 0.5) -> None:
        self._min_grade = min_grade
        self._warn_margin = warn_margin
        self._grades: deque[tuple[float, str]] = deque(maxlen=self.GRADE_WINDOW)
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._items = self._passed = 0
        self._by_reason: Counter[str] = Counter()
        self._latency = {stage: LatencyHistogram() for stage in STAGES}
        self._recent: deque[float] = deque()
        self._truth_checked = self._truth_agreed = 0
        self._mismatches: list[str] = []

    def record(self, verdict: Verdict) -> None:
        with self._lock:
            self._items += 1
            self._passed += verdict.passed
            self._by_reason.update(verdict.reasons)
            for stage, ms in verdict.timings_ms.items():
                self._latency[stage].add(ms)
            self._recent.append(verdict.t_decided)
            grade = verdict.grade
            if grade is not None and grade.overall is not None:
                weakest = min(grade.parameters, key=lambda name: grade.parameters[name].grade)
                self._grades.append((grade.overall, weakest))
            truth = verdict.frame.truth
            if truth is not None:
                self._truth_checked += 1
                if set(truth.expected_reasons) == set(verdict.reasons):
                    self._truth_agreed += 1
                elif len(self._mismatches) < 20:
                    self._mismatches.append(
                        f"item {verdict.item_id} ({truth.defect}): expected {list(truth.expected_reasons) or 'pass'}, "
                        f"got {list(verdict.reasons) or 'pass'}"
                    )

    def snapshot(self) -> Snapshot:
        now = time.monotonic()
        with self._lock:
            while self._recent and self._recent[0] < now - self._RATE_WINDOW_S:
                self._recent.popleft()
            elapsed = now - self._started
            window = min(self._RATE_WINDOW_S, elapsed) or 1.0
            return Snapshot(
                items=self._items,
                passed=self._passed,
                rejected=self._items - self._passed,
                by_reason=dict(self._by_reason.most_common()),
                items_per_s=len(self._recent) / window,
                elapsed_s=elapsed,
                latency_ms={
                    stage: {f"p{q}": h.percentile(q) for q in (50, 95, 99)} for stage, h in self._latency.items()
                },
                truth_checked=self._truth_checked,
                truth_agreed=self._truth_agreed,
                truth_mismatches=list(self._mismatches),
                **self._grade_trend(),
            )

    def _grade_trend(self) -> dict:
        """Rolling print quality: warns before rejects start, when the mean of the recent
        grades comes within ``warn_margin`` of the minimum (or below it)."""
        if not self._grades:
            return {}
        overall = [g for g, _ in self._grades]
        mean = sum(overall) / len(overall)
        weakest = Counter(name for _, name in self._grades).most_common(1)[0][0]
        warning = None
        if mean < self._min_grade + self._warn_margin:
            warning = (
                f"print quality falling: mean grade {mean:.1f} over the last {len(overall)} items"
                f" (minimum {self._min_grade:g}); weakest parameter {weakest}"
            )
        return {
            "grade_count": len(overall),
            "grade_mean": round(mean, 2),
            "grade_lowest": min(overall),
            "grade_weakest": weakest,
            "grade_warning": warning,
        }
