"""`patchling serve`: the webhook app (uvicorn) and the job consumer (huey
worker threads) in one process, stopped together on SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import os
import signal

import uvicorn
from huey.consumer import Consumer

from bot.config import Settings
from bot.jobs import JobQueue
from bot.web import create_app

log = logging.getLogger(__name__)

# Secrets the process read into Settings: dropped from the environment so no
# child process (git, a repository's tests) can inherit them.
SECRET_ENV = (
    "GITHUB_PRIVATE_KEY",
    "GITHUB_WEBHOOK_SECRET",
    "PATCHLING_GITHUB_PRIVATE_KEY",
    "PATCHLING_GITHUB_WEBHOOK_SECRET",
)
# How long a stop waits for running jobs; one cut short runs again at the next start.
SHUTDOWN_TIMEOUT_S = 20.0


def scrub_environment() -> None:
    for name in SECRET_ENV:
        os.environ.pop(name, None)


def start_consumer(queue: JobQueue, workers: int) -> Consumer:
    """huey's consumer as threads in this process (its `run()` would want the
    main thread and its own signal handling; uvicorn owns those here)."""
    consumer = queue.huey.create_consumer(
        workers=max(1, workers),
        worker_type="thread",
        periodic=True,
        check_worker_health=True,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
    )
    # Start the threads without consumer.start(): that also installs signal
    # handlers, which must stay uvicorn's.
    consumer.scheduler.start()
    for _, thread in consumer.worker_threads:
        thread.start()
    return consumer


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 3000) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    scrub_environment()
    queue = JobQueue(settings)
    resumed = queue.recover()
    if resumed:
        log.info("resuming %d job(s) interrupted by the last stop", resumed)
    app = create_app(settings, queue=queue)
    consumer = start_consumer(queue, settings.workers)
    log.info(
        "consumer started with %d worker thread(s); queue: %s", settings.workers, type(queue.huey).__name__
    )
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info", proxy_headers=True))
    received: list[int] = []
    # uvicorn handles SIGTERM/SIGINT while it runs, then restores these and
    # raises the signal again: recording it (instead of the default, which
    # would kill the process) lets the consumer stop cleanly below.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, frame: received.append(signum))
    try:
        server.run()
    finally:
        log.info("stopping the consumer (waiting up to %.0fs for running jobs)", SHUTDOWN_TIMEOUT_S)
        consumer.stop(graceful=True)
    log.info("stopped (%s)", ", ".join(signal.Signals(s).name for s in received) or "server exited")
