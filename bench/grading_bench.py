"""Grading benchmark: what ISO/IEC 15415 grading adds to the own reader, in the same run.

    .venv/bin/python bench/grading_bench.py [--items 300] [--method 2011|2024|dpm]

Frames: the line simulator on its demo settings (1280x960, 8 px per module, GS1 UDI of
16x16 to 24x24 modules, rotation, perspective, blur, noise), defects switched off so every
frame holds one readable symbol. For each frame: the read alone (own reader, first symbol, as
the line runs it) and then the grading of that symbol, each timed separately, and zxing-cpp's
read of the same frame for reference; printed are the medians, the p95s, grading / read and
read + grading / zxing-cpp. Also printed: the overall grades met, and the
repeatability of the overall grade and of every parameter's value for one label under 20
noise realisations (a label whose value sits on a band edge flips between two integer
grades in the 2011 method: compare the value spreads). Timings vary
±20 % between runs on shared machines: compare the ratio, which comes from one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections import Counter
from datetime import date
from pathlib import Path

import numpy as np
import zxingcpp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gateway.config import demo_config_text, override, parse_config  # noqa: E402
from gateway.sources.simulator import LineSimulator  # noqa: E402
from vision.grade import GradingSettings, grade_symbol  # noqa: E402
from vision.reader import DataMatrixReader  # noqa: E402


def p95(values: list[float]) -> float:
    return sorted(values)[int(0.95 * (len(values) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--method", default="2011", choices=("2011", "2024", "dpm"))
    args = parser.parse_args()

    config = override(
        parse_config(demo_config_text()),
        **{
            "source.simulator.rate_ppm": 0,
            "source.simulator.items": args.items,
            "source.simulator.seed": 7,
            "source.simulator.defects": {},
        },
    )
    sim = config.source.simulator
    frames = [f.image for f in LineSimulator(sim, config.job, today=date.today()).frames(threading.Event())]
    reader = DataMatrixReader(max_symbols=1)
    reader.warm_up()
    settings = GradingSettings(method=args.method)
    grade_symbol(*_first(reader, frames[0]), settings)  # compile the grading kernels

    read_ms, grade_ms, zxing_ms, overall = [], [], [], Counter()
    for image in frames:
        start = time.perf_counter()
        zxingcpp.read_barcode(image, formats=zxingcpp.BarcodeFormat.DataMatrix)
        zxing_ms.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        symbols = reader.read(image)
        read_ms.append((time.perf_counter() - start) * 1000)
        if not symbols:
            continue
        start = time.perf_counter()
        grade = grade_symbol(image, symbols[0], settings)
        grade_ms.append((time.perf_counter() - start) * 1000)
        overall[grade.overall] += 1

    print(
        f"udigate grading benchmark: {len(frames)} simulator frames {sim.width}x{sim.height}, "
        f"{sim.module_px} px/module, method {args.method}"
    )
    for label, values in (
        ("read (own reader, first symbol)", read_ms),
        ("grading one symbol", grade_ms),
        ("zxing-cpp read_barcode (reference)", zxing_ms),
    ):
        print(f"  {label:36} median {statistics.median(values):6.2f} ms   p95 {p95(values):6.2f} ms")
    zxing_median = statistics.median(zxing_ms)
    ratio = statistics.median(grade_ms) / statistics.median(read_ms)
    print(f"  grading / own read (medians): {ratio:.2f}  (target: at most 0.50)")
    ratio = (statistics.median(read_ms) + statistics.median(grade_ms)) / zxing_median
    print(f"  own read + grading / zxing-cpp read alone (medians): {ratio:.2f}")
    print(
        f"  symbols graded: {len(grade_ms)} / {len(frames)}; overall grades: "
        + ", ".join(f"{g}: {n}" for g, n in sorted(overall.items(), key=lambda kv: (kv[0] is None, kv[0])))
    )

    # Repeatability: the same label, 20 camera noise realisations (sigma 4 grey levels)
    image = frames[0].astype(np.float32)
    rng = np.random.default_rng(1)
    repeated = []
    for _ in range(20):
        noisy = np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)
        found = _first(reader, noisy)
        if found[1] is not None:
            repeated.append(grade_symbol(*found, settings))
    overall = [g.overall for g in repeated]
    print(
        f"  repeatability over {len(repeated)} noise realisations of one label: overall grade mean "
        f"{statistics.mean(overall):.2f}, standard deviation {statistics.pstdev(overall):.3f}"
    )
    for name in repeated[0].parameters:
        values = [g.parameters[name].value for g in repeated]
        spread = statistics.pstdev(values)
        print(f"    {name:7} value mean {statistics.mean(values):8.3f}  standard deviation {spread:.3f}")
    return 0


def _first(reader, image):
    symbols = reader.read(image)
    return image, (symbols[0] if symbols else None)


if __name__ == "__main__":
    raise SystemExit(main())
