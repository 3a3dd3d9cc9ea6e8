"""Jobs: the durable queue, the ledger that deduplicates them, and the work.

web.py hands JobRequests to an Intake, which has `JobQueue.submit_many`
record them in the ledger (unique on delivery id and on comment) and enqueue
them with huey: SqliteHuey under data_dir, or RedisHuey when `queue_url` says
`redis://`. Consumer threads run `work()`: permission check, target, one job
at a time per repository branch, mirror fetch and checkout, the engine,
commit, push, PR, comments.

At the next start after a crash (`JobQueue.recover`), the ledger is the
source of truth: a job that was running, or was queued but whose task is gone
from the queue, is enqueued once more, and a delivery recorded but never
enqueued is forgotten, so that GitHub's redelivery is taken afresh. A resumed
run continues from the progress the ledger kept (its status comment, its
pushed commit, its PR) instead of starting over.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import shutil
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import pygit2
from huey import Huey, RedisHuey, SqliteHuey
from huey.exceptions import TaskLockedException
from huey.storage import SqliteStorage
from pydantic import BaseModel

from bot import github as gh
from bot import metrics, workspace
from bot.config import Settings, Tier
from bot.repo_settings import (
    MissingBranch,
    RepoSettings,
    RepoSettingsError,
    load_repo_settings,
    select_tiers,
)

if TYPE_CHECKING:
    from bot.engine import EditResult

log = logging.getLogger(__name__)

Target = Literal["issue", "pull", "review"]
# A job that finds its branch busy tries again this much later.
BUSY_RETRY_S = 15
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
    return uuid.uuid4().hex[:16]


# -- the ledger ----------------------------------------------------------------------

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
    status: str
    request: JobRequest | None
    progress: dict[str, Any]
    created_at: float
    updated_at: float


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
        with self._db() as db:
            db.execute(
                "UPDATE jobs SET status = ?, lock_name = ?, updated_at = ? WHERE job_id = ?",
                (status, lock_name, time.time(), job_id),
            )

    def status(self, job_id: str) -> str | None:
        with self._db() as db:
            row = db.execute("SELECT status FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else str(row[0])

    def count(self, status: str | None = None) -> int:
        with self._db() as db:
            if status is None:
                return int(db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])
            return int(db.execute("SELECT COUNT(*) FROM jobs WHERE status = ?", (status,)).fetchone()[0])

    def interrupted(self) -> list[tuple[JobRequest, int, str | None]]:
        """Jobs left running by a process that is gone: (request, runs, lock)."""
        return [(job, runs, lock) for job, status, runs, lock in self.unfinished() if status == "running"]

    def unfinished(self) -> list[tuple[JobRequest, str, int, str | None]]:
        """Jobs queued or running, with their request: (request, status, runs, lock)."""
        with self._db() as db:
            rows = db.execute(
                "SELECT request, status, runs, lock_name FROM jobs"
                " WHERE status IN ('queued', 'running') AND request IS NOT NULL"
            ).fetchall()
        return [(JobRequest.model_validate_json(r[0]), str(r[1]), int(r[2]), r[3]) for r in rows]

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
                status=str(status),
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


# -- the queue -----------------------------------------------------------------------


class BranchBusy(Exception):
    """Another job holds this repository branch; try again later."""


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


class _SqliteStorage(SqliteStorage):
    """huey's SQLite storage, tuned like the ledger (see tune_sqlite)."""

    def _create_connection(self) -> sqlite3.Connection:
        conn = super()._create_connection()
        tune_sqlite(conn)
        return conn

    def enqueue_many(self, blobs: list[bytes]) -> None:
        """Group commit: a batch of tasks in one transaction, all or none
        (huey's own enqueue commits once per task)."""
        with self.db(commit=True) as cursor:
            cursor.executemany(
                "insert into task (queue, data, priority) values (?, ?, ?)",
                [(self.name, self.to_blob(blob), 0) for blob in blobs],
            )


def make_huey(settings: Settings) -> Huey:
    url = settings.queue_url
    if url and url.startswith(("redis://", "rediss://", "unix://")):
        return RedisHuey("patchling", url=url, results=False)
    if url:
        raise ValueError(f"unsupported queue_url {url.split(':', 1)[0]}: use redis://… or leave it unset")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(
        "patchling",
        filename=str(settings.data_dir / "queue.sqlite3"),
        results=False,
        storage_class=_SqliteStorage,
    )


class JobQueue:
    """huey plus the ledger, with the job task registered under a fixed name so
    a new process (or a new JobQueue on the same storage) can run what an
    earlier one enqueued."""

    TASK_NAME = "patchling_job"

    def __init__(
        self,
        settings: Settings,
        *,
        huey: Huey | None = None,
        ledger: Ledger | None = None,
        github: gh.GitHubFactory | None = None,
        busy_retry_s: float = BUSY_RETRY_S,
    ) -> None:
        self.settings = settings
        self.huey = huey if huey is not None else make_huey(settings)
        self.ledger = ledger if ledger is not None else Ledger(settings.data_dir / "jobs.sqlite3")
        self.github = github if github is not None else lambda: gh.app_client(settings)
        self.busy_retry_s = busy_retry_s
        self._stuck_locks: set[str] = set()  # branch locks a job could not release
        self._task = self.huey.task(name=self.TASK_NAME)(self._execute)

    def submit(self, job: JobRequest) -> bool:
        """Record and enqueue; False (and nothing enqueued) for a duplicate."""
        return self.submit_many([job])[0]

    def submit_many(self, jobs: list[JobRequest]) -> list[bool]:
        """Record the jobs (one transaction), then enqueue the new ones."""
        claimed = self.ledger.claim_many(jobs)
        new = [job for job, fresh in zip(jobs, claimed, strict=True) if fresh]
        storage = self.huey.storage
        if self.huey.immediate or not isinstance(storage, _SqliteStorage):
            self._enqueue_each(new)
            return claimed
        tasks = [self._task.s(job.model_dump(mode="json")) for job in new]
        try:
            storage.enqueue_many([self.huey.serialize_task(task) for task in tasks])
        except Exception:
            # Nothing of the batch is queued: let GitHub's redelivery try again.
            self.ledger.forget([job.job_id for job in new])
            raise
        self.ledger.enqueued([job.job_id for job in new])
        return claimed

    def _enqueue_each(self, jobs: list[JobRequest]) -> None:
        """Through huey's own enqueue (Redis, or immediate mode in tests)."""
        for index, job in enumerate(jobs):
            try:
                self._task(job.model_dump(mode="json"))
            except Exception:
                # Let GitHub's redelivery of the jobs not enqueued try again.
                self.ledger.forget([left.job_id for left in jobs[index:]])
                self.ledger.enqueued([done.job_id for done in jobs[:index]])
                raise
        self.ledger.enqueued([job.job_id for job in jobs])

    def run_pending(self) -> int:
        """Run every queued job in this thread (tests, and draining by hand)."""
        count = 0
        while (task := self.huey.dequeue()) is not None:
            if not self.huey.ready_to_run(task):
                self.huey.add_schedule(task)  # one for later, as the consumer would
                continue
            self.huey.execute(task)
            count += 1
        return count

    def recover(self) -> int:
        """At start-up, with no job of this server running: the ledger is the
        source of truth, the queue a wake-up. Free the locks of jobs a dead
        process left running and run them again (up to MAX_RUNS runs in all;
        past that, once more only to say so); enqueue again each queued job
        whose task is gone (a worker took it and died before starting it);
        remove the work trees of the dead runs."""
        self.ledger.forget_unqueued()
        waiting = self._tasks_waiting()
        count = 0
        for job, status, runs, lock_name in self.ledger.unfinished():
            if lock_name:
                self.huey.flush_locks(lock_name)
            if status == "queued" and job.job_id in waiting:
                continue
            self.ledger.set_status(job.job_id, "queued")
            self._task(job.model_dump(mode="json"))
            count += int(runs < MAX_RUNS)
        remove_scratch(self.settings.data_dir)
        return count

    def _release(self, name: str) -> None:
        """Release a branch lock; one that cannot be (a full disk under the
        queue) is released by the next job that takes a lock, lest the branch
        stay busy until a restart."""
        try:
            self.huey.lock_task(name).clear()
        except Exception as exc:
            log.warning("could not release the lock on %s (%s); trying again with the next job", name, exc)
            self._stuck_locks.add(name)

    def _release_stuck_locks(self) -> None:
        for name in list(self._stuck_locks):
            try:
                self.huey.lock_task(name).clear()  # not flush_locks: it frees every lock this huey made
            except Exception:
                continue
            self._stuck_locks.discard(name)

    def _tasks_waiting(self) -> set[str]:
        """The job ids of the tasks in the queue or its schedule."""
        tasks = [*self.huey.pending(), *self.huey.scheduled()]
        return {str(task.args[0].get("job_id")) for task in tasks if task.args}

    def checkpoint(self) -> None:
        """Fold the SQLite write-ahead logs into their databases (see tune_sqlite)."""
        checkpoint(self.ledger.path)
        if isinstance(self.huey.storage, SqliteStorage):
            checkpoint(Path(self.huey.storage.filename))

    @metrics.job
    def _execute(self, payload: dict[str, Any]) -> None:
        job = JobRequest.model_validate(payload)
        if self.ledger.runs(job.job_id) >= MAX_RUNS:
            # Interrupted as often as allowed: end it with a word, not silence.
            abandon(job, self.settings, self.github, self.ledger.progress(job.job_id))
            metrics.job_finished("interrupted")
            self.ledger.set_status(job.job_id, "interrupted")
            return
        self.ledger.started(job)

        @contextmanager
        def branch_lock(name: str) -> Iterator[None]:
            self._release_stuck_locks()
            lock = self.huey.lock_task(name)
            try:
                lock.acquire()
            except TaskLockedException:
                raise BranchBusy(name) from None
            try:
                self.ledger.locked(job.job_id, name)
                yield
            finally:
                self._release(name)

        memo = LedgerMemo(self.ledger, job.job_id)
        try:
            outcome = work(job, self.settings, self.github, lock=branch_lock, memo=memo)
        except BranchBusy as busy:
            log.info("job %s waits: %s is busy", job.job_id, busy)
            self.ledger.set_status(job.job_id, "queued")
            self._task.schedule((payload,), delay=self.busy_retry_s)
            return
        except Exception:
            log.exception("job %s failed", job.job_id)
            outcome = "error"
        metrics.job_finished(outcome)
        try:
            self.ledger.set_status(job.job_id, outcome)
        except sqlite3.OperationalError as exc:
            # The requester has been told; the worker lives on. Left 'running', the
            # job is run once more at the next start.
            log.error("job %s ended (%s) but the ledger could not record it: %s", job.job_id, outcome, exc)


def remove_scratch(data_dir: Path) -> None:
    """Work trees of runs that ended without cleaning up (a kill): at start-up
    none belongs to a live job."""
    work_dir = data_dir / "work"
    if not work_dir.is_dir():
        return
    for entry in work_dir.iterdir():
        if entry.name.startswith("job-"):
            shutil.rmtree(entry, ignore_errors=True)


class Memo(Protocol):
    """What a job has done so far, kept across runs so a resumed run continues."""

    def load(self) -> dict[str, Any]: ...

    def save(self, **fields: Any) -> None: ...


class LedgerMemo:
    def __init__(self, ledger: Ledger, job_id: str) -> None:
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


class Submitter(Protocol):
    ledger: Ledger

    def submit_many(self, jobs: list[JobRequest]) -> list[bool]: ...


class Intake:
    """Group commit for the webhook. Requests hand over their job and wait;
    one flush at a time records every job gathered so far in one ledger
    transaction and enqueues them in one queue transaction. Each request is
    answered once its job is durable; under load, one commit serves many
    deliveries. The commits run on the event loop itself: they are short
    (WAL, no fsync per commit), and handing each batch to a thread cost more
    CPU than the commit (measured with bench.webhooks: 540 against 400 µs of
    server CPU a delivery)."""

    def __init__(self, queue: Submitter) -> None:
        self.queue = queue
        self.ledger = queue.ledger
        self._batch: list[tuple[JobRequest, asyncio.Future[bool]]] = []
        self._flushing = False

    async def submit(self, job: JobRequest) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._batch.append((job, future))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._batch:
                batch, self._batch = self._batch, []
                # One turn of the loop first, so that the deliveries already
                # read join this batch.
                await asyncio.sleep(0)
                batch += self._batch
                self._batch = []
                results: Sequence[bool | Exception]
                try:
                    results = self.queue.submit_many([job for job, _ in batch])
                except Exception as exc:
                    log.exception("could not record %d job(s)", len(batch))
                    results = [exc] * len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._flushing = False


# -- the work ------------------------------------------------------------------------

LockFn = Callable[[str], AbstractContextManager[None]]


@contextmanager
def _no_lock(name: str) -> Iterator[None]:
    yield


class Declined(Exception):
    """The job cannot go ahead; the message goes to the requester."""


@dataclass(frozen=True)
class Plan:
    """Where the change goes, and with which repository settings."""

    branch: str  # committed on and pushed to
    start: str  # the branch the work tree starts from
    settings: RepoSettings
    tiers: list[Tier]
    pull: gh.Pull | None = None  # set when pushing to an existing pull request


def slug(text: str, limit: int = 40) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())
    out = ""
    for word in words:
        candidate = f"{out}-{word}" if out else word
        if len(candidate) > limit:
            break
        out = candidate
    return out or "edit"


def issue_branch(prefix: str, number: int, title: str) -> str:
    # From the issue's title, so a second /edit on the issue lands on the same branch and PR.
    name = f"{prefix}{number}-{slug(title)}"
    return name if pygit2.reference_is_valid_name(f"refs/heads/{name}") else f"patchling/{number}"


def pr_title(instruction: str, limit: int = 72) -> str:
    first = next((line.strip() for line in instruction.splitlines() if line.strip()), "Patchling edit")
    first = first[0].upper() + first[1:]
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"


def _open_api(job: JobRequest, settings: Settings, github: gh.GitHubFactory) -> gh.RepoAPI | None:
    """The job's API with a fresh installation token, or None (logged) when
    GitHub gives none: then nothing can be posted."""
    try:
        app = github()
        installation_id = job.installation_id or gh.find_installation(app, job.owner, job.repo)
        token = gh.mint_token(app, installation_id, job.repo)
    except Exception as exc:
        # Without a token nothing can be posted: the log is the only place to say why.
        status = gh.status_of(exc)
        why = {
            404: "the App is not installed on it (or it is gone)",
            422: "GitHub refused a token for it (not in the App's installation, or gone)",
        }.get(status or 0, f"{type(exc).__name__}: {exc}" if status is None else f"GitHub answered {status}")
        log.error(
            "job %s: no installation token for %s: %s; no reply is possible", job.job_id, job.full_name, why
        )
        return None
    return gh.RepoAPI.with_token(
        app,
        token,
        job.owner,
        job.repo,
        secrets=job_secrets(settings, token),
        # A public comment names the tier, never where the server keeps its models.
        endpoints=[tier.base_url for tier in settings.tiers],
        renew=lambda: gh.mint_token(app, installation_id, job.repo),
    )


def work(
    job: JobRequest,
    settings: Settings,
    github: gh.GitHubFactory,
    *,
    lock: LockFn = _no_lock,
    memo: Memo | None = None,
) -> str:
    """Carry out one job; returns its outcome for the ledger. Raises BranchBusy
    (before posting anything) when another job holds the branch. `memo` keeps
    what a run did, so that a run after an interruption continues it."""
    api = _open_api(job, settings, github)
    if api is None:
        return "no_token"
    try:
        return _work(job, settings, api, lock, memo if memo is not None else MemoryMemo())
    except BranchBusy:
        raise
    except gh.RepositoryGone as gone:
        log.error("job %s stopped: %s; no reply is possible", job.job_id, gone)
        return "repo_gone"
    except Exception as exc:
        if gh.status_of(exc) == 404:  # deleted, or the App uninstalled, mid-job: no one to tell
            log.error("job %s stopped: %s is gone or out of the App's reach", job.job_id, job.full_name)
            return "repo_gone"
        log.exception("job %s could not start", job.job_id)
        try:
            _reply(api, job, f"Patchling could not start on this (job `{job.job_id}`): {_describe(exc)}.")
            api.react(job.comment_kind, job.comment_id, "confused")
        except Exception:
            log.warning("could not tell job %s's requester why it stopped", job.job_id)
        return "error"
    finally:
        api.revoke_token()


def job_secrets(settings: Settings, token: str | None) -> list[str | None]:
    """What a job must never post nor send to a model: its token, the model API
    keys, the webhook secret and the App's private key."""
    webhook_secret = settings.github_webhook_secret
    secrets = [token, *(tier.api_key() for tier in settings.tiers)]
    secrets.append(webhook_secret.get_secret_value() if webhook_secret else None)
    with contextlib.suppress(OSError):  # the token was minted with it: it is there
        secrets.append(settings.private_key())
    return secrets


def abandon(job: JobRequest, settings: Settings, github: gh.GitHubFactory, progress: dict[str, Any]) -> None:
    """Close a job that restarts kept interrupting: its status comment (or a
    reply) says so, and the request gets 😕."""
    api = _open_api(job, settings, github)
    if api is None:
        return
    try:
        text = (
            f"stopped: the server was interrupted {MAX_RUNS} times while working on this; "
            "ask again to start afresh"
        )
        if "status" in progress:
            memo = MemoryMemo()
            memo.save(status=progress["status"])
            StatusBoard(api, job, memo).finish(text, ok=False)
        else:
            _reply(api, job, f"Patchling {text} (job `{job.job_id}`).")
        api.react(job.comment_kind, job.comment_id, "confused")
    except Exception:
        log.warning("could not tell job %s's requester it was given up", job.job_id, exc_info=True)
    finally:
        api.revoke_token()


def _work(job: JobRequest, settings: Settings, api: gh.RepoAPI, lock: LockFn, memo: Memo) -> str:
    if job.command == "help":
        _reply(api, job, job.reply)
        return "help"
    # Permission first: nothing else happens for people who cannot push.
    if api.permission(job.requester_login) not in gh.WRITE_ROLES:
        _reply(
            api,
            job,
            f"Thanks for the request, @{job.requester_login}. Patchling only takes `/edit` requests "
            "from people with write access to this repository, so I have left this one alone.",
        )
        return "denied"
    # As the job starts; GitHub keeps one 👀 per comment, so a retry adds none.
    api.react(job.comment_kind, job.comment_id, "eyes")
    try:
        plan = _plan(job, api, settings)
    except Declined as declined:
        _reply(api, job, str(declined))
        api.react(job.comment_kind, job.comment_id, "confused")
        return "declined"
    with lock(f"{job.full_name}@{plan.branch}"):
        board = StatusBoard(api, job, memo)
        try:
            delivered = _edit_and_deliver(job, settings, api, plan, board, memo)
        except Exception as exc:
            log.exception("job %s stopped", job.job_id)
            board.finish(f"stopped: {_describe(exc)}", ok=False)
            delivered = False
        api.react(job.comment_kind, job.comment_id, "rocket" if delivered else "confused")
        return "done" if delivered else "failed"


def _reply(api: gh.RepoAPI, job: JobRequest, body: str) -> None:
    """Answer where the request was made: in the review thread, or the conversation."""
    if job.target == "review":
        api.reply_in_thread(job.number, job.comment_id, body)
    else:
        api.comment(job.number, body)


def _plan(job: JobRequest, api: gh.RepoAPI, settings: Settings) -> Plan:
    """Check the target and read the repository's settings (from a fresh fetch of
    the default branch) to name the branch the job will lock and push."""
    pull = None
    if job.target != "issue":
        pull = api.pull(job.number)
        if pull.state != "open":
            raise Declined(
                f"Pull request #{pull.number} is {pull.state}; Patchling only pushes to open ones."
            )
        if pull.head_repo != job.full_name:
            where = f"`{pull.head_repo}`" if pull.head_repo else "a fork that no longer exists"
            raise Declined(
                f"This pull request's branch lives in {where}, not in this repository, so Patchling cannot "
                "push to it (and never runs a fork's code with this repository's credentials). Push the "
                "branch to this repository, or apply the change yourself."
            )
    _check_size(settings.max_repo_mb, api.size_kb() or 0, "GitHub counts it at")
    read = _read_settings(job, settings.max_repo_mb)
    repo_settings, branches = _from_mirror(job, api, settings.data_dir, read)
    try:
        tiers = select_tiers(settings.tiers, repo_settings.tiers)
    except RepoSettingsError as exc:
        raise Declined(
            f"Patchling cannot start: {exc}. Fix it on `{job.default_branch}` and ask again."
        ) from None
    if pull is not None:
        return Plan(pull.head_ref, pull.head_ref, repo_settings, tiers, pull)
    branch = issue_branch(repo_settings.branch_prefix, job.number, job.title)
    # A second /edit on the issue continues its branch rather than starting over.
    start = branch if branch in branches else job.default_branch
    return Plan(branch, start, repo_settings, tiers)


def _check_size(cap_mb: int, size_kb: float, counted: str) -> None:
    """Declines a repository over the server's cap (the `max_repo_mb` setting)."""
    if size_kb > cap_mb * 1024:
        size_mb = size_kb / 1024
        shown = f"{size_mb:,.0f}" if size_mb >= 10 else f"{size_mb:.1f}"
        raise Declined(
            f"This repository is too large for this Patchling server: {counted} {shown} MB, "
            f"and the server takes repositories up to {cap_mb:,} MB (its `max_repo_mb` setting)."
        )


def _read_settings(
    job: JobRequest, cap_mb: int
) -> Callable[[pygit2.Repository], tuple[RepoSettings, set[str]]]:
    """The repository's settings, and the names of its branches, from the mirror;
    a mirror over the size cap is removed, and the job declined."""

    def read(mirror: pygit2.Repository) -> tuple[RepoSettings, set[str]]:
        path = Path(mirror.path)
        try:
            _check_size(cap_mb, workspace.disk_usage(path) / 1024, "its copy on the server takes")
        except Declined:
            workspace.remove_mirror(path)  # the caller holds its lock
            raise
        try:
            repo_settings = load_repo_settings(mirror, f"refs/heads/{job.default_branch}")
        except MissingBranch as exc:
            if workspace.branch_tip(mirror, job.default_branch) is not None:
                # The branch is there, its commit unreadable: the mirror is damaged.
                raise workspace.MirrorDamaged(f"the tip of `{job.default_branch}` cannot be read") from None
            raise Declined(f"Patchling cannot start: {exc}.") from None
        except RepoSettingsError as exc:
            raise Declined(
                f"Patchling cannot start: {exc}. Fix it on `{job.default_branch}` and ask again."
            ) from None
        return repo_settings, set(mirror.branches.local)

    return read


_T = TypeVar("_T")


def _from_mirror(
    job: JobRequest, api: gh.RepoAPI, data_dir: Path, use: Callable[[pygit2.Repository], _T]
) -> _T:
    """Fetch the repository's mirror and `use` it, holding the mirror's lock.
    A mirror found damaged, by the fetch or by `use`, is removed and cloned
    afresh once; damaged again, the job stops saying so."""
    path = workspace.mirror_path(data_dir, job.full_name)
    with workspace.mirror_lock(path):
        try:
            return use(workspace.update_mirror(path, job.clone_url, api.token))
        except Exception as exc:
            if not workspace.is_damage(exc):
                raise
            log.warning(
                "job %s: the mirror of %s is damaged (%s); cloning it afresh", job.job_id, job.full_name, exc
            )
        workspace.remove_mirror(path)
        try:
            return use(workspace.update_mirror(path, job.clone_url, api.token))
        except Exception as exc:
            if not workspace.is_damage(exc):
                raise
            workspace.remove_mirror(path)  # nothing half-cloned is left for the next job
            raise workspace.WorkspaceError(
                "the server's copy of the repository was damaged, and a fresh clone of it failed "
                f"the same way ({exc})"
            ) from None


@dataclass(frozen=True)
class Delivery:
    """A pushed commit and what is posted with it: recorded before the push,
    so that a run resumed after one finds the commit and posts only this."""

    sha: str
    branch: str
    report: str  # the change report: status comment, or a comment on an open PR
    reply: str  # the review-thread reply, for review comments
    title: str
    body: str  # of a new PR
    verified: bool


def _edit_and_deliver(
    job: JobRequest,
    settings: Settings,
    api: gh.RepoAPI,
    plan: Plan,
    board: StatusBoard,
    memo: Memo,
) -> bool:
    # The engine's side is imported only where a job runs: the web process stays light.
    from bot.context import Focus
    from bot.engine import run_edit
    from bot.files import is_protected
    from bot.records import RecordStore

    data_dir = settings.data_dir
    (data_dir / "work").mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"job-{job.job_id}-", dir=data_dir / "work"))
    try:

        def check_out(mirror: pygit2.Repository) -> Delivery | tuple[str, pygit2.Repository]:
            pushed = _pushed_before(memo, mirror, plan.branch)
            if pushed is not None:
                return pushed
            start = plan.branch if workspace.branch_tip(mirror, plan.branch) is not None else plan.start
            shutil.rmtree(scratch / "tree", ignore_errors=True)  # what a damaged mirror let through
            return start, workspace.checkout(mirror, start, scratch / "tree", branch=plan.branch)

        # Fetched again, now that the branch is ours: a job that held it may have pushed since.
        found = _from_mirror(job, api, data_dir, check_out)
        if isinstance(found, Delivery):
            # An earlier run of this job pushed its commit and was cut short: deliver it, no new edit.
            board.done(f"resumed: `{found.sha[:7]}` is already on `{plan.branch}`")
            return _deliver(job, api, plan, found, board, memo)
        start, tree = found
        metrics.stage("clone")
        board.done(f"cloned `{start}` at `{str(tree.head.target)[:7]}`")

        focus = None
        if job.target == "review" and job.path and job.end_line:
            focus = Focus(job.path, job.start_line or job.end_line, job.end_line, job.diff_hunk)
        protected = plan.settings.protected_paths()
        result = asyncio.run(
            run_edit(
                Path(tree.workdir),
                job.instruction,
                tiers=plan.tiers,
                test_command=plan.settings.test or settings.test_command,
                setup_command=plan.settings.setup,
                test_timeout_s=settings.test_timeout_s,
                focus=focus,
                protected_paths=protected,
                allow_workflows=plan.settings.allow_workflows,
                secrets=job_secrets(settings, api.token),
                caps=plan.settings.caps_within(settings.caps),
                records=RecordStore(data_dir / "records.sqlite3"),
                job_id=job.job_id,
                repo=job.full_name,
                data_dir=data_dir,
                on_progress=board.progress,
                sandbox=settings.make_sandbox(),
                network=plan.settings.network,
            )
        )
        if result.status == "failed" or not result.files_changed:
            board.finish(f"no change made: {result.message}", ok=False)
            _reply(api, job, no_change_report(job, result))
            return False
        allow = plan.settings.allow_workflows
        touched = [p for p in result.files_changed if is_protected(p, protected, allow_workflows=allow)]
        if touched:  # the engine refuses these too; never commit one regardless
            board.finish(f"refused: the change touches protected paths {', '.join(touched)}", ok=False)
            return False

        requester = workspace.Identity.user(job.requester_login, job.requester_id)
        message = commit_message(job, result)
        oid = workspace.commit_paths(tree, result.files_changed, message, board.author, [requester])
        delivery = _push(job, api, plan, tree, oid, result, memo)
        return _deliver(job, api, plan, delivery, board, memo)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _push(
    job: JobRequest,
    api: gh.RepoAPI,
    plan: Plan,
    tree: pygit2.Repository,
    oid: pygit2.Oid,
    result: EditResult,
    memo: Memo,
) -> Delivery:
    """Push the commit; when the branch moved on meanwhile, re-apply the commit
    onto its new tip and push once more. The delivery is recorded before each
    push (see Delivery)."""
    try:
        return _push_once(job, api, plan, tree, oid, result, memo)
    except workspace.PushRejected as rejected:
        if rejected.kind == "protected":
            raise workspace.WorkspaceError(
                f"GitHub refused the push to `{plan.branch}`: the branch is protected (branch protection "
                "or a ruleset). Allow the App to push to it, or ask on an issue, where Patchling opens a "
                "pull request from a branch of its own"
            ) from None
        if rejected.kind != "behind":
            raise
    log.info("job %s: %s moved on during the job; re-applying the commit", job.job_id, plan.branch)
    oid = workspace.replay(tree, oid, plan.branch, job.clone_url, api.token)
    return _push_once(job, api, plan, tree, oid, result, memo)


def _push_once(
    job: JobRequest,
    api: gh.RepoAPI,
    plan: Plan,
    tree: pygit2.Repository,
    oid: pygit2.Oid,
    result: EditResult,
    memo: Memo,
) -> Delivery:
    delivery = _delivery(job, plan, result, str(oid), workspace.commit_diff(tree, oid))
    memo.save(delivery=dataclasses.asdict(delivery))
    workspace.push(tree, job.clone_url, plan.branch, plan.branch, api.token)
    return delivery


def _pushed_before(memo: Memo, mirror: pygit2.Repository, branch: str) -> Delivery | None:
    """The delivery an earlier run recorded, when its commit is on the branch."""
    recorded = memo.load().get("delivery")
    if not recorded or recorded.get("branch") != branch:
        return None
    delivery = Delivery(**recorded)
    return delivery if workspace.branch_holds(mirror, branch, delivery.sha) else None


def _delivery(job: JobRequest, plan: Plan, result: EditResult, sha: str, diff: str) -> Delivery:
    return Delivery(
        sha=sha,
        branch=plan.branch,
        report=change_report(job, result, sha),
        reply=f"Pushed {sha} to `{plan.branch}`. {_verdict(result)}\n\n"
        + gh.fenced(gh.clip(diff, 50_000), "diff"),
        title=pr_title(job.instruction),
        body=pr_body(job, result, sha),
        verified=result.status == "verified",
    )


def _deliver(
    job: JobRequest, api: gh.RepoAPI, plan: Plan, delivery: Delivery, board: StatusBoard, memo: Memo
) -> bool:
    sha = delivery.sha
    if plan.pull is not None:
        board.finish(f"pushed `{sha[:7]}` to `{plan.branch}`", ok=True, report=delivery.report)
        if job.target == "review" and not memo.load().get("replied"):
            api.reply_in_thread(job.number, job.comment_id, delivery.reply)
            memo.save(replied=True)
        return True
    board.done(f"committed `{sha[:7]}` and pushed to `{plan.branch}`")
    existing = api.open_pull_for(plan.branch)
    if existing is not None:
        number, url = existing
        if number != memo.load().get("pull"):  # an earlier job's PR: tell it what changed
            api.comment(number, delivery.report)
            memo.save(pull=number)  # told once, even after a resume; and the dashboard links it
        board.finish(f"pushed `{sha[:7]}` to #{number}: {url}", ok=True)
        return True
    try:
        number, url = api.create_pull(
            title=delivery.title,
            head=plan.branch,
            base=job.default_branch,
            body=delivery.body,
            draft=not delivery.verified,
        )
    except Exception as exc:
        # A create retried after a 5xx may have been made the first time: GitHub
        # then refuses the second (422) and the first is there to find.
        if gh.status_of(exc) != 422 or (found := api.open_pull_for(plan.branch)) is None:
            raise
        number, url = found
    memo.save(pull=number)
    kind = "pull request" if delivery.verified else "draft pull request"
    board.finish(f"{kind} opened: #{number} {url}", ok=True)
    return True


DISK_FULL = "the server's disk is full; ask again once its administrator has made room"


def _describe(exc: BaseException) -> str:
    if workspace.is_disk_full(exc):
        return DISK_FULL
    refused = gh.describe_failure(exc)
    if refused is not None:
        return refused
    # Only the project's own messages for people: any other text (an engine
    # ValueError about the temporary tree, say) may name server paths.
    if isinstance(exc, workspace.WorkspaceError | RepoSettingsError | Declined):
        return str(exc)
    return f"an internal error ({type(exc).__name__}); the server log has the details"


# -- what is posted -------------------------------------------------------------------


# What the ledger keeps of each test run (StatusBoard._keep_tests).
TEST_COUNTS = ("ran", "passed", "failed", "errors", "could_not_run", "timed_out")


class StatusBoard:
    """One comment per job, edited in place as stages finish."""

    def __init__(self, api: gh.RepoAPI, job: JobRequest, memo: Memo | None = None) -> None:
        self.api = api
        self.job = job
        self.memo = memo
        self.lines: list[str] = ["✅ queued"]
        kept = (memo.load() if memo is not None else {}).get("status")
        if kept:
            # A run resumed after an interruption: the comment it posted is edited on.
            self.comment_id = int(kept["id"])
            self.author = workspace.Identity.user(kept["author_login"], int(kept["author_id"]))
            self.lines.append("✅ resumed after an interruption")
            self._update()
            return
        posted = api.comment(job.number, self.render())
        self.comment_id = posted.id
        # GitHub names the poster: the App's bot user, whose name and id sign our commits.
        self.author = workspace.Identity.user(posted.author_login, posted.author_id)
        if memo is not None:
            try:
                memo.save(status=dataclasses.asdict(posted))
            except sqlite3.OperationalError:
                # A full disk: the job goes on (and ends saying so); only a resume
                # after a kill would post a second status comment.
                log.warning("job %s: could not record its status comment", job.job_id, exc_info=True)

    def render(self, report: str | None = None, *, finished: bool = False) -> str:
        doing = "worked" if finished else "is working"
        head = f"**Patchling** {doing} on @{self.job.requester_login}'s request (job `{self.job.job_id}`):"
        lines = self.lines if finished else [*self.lines, "⏳ working…"]
        body = "\n".join(f"- {line}" for line in lines)
        text = f"{head}\n\n{gh.quote(self.job.instruction)}\n\n{body}"
        return f"{text}\n\n{report}" if report else text

    def _update(self, report: str | None = None, *, finished: bool = False) -> None:
        try:
            self.api.edit_comment(self.comment_id, self.render(report, finished=finished))
        except Exception:  # a status line is not worth failing the job over
            log.warning("could not update the status comment of job %s", self.job.job_id, exc_info=True)

    def done(self, text: str) -> None:
        self.lines.append(f"✅ {text}")
        self._update()

    def progress(self, stage: str, data: dict[str, Any]) -> None:
        """The engine's `on_progress`: one line per finished stage."""
        metrics.stage(stage, data)
        tier = f" (tier `{data['tier']}`)" if data.get("tier") else ""
        if stage == "context":
            files = data.get("files") or []
            count = len(files) if isinstance(files, list) else int(files)
            self.done(f"context chosen: {count} files, {int(data.get('tokens', 0)):,} tokens{tier}")
        elif stage == "plan":
            self.done(f"plan: {_paths(data.get('files') or [])}{tier}")
        elif stage == "generated":
            self.done(f"edits generated{tier}")
        elif stage == "applied":
            self.done(f"applied: {_paths(data.get('files') or [])}{tier}")
        elif stage == "environment":
            self.done(f"{data.get('summary', 'test environment ready')}{tier}")
        elif stage in ("tests_before", "tests_after"):
            when = "before" if stage == "tests_before" else "after"
            self._keep_tests(stage, data)
            self.done(f"tests {when}: {_tests_line(data)}{tier}")
        else:
            self.done(stage)

    def _keep_tests(self, stage: str, data: dict[str, Any]) -> None:
        """The counts go into the job's progress too, for the dashboard."""
        if self.memo is None:
            return
        kept = {k: data[k] for k in TEST_COUNTS if data.get(k) is not None}
        try:
            self.memo.save(**{stage: kept})
        except sqlite3.OperationalError:  # a full disk: the comment still says it
            log.warning("job %s: could not record its test counts", self.job.job_id, exc_info=True)

    def finish(self, text: str, *, ok: bool, report: str | None = None) -> None:
        self.lines.append(f"{'🚀' if ok else '😕'} {text}")
        self._update(report, finished=True)


def _paths(paths: list[str]) -> str:
    shown = ", ".join(f"`{p}`" for p in paths[:8])
    return (shown + (f" and {len(paths) - 8} more" if len(paths) > 8 else "")) or "nothing"


def _tests_line(data: dict[str, Any]) -> str:
    if not data.get("ran", True):
        return "not run"
    if data.get("could_not_run"):
        return f"could not run: {data['could_not_run']}"
    text = f"{data.get('passed', 0)} passed, {data.get('failed', 0)} failed, {data.get('errors', 0)} errors"
    if data.get("duration_s") is not None:
        text += f" in {float(data['duration_s']):.1f}s"
    text += " (timed out)" if data.get("timed_out") else ""
    return text + ("" if data.get("sandboxed", True) else " (ran unsandboxed)")


def commit_message(job: JobRequest, result: EditResult) -> str:
    lines = [pr_title(job.instruction), ""]
    if result.notes:
        lines += [result.notes.strip(), ""]
    if job.comment_url:
        lines.append(f"Requested in {job.comment_url}")
    lines.append(f"Patchling job {job.job_id}, tier {result.tier}.")
    return "\n".join(lines)


def _tests_table(result: EditResult) -> str:
    rows = ["| | command | passed | failed | errors | skipped | duration |", "|---|---|---|---|---|---|---|"]
    for label, run in (("before", result.tests_before), ("after", result.tests_after)):
        if run is None:
            rows.append(f"| {label} | not run | | | | | |")
        elif run.could_not_run is not None:
            rows.append(f"| {label} | `{run.command}` | {run.summary()} | | | | {run.duration_s:.1f}s |")
        else:
            timed_out = " (timed out)" if run.timed_out else ""
            rows.append(
                f"| {label} | `{run.command}` | {run.passed} | {run.failed} | {run.errors} | {run.skipped} "
                f"| {run.duration_s:.1f}s{timed_out} |"
            )
    text = "\n".join(rows)
    if result.environment:
        text += "\n\n" + _environment_line(result.environment)
    for label, run in (("before", result.tests_before), ("after", result.tests_after)):
        if run is not None and run.failing:
            names = "\n".join(f"- `{name}`" for name in run.failing[:30])
            text += f"\n\nFailing {label}:\n{names}"
    return text


def _environment_line(env: dict[str, Any]) -> str:
    installed = ", ".join(f"`{name}`" for name in env.get("installed", []))
    how = "reused" if env.get("reused") else f"built in {float(env.get('seconds', 0)):.1f}s"
    return f"Test environment {how}, with {installed}."


UNSANDBOXED_NOTE = (
    "⚠️ **The repository's code ran unsandboxed**: this server is configured with"
    ' `sandbox = "none"`, so setup and tests ran as the server\'s own user.'
)


def _unsandboxed(result: EditResult) -> bool:
    runs = (result.tests_before, result.tests_after)
    return any(run is not None and not run.sandboxed for run in runs)


def _verdict(result: EditResult) -> str:
    if result.status == "verified":
        return "✅ **Verified**: the tests pass with this change and none got worse."
    if result.tests_after is None:
        return (
            "⚠️ **Not verified: no tests ran** (no test command was found or configured). Review it with care."
        )
    return f"⚠️ **Not verified**: {result.message}. Review it with care."


def change_report(job: JobRequest, result: EditResult, sha: str) -> str:
    tried = ", ".join(f"`{a.tier}` ({a.outcome})" for a in result.attempts) or "none"
    parts = [
        _verdict(result),
        *([UNSANDBOXED_NOTE] if _unsandboxed(result) else []),
        f"### Notes\n{result.notes.strip() or '(none)'}",
        "### Files changed\n" + "\n".join(f"- `{p}`" for p in result.files_changed),
        "### Tests\n" + _tests_table(result),
        f"### Models\nSucceeded with tier `{result.tier}`; tiers tried: {tried}.\n"
        f"Tokens: {result.tokens_in:,} in, {result.tokens_out:,} out.",
        f"<sub>Commit {sha} · Patchling job `{job.job_id}` · requested by @{job.requester_login}"
        + (f" in {job.comment_url}" if job.comment_url else "")
        + "</sub>",
    ]
    return "\n\n".join(parts)


def pr_body(job: JobRequest, result: EditResult, sha: str) -> str:
    # Closes only when verified: an unverified change should not close the issue on merge by surprise.
    link = f"Closes #{job.number}" if result.status == "verified" else f"Refs #{job.number}"
    return f"{link}: {gh.quote(job.instruction).removeprefix('> ')}\n\n{change_report(job, result, sha)}"


def no_change_report(job: JobRequest, result: EditResult) -> str:
    text = (
        f"Patchling could not make a change for this request (job `{job.job_id}`), so no pull request "
        f"was opened or commit pushed.\n\n**Why**: {result.message}"
    )
    if result.attempts:
        text += "\n\nTiers tried: " + ", ".join(
            f"`{a.tier}` ({a.outcome}: {a.detail[:200]})" for a in result.attempts
        )
    if result.last_output:
        text += "\n\n" + gh.details("Last model output", gh.fenced(gh.clip(result.last_output, 30_000)))
    return text
