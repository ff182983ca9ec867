"""Line benchmark: sustained throughput and per-stage latency of the simulated line.

    .venv/bin/python bench/line_bench.py [--items 400] [--workers 2]

Prints three measurements taken in the same run:
1. station capacity: pre-rendered frames replayed from memory through the pipeline (vision,
   rules, verdict) as fast as it takes them;
2. the whole simulated line: rendering, pipeline and every output (embedded broker, Modbus server
   with the PLC simulator polling, reject log) as fast as it goes;
3. the vision stage against a bare zxing-cpp call on the same frames (ratio = udigate / zxing).
Timings vary ±20 % between runs on shared machines: compare ratios, not absolute values.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import statistics
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import zxingcpp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.app import Gateway  # noqa: E402
from gateway.broker import free_port  # noqa: E402
from gateway.config import demo_config_text, override, parse_config  # noqa: E402
from gateway.pipeline import STAGES, Pipeline, line_reader  # noqa: E402
from gateway.sources.simulator import DEFECTS, LineSimulator  # noqa: E402
from gateway.stats import LineStats, Snapshot  # noqa: E402


class MemoryReplay:
    """Pre-rendered frames, each re-triggered at the moment it is handed over."""

    realtime = False

    def __init__(self, frames) -> None:
        self.frames_ = frames

    def frames(self, stop):
        for frame in self.frames_:
            if stop.is_set():
                return
            yield dataclasses.replace(frame, t_trigger=time.monotonic())


def print_stages(title: str, snapshot: Snapshot, elapsed: float) -> None:
    print(
        f"\n{title}: {snapshot.items} items in {elapsed:.2f} s = {snapshot.items / elapsed:.1f} items/s "
        f"({snapshot.items / elapsed * 60:.0f}/min); ground truth {snapshot.truth_agreed}/{snapshot.truth_checked}"
    )
    print(f"  {'stage':8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for stage in STAGES:
        q = snapshot.latency_ms[stage]
        print(f"  {stage:8} {q['p50']:8.2f} {q['p95']:8.2f} {q['p99']:8.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-grading", action="store_true", help="decode only (to see what grading costs)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="udigate-bench-") as data:
        config = override(
            parse_config(demo_config_text()),
            **{
                "line.data_dir": data,
                "source.simulator.rate_ppm": 0,
                "source.simulator.items": args.items,
                "source.simulator.seed": 1,
                "source.simulator.defects": {d: 0.02 for d in DEFECTS},
                "vision.workers": args.workers,
                "grading.enabled": not args.no_grading,
                "vision.queue_size": 2 * args.workers,
                "plc.modbus.port": free_port(),
                "mqtt.port": free_port(),
            },
        )
        sim = config.source.simulator
        print(
            f"udigate line benchmark: {args.items} items, {sim.width}x{sim.height} frames, "
            f"{sim.module_px} px/module, {args.workers} vision workers"
        )

        started = time.perf_counter()
        frames = list(LineSimulator(sim, config.job, today=date.today()).frames(threading.Event()))
        render_s = time.perf_counter() - started
        print(f"\nsimulator rendering: {render_s / len(frames) * 1000:.2f} ms per frame (one thread)")

        stats = LineStats()
        pipeline = Pipeline(config, line_reader(config), stats.record)
        pipeline.warm_up()
        started = time.perf_counter()
        pipeline.run(MemoryReplay(frames), threading.Event())
        print_stages("station capacity (frames from memory)", stats.snapshot(), time.perf_counter() - started)
        vision_p50 = stats.snapshot().latency_ms["vision"]["p50"]

        gateway = Gateway(config)
        gateway.start()
        started = time.perf_counter()
        gateway.run(threading.Event())
        elapsed = time.perf_counter() - started
        summary = gateway.close()
        print_stages("whole simulated line (rendering + pipeline + MQTT + Modbus + reject log)", summary.stats, elapsed)
        print(
            f"  MQTT {summary.mqtt_acknowledged}/{summary.mqtt_committed} acknowledged; PLC simulator read "
            f"{summary.plc.results} results, missed {summary.plc.missed}; reject log {summary.rejects_logged} entries"
        )

    bare = []
    for frame in frames:
        t = time.perf_counter()
        zxingcpp.read_barcodes(
            frame.image,
            formats=zxingcpp.BarcodeFormat.DataMatrix,
            text_mode=zxingcpp.TextMode.Plain,
            try_invert=config.vision.polarity != "dark",
        )
        bare.append((time.perf_counter() - t) * 1000)
    zxing_p50 = statistics.median(bare)
    print(
        f"\nvision stage p50 {vision_p50:.2f} ms (decode + grade, {args.workers} workers in parallel) vs bare "
        f"zxing-cpp read p50 {zxing_p50:.2f} ms (one thread): ratio {vision_p50 / zxing_p50:.2f}"
    )
    print(
        f"peak memory (RSS): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB "
        f"(includes {len(frames)} frames held for replay, {len(frames) * sim.width * sim.height / 2**20:.0f} MiB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
