"""Review UI response times with a large store: list and detail pages at p50 / p95 / max.

    .venv/bin/python bench/review_bench.py [--rejects 100000] [--requests 200]

Fills a fresh data folder with N indexed rejects (rows written straight into the schema of
gateway.rejects, each pointing at one of 1000 real JSON records and thumbnails, as after a
long run), serves it with the review UI (gateway.web.server, no line attached) and times the
pages over HTTP with a keep-alive client: the whole request as a browser waits for it, page
rendering included. Target (issue 8): list and detail within 100 ms at p95 with 100,000 rejects.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.config import parse_config  # noqa: E402
from gateway.rejects import open_database  # noqa: E402
from gateway.review import ReviewIndex  # noqa: E402
from gateway.web.server import WebServer  # noqa: E402

REASONS = ["grade_below_min", "wrong_lot", "no_read", "expired", "duplicate_serial", "gs1_check_digit"]
PARAMETERS = ("Decode", "SC", "MOD", "RM", "FPD", "AN", "GN", "UEC", "PG")


def fill(data_dir: Path, rejects: int, seed: int = 1) -> float:
    """``rejects`` rows over 30 days, 1000 distinct record/thumbnail files; returns seconds."""
    started = time.perf_counter()
    rng = random.Random(seed)
    folder = data_dir / "rejects" / "2026-11-01"
    folder.mkdir(parents=True)
    thumb = cv2.imencode(".jpg", np.random.default_rng(seed).integers(0, 255, (120, 160), np.uint8))[1].tobytes()
    for k in range(1000):
        grade = {
            "overall": 1.0,
            "quality": "1.0/08/660",
            "method": "2011",
            "parameters": {p: {"value": rng.random(), "grade": float(rng.randint(0, 4))} for p in PARAMETERS},
            "informative": {},
            "damaged_codewords": [3, 17],
            "warnings": [],
            "refused": None,
        }
        record = {
            "record_id": f"bench/{k}",
            "reasons": [{"code": "grade_below_min", "text": "print quality below the minimum", "detail": "SC 0.2"}],
            "grade": grade,
            "data": f"0106901234567892\x1d10A2611\x1d21SER{k:06d}",
            "fields": {"01": "06901234567892", "10": "A2611", "21": f"SER{k:06d}"},
            "hri": f"(01)06901234567892(10)A2611(21)SER{k:06d}",
        }
        (folder / f"r-{k:04d}.json").write_text(json.dumps(record))
        (folder / f"r-{k:04d}-thumb.jpg").write_bytes(thumb)
    db = open_database(data_dir / "udigate.db")
    start = 1_762_000_000  # 2025-11-01 as a Unix time: 30 days of rejects from there
    rows, reasons = [], []
    for i in range(1, rejects + 1):
        moment = start + i * (30 * 86400 / rejects)
        timestamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + ".000Z"
        codes = rng.sample(REASONS, rng.choice((1, 1, 1, 2)))
        k = i % 1000
        rows.append(
            (
                i,
                f"run/{i}",
                "run",
                i,
                timestamp,
                timestamp,
                "site1",
                "line1",
                f"PO-{i * 20 // rejects:04d}",
                "reject",
                codes[0],
                json.dumps(codes),
                f"0106901234567892\x1d10A2611\x1d21SER{i:06d}",
                rng.choice((0.0, 1.0, 2.0, 3.0)),
                "1.0/08/660",
                "SC",
                f"rejects/2026-11-01/r-{k:04d}.json",
                f"rejects/2026-11-01/r-{k:04d}-thumb.jpg",
                30_000,
                None if i % 7 else rng.choice(("confirmed_defect", "false_reject")),
            )
        )
        reasons += [(code, i) for code in codes]
    with db:
        db.executemany(
            "INSERT INTO rejects (id, record_id, run_id, item_id, timestamp, decided_at, site, line, job, verdict,"
            " reason, reasons, data, grade, quality, weakest, record, thumb, bytes, disposition)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
        db.executemany("INSERT INTO reject_reasons (code, reject_id) VALUES (?, ?)", reasons)
    db.execute("ANALYZE")
    db.close()
    return time.perf_counter() - started


def timed(connection: http.client.HTTPConnection, path: str) -> float:
    started = time.perf_counter()
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - started
    if response.status != 200:
        raise SystemExit(f"GET {path}: {response.status} {body[:200]!r}")
    return elapsed * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rejects", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200, help="per page kind")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="udigate-review-bench-") as folder:
        data_dir = Path(folder)
        seconds = fill(data_dir, args.rejects)
        print(f"store: {args.rejects:,} rejects indexed in {seconds:.1f} s ({data_dir})")
        config = parse_config(f'[line]\ndata_dir = "{data_dir}"\n[web]\nport = 0\n')
        server = WebServer(config, ReviewIndex(data_dir))
        url = server.start()
        host, port = url.split("//")[1].rstrip("/").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        rng = random.Random(2)
        pages = {
            "list, newest": lambda: "/rejects",
            "list, by reason": lambda: f"/rejects?reason={rng.choice(REASONS)}",
            "list, by job": lambda: f"/rejects?job=PO-{rng.randrange(20):04d}",
            "list, grade <= D": lambda: "/rejects?max_grade=1.5",
            "list, since a day": lambda: f"/rejects?since=2025-11-{rng.randrange(2, 29):02d}",
            "list, one old day": lambda: f"/rejects?since=2025-11-0{rng.randrange(2, 5)}&until=2025-11-05",
            "list, open + reason": lambda: f"/rejects?disposition=open&reason={rng.choice(REASONS)}",
            "list, serial search": lambda: f"/rejects?text=SER{rng.randrange(args.rejects):06d}",
            "list, deep page": lambda: f"/rejects?before={rng.randrange(1000, args.rejects)}",
            "detail": lambda: f"/rejects/{rng.randrange(1, args.rejects + 1)}",
            "api status": lambda: "/api/status",
        }
        for path in ("/rejects", "/rejects/1"):  # warm the templates and the page cache
            timed(connection, path)
        print(f"{'page':<22}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}")
        worst = {}
        for name, make in pages.items():
            times = sorted(timed(connection, make()) for _ in range(args.requests))
            p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
            worst[name] = p95
            print(f"{name:<22}{statistics.median(times):>9.1f}{p95:>9.1f}{times[-1]:>9.1f}")
        connection.close()
        server.close()
        slowest = max((k for k in worst if k != "api status"), key=worst.get)
        verdict = "meets" if worst[slowest] <= 100 else "MISSES"
        print(f"slowest list/detail p95: {slowest} {worst[slowest]:.1f} ms: {verdict} the 100 ms target")
        print("(no decoder comparison applies to this benchmark: it times the review store and its pages)")


if __name__ == "__main__":
    main()
