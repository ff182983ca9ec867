"""UDID product master benchmark: import a synthetic full release, then look DIs up.

    .venv/bin/python bench/udid_bench.py [--devices 1000000] [--parts N] [--lookups 100000]

Writes ``UDID_FULL_RELEASE_*.zip`` with ``--devices`` devices (tests/udid_release.py: about 2.3 KB of
XML per device, likely more than the real download's average, so devices/s is pessimistic) in
``--parts`` members (default: one per 5,000 devices, as in the real release) to a temporary
folder, imports it into a fresh database there and prints the import time, devices/s and peak
RSS, then the lookup throughput for random unit, box and case DIs (from one thread and from two).

Peak RSS: ``ru_maxrss`` is the peak of the whole process (generation included); the import's own
peak is measured by resetting the kernel's high-water mark (``/proc/self/clear_refs``, Linux)
just before the import and reading ``VmHWM`` after it. Run with 100,000 and 1,000,000 devices
and compare: the import's peak must not grow with the release.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gateway.udid import ProductMaster, import_releases  # noqa: E402
from tests.udid_release import synthetic_device, write_full_release  # noqa: E402


def ru_maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def vm_hwm_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--parts", type=int, default=0, help="ZIP members (default: one per 5,000 devices)")
    parser.add_argument("--lookups", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one, removed)")
    args = parser.parse_args()
    parts = args.parts or max(1, args.devices // 5000)

    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        work = Path(folder)
        t = time.monotonic()
        release = write_full_release(work, args.devices, parts=parts)
        print(
            f"generated {args.devices:,} devices in {parts} parts: {release.stat().st_size / 1e6:.0f} MB ZIP"
            f" in {time.monotonic() - t:.0f} s (peak RSS so far {ru_maxrss_mb():.0f} MB)",
            flush=True,
        )

        db = work / "udigate.db"
        step = max(args.devices // 10, 1)
        next_report = [step]
        t0 = time.monotonic()

        def progress(source: str, records: int) -> None:
            if records >= next_report[0]:
                next_report[0] += step
                rate = records / (time.monotonic() - t0)
                print(f"  {records:>10,} devices  {rate:8,.0f}/s  VmHWM {vm_hwm_mb() or 0:.0f} MB", flush=True)

        resettable = reset_peak_rss()
        report = import_releases([release], db, progress=progress)
        import_peak = vm_hwm_mb() if resettable else None
        print(
            f"import: {report.records:,} devices in {report.seconds / 60:.2f} min"
            f" = {report.records / report.seconds:,.0f} devices/s; added {report.devices_added:,},"
            f" skipped {report.skipped}, warnings {report.warnings}"
        )
        print(
            f"peak RSS: import alone {import_peak:.0f} MB (VmHWM after reset)"
            if import_peak is not None
            else "peak RSS: import alone not measurable (no /proc/self/clear_refs)"
        )
        print(f"peak RSS: whole process {ru_maxrss_mb():.0f} MB (ru_maxrss, generation included)")
        size = sum(p.stat().st_size for p in work.glob("udigate.db*"))
        print(f"database: {size / 1e6:.0f} MB ({size / max(report.records, 1):.0f} bytes per device)")

        rng = random.Random(1)
        dis = []
        for i in (rng.randrange(args.devices) for _ in range(args.lookups)):
            d = synthetic_device(i)
            dis.append(rng.choice([d.unit_di, *(p.di for p in d.packings)]))
        master = ProductMaster(db)
        master.lookup(dis[0])
        t = time.monotonic()
        found = sum(master.lookup(di) is not None for di in dis)
        elapsed = time.monotonic() - t
        print(
            f"lookup, 1 thread: {args.lookups / elapsed:,.0f} lookups/s ({elapsed / args.lookups * 1e6:.0f} µs each),"
            f" {found:,} of {args.lookups:,} found"
        )
        misses = [f"0699{rng.randrange(10**10):010d}" for _ in range(args.lookups // 10)]
        t = time.monotonic()
        assert all(master.lookup(di) is None for di in misses)
        print(f"lookup of unknown DIs: {len(misses) / (time.monotonic() - t):,.0f} lookups/s")
        halves = [dis[: len(dis) // 2], dis[len(dis) // 2 :]]
        threads = [threading.Thread(target=lambda h=h: [master.lookup(di) for di in h]) for h in halves]
        t = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        print(f"lookup, 2 threads: {args.lookups / (time.monotonic() - t):,.0f} lookups/s in all")
        master.close()
        if found != args.lookups:
            print("ERROR: some DIs were not found")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
