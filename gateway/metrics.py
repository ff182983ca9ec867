"""Prometheus metrics of a running line (``/metrics`` on the web server), for plant monitoring.

Collected at scrape time from the gateway's live status, so there is nothing to keep in step:
counters are the run's totals since the gateway started (a restart resets them, which
Prometheus' rate() handles), gauges the current state.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily


class LineCollector:
    """Turns ``status()`` (see :meth:`gateway.app.Gateway.live_status`) into metric families."""

    def __init__(self, status: Callable[[], dict], drift: Callable[[], list] | None = None) -> None:
        self._status = status
        self._drift = drift

    def describe(self):
        return []  # collected on demand: no registration-time call into a half-started line

    def collect(self):
        status = self._status()
        s = status["stats"]
        info = InfoMetricFamily("udigate_line", "The line this gateway inspects")
        info.add_metric([], {"site": status["site"], "line": status["line"], "run_id": status["run_id"]})
        yield info
        items = CounterMetricFamily("udigate_items", "Items decided since start", labels=["verdict"])
        items.add_metric(["pass"], s["passed"])
        items.add_metric(["reject"], s["rejected"])
        yield items
        reasons = CounterMetricFamily("udigate_reject_reasons", "Reject reasons since start", labels=["reason"])
        for reason, count in s["by_reason"].items():
            reasons.add_metric([reason], count)
        yield reasons
        yield GaugeMetricFamily("udigate_items_per_second", "Items decided per second (last 10 s)", s["items_per_s"])
        latency = GaugeMetricFamily(
            "udigate_latency_seconds", "Trigger-to-decision latency since start", labels=["quantile"]
        )
        for quantile, key in (("0.5", "latency_p50_ms"), ("0.95", "latency_p95_ms"), ("0.99", "latency_p99_ms")):
            if s[key] is not None:
                latency.add_metric([quantile], s[key] / 1000)
        yield latency
        if s["grade_mean"] is not None:
            yield GaugeMetricFamily(
                "udigate_grade_mean", "Mean overall grade of the last graded items", s["grade_mean"]
            )
            yield GaugeMetricFamily("udigate_grade_lowest", "Lowest overall grade among them", s["grade_lowest"])
        alarms = GaugeMetricFamily("udigate_alarm", "1 while the alarm is raised", labels=["alarm"])
        for name, active in status["alarms"].items():
            alarms.add_metric([name], 1 if active else 0)
        yield alarms
        if self._drift is not None:
            drift = GaugeMetricFamily(
                "udigate_grade_drift_minutes",
                "Minutes until a drifting parameter reaches its minimum",
                labels=["parameter"],
            )
            for warning in self._drift():
                drift.add_metric([warning.parameter], warning.minutes_to_minimum or 0.0)
            yield drift
        mqtt = status.get("mqtt")
        if mqtt is not None:
            yield GaugeMetricFamily("udigate_mqtt_connected", "1 while connected to the broker", int(mqtt["connected"]))
            yield GaugeMetricFamily("udigate_mqtt_outbox_records", "Records waiting for the broker", mqtt["pending"])
            yield CounterMetricFamily(
                "udigate_mqtt_acknowledged", "Records the broker acknowledged", mqtt["acknowledged"]
            )
            yield CounterMetricFamily("udigate_mqtt_refused", "Records the full outbox could not keep", mqtt["refused"])
        plc = status.get("plc")
        if plc is not None:
            delivery = CounterMetricFamily("udigate_plc_results", "Results for the PLC", labels=["delivery"])
            delivery.add_metric(["in_time"], plc["delivered"])
            delivery.add_metric(["late_or_lost"], plc["undelivered"])
            yield delivery
        store = status.get("store")
        if store is not None:
            yield GaugeMetricFamily("udigate_store_items", "Items in the review store", store["items"])
            yield GaugeMetricFamily("udigate_store_bytes", "Bytes of pictures and records in the store", store["bytes"])
            yield GaugeMetricFamily(
                "udigate_store_quota_bytes", "The store's quota (rejects.max_disk_mb)", store["quota_bytes"]
            )
            yield CounterMetricFamily("udigate_store_deleted", "Items deleted by retention", store["deleted"])
            yield CounterMetricFamily("udigate_store_failed", "Items that could not be stored", store["failed"])
            yield CounterMetricFamily(
                "udigate_store_pictures_skipped",
                "Items stored without pictures because the writer was picture_backlog items behind",
                store["pictures_skipped"],
            )


def metrics_text(status: Callable[[], dict], drift: Callable[[], list] | None = None) -> Callable[[], bytes]:
    """A function returning the Prometheus text exposition of the line (and the process)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LineCollector(status, drift))
    ProcessCollector(registry=registry)  # memory, CPU time, open files: what plant IT watches first
    return lambda: generate_latest(registry)
