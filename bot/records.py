"""Who solved what: every tier attempt in one SQLite table.

This is the data small-model coverage grows from: which tier, format and model
carried which instruction, at what cost. A connection per operation keeps the
store safe to share between threads and processes (WAL lets readers in while a
job writes).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT,
    repo TEXT NOT NULL,
    instruction TEXT NOT NULL,
    tier TEXT NOT NULL,
    model TEXT NOT NULL,
    edit_format TEXT NOT NULL,
    tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    latency_s REAL NOT NULL,
    outcome TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_tier ON attempts (tier);
CREATE INDEX IF NOT EXISTS attempts_job ON attempts (job_id);
"""


@dataclass(frozen=True)
class TierSummary:
    tier: str
    attempts: int
    verified: int
    unverified: int
    success_rate: float  # verified / attempts
    mean_tokens_in: float
    mean_tokens_out: float
    mean_latency_s: float

    def to_json(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "attempts": self.attempts,
            "verified": self.verified,
            "unverified": self.unverified,
            "success_rate": round(self.success_rate, 4),
            "mean_tokens_in": round(self.mean_tokens_in, 1),
            "mean_tokens_out": round(self.mean_tokens_out, 1),
            "mean_latency_s": round(self.mean_latency_s, 3),
        }


class RecordStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            with db:  # commits, or rolls back on error
                yield db
        finally:
            db.close()

    def add(
        self,
        *,
        repo: str,
        instruction: str,
        tier: str,
        model: str,
        edit_format: str,
        tokens_in: int,
        tokens_out: int,
        latency_s: float,
        outcome: str,
        job_id: str | None = None,
        created_at: float | None = None,
    ) -> int:
        """Store one attempt; returns its row id."""
        with self._connect() as db:
            cursor = db.execute(
                "INSERT INTO attempts (job_id, repo, instruction, tier, model, edit_format,"
                " tokens_in, tokens_out, latency_s, outcome, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    repo,
                    instruction,
                    tier,
                    model,
                    edit_format,
                    int(tokens_in),
                    int(tokens_out),
                    float(latency_s),
                    outcome,
                    time.time() if created_at is None else created_at,
                ),
            )
            return int(cursor.lastrowid or 0)

    def attempts(self, job_id: str | None = None) -> list[dict[str, Any]]:
        """Stored attempts, oldest first; only one job's when `job_id` is given."""
        query = "SELECT * FROM attempts"
        args: tuple[Any, ...] = ()
        if job_id is not None:
            query += " WHERE job_id = ?"
            args = (job_id,)
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            return [dict(row) for row in db.execute(query + " ORDER BY id", args)]

    def summary(self) -> list[TierSummary]:
        """Per tier: attempts, verified, success rate and means, busiest first."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT tier, COUNT(*),"
                " SUM(outcome = 'verified'), SUM(outcome = 'unverified'),"
                " AVG(tokens_in), AVG(tokens_out), AVG(latency_s)"
                " FROM attempts GROUP BY tier ORDER BY COUNT(*) DESC, tier"
            ).fetchall()
        return [
            TierSummary(
                tier=tier,
                attempts=count,
                verified=verified or 0,
                unverified=unverified or 0,
                success_rate=(verified or 0) / count if count else 0.0,
                mean_tokens_in=tokens_in or 0.0,
                mean_tokens_out=tokens_out or 0.0,
                mean_latency_s=latency or 0.0,
            )
            for tier, count, verified, unverified, tokens_in, tokens_out, latency in rows
        ]
