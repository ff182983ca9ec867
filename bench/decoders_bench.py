"""Decoder benchmark: udigate's own reader against zxing-cpp and pylibdmtx on the same frames,
in the same run.

    .venv/bin/python bench/decoders_bench.py [--frames 500] [--libdmtx-frames 100]

Frames: tests/frames.py (4, 6 and 10 px per module, any rotation, perspective, blur, noise, low
contrast, inverted, mirrored, rectangular, three symbols in some), 1280x960. For each decoder:
symbols read correctly, wrong reads, median and p95 milliseconds per frame — on full frames,
and on a region of interest about three times the symbol's size (one read per symbol).
pylibdmtx is slow on full frames, so it reads only the first ``--libdmtx-frames`` of them there.
Numba compile time (empty cache) and load time (warm cache) are measured in fresh processes.
Timings vary ±20 % between runs on shared machines: compare the ratios printed, which come
from one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zxingcpp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.frames import frame_set  # noqa: E402
from vision.consensus import around  # noqa: E402
from vision.libdmtx_reader import LibdmtxReader  # noqa: E402
from vision.reader import DataMatrixReader  # noqa: E402


def zxing_first(image):
    """zxing-cpp read_barcode: the first symbol it finds (as most applications call it)."""
    barcode = zxingcpp.read_barcode(image, formats=zxingcpp.BarcodeFormat.DataMatrix, text_mode=zxingcpp.TextMode.Plain)
    return [bytes(barcode.bytes)] if barcode is not None else []


def zxing_all(image):
    barcodes = zxingcpp.read_barcodes(
        image, formats=zxingcpp.BarcodeFormat.DataMatrix, text_mode=zxingcpp.TextMode.Plain
    )
    return [bytes(b.bytes) for b in barcodes]


def measure(name, decode, jobs):
    """jobs: (image, symbols to read, every symbol in the frame). A read that is no symbol of
    the frame is wrong (a misread); reading a neighbouring symbol inside a region is not."""
    correct = wrong = total = 0
    times = []
    for image, truth, frame_truth in jobs:
        start = time.perf_counter()
        read = set(decode(image))
        times.append((time.perf_counter() - start) * 1000)
        correct += len(read & truth)
        wrong += len(read - frame_truth)
        total += len(truth)
    return {
        "decoder": name,
        "read": correct,
        "of": total,
        "wrong": wrong,
        "median": statistics.median(times),
        "p95": float(np.percentile(times, 95)),
    }


def compile_times() -> tuple[float, float]:
    """Seconds for the reader's first read in a fresh process: with an empty numba cache
    (everything compiled) and again with the cache it left (everything loaded)."""
    code = (
        "import time; t = time.perf_counter(); from vision.reader import DataMatrixReader; "
        "DataMatrixReader().warm_up(); print(time.perf_counter() - t)"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": str(REPO)}
        runs = [
            float(
                subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
            )
            for _ in range(2)
        ]
    return runs[0], runs[1]


def print_rows(title, rows):
    print(f"\n{title}")
    print(f"  {'decoder':34} {'read':>9} {'rate':>7} {'wrong':>6} {'median ms':>10} {'p95 ms':>8}")
    for r in rows:
        rate = 100 * r["read"] / r["of"]
        counts = f"{r['read']:>4}/{r['of']:<4} {rate:6.1f}% {r['wrong']:6d}"
        print(f"  {r['decoder']:34} {counts} {r['median']:10.2f} {r['p95']:8.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--libdmtx-frames", type=int, default=100)
    args = parser.parse_args()

    compiled, loaded = compile_times()
    print(f"numba: first read compiles in {compiled:.1f} s with an empty cache, loads in {loaded:.2f} s from the cache")

    started = time.perf_counter()
    frames = frame_set(args.frames)
    symbols = sum(len(f.truths) for f in frames)
    print(f"{len(frames)} frames with {symbols} symbols generated in {time.perf_counter() - started:.0f} s")

    own = DataMatrixReader()
    own.warm_up()
    libdmtx = LibdmtxReader(timeout_ms=2000)
    full = [(f.image, {t.data for t in f.truths}, {t.data for t in f.truths}) for f in frames]
    first = DataMatrixReader(max_symbols=1)
    rows = [
        measure("udigate (own reader, all symbols)", lambda im: [s.data for s in own.read(im)], full),
        measure("udigate (own reader, first symbol)", lambda im: [s.data for s in first.read(im)], full),
        measure("zxing-cpp read_barcode", zxing_first, full),
        measure("zxing-cpp read_barcodes (all)", zxing_all, full),
        measure(
            f"pylibdmtx FNC1 fix (first {args.libdmtx_frames})",
            lambda im: [s.data for s in libdmtx.read(im)],
            full[: args.libdmtx_frames],
        ),
    ]
    print_rows("Full 1280x960 frames (per frame)", rows)
    print(f"  first-symbol medians, own / zxing-cpp read_barcode: {rows[1]['median'] / rows[2]['median']:.2f}")
    print(f"  all-symbols medians, own / zxing-cpp read_barcodes: {rows[0]['median'] / rows[3]['median']:.2f}")

    inline = DataMatrixReader(max_symbols=1)
    inline.warm_up()
    libdmtx_roi = LibdmtxReader(timeout_ms=200)
    regions = []
    for f in frames:
        for t in f.truths:
            roi = around(t.corners, f.image.shape, 1.0)  # about three times the symbol
            regions.append(((f.image, roi), {t.data}, {s.data for s in f.truths}))

    def zxing_region(job):
        image, roi = job
        return zxing_first(np.ascontiguousarray(image[roi.y : roi.y + roi.height, roi.x : roi.x + roi.width]))

    roi_rows = [
        measure("udigate (own reader, max 1 symbol)", lambda job: [s.data for s in inline.read(*job)], regions),
        measure("zxing-cpp read_barcode (on the crop)", zxing_region, regions),
        measure("pylibdmtx FNC1 fix", lambda job: [s.data for s in libdmtx_roi.read(*job)], regions),
    ]
    print_rows("Region of interest, about 3x the symbol (per symbol)", roi_rows)
    print(f"  own median / zxing-cpp median: {roi_rows[0]['median'] / roi_rows[1]['median']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
