"""Serial registry benchmark: duplicate checks against a large persistent store.

    .venv/bin/python bench/serials_bench.py [--serials 10000000] [--batched 200000] [--per-item 20000]
                                            [--power 1000] [--db PATH]

1. fills a fresh database with ``--serials`` stored serials (500 GTINs, random-looking 12-character
   serials, 100 jobs on line1), bulk-inserted in big transactions (setup, not the measured path);
2. measures check + add (half new serials, half already stored, and every 20th item a repeat of an
   earlier new one) on that store, scope "line":
   (a) batched: ``check_and_add_many`` in transactions of 1000 items (synchronous=NORMAL);
   (b) per item as the line does it: ``seen()`` then ``add()``, one commit per item (NORMAL);
   (c) per item with ``durability="power"`` (synchronous=FULL: one fsync per commit);
3. prints items/s, the database size on disk and the peak RSS.

With ``--db PATH`` the database is kept, and reused (no fill) when it already holds serials;
``--serials`` is then ignored.
Timings vary between runs on shared machines; the disk's fsync latency decides (c).
"""

from __future__ import annotations

import argparse
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.serials import SerialStore  # noqa: E402

GTINS = 500
JOBS = 100
FILL_BATCH = 500_000
CHECK_BATCH = 1000
REPEAT_EVERY = 20  # every 20th item repeats an earlier new serial
_MASK = (1 << 48) - 1
_T0 = datetime(2026, 1, 1, tzinfo=UTC)


def gtin(n: int) -> str:
    body = f"0690123{n:06d}"
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return body + str(-total % 10)


GTIN = [gtin(n) for n in range(GTINS)]


def mix48(x: int) -> int:
    """A bijection on 48-bit integers: distinct indices give distinct, random-looking serials."""
    x = (x * 0x9E3779B97F4B) & _MASK
    x ^= x >> 23
    x = (x * 0xBF58476D1CE5) & _MASK
    return x ^ (x >> 29)


def key(i: int) -> tuple[str, str]:
    """The i-th serial of the data set: (GTIN, serial)."""
    return GTIN[i % GTINS], f"{mix48(i):012X}"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def disk_mb(db: Path) -> float:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*")) / 1e6


def fill(db: Path, n: int) -> None:
    """Bulk insert n serials straight into the registry table (big transactions, executemany)."""
    store = SerialStore(db, line="line1", run_id="fill")
    conn = store._db  # setup only: the measured paths below go through the public API
    per_job = -(-n // JOBS)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO serial_runs (id, run_id, line, job) VALUES (?, ?, 'line1', ?)",
        [(j + 1, f"fill-{j:03d}", f"PO-{j:05d}") for j in range(JOBS)],
    )
    conn.execute("COMMIT")
    start = time.perf_counter()
    t0_ms = round(_T0.timestamp() * 1000)
    for lo in range(0, n, FILL_BATCH):
        hi = min(n, lo + FILL_BATCH)
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO serial_registry (di, serial, run, item_id, verified_ms) VALUES (?, ?, ?, ?, ?)",
            ((*key(i), 1 + i // per_job, i % per_job + 1, t0_ms + i * 50) for i in range(lo, hi)),
        )
        conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
        if hi % 1_000_000 == 0 or hi == n:
            print(
                f"  fill {hi:>11,}  {hi / elapsed:>9,.0f} rows/s  {elapsed:6.1f} s  "
                f"RSS {rss_mb():5.0f} MB  disk {disk_mb(db):6.0f} MB",
                flush=True,
            )
    store.close()


class Workload:
    """Items of the check phases: half new serials, half stored ones, some repeats of new ones."""

    def __init__(self, stored: int, next_new: int, seed: int) -> None:
        self.stored = stored  # indices below this are in the store
        self.next_new = next_new  # first index never stored yet
        self.rng = random.Random(seed)
        self.new: list[int] = []
        self.expected_duplicates = 0
        self.item_id = 0

    def items(self, count: int):
        for _ in range(count):
            self.item_id += 1
            if self.item_id % REPEAT_EVERY == 0 and self.new:
                i = self.rng.choice(self.new)
                self.expected_duplicates += 1
            elif self.item_id % 2:
                i = self.next_new
                self.next_new += 1
                self.new.append(i)
            else:
                i = self.rng.randrange(self.stored)
                self.expected_duplicates += 1
            yield (*key(i), self.item_id, _T0 + timedelta(milliseconds=self.item_id))


def report(title: str, count: int, duplicates: int, expected: int, elapsed: float) -> None:
    ok = "" if duplicates == expected else f"  MISMATCH: expected {expected}"
    print(
        f"{title}: {count:,} items in {elapsed:.2f} s = {count / elapsed:,.0f} items/s "
        f"({elapsed / count * 1e6:.0f} µs/item), {duplicates:,} duplicates{ok}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serials", type=int, default=10_000_000, help="serials in the store before measuring")
    parser.add_argument("--batched", type=int, default=200_000, help="items checked in (a)")
    parser.add_argument("--per-item", type=int, default=20_000, help="items checked in (b)")
    parser.add_argument("--power", type=int, default=1000, help="items checked in (c), 0 = skip")
    parser.add_argument("--cache-mb", type=int, default=32, help="SQLite page cache per connection")
    parser.add_argument("--db", type=Path, help="keep the database here (reused when it already holds serials)")
    args = parser.parse_args()

    folder = None
    if args.db is None:
        folder = Path(tempfile.mkdtemp(prefix="serials-bench-"))
        db = folder / "udigate.db"
    else:
        db = args.db
    try:
        with SerialStore(db) as store:
            stored = store.count()
        if stored:
            print(f"reusing {db}: {stored:,} serials")
        else:
            print(f"filling {db} with {args.serials:,} serials")
            start = time.perf_counter()
            fill(db, args.serials)
            stored = args.serials
            print(f"filled in {time.perf_counter() - start:.1f} s, peak RSS {peak_rss_mb():.0f} MB")
        # fill rows are indices [0, base); the new serials of earlier runs on a kept database follow them
        with SerialStore(db) as store:
            base = store._db.execute(f"SELECT count(*) FROM serial_registry WHERE run <= {JOBS}").fetchone()[0]
            next_new = store.count()
        run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")

        print(f"\nscope line, {CHECK_BATCH}-item batches and per-item commits, page cache {args.cache_mb} MB")
        work = Workload(base, next_new, seed=1)
        with SerialStore(db, line="line1", job="PO-bench", run_id=run_id + "a", cache_mb=args.cache_mb) as store:
            duplicates = 0
            start = time.perf_counter()
            items = work.items(args.batched)
            while batch := [item for _, item in zip(range(CHECK_BATCH), items, strict=False)]:
                duplicates += sum(seen is not None for seen in store.check_and_add_many(batch))
            report(
                "(a) batched, 1000/transaction",
                args.batched,
                duplicates,
                work.expected_duplicates,
                time.perf_counter() - start,
            )

        for title, count, durability in (
            ("(b) per item, synchronous=NORMAL", args.per_item, "process"),
            ("(c) per item, synchronous=FULL ", args.power, "power"),
        ):
            if not count:
                continue
            work = Workload(base, work.next_new, seed=len(title) + count)
            with SerialStore(
                db,
                line="line1",
                job="PO-bench",
                run_id=run_id + durability[0],
                durability=durability,
                cache_mb=args.cache_mb,
            ) as store:
                duplicates = 0
                latencies = []
                start = time.perf_counter()
                for di, serial, item_id, timestamp in work.items(count):  # as the decision thread does it
                    t = time.perf_counter()
                    if store.seen(di, serial) is not None:
                        duplicates += 1
                    elif store.add(di, serial, item_id=item_id, timestamp=timestamp) is not None:
                        raise AssertionError("add() found a duplicate that seen() did not")
                    latencies.append(time.perf_counter() - t)
                report(title, count, duplicates, work.expected_duplicates, time.perf_counter() - start)
                p50, p99 = (statistics.quantiles(latencies, n=100)[q] * 1000 for q in (49, 98))
                print(
                    f"    per item seen()+add(): p50 {p50:.3f} ms, p99 {p99:.3f} ms, max {max(latencies) * 1000:.1f} ms"
                )

        with SerialStore(db) as store:
            total = store.count()
        print(f"\nstore: {total:,} serials, {disk_mb(db):,.0f} MB on disk ({db.name} + WAL)")
        print(f"peak RSS {peak_rss_mb():.0f} MB, RSS now {rss_mb():.0f} MB")
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
