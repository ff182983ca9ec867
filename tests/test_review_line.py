"""The review store on a running line: retention under load, Prometheus metrics, the drift warning
from real stored grades."""

import json
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families

from gateway.app import Gateway
from gateway.config import RejectLogSection
from gateway.rejects import RejectLog
from gateway.review import ReviewIndex
from gateway.sources.simulator import DEFECTS
from gateway.web.server import WebServer

from .conftest import line_config
from .test_rejects import grade, record

QUOTA_MB = 8


def store_bytes(data_dir):
    return sum(f.stat().st_size for f in (data_dir / "rejects").rglob("*") if f.is_file())


def test_retention_keeps_a_long_run_under_the_quota(tmp_path):
    config = line_config(
        tmp_path,
        **{
            "mqtt.enabled": False,
            "source.trigger": "timer",
            "plc.modbus.enabled": False,
            "source.simulator.rate_ppm": 0,  # as fast as inspected
            "source.simulator.items": 400,
            "source.simulator.seed": 3,
            "source.simulator.defects": {d: 0.05 for d in DEFECTS},
            "rejects.max_disk_mb": QUOTA_MB,
            "rejects.keep_passes_every": 5,
            "rejects.min_free_mb": 0,
        },
    )
    data_dir = config.line.data_dir
    gateway = Gateway(config)
    gateway.start()
    sizes, done = [], threading.Event()

    def watch():
        while not done.is_set():
            if (data_dir / "rejects").exists():
                sizes.append(store_bytes(data_dir))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    assert gateway.run(threading.Event()) == 400
    summary = gateway.close()
    done.set()
    watcher.join()

    log = gateway.rejects
    assert summary.rejects_failed == 0
    written_mb = log.written * 0.6  # every kept item has a full PNG frame of about 0.65 MB
    assert written_mb > 5 * QUOTA_MB, f"the run must write well past the quota ({log.written} items)"
    assert len(sizes) > 20 and max(sizes) <= QUOTA_MB * 1e6  # never over, at any moment
    assert store_bytes(data_dir) == log.bytes  # the writer's account is the disk's
    assert log.deleted > 0 and log.items + log.deleted == log.written
    index = ReviewIndex(data_dir)
    kept = [item.item_id for item in index.iterate()]
    assert kept == sorted(kept) and kept[-1] >= 390  # the newest were kept, the oldest went first
    indexed = {path for item in index.iterate() for path in item.files.values()}
    on_disk = {p.relative_to(data_dir).as_posix() for p in (data_dir / "rejects").rglob("*") if p.is_file()}
    assert on_disk == indexed


def test_metrics_and_status_of_a_running_line(tmp_path):
    config = line_config(
        tmp_path,
        **{"mqtt.enabled": False, "source.simulator.items": 40, "source.simulator.rate_ppm": 1200},
    )
    gateway = Gateway(config)
    gateway.start()
    try:
        gateway.run(threading.Event())
        time.sleep(1.2)  # the writer's idle pass
        url = gateway.endpoints.web
        text = urllib.request.urlopen(url + "metrics", timeout=10).read().decode()
        status = json.loads(urllib.request.urlopen(url + "api/status", timeout=10).read())
    finally:
        summary = gateway.close()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    passed = samples[("udigate_items_total", (("verdict", "pass"),))]
    rejected = samples[("udigate_items_total", (("verdict", "reject"),))]
    assert (passed, rejected) == (summary.stats.passed, summary.stats.rejected) and passed + rejected == 40
    reasons = {dict(k[1])["reason"]: v for k, v in samples.items() if k[0] == "udigate_reject_reasons_total"}
    assert reasons == summary.stats.by_reason
    assert samples[("udigate_store_items", ())] == summary.rejects_logged + summary.passes_kept
    assert samples[("udigate_alarm", (("alarm", "plc_heartbeat_lost"),))] == 0
    assert ("udigate_plc_results_total", (("delivery", "in_time"),)) in samples
    assert samples[("process_resident_memory_bytes", ())] > 10e6
    assert status["stats"]["items"] == 40
    assert status["store"]["items"] == summary.rejects_logged + summary.passes_kept
    assert status["job"]["id"] == "PO-DEMO-0001"


def test_a_fading_print_warns_before_the_grades_reach_the_minimum(tmp_path):
    """SC falls by 1.2 grades an hour, from A: stored minute by minute, the store's trend warns
    while every item still passes."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    log = RejectLog(tmp_path, RejectLogSection(keep_passes_every=0))
    log.start()
    item = 0
    for minute in range(40, -1, -1):
        moment = now - timedelta(minutes=minute)
        sc = 3.6 - 1.2 * (40 - minute) / 60  # 3.6 → 2.8
        for second in range(0, 60, 6):
            item += 1
            stamp = (moment + timedelta(seconds=second)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            log.observe(record(item, (), timestamp=stamp, grade=grade(min(4.0, sc + 0.4), sc=sc)), None)
    log.close()
    config = line_config(tmp_path, **{"line.data_dir": str(tmp_path), "grading.drift_horizon_minutes": 120})
    server = WebServer(config, ReviewIndex(tmp_path))
    warnings = server.drift()
    assert [w.parameter for w in warnings] == ["SC", "overall"]  # soonest first; MOD stays at A
    sc = warnings[0]
    assert -1.4 < sc.slope_per_hour < -1.0
    assert 55 < sc.minutes_to_minimum < 75  # 2.8 → 1.5 at 1.2 per hour: 65 min
    assert "SC falling" in sc.text and sc.current > 2.5  # every item still passes
