"""Jobs on Redis with a lease: Dramatiq's Redis broker.

In Redis mode `patchling serve` only records and enqueues; `patchling worker`
processes, on any hosts, take the jobs. Dramatiq keeps a taken message in
the taking process's unacknowledged set until the job ends (then acks it),
and every command a worker process sends to Redis (its consumers poll at
least every `poll_ms`, busy or not) renews that process's heartbeat. A
process whose heartbeat is older than the lease (`heartbeat_timeout`) is
dead: the broker's maintenance, run here with every command, puts its
unacknowledged messages back on the queue for another worker. A job is
therefore never lost; that it is never done twice is the ledger's part
(a finished job's status makes a second delivery a no-op).

A repository branch's lock lives in Redis too, held by a job id rather than
by a process: a job taken up again after its worker died finds the lock its
dead run held and goes on, and the branch's other jobs wait for it.
"""

from __future__ import annotations

import time
from typing import Any

import redis
from dramatiq.brokers.redis import MAINTENANCE_SCALE, RedisBroker, _RedisConsumer
from dramatiq.middleware import TimeLimit, default_middleware
from redis.lock import Lock

QUEUE = "patchling-jobs"
NAMESPACE = "patchling-dramatiq"
LOCK_PREFIX = "patchling:branch-lock:"
# How often a consumer whose every thread is busy looks for one come free.
BUSY_WAIT_S = 0.02


def poll_ms(lease_s: float) -> int:
    """How often an idle consumer asks Redis for work, which renews the
    heartbeat: several times per lease, so a slow poll never looks like death."""
    return max(50, min(1000, int(lease_s * 1000) // 4))


class _Consumer(_RedisConsumer):
    """Dramatiq's Redis consumer, minus a wait between jobs. With every thread
    busy it has nothing to ask Redis, yet it slept its idle back-off (up to
    `poll_ms`) all the same, so a thread that finished a job sat idle for up to
    that long before taking the next. Now it looks again shortly; it still
    asks Redis only once a thread is free."""

    def __next__(self) -> Any:
        if not self.message_cache and self.outstanding_message_count >= self.prefetch:
            time.sleep(BUSY_WAIT_S)
            return None  # the worker's consumer loop calls again
        return super().__next__()


class _Broker(RedisBroker):
    @property
    def consumer_class(self) -> type[_Consumer]:
        return _Consumer


def make_broker(url: str, lease_s: float) -> RedisBroker:
    """The broker whose heartbeat timeout is the lease. Dramatiq's TimeLimit
    middleware is left out: it kills a job after ten minutes, and a job's
    repository tests have limits of their own (sandbox settings)."""
    middleware = [cls() for cls in default_middleware if cls is not TimeLimit]
    return _Broker(
        url=url,
        namespace=NAMESPACE,
        middleware=middleware,
        heartbeat_timeout=int(lease_s * 1000),
        # Requeueing a dead worker's jobs is part of maintenance, by default
        # run once in a thousand commands: every time, so a lease ends on time.
        maintenance_chance=MAINTENANCE_SCALE,
    )


class BranchLocks:
    """Per-branch locks in Redis whose holder is a job id (see the module's doc)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def _lock(self, name: str) -> Lock:
        return self.client.lock(LOCK_PREFIX + name, thread_local=False)

    def acquire(self, name: str, job_id: str) -> bool:
        """True when the lock is free or already this job's (a dead run's)."""
        if self._lock(name).acquire(blocking=False, token=job_id):
            return True
        held = self.client.get(LOCK_PREFIX + name)
        return held is not None and (held.decode() if isinstance(held, bytes) else str(held)) == job_id

    def release(self, name: str, job_id: str) -> None:
        """Release only if this job holds it (compare and delete, in Redis)."""
        lock = self._lock(name)
        lock.local.token = job_id.encode()
        if lock.owned():
            lock.release()
