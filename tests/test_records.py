"""The attempts store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bot.records import RecordStore


def _add(
    store: RecordStore, tier: str, outcome: str, tokens_in: int, latency: float, job: str = "j1"
) -> None:
    store.add(
        job_id=job,
        repo="/r",
        instruction="add memory clear",
        tier=tier,
        model=f"{tier}-model",
        edit_format="whole",
        tokens_in=tokens_in,
        tokens_out=tokens_in // 10,
        latency_s=latency,
        outcome=outcome,
    )


def test_summary_per_tier(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "data" / "records.sqlite3")
    _add(store, "tiny", "apply_failed", 100, 1.0)
    _add(store, "tiny", "verified", 300, 3.0)
    _add(store, "tiny", "unverified", 200, 2.0)
    _add(store, "big", "verified", 1000, 5.0, job="j2")
    rows = {r.tier: r for r in store.summary()}
    assert rows["tiny"].attempts == 3 and rows["tiny"].verified == 1 and rows["tiny"].unverified == 1
    assert abs(rows["tiny"].success_rate - 1 / 3) < 1e-9
    assert rows["tiny"].mean_tokens_in == 200 and rows["tiny"].mean_latency_s == 2.0
    assert rows["big"].success_rate == 1.0
    assert [r.tier for r in store.summary()] == ["tiny", "big"]  # busiest first
    assert rows["tiny"].to_json()["success_rate"] == 0.3333


def test_attempts_persist_and_filter_by_job(tmp_path: Path) -> None:
    path = tmp_path / "records.sqlite3"
    _add(RecordStore(path), "tiny", "verified", 10, 0.1, job="a")
    _add(RecordStore(path), "tiny", "tests_worse", 10, 0.1, job="b")
    reopened = RecordStore(path)
    assert [r["outcome"] for r in reopened.attempts()] == ["verified", "tests_worse"]
    assert [r["job_id"] for r in reopened.attempts(job_id="b")] == ["b"]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_empty_store(tmp_path: Path) -> None:
    assert RecordStore(tmp_path / "r.sqlite3").summary() == []
