"""`patchling serve` runs huey's consumer as threads beside uvicorn: started
from any thread, it leaves the signal handlers alone, runs tasks, and stops."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from bot.config import Settings
from bot.queue import JobQueue
from bot.serve import InProcessConsumer, start_consumer


def test_the_consumer_runs_tasks_and_stops_without_touching_signals(tmp_path: Path) -> None:
    queue = JobQueue(Settings(_env_file=None, data_dir=tmp_path))
    ran = threading.Event()

    @queue.huey.task()
    def mark() -> None:
        ran.set()

    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    started: list[InProcessConsumer] = []
    # Off the main thread, where setting a signal handler raises: as huey's own start would.
    starter = threading.Thread(target=lambda: started.append(start_consumer(queue, 2)))
    starter.start()
    starter.join()
    assert len(started) == 1
    consumer = started[0]
    try:
        mark()
        assert ran.wait(30), "the consumer did not run the task"
    finally:
        consumer.stop(graceful=True)
    assert {signum: signal.getsignal(signum) for signum in handlers} == handlers
    assert not any(thread.is_alive() for _, thread in consumer.worker_threads)
