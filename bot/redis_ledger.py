"""The ledger in Redis, for several web processes and workers on several hosts.

With `queue_url = "redis://…"` huey's Redis queue hands a job to whichever
host's consumer asks first, so everything about a job must be readable where
it runs: the same records as `ledger.Ledger` (the delivery and comment that
deduplicate, the request, status, runs, branch lock and progress) and the
installations, kept in Redis under `patchling:`. Each change is one Lua
script, atomic on the server: of two web processes given the same delivery,
exactly one claims it.

Recovery at start-up (`JobQueue.recover`) may only take back the jobs of the
process that is starting: other hosts' jobs may be running. Each job records
the host that last took it (`owner`: the host name and data directory), and
the reads recovery uses (`forget_unqueued`, `unfinished`, `interrupted`) see
only this owner's jobs.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import redis

from bot.ledger import JobRequest, JobRow, JobStatus

PREFIX = "patchling:"

# KEYS: the delivery key, the comment key, the job hash. ARGV: prefix, job id,
# delivery id, comment key, repo, request, now, owner.
_CLAIM = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[3], 'job_id', ARGV[2], 'delivery_id', ARGV[3], 'comment_key', ARGV[4],
  'repo', ARGV[5], 'status', 'received', 'runs', 0, 'request', ARGV[6],
  'created_at', ARGV[7], 'updated_at', ARGV[7], 'owner', ARGV[8])
redis.call('ZADD', ARGV[1] .. 'jobs', ARGV[7], ARGV[2])
redis.call('SADD', ARGV[1] .. 'status:received', ARGV[2])
return 1
"""

# KEYS: the job hash. ARGV: prefix, job id, new status ('' keeps it), the status
# it must have ('' any), runs to add, then field/value pairs ('' deletes).
# A job that is not there is left alone, as an UPDATE of no row would.
_UPDATE = """
local old = redis.call('HGET', KEYS[1], 'status')
if not old then return 0 end
if ARGV[4] ~= '' and old ~= ARGV[4] then return 0 end
if ARGV[3] ~= '' and ARGV[3] ~= old then
  redis.call('SREM', ARGV[1] .. 'status:' .. old, ARGV[2])
  redis.call('SADD', ARGV[1] .. 'status:' .. ARGV[3], ARGV[2])
  redis.call('HSET', KEYS[1], 'status', ARGV[3])
end
if tonumber(ARGV[5]) ~= 0 then redis.call('HINCRBY', KEYS[1], 'runs', ARGV[5]) end
for i = 6, #ARGV, 2 do
  if ARGV[i + 1] == '' then redis.call('HDEL', KEYS[1], ARGV[i])
  else redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
return 1
"""

# KEYS: the job hash. ARGV: prefix, job id.
_FORGET = """
local f = redis.call('HMGET', KEYS[1], 'status', 'delivery_id', 'comment_key')
if not f[1] then return 0 end
redis.call('SREM', ARGV[1] .. 'status:' .. f[1], ARGV[2])
redis.call('DEL', ARGV[1] .. 'delivery:' .. f[2], ARGV[1] .. 'comment:' .. f[3], KEYS[1])
redis.call('ZREM', ARGV[1] .. 'jobs', ARGV[2])
return 1
"""

# KEYS: the installations hash. ARGV: installation id, repos: a repo is
# forgotten only if this installation still holds it.
_UNINSTALL = """
for i = 2, #ARGV do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[1] then redis.call('HDEL', KEYS[1], ARGV[i]) end
end
return 1
"""


def default_owner(data_dir: Path) -> str:
    """Stable across restarts of the same installation on the same host."""
    return f"{socket.gethostname()}:{data_dir.resolve()}"


class RedisLedger:
    """`ledger.Ledger`'s records and rules, in Redis (see the module's doc)."""

    def __init__(self, url: str, owner: str, prefix: str = PREFIX) -> None:
        self.client: redis.Redis = redis.Redis.from_url(url, decode_responses=True)
        self.owner = owner
        self.prefix = prefix
        self._claim = self.client.register_script(_CLAIM)
        self._update = self.client.register_script(_UPDATE)
        self._forget = self.client.register_script(_FORGET)
        self._uninstall = self.client.register_script(_UNINSTALL)

    def _job(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def _change(
        self,
        job_id: str,
        status: str = "",
        *,
        expect: str = "",
        runs: int = 0,
        client: Any = None,
        **fields: str,
    ) -> None:
        """`client`: a pipeline to add the change to, rather than sending it now."""
        pairs = [item for name, value in fields.items() for item in (name, value)]
        args: list[str | int] = [
            self.prefix,
            job_id,
            status,
            expect,
            runs,
            *pairs,
            "updated_at",
            repr(time.time()),
        ]
        self._update(keys=[self._job(job_id)], args=args, client=client)

    def claim_many(self, jobs: list[JobRequest]) -> list[bool]:
        """Record jobs in one round trip; for each, False when its delivery or
        comment is known already (to any process sharing this Redis)."""
        now = repr(time.time())
        pipe = self.client.pipeline(transaction=False)
        for job in jobs:
            keys = [
                f"{self.prefix}delivery:{job.delivery_id}",
                f"{self.prefix}comment:{job.comment_key}",
                self._job(job.job_id),
            ]
            args = [
                self.prefix,
                job.job_id,
                job.delivery_id,
                job.comment_key,
                job.full_name,
                job.model_dump_json(),
                now,
                self.owner,
            ]
            self._claim(keys=keys, args=args, client=pipe)
        return [bool(result) for result in pipe.execute()]

    def forget(self, job_ids: list[str]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for job_id in job_ids:
            self._forget(keys=[self._job(job_id)], args=[self.prefix, job_id], client=pipe)
        pipe.execute()

    def enqueued(self, job_ids: list[str]) -> None:
        pipe = self.client.pipeline(transaction=False)  # one round trip for the batch
        for job_id in job_ids:
            self._change(job_id, JobStatus.QUEUED, expect=JobStatus.RECEIVED, client=pipe)
        pipe.execute()

    def _owned(self, *statuses: JobStatus) -> list[dict[str, str]]:
        """This owner's jobs in these statuses, as their hashes."""
        ids = self.client.sunion([f"{self.prefix}status:{status}" for status in statuses])
        pipe = self.client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(self._job(str(job_id)))
        return [row for row in pipe.execute() if row and row.get("owner") == self.owner]

    def forget_unqueued(self) -> int:
        """Drop deliveries this owner recorded but died before enqueueing."""
        rows = self._owned(JobStatus.RECEIVED)
        self.forget([row["job_id"] for row in rows])
        return len(rows)

    def started(self, job: JobRequest) -> None:
        """Taken by a worker of this owner: its recovery now answers for it."""
        self._change(job.job_id, JobStatus.RUNNING, request=job.model_dump_json(), owner=self.owner)

    def locked(self, job_id: str, lock_name: str) -> None:
        self._change(job_id, JobStatus.RUNNING, runs=1, lock_name=lock_name)

    def set_status(self, job_id: str, status: str, *, lock_name: str | None = None) -> None:
        """Raises ValueError for a status that is not a JobStatus."""
        self._change(job_id, JobStatus(status), lock_name=lock_name or "")

    def status(self, job_id: str) -> JobStatus | None:
        value = self.client.hget(self._job(job_id), "status")
        return None if value is None else JobStatus(str(value))

    def count(self, status: str | None = None) -> int:
        if status is None:
            return int(self.client.zcard(f"{self.prefix}jobs"))
        return int(self.client.scard(f"{self.prefix}status:{JobStatus(status)}"))

    def interrupted(self) -> list[tuple[JobRequest, int, str | None]]:
        return [
            (job, runs, lock) for job, status, runs, lock in self.unfinished() if status == JobStatus.RUNNING
        ]

    def unfinished(self) -> list[tuple[JobRequest, JobStatus, int, str | None]]:
        """This owner's jobs queued or running: (request, status, runs, lock)."""
        return [
            (
                JobRequest.model_validate_json(row["request"]),
                JobStatus(row["status"]),
                int(row.get("runs", 0)),
                row.get("lock_name"),
            )
            for row in self._owned(JobStatus.QUEUED, JobStatus.RUNNING)
            if row.get("request")
        ]

    def lock_name(self, job_id: str) -> str | None:
        """The branch lock the job's last run took, if any."""
        value = self.client.hget(self._job(job_id), "lock_name")
        return str(value) if value else None

    def runs(self, job_id: str) -> int:
        return int(self.client.hget(self._job(job_id), "runs") or 0)

    def progress(self, job_id: str) -> dict[str, Any]:
        value = self.client.hget(self._job(job_id), "progress")
        return json.loads(value) if value else {}

    def note(self, job_id: str, **fields: Any) -> None:
        """Add to the job's progress (one worker per job at a time: no lost update)."""
        merged = {**self.progress(job_id), **fields}
        self._change(job_id, progress=json.dumps(merged))

    def recent(self, limit: int = 50) -> list[JobRow]:
        ids = self.client.zrevrange(f"{self.prefix}jobs", 0, limit - 1)
        pipe = self.client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(self._job(str(job_id)))
        return [
            JobRow(
                job_id=row["job_id"],
                repo=row["repo"],
                status=JobStatus(row["status"]),
                request=JobRequest.model_validate_json(row["request"]) if row.get("request") else None,
                progress=json.loads(row["progress"]) if row.get("progress") else {},
                created_at=float(row["created_at"]),
                updated_at=float(row["updated_at"]),
            )
            for row in pipe.execute()
            if row
        ]

    def add_repositories(self, installation_id: int, repos: list[str]) -> None:
        if repos:
            self.client.hset(f"{self.prefix}installations", mapping=dict.fromkeys(repos, installation_id))

    def remove_repositories(self, installation_id: int, repos: list[str] | None = None) -> None:
        """Forget some repositories of an installation, or (None) the whole installation."""
        key = f"{self.prefix}installations"
        if repos is None:
            repos = [
                str(repo) for repo, held in self.client.hgetall(key).items() if held == str(installation_id)
            ]
        if repos:
            self._uninstall(keys=[key], args=[installation_id, *repos])

    def installation_for(self, repo: str) -> int | None:
        value = self.client.hget(f"{self.prefix}installations", repo)
        return None if value is None else int(value)

    def checkpoint(self) -> None:
        """Nothing to fold: Redis keeps its own files."""

    def close(self) -> None:
        self.client.close()
