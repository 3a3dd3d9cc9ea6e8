"""What routing costs per request as the records grow: the time the router
takes to order the tiers (its SQLite reads) for one request, with N attempts
recorded over a few kinds and languages.

    .venv/bin/python -m bench.routing_cost [--attempts 1000 10000 100000] [--tiers 4] [--runs 20] [--json]

The records are synthetic (a fixed seed): requests of every kind in three
languages, each climbing the tiers until one verifies.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from bot.config import Routing, Tier
from bot.features import KINDS
from bot.records import ATTEMPT_COLUMNS, RecordStore
from bot.routing import Router

LANGUAGES = ("python", "typescript", "go")


def seed(path: Path, attempts: int, tiers: list[str]) -> None:
    """`attempts` rows in one transaction (RecordStore.add would commit each)."""
    RecordStore(path)  # the schema
    rng = random.Random(7)
    rows: list[tuple[object, ...]] = []
    while len(rows) < attempts:
        kind, language, rid = rng.choice(KINDS), rng.choice(LANGUAGES), uuid.uuid4().hex
        for level, tier in enumerate(tiers):
            ok = rng.random() < 0.3 + 0.2 * level
            row = dict.fromkeys(ATTEMPT_COLUMNS) | {
                "repo": "r", "instruction": "i", "tier": tier, "model": tier, "edit_format": "whole",
                "tokens_in": 100, "tokens_out": 50, "latency_s": 1.0, "created_at": time.time(), "dry_run": 0,
                "outcome": "verified" if ok else "tests_worse", "request_id": rid, "kind": kind,
                "language": language, "words": 8, "files": 1, "symbols": 1,
            }  # fmt: skip
            rows.append(tuple(row[c] for c in ATTEMPT_COLUMNS))
            if ok:
                break
    marks = ", ".join("?" * len(ATTEMPT_COLUMNS))
    with sqlite3.connect(path) as db:
        db.executemany(
            f"INSERT INTO attempts ({', '.join(ATTEMPT_COLUMNS)}) VALUES ({marks})", rows[:attempts]
        )


def measure(attempts: int, tiers: int, runs: int) -> dict[str, float]:
    names = [f"tier{i}" for i in range(tiers)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "records.sqlite3"
        seed(path, attempts, names)
        router = Router(Routing(), RecordStore(path))
        ladder = [Tier(name=n, model=n) for n in names]
        times = []
        for i in range(runs):
            started = time.perf_counter()
            router.route(ladder, KINDS[i % len(KINDS)], LANGUAGES[i % len(LANGUAGES)])
            times.append(time.perf_counter() - started)
    return {"attempts": attempts, "tiers": tiers, "median_ms": statistics.median(times) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--tiers", type=int, default=4)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [measure(n, args.tiers, args.runs) for n in args.attempts]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        print(
            f"{r['attempts']:>8} attempts, {r['tiers']} tiers: {r['median_ms']:.1f} ms per request (median)"
        )


if __name__ == "__main__":
    main()
