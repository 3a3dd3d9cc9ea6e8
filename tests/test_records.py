"""The attempts store."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

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


OLD_SCHEMA = """
CREATE TABLE attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT, repo TEXT NOT NULL, instruction TEXT NOT NULL,
    tier TEXT NOT NULL, model TEXT NOT NULL, edit_format TEXT NOT NULL, tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL, latency_s REAL NOT NULL, outcome TEXT NOT NULL, created_at REAL NOT NULL
);
INSERT INTO attempts VALUES (1, NULL, 'r', 'i', 'tiny', 'm', 'whole', 10, 5, 1.0, 'verified', 0);
"""


def test_stats_count_only_answered_real_attempts(tmp_path: Path) -> None:
    # A database written before dry runs were marked opens, keeps its rows, and migrates.
    path = tmp_path / "records.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
    store = RecordStore(path)
    common: dict[str, Any] = {
        "repo": "r",
        "instruction": "i",
        "model": "m",
        "edit_format": "whole",
        "latency_s": 2.0,
    }
    for outcome in ("unreachable", "connection_refused", "model_not_found", "timeout"):
        store.add(tier="tiny", outcome=outcome, tokens_in=0, tokens_out=0, **common)
    store.add(tier="tiny", outcome="tests_worse", tokens_in=30, tokens_out=15, **common)
    RecordStore(path, dry_run=True).add(
        tier="tiny", outcome="unverified", tokens_in=99, tokens_out=99, **common
    )
    store.add(tier="only-down", outcome="unreachable", tokens_in=0, tokens_out=0, **common)

    by_tier = {row.tier: row for row in RecordStore(path).summary()}
    tiny = by_tier["tiny"]
    assert (tiny.attempts, tiny.verified, tiny.unverified, tiny.no_answer, tiny.dry_runs) == (2, 1, 0, 4, 1)
    assert tiny.success_rate == 0.5
    assert tiny.mean_tokens_in == 20  # the verified old row and tests_worse; not the dry run
    down = by_tier["only-down"]
    assert (down.attempts, down.success_rate, down.no_answer) == (0, 0.0, 1)
    assert [row.tier for row in RecordStore(path).summary()] == ["tiny", "only-down"]


VERSION_1 = """
CREATE TABLE attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT, repo TEXT NOT NULL, instruction TEXT NOT NULL,
    tier TEXT NOT NULL, model TEXT NOT NULL, edit_format TEXT NOT NULL, tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL, latency_s REAL NOT NULL, outcome TEXT NOT NULL, created_at REAL NOT NULL,
    dry_run INTEGER NOT NULL DEFAULT 0
);
INSERT INTO attempts VALUES (1, 'j', 'r', 'add x', 'tiny', 'm', 'whole', 10, 5, 1.0, 'verified', 0, 0);
PRAGMA user_version = 1;
"""


def test_a_database_without_features_gains_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "records.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(VERSION_1)
    store = RecordStore(path)
    store.add(
        repo="r",
        instruction="rename x",
        tier="tiny",
        model="m",
        edit_format="whole",
        tokens_in=1,
        tokens_out=1,
        latency_s=0.1,
        outcome="verified",
        request_id="req-1",
        features={"kind": "rename", "language": "python", "words": 2, "files": 1, "symbols": 1},
    )
    old, new = RecordStore(path).attempts()  # opening again changes nothing
    assert (old["outcome"], old["kind"], old["language"], old["request_id"]) == ("verified", None, None, None)
    assert (new["kind"], new["language"], new["words"], new["files"], new["symbols"]) == (
        "rename",
        "python",
        2,
        1,
        1,
    )
    assert new["request_id"] == "req-1"
    # Where each came from: unknown before sources were recorded; a job's by default.
    assert (old["source"], new["source"]) == (None, "job")
    # The old row counts for every kind, never for one.
    assert store.recent_outcomes("tiny", 10) == ["verified", "verified"]
    assert store.recent_outcomes("tiny", 10, kind="rename") == ["verified"]
    assert store.request_kinds() == [("rename", "python")]
    with sqlite3.connect(path) as db:
        indexes = {row[1] for row in db.execute("PRAGMA index_list(attempts)")}
    assert "attempts_tier_kind" in indexes


def test_attempts_say_where_they_came_from(tmp_path: Path) -> None:
    path = tmp_path / "records.sqlite3"
    common: dict[str, Any] = {
        "repo": "r",
        "instruction": "add x",
        "tier": "tiny",
        "model": "m",
        "edit_format": "whole",
        "tokens_in": 1,
        "tokens_out": 1,
        "latency_s": 0.1,
        "outcome": "verified",
    }
    RecordStore(path).add(**common)
    RecordStore(path, source="cli").add(**common)
    # An eval run's tries are stored with its results, always as "eval".
    RecordStore(path, source="cli").add_eval_results([], [{**common, "created_at": 5.0, "source": "job"}])
    assert [a["source"] for a in RecordStore(path).attempts()] == ["job", "cli", "eval"]
    with pytest.raises(ValueError, match="unknown attempt source 'bench'"):
        RecordStore(path, source="bench")
