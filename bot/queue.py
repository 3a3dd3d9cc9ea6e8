"""The queue: huey, with the ledger in front of it.

web.py hands JobRequests to an Intake, which has `JobQueue.submit_many`
record them in the ledger and enqueue them with huey: SqliteHuey and the
SQLite ledger under data_dir, or, when `queue_url` says `redis://`, RedisHuey
and the Redis ledger (redis_ledger), shared by every process on that Redis.
Consumer threads run `workflow.work`, one job at a time per repository branch
(a huey lock). In Redis mode the jobs go through Dramatiq's Redis broker
instead, taken with a lease by `patchling worker` processes (see lease.py).

At the next start after a crash (`JobQueue.recover`), the ledger is the
source of truth: a job that was running, or was queued but whose task is gone
from the queue, is enqueued once more, and a delivery recorded but never
enqueued is forgotten, so that GitHub's redelivery is taken afresh. With
Redis, recovery sees only the jobs this host last took (see redis_ledger).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import dramatiq
import redis
from huey import Huey, RedisHuey, SqliteHuey
from huey.exceptions import TaskLockedException
from huey.storage import SqliteStorage

from bot import github as gh
from bot import metrics
from bot.config import Settings
from bot.lease import QUEUE, BranchLocks, make_broker, poll_ms
from bot.ledger import (
    MAX_RUNS,
    JobLedger,
    JobRequest,
    JobStatus,
    Ledger,
    LedgerMemo,
    checkpoint,
    tune_sqlite,
)
from bot.prune import prune_logged
from bot.redis_ledger import RedisLedger, default_owner
from bot.workflow import BranchBusy, abandon, work

log = logging.getLogger(__name__)

# How a job ended: a second delivery of its message (Redis mode) does nothing.
FINISHED = frozenset(JobStatus) - {JobStatus.RECEIVED, JobStatus.QUEUED, JobStatus.RUNNING}


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


def redis_url(settings: Settings) -> str | None:
    """The Redis that queue and ledger share, when `queue_url` names one."""
    url = settings.queue_url
    return url if url and url.startswith(("redis://", "rediss://", "unix://")) else None


def make_huey(settings: Settings) -> Huey:
    url = settings.queue_url
    if redis_url(settings):
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


def make_ledger(settings: Settings) -> JobLedger:
    """With a Redis queue, jobs run on any host that shares it: their records
    must be shared too (see redis_ledger). Else SQLite under data_dir."""
    url = redis_url(settings)
    if url:
        return RedisLedger(url, owner=default_owner(settings.data_dir))
    return Ledger(settings.data_dir / "jobs.sqlite3")


@contextmanager
def _held_in_redis(locks: BranchLocks, job_id: str, name: str) -> Iterator[None]:
    if not locks.acquire(name, job_id):
        raise BranchBusy(name)
    try:
        yield
    finally:
        locks.release(name, job_id)


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
        ledger: JobLedger | None = None,
        github: gh.GitHubFactory | None = None,
    ) -> None:
        self.settings = settings
        self.huey = huey if huey is not None else make_huey(settings)
        self.ledger = ledger if ledger is not None else make_ledger(settings)
        self.github = github if github is not None else lambda: gh.app_client(settings)
        self._stuck_locks: set[str] = set()  # branch locks a job could not release
        self._task = self.huey.task(name=self.TASK_NAME)(self._execute)
        url = redis_url(settings)
        # Redis mode: jobs go through Dramatiq (leases), locks through Redis.
        self.broker = make_broker(url, settings.lease_s) if url else None
        self.branch_locks = BranchLocks(redis.Redis.from_url(url)) if url else None
        self._actor = (
            dramatiq.actor(actor_name=self.TASK_NAME, queue_name=QUEUE, broker=self.broker)(self._execute)
            if self.broker is not None
            else None
        )

    def _send(self, payload: dict[str, Any], delay_s: float = 0) -> None:
        """Enqueue one job: to Dramatiq in Redis mode, else to huey."""
        if self._actor is None:
            if delay_s:
                self._task.schedule((payload,), delay=delay_s)
            else:
                self._task(payload)
        else:
            self._actor.send_with_options(args=(payload,), delay=int(delay_s * 1000) or None)

    def pending_count(self) -> int:
        """Jobs waiting in the queue (not those taken or scheduled for later)."""
        if self.broker is not None:
            return int(self.broker.client.llen(f"{self.broker.namespace}:{QUEUE}"))
        return int(self.huey.pending_count())

    def worker(self, threads: int) -> dramatiq.Worker:
        """A Dramatiq worker of this queue (Redis mode), not yet started: it
        takes as many jobs as it has threads, no more, so that idle workers
        elsewhere get the rest."""
        assert self.broker is not None, "workers take jobs from Redis only"
        worker = dramatiq.Worker(
            self.broker, worker_threads=threads, worker_timeout=poll_ms(self.settings.lease_s)
        )
        worker.queue_prefetch = threads
        return worker

    def submit(self, job: JobRequest) -> bool:
        """Record and enqueue; False (and nothing enqueued) for a duplicate."""
        return self.submit_many([job])[0]

    def submit_many(self, jobs: list[JobRequest]) -> list[bool]:
        """Record the jobs (one transaction), then enqueue the new ones."""
        claimed = self.ledger.claim_many(jobs)
        new = [job for job, fresh in zip(jobs, claimed, strict=True) if fresh]
        storage = self.huey.storage
        if self.broker is not None or self.huey.immediate or not isinstance(storage, _SqliteStorage):
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
        """One at a time (Redis, or huey's immediate mode in tests)."""
        for index, job in enumerate(jobs):
            try:
                self._send(job.model_dump(mode="json"))
            except Exception:
                # Let GitHub's redelivery of the jobs not enqueued try again.
                self.ledger.forget([left.job_id for left in jobs[index:]])
                self.ledger.enqueued([done.job_id for done in jobs[:index]])
                raise
        self.ledger.enqueued([job.job_id for job in jobs])

    def run_pending(self) -> int:
        """Run every queued job in this thread (tests, and draining by hand)."""
        if self.broker is not None:
            return self._run_pending_messages()
        count = 0
        while (task := self.huey.dequeue()) is not None:
            if not self.huey.ready_to_run(task):
                self.huey.add_schedule(task)  # one for later, as the consumer would
                continue
            self.huey.execute(task)
            count += 1
        return count

    def _run_pending_messages(self) -> int:
        """run_pending for Redis mode: take, run and acknowledge each message."""
        assert self._actor is not None and self.broker is not None
        consumer = self.broker.consume(QUEUE, prefetch=1, timeout=100)
        count = 0
        try:
            while (message := next(consumer)) is not None:
                self._actor(*message.args)
                consumer.ack(message)
                count += 1
        finally:
            consumer.close()
        return count

    def recover(self) -> int:
        """At start-up, with no job of this server running: the ledger is the
        source of truth, the queue a wake-up. Free the locks of jobs a dead
        process left running and run them again (up to MAX_RUNS runs in all;
        past that, once more only to say so); enqueue again each queued job
        whose task is gone (a worker took it and died before starting it);
        remove the work trees of the dead runs. In Redis mode, only forget the
        unqueued: the broker's leases give a dead worker's jobs to another."""
        self.ledger.forget_unqueued()
        if self.broker is not None:
            return 0
        waiting = self._tasks_waiting()
        count = 0
        for job, status, runs, lock_name in self.ledger.unfinished():
            if lock_name:
                self.huey.flush_locks(lock_name)
            if status == JobStatus.QUEUED and job.job_id in waiting:
                continue
            self.ledger.set_status(job.job_id, JobStatus.QUEUED)
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
        self.ledger.checkpoint()
        if isinstance(self.huey.storage, SqliteStorage):
            checkpoint(Path(self.huey.storage.filename))

    @metrics.job
    def _execute(self, payload: dict[str, Any]) -> None:
        job = JobRequest.model_validate(payload)
        if self._ended(job) or self._given_up(job):
            return
        self.ledger.started(job)
        outcome = self._work(job, payload)
        if outcome is not None:  # None: the branch is busy, and the job sent again for later
            self._finish(job, outcome)

    def _ended(self, job: JobRequest) -> bool:
        status = self.ledger.status(job.job_id)
        if status in FINISHED:
            # Delivered again (its worker died after the end, before acknowledging).
            log.info("job %s has ended (%s) already", job.job_id, status)
            return True
        return False

    def _given_up(self, job: JobRequest) -> bool:
        if self.ledger.runs(job.job_id) < MAX_RUNS:
            return False
        # Interrupted as often as allowed: end it with a word, not silence.
        abandon(job, self.settings, self.github, self.ledger.progress(job.job_id))
        metrics.job_finished(JobStatus.INTERRUPTED)
        self.ledger.set_status(job.job_id, JobStatus.INTERRUPTED)
        self._release_dead_runs_lock(job.job_id)
        return True

    def _work(self, job: JobRequest, payload: dict[str, Any]) -> JobStatus | None:
        """The job's outcome; None when its branch is busy, the job then sent
        again to wait its turn."""
        memo = LedgerMemo(self.ledger, job.job_id)
        try:
            return work(
                job, self.settings, self.github, lock=lambda name: self._branch_lock(job, name), memo=memo
            )
        except BranchBusy as busy:
            log.info("job %s waits: %s is busy", job.job_id, busy)
            self.ledger.set_status(job.job_id, JobStatus.QUEUED)
            self._send(payload, delay_s=self.settings.busy_retry_s)
            return None
        except Exception:
            log.exception("job %s failed", job.job_id)
            return JobStatus.ERROR

    @contextmanager
    def _branch_lock(self, job: JobRequest, name: str) -> Iterator[None]:
        """Hold the repository branch `name` for the job; BranchBusy when another job does."""
        locks = self.branch_locks
        held = _held_in_redis(locks, job.job_id, name) if locks is not None else self._huey_lock(name)
        with held:
            self.ledger.locked(job.job_id, name)
            yield

    @contextmanager
    def _huey_lock(self, name: str) -> Iterator[None]:
        self._release_stuck_locks()
        lock = self.huey.lock_task(name)
        try:
            lock.acquire()
        except TaskLockedException:
            raise BranchBusy(name) from None
        try:
            yield
        finally:
            self._release(name)

    def _finish(self, job: JobRequest, outcome: JobStatus) -> None:
        metrics.job_finished(outcome)
        try:
            self.ledger.set_status(job.job_id, outcome)
        except sqlite3.OperationalError as exc:
            # The requester has been told; the worker lives on. Left 'running', the
            # job is run once more at the next start.
            log.error("job %s ended (%s) but the ledger could not record it: %s", job.job_id, outcome, exc)
        prune_logged(self.settings, after_job=True)  # environments this job may have left behind

    def _release_dead_runs_lock(self, job_id: str) -> None:
        """A job given up (Redis mode) may hold its branch from a dead run."""
        if self.branch_locks is not None and isinstance(self.ledger, RedisLedger):
            name = self.ledger.lock_name(job_id)
            if name:
                self.branch_locks.release(name, job_id)


def remove_scratch(data_dir: Path) -> None:
    """Work trees of runs that ended without cleaning up (a kill): at start-up
    none belongs to a live job."""
    work_dir = data_dir / "work"
    if not work_dir.is_dir():
        return
    for entry in work_dir.iterdir():
        if entry.name.startswith("job-"):
            shutil.rmtree(entry, ignore_errors=True)


class Submitter(Protocol):
    @property
    def ledger(self) -> JobLedger: ...  # read-only, so a Ledger-typed attribute fits

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
