"""Who solved what: every tier attempt in one SQLite table.

This is the data small-model coverage grows from: which tier, format and model
carried which instruction, at what cost. A connection per operation keeps the
store safe to share between threads and processes (WAL lets readers in while a
job writes).

An attempt counts in the summary only when a model answered: a tier that
could not be reached, had no such model or refused the key says nothing
about what the model can do. Dry runs (which never run the tests) are
counted apart.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from bot import metrics

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
    created_at REAL NOT NULL,
    dry_run INTEGER NOT NULL DEFAULT 0,
    request_id TEXT,
    kind TEXT,
    language TEXT,
    words INTEGER,
    files INTEGER,
    symbols INTEGER,
    source TEXT
);
CREATE INDEX IF NOT EXISTS attempts_tier ON attempts (tier);
CREATE INDEX IF NOT EXISTS attempts_tier_kind ON attempts (tier, kind);
CREATE INDEX IF NOT EXISTS attempts_job ON attempts (job_id);
CREATE TABLE IF NOT EXISTS eval_results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    suite TEXT NOT NULL,
    task TEXT,
    tier TEXT NOT NULL,
    model TEXT NOT NULL,
    outcome TEXT NOT NULL,
    tries INTEGER NOT NULL,
    solved_on INTEGER,
    tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    latency_s REAL NOT NULL,
    detail TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS eval_results_run ON eval_results (run_id);
"""
# The columns of one `patchling eval` result (bot.evaluation): one row per task
# and tier, or one per tier that could not run (task NULL, outcome "not_run").
EVAL_COLUMNS = (
    "run_id",
    "suite",
    "task",
    "tier",
    "model",
    "outcome",
    "tries",
    "solved_on",
    "tokens_in",
    "tokens_out",
    "latency_s",
    "detail",
    "created_at",
)
# Changes to a database made by an older version, by its PRAGMA user_version.
MIGRATIONS = {
    # Version 1: dry runs are marked (older rows were all taken as real runs).
    1: "ALTER TABLE attempts ADD COLUMN dry_run INTEGER NOT NULL DEFAULT 0",
}
SCHEMA_VERSION = max(MIGRATIONS)
# The request's features (bot.features) and the run it belongs to, added to a
# database that lacks them whatever its version says: rows written before
# have none (NULL), and the router (bot.routing) leaves those out of a kind.
FEATURE_COLUMNS = {
    "request_id": "TEXT",
    "kind": "TEXT",
    "language": "TEXT",
    "words": "INTEGER",
    "files": "INTEGER",
    "symbols": "INTEGER",
}
# Where an attempt came from: a job of the App, `patchling edit`, or a task of
# `patchling eval` (NULL: recorded before sources were). The router counts them
# all alike: an eval task solved is as much evidence as a job verified.
SOURCES = ("job", "cli", "eval")
ADDED_COLUMNS = {**FEATURE_COLUMNS, "source": "TEXT"}
ATTEMPT_COLUMNS = (
    "job_id",
    "repo",
    "instruction",
    "tier",
    "model",
    "edit_format",
    "tokens_in",
    "tokens_out",
    "latency_s",
    "outcome",
    "created_at",
    "dry_run",
    *ADDED_COLUMNS,
)
# Outcomes where no model answered (bot.models.NO_ANSWER_KINDS, kept here so
# reading records never loads the model runtime; a test keeps them equal).
NO_ANSWER_OUTCOMES = (
    "auth_failed",
    "connection_refused",
    "model_not_found",
    "server_error",
    "timeout",
    "unreachable",
)
# What an eval try's attempt record has unless it says otherwise: no job, a real run.
EVAL_ATTEMPT: dict[str, Any] = {"job_id": None, "dry_run": 0, "request_id": None, "features": None}
INSERT_ATTEMPT = "INSERT INTO attempts ({}) VALUES ({})".format(
    ", ".join(ATTEMPT_COLUMNS), ", ".join("?" * len(ATTEMPT_COLUMNS))
)
# The attempts that say what a model can do: one answered, in a real run.
COUNTED = "outcome NOT IN ({}) AND dry_run = 0".format(", ".join(f"'{o}'" for o in NO_ANSWER_OUTCOMES))


@dataclass(frozen=True)
class TierSummary:
    tier: str
    attempts: int  # a model answered, in a real run
    verified: int
    unverified: int  # changes made without full evidence: "unverified" and "unexercised"
    success_rate: float  # verified / attempts
    mean_tokens_in: float
    mean_tokens_out: float
    mean_latency_s: float
    no_answer: int = 0  # calls no model answered (unreachable, no such model, timeout, ...)
    dry_runs: int = 0  # dry-run attempts a model answered

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
            "no_answer": self.no_answer,
            "dry_runs": self.dry_runs,
        }


class RecordStore:
    """`dry_run` marks every attempt this store adds (unless `add` says
    otherwise): the CLI opens its store for a dry run that way; `source`
    (one of SOURCES) says where those attempts came from."""

    def __init__(self, path: Path, *, dry_run: bool = False, source: str = "job") -> None:
        if source not in SOURCES:
            raise ValueError(f"unknown attempt source {source!r} (known: {', '.join(SOURCES)})")
        self.path = Path(path)
        self.dry_run = dry_run
        self.source = source
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            self._migrate(db)

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        # One writer at a time: two processes opening an old database must
        # not both add the same column.
        db.execute("BEGIN IMMEDIATE")
        exists = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'attempts'").fetchone()
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if exists:
            for target in sorted(v for v in MIGRATIONS if v > version):
                db.execute(MIGRATIONS[target])
            have = {row[1] for row in db.execute("PRAGMA table_info(attempts)")}
            for column, kind in ADDED_COLUMNS.items():
                if column not in have:
                    db.execute(f"ALTER TABLE attempts ADD COLUMN {column} {kind}")
        for statement in SCHEMA.split(";"):  # a new database gets the current schema whole
            if statement.strip():
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

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
        dry_run: bool | None = None,
        request_id: str | None = None,
        features: Mapping[str, Any] | None = None,
    ) -> int:
        """Store one attempt; returns its row id. `features` are the request's
        (bot.features.Features.to_json); `request_id` groups one run's attempts."""
        dry = self.dry_run if dry_run is None else dry_run
        values = self._attempt_row(
            job_id=job_id,
            repo=repo,
            instruction=instruction,
            tier=tier,
            model=model,
            edit_format=edit_format,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            latency_s=latency_s,
            outcome=outcome,
            created_at=time.time() if created_at is None else created_at,
            dry_run=int(dry),
            request_id=request_id,
            source=self.source,
            features=features,
        )
        with self._connect() as db:
            cursor = db.execute(INSERT_ATTEMPT, values)
        if not dry:
            metrics.attempt(tier, outcome, int(tokens_in), int(tokens_out))
        return int(cursor.lastrowid or 0)

    @staticmethod
    def _attempt_row(features: Mapping[str, Any] | None, **values: Any) -> tuple[Any, ...]:
        """One attempt's values in ATTEMPT_COLUMNS' order, the counts as numbers."""
        for column in ("tokens_in", "tokens_out"):
            values[column] = int(values[column])
        values["latency_s"] = float(values["latency_s"])
        values |= {c: (features or {}).get(c) for c in FEATURE_COLUMNS if c != "request_id"}
        return tuple(values[c] for c in ATTEMPT_COLUMNS)

    def recent_outcomes(
        self, tier: str, limit: int, *, kind: str | None = None, language: str | None = None
    ) -> list[str]:
        """The outcomes of `tier`'s last `limit` counted attempts, newest first:
        on requests of `kind` (and `language`) when given, else on any."""
        where, args = self._similar(kind, language)
        query = f"SELECT outcome FROM attempts WHERE tier = ? AND {COUNTED}{where} ORDER BY id DESC LIMIT ?"
        with self._connect() as db:
            return [row[0] for row in db.execute(query, (tier, *args, limit))]

    def requests_since(self, tier: str, kind: str) -> int:
        """How many requests of `kind` had counted attempts after the one
        `tier` last made an attempt in (since the first record, when none)."""
        request = "COALESCE(request_id, 'row' || id)"
        of_kind = f"{COUNTED} AND kind = ?"
        query = (
            f"WITH last AS (SELECT id, {request} AS request FROM attempts"
            f" WHERE tier = ? AND {of_kind} ORDER BY id DESC LIMIT 1)"
            f" SELECT COUNT(DISTINCT {request}) FROM attempts WHERE {of_kind}"
            " AND id > COALESCE((SELECT id FROM last), 0)"
            f" AND {request} != COALESCE((SELECT request FROM last), '')"
        )
        with self._connect() as db:
            return int(db.execute(query, (tier, kind, kind)).fetchone()[0])

    def request_kinds(self) -> list[tuple[str, str]]:
        """Every (kind, language) counted attempts were recorded with, sorted."""
        query = (
            "SELECT DISTINCT kind, COALESCE(language, '') FROM attempts"
            f" WHERE {COUNTED} AND kind IS NOT NULL ORDER BY 1, 2"
        )
        with self._connect() as db:
            return [(kind, language) for kind, language in db.execute(query)]

    @staticmethod
    def _similar(kind: str | None, language: str | None) -> tuple[str, tuple[str, ...]]:
        where, args = "", cast(tuple[str, ...], ())
        if kind is not None:
            where, args = " AND kind = ?", (kind,)
        if language is not None:
            where, args = where + " AND language = ?", (*args, language)
        return where, args

    def attempts(self, job_id: str | None = None, *, since: float | None = None) -> list[dict[str, Any]]:
        """Stored attempts, oldest first; only one job's when `job_id` is given,
        only those made at or after `since` (a Unix time) when that is."""
        where: list[str] = []
        args: list[Any] = []
        if job_id is not None:
            where.append("job_id = ?")
            args.append(job_id)
        if since is not None:
            where.append("created_at >= ?")
            args.append(since)
        query = "SELECT * FROM attempts" + (" WHERE " + " AND ".join(where) if where else "")
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            return [dict(row) for row in db.execute(query + " ORDER BY id", args)]

    def summary(self) -> list[TierSummary]:
        """Per tier, busiest first: attempts a model answered in real runs,
        verified, success rate and means over those; and apart, the calls
        no model answered and the dry runs."""
        marks = ", ".join("?" * len(NO_ANSWER_OUTCOMES))
        with self._connect() as db:
            rows = db.execute(
                "WITH answered AS (SELECT *, outcome NOT IN (" + marks + ") AS answered FROM attempts),"
                " flagged AS (SELECT *, answered AND dry_run = 0 AS counted FROM answered)"
                " SELECT tier, SUM(counted),"
                " SUM(counted AND outcome = 'verified'),"
                " SUM(counted AND outcome IN ('unverified', 'unexercised')),"
                " AVG(CASE WHEN counted THEN tokens_in END),"
                " AVG(CASE WHEN counted THEN tokens_out END),"
                " AVG(CASE WHEN counted THEN latency_s END),"
                " SUM(NOT answered), SUM(answered AND dry_run = 1)"
                " FROM flagged GROUP BY tier ORDER BY SUM(counted) DESC, tier",
                NO_ANSWER_OUTCOMES,
            ).fetchall()
        return [
            TierSummary(
                tier=tier,
                attempts=count or 0,
                verified=verified or 0,
                unverified=unverified or 0,
                success_rate=(verified or 0) / count if count else 0.0,
                mean_tokens_in=tokens_in or 0.0,
                mean_tokens_out=tokens_out or 0.0,
                mean_latency_s=latency or 0.0,
                no_answer=unanswered or 0,
                dry_runs=dry or 0,
            )
            for tier, count, verified, unverified, tokens_in, tokens_out, latency, unanswered, dry in rows
        ]

    def add_eval_results(
        self, rows: list[dict[str, Any]], attempts: Sequence[Mapping[str, Any]] = ()
    ) -> None:
        """Store one eval run's rows (EVAL_COLUMNS each) and the attempts its
        tries make for the router (`add`'s arguments each, source "eval"), in
        one transaction: a run is stored whole or not at all."""
        marks = ", ".join("?" * len(EVAL_COLUMNS))
        tried = [self._attempt_row(**{**EVAL_ATTEMPT, **a, "source": "eval"}) for a in attempts]
        with self._connect() as db:
            db.executemany(
                f"INSERT INTO eval_results ({', '.join(EVAL_COLUMNS)}) VALUES ({marks})",
                [tuple(row[c] for c in EVAL_COLUMNS) for row in rows],
            )
            db.executemany(INSERT_ATTEMPT, tried)

    def eval_run_ids(self, limit: int) -> list[str]:
        """The latest `limit` stored eval runs, newest first."""
        query = "SELECT run_id FROM eval_results GROUP BY run_id ORDER BY MAX(id) DESC LIMIT ?"
        with self._connect() as db:
            return [str(row[0]) for row in db.execute(query, (limit,))]

    def eval_results(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Stored eval rows, oldest first: one run's when `run_id` is given, else the
        latest run's (none when nothing was stored)."""
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            if run_id is None:
                latest = db.execute("SELECT run_id FROM eval_results ORDER BY id DESC LIMIT 1").fetchone()
                if latest is None:
                    return []
                run_id = str(latest[0])
            query = "SELECT * FROM eval_results WHERE run_id = ? ORDER BY id"
            return [dict(row) for row in db.execute(query, (run_id,))]
