"""The ledger: every job the server took, in SQLite under data_dir.

It deduplicates deliveries (unique on delivery id and on comment), keeps each
request so that a restart can run it again, and keeps a job's progress (its
status comment, its pushed commit, its PR) so that a resumed run continues
instead of starting over.
"""

from __future__ import annotations

import enum
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from bot import github as gh

Target = Literal["issue", "pull", "review"]
# A job interrupted by a restart runs again at most this many times in all.
MAX_RUNS = 2


class JobRequest(BaseModel):
    """Everything a job needs from the delivery: small, and plain JSON in the queue."""

    job_id: str
    delivery_id: str
    event: Literal["issue_comment", "pull_request_review_comment"]
    target: Target
    command: Literal["edit", "help"]
    instruction: str = ""
    reply: str = ""  # what to answer without doing work (the usage, for help)
    owner: str
    repo: str
    clone_url: str
    default_branch: str
    installation_id: int | None = None
    number: int  # the issue or pull request
    title: str = ""  # of the issue or pull request
    comment_id: int
    comment_url: str = ""
    requester_login: str
    requester_id: int
    # A review comment's place in the diff.
    path: str | None = None
    start_line: int | None = None
    end_line: int | None = None
    diff_hunk: str | None = None

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.repo}"

    @property
    def comment_kind(self) -> gh.CommentKind:
        return "review" if self.event == "pull_request_review_comment" else "issue"

    @property
    def comment_key(self) -> str:
        return f"{self.comment_kind}:{self.comment_id}"


def new_job_id() -> str:
    return secrets.token_hex(8)  # 16 hex digits, as uuid4().hex[:16] gave, at under half the cost


class JobStatus(enum.StrEnum):
    """A job's status in the ledger: where it is, then how it ended (its outcome)."""

    RECEIVED = "received"  # recorded, not yet enqueued
    QUEUED = "queued"
    RUNNING = "running"
    # How a job ended.
    DONE = "done"
    FAILED = "failed"
    HELP = "help"
    DENIED = "denied"
    DECLINED = "declined"
    ERROR = "error"
    NO_TOKEN = "no_token"
    REPO_GONE = "repo_gone"
    INTERRUPTED = "interrupted"


def tune_sqlite(db: sqlite3.Connection) -> None:
    """WAL with synchronous=NORMAL: a commit survives a crash or restart of the
    process (only a power cut could lose the last few), without an fsync per
    commit. No automatic checkpoints: they fsync in the middle of a webhook's
    commit; `checkpoint()` runs them from a background thread instead (and
    SQLite checkpoints when the last connection closes)."""
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA wal_autocheckpoint=0")


def checkpoint(path: Path) -> None:
    """Fold the WAL into the database without blocking writers (PASSIVE)."""
    db = sqlite3.connect(path, timeout=10)
    try:
        db.execute("PRAGMA wal_checkpoint(PASSIVE)")
    finally:
        db.close()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    delivery_id TEXT NOT NULL UNIQUE,
    comment_key TEXT NOT NULL UNIQUE,
    repo TEXT NOT NULL,
    status TEXT NOT NULL,
    runs INTEGER NOT NULL DEFAULT 0,
    lock_name TEXT,
    request TEXT,  -- kept from the start, so a restart can run it again
    progress TEXT,  -- JSON: what a run has done that a resumed run must not do twice
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS installations (
    installation_id INTEGER NOT NULL,
    repo TEXT NOT NULL,
    PRIMARY KEY (installation_id, repo)
);
"""


@dataclass(frozen=True)
class JobRow:
    """One job as the ledger holds it."""

    job_id: str
    repo: str
    status: JobStatus
    request: JobRequest | None
    progress: dict[str, Any]
    created_at: float
    updated_at: float


class JobLedger(Protocol):
    """What the queue, the web app, the dashboard and the metrics need of a
    ledger: `Ledger` (SQLite, one host) or `redis_ledger.RedisLedger` (shared)."""

    def claim_many(self, jobs: list[JobRequest]) -> list[bool]: ...
    def forget(self, job_ids: list[str]) -> None: ...
    def enqueued(self, job_ids: list[str]) -> None: ...
    def forget_unqueued(self) -> int: ...
    def started(self, job: JobRequest) -> None: ...
    def locked(self, job_id: str, lock_name: str) -> None: ...
    def set_status(self, job_id: str, status: str, *, lock_name: str | None = None) -> None: ...
    def status(self, job_id: str) -> JobStatus | None: ...
    def count(self, status: str | None = None) -> int: ...
    def interrupted(self) -> list[tuple[JobRequest, int, str | None]]: ...
    def unfinished(self) -> list[tuple[JobRequest, JobStatus, int, str | None]]: ...
    def runs(self, job_id: str) -> int: ...
    def progress(self, job_id: str) -> dict[str, Any]: ...
    def note(self, job_id: str, **fields: Any) -> None: ...
    def recent(self, limit: int = 50) -> list[JobRow]: ...
    def add_repositories(self, installation_id: int, repos: list[str]) -> None: ...
    def remove_repositories(self, installation_id: int, repos: list[str] | None = None) -> None: ...
    def installation_for(self, repo: str) -> int | None: ...
    def checkpoint(self) -> None: ...


class Ledger:
    """SQLite record of jobs and installations under data_dir. The unique
    constraints are the deduplication: a redelivery or a second delivery for
    the same comment cannot insert a second job."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._db() as db:
            db.executescript(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
            if "progress" not in columns:  # a ledger written before resuming existed
                db.execute("ALTER TABLE jobs ADD COLUMN progress TEXT")

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        # One connection per thread: the web loop and each consumer thread.
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            tune_sqlite(db)
            self._local.db = db
        yield db

    def claim_many(self, jobs: list[JobRequest]) -> list[bool]:
        """Record jobs in one transaction (one commit for many deliveries); for
        each, False when its delivery or comment is known already."""
        now = time.time()
        claimed: list[bool] = []
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                for job in jobs:
                    try:
                        # The request too: a worker that dies between taking the task
                        # and starting it takes the queue's copy with it (huey's
                        # storages delete a task as they hand it out).
                        db.execute(
                            "INSERT INTO jobs (job_id, delivery_id, comment_key, repo, status, request,"
                            " created_at, updated_at) VALUES (?, ?, ?, ?, 'received', ?, ?, ?)",
                            (
                                job.job_id,
                                job.delivery_id,
                                job.comment_key,
                                job.full_name,
                                job.model_dump_json(),
                                now,
                                now,
                            ),
                        )
                        claimed.append(True)
                    except sqlite3.IntegrityError:
                        claimed.append(False)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return claimed

    def forget(self, job_ids: list[str]) -> None:
        with self._db() as db:
            db.executemany("DELETE FROM jobs WHERE job_id = ?", [(job_id,) for job_id in job_ids])

    def enqueued(self, job_ids: list[str]) -> None:
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "UPDATE jobs SET status = 'queued' WHERE job_id = ? AND status = 'received'",
                [(job_id,) for job_id in job_ids],
            )
            db.execute("COMMIT")

    def forget_unqueued(self) -> int:
        """Drop deliveries recorded by a process that died before enqueueing them."""
        with self._db() as db:
            return db.execute("DELETE FROM jobs WHERE status = 'received'").rowcount

    def started(self, job: JobRequest) -> None:
        """The job is taken by a worker; kept so that a restart can run it again."""
        with self._db() as db:
            db.execute(
                "UPDATE jobs SET status = 'running', request = ?, updated_at = ? WHERE job_id = ?",
                (job.model_dump_json(), time.time(), job.job_id),
            )

    def locked(self, job_id: str, lock_name: str) -> None:
        """The job holds its branch: only now does a run count towards MAX_RUNS
        (waiting for a busy branch costs nothing)."""
        with self._db() as db:
            db.execute(
                "UPDATE jobs SET status = 'running', runs = runs + 1, lock_name = ?, updated_at = ?"
                " WHERE job_id = ?",
                (lock_name, time.time(), job_id),
            )

    def set_status(self, job_id: str, status: str, *, lock_name: str | None = None) -> None:
        """Raises ValueError for a status that is not a JobStatus (a typo must not reach the ledger)."""
        with self._db() as db:
            db.execute(
                "UPDATE jobs SET status = ?, lock_name = ?, updated_at = ? WHERE job_id = ?",
                (JobStatus(status).value, lock_name, time.time(), job_id),
            )

    def status(self, job_id: str) -> JobStatus | None:
        with self._db() as db:
            row = db.execute("SELECT status FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else JobStatus(row[0])

    def count(self, status: str | None = None) -> int:
        with self._db() as db:
            if status is None:
                return int(db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])
            return int(db.execute("SELECT COUNT(*) FROM jobs WHERE status = ?", (status,)).fetchone()[0])

    def interrupted(self) -> list[tuple[JobRequest, int, str | None]]:
        """Jobs left running by a process that is gone: (request, runs, lock)."""
        return [
            (job, runs, lock) for job, status, runs, lock in self.unfinished() if status == JobStatus.RUNNING
        ]

    def unfinished(self) -> list[tuple[JobRequest, JobStatus, int, str | None]]:
        """Jobs queued or running, with their request: (request, status, runs, lock)."""
        with self._db() as db:
            rows = db.execute(
                "SELECT request, status, runs, lock_name FROM jobs"
                " WHERE status IN ('queued', 'running') AND request IS NOT NULL"
            ).fetchall()
        return [(JobRequest.model_validate_json(r[0]), JobStatus(r[1]), int(r[2]), r[3]) for r in rows]

    def runs(self, job_id: str) -> int:
        with self._db() as db:
            row = db.execute("SELECT runs FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return 0 if row is None else int(row[0])

    def progress(self, job_id: str) -> dict[str, Any]:
        with self._db() as db:
            row = db.execute("SELECT progress FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return json.loads(row[0]) if row and row[0] else {}

    def note(self, job_id: str, **fields: Any) -> None:
        """Add to the job's progress (one worker thread per job: no lost update)."""
        merged = {**self.progress(job_id), **fields}
        with self._db() as db:
            db.execute(
                "UPDATE jobs SET progress = ?, updated_at = ? WHERE job_id = ?",
                (json.dumps(merged), time.time(), job_id),
            )

    def recent(self, limit: int = 50) -> list[JobRow]:
        """The latest jobs, newest first, with their request and progress (the dashboard's table)."""
        with self._db() as db:
            rows = db.execute(
                "SELECT job_id, repo, status, request, progress, created_at, updated_at FROM jobs"
                " ORDER BY created_at DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            JobRow(
                job_id=str(job_id),
                repo=str(repo),
                status=JobStatus(status),
                request=JobRequest.model_validate_json(request) if request else None,
                progress=json.loads(progress) if progress else {},
                created_at=float(created),
                updated_at=float(updated),
            )
            for job_id, repo, status, request, progress, created, updated in rows
        ]

    def add_repositories(self, installation_id: int, repos: list[str]) -> None:
        with self._db() as db:
            db.executemany(
                "INSERT OR IGNORE INTO installations (installation_id, repo) VALUES (?, ?)",
                [(installation_id, repo) for repo in repos],
            )

    def remove_repositories(self, installation_id: int, repos: list[str] | None = None) -> None:
        """Forget some repositories of an installation, or (None) the whole installation."""
        with self._db() as db:
            if repos is None:
                db.execute("DELETE FROM installations WHERE installation_id = ?", (installation_id,))
            else:
                db.executemany(
                    "DELETE FROM installations WHERE installation_id = ? AND repo = ?",
                    [(installation_id, repo) for repo in repos],
                )

    def installation_for(self, repo: str) -> int | None:
        with self._db() as db:
            row = db.execute("SELECT installation_id FROM installations WHERE repo = ?", (repo,)).fetchone()
        return None if row is None else int(row[0])

    def checkpoint(self) -> None:
        checkpoint(self.path)


class Memo(Protocol):
    """What a job has done so far, kept across runs so a resumed run continues."""

    def load(self) -> dict[str, Any]: ...

    def save(self, **fields: Any) -> None: ...


class LedgerMemo:
    def __init__(self, ledger: JobLedger, job_id: str) -> None:
        self.ledger = ledger
        self.job_id = job_id

    def load(self) -> dict[str, Any]:
        return self.ledger.progress(self.job_id)

    def save(self, **fields: Any) -> None:
        self.ledger.note(self.job_id, **fields)


class MemoryMemo:
    """For a job run once, outside the queue."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def load(self) -> dict[str, Any]:
        return dict(self.data)

    def save(self, **fields: Any) -> None:
        self.data.update(fields)
