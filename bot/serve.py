"""`patchling serve`: the webhook app (uvicorn) and the job consumer (huey
worker threads) in one process, stopped together on SIGTERM or SIGINT. In
Redis mode `serve` only receives, and `patchling worker` processes
(`run_worker`) run the jobs."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import signal
import threading
import time
from pathlib import Path

import uvicorn
from cryptography.exceptions import UnsupportedAlgorithm
from huey.consumer import Consumer, ConsumerStopped
from huey.signals import SIGNAL_COMPLETE, SIGNAL_ERROR
from starlette.applications import Starlette

from bot import logs
from bot.config import Settings, load_settings
from bot.forward import start_forwarder
from bot.github import signing_key
from bot.prune import prune_logged
from bot.queue import JobQueue, redis_url
from bot.setup_mode import Switch, setup_app
from bot.web import WEBHOOK_PATH, create_app

log = logging.getLogger(__name__)

# Secrets the process read into Settings: dropped from the environment so no
# child process (git, a repository's tests) can inherit them.
SECRET_ENV = (
    "GITHUB_PRIVATE_KEY",
    "GITHUB_WEBHOOK_SECRET",
    "PATCHLING_GITHUB_PRIVATE_KEY",
    "PATCHLING_GITHUB_WEBHOOK_SECRET",
    "GITHUB_CLIENT_SECRET",
)
# How long a stop waits for running jobs; one cut short runs again at the next start.
SHUTDOWN_TIMEOUT_S = 20.0
CHECKPOINT_EVERY_S = 5.0


def settle_heap() -> None:
    """Move everything loaded so far (githubkit's thousands of model classes
    above all) out of the garbage collector's sight: a full collection walked
    them all, stalling every request in flight for 100 ms or more. Rarer young
    collections too: each request allocates a typed event's worth of objects."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def collect_after_jobs(queue: JobQueue) -> None:
    """One full collection as each job ends. settle_heap makes full collections
    rare, and a job leaves cyclic garbage: a failed GitHub call's traceback
    holds its githubkit and httpx clients and their SSL context with the CA
    store, some 0.3 MB. Left to pile up, RSS grew by that much a job under
    bench.load; collected here (a few ms on the frozen heap), it stays flat."""

    def collect(signal: str, task: object, *args: object, **kwargs: object) -> None:
        gc.collect()

    queue.huey.signal(SIGNAL_COMPLETE, SIGNAL_ERROR)(collect)


def scrub_environment() -> None:
    for name in SECRET_ENV:
        os.environ.pop(name, None)
    deny_inspection()


PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


def deny_inspection() -> bool:
    """Popping a variable does not clear /proc/<pid>/environ, and the process
    memory holds the key. A non-dumpable process keeps its /proc files and
    memory from other processes of the same user, such as a repository's
    tests (root still sees them: run the service as its own user, as
    deploy/patchling.service does). Returns whether it took effect."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        return int(libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False  # not Linux: nothing to do here


class InProcessConsumer(Consumer):
    """huey's consumer as threads beside uvicorn. What differs from huey's
    `run()`: the signals stay uvicorn's (huey's handlers want the main thread;
    Running.stop stops the consumer), and the main loop, which restarts dead
    workers, runs in a thread of its own."""

    def _set_signal_handlers(self) -> None:
        """None: see the class."""

    def start(self) -> None:
        super().start()
        threading.Thread(target=self._supervise, name="huey-supervisor", daemon=True).start()

    def _supervise(self) -> None:
        checked = time.monotonic()
        while True:
            try:
                checked = self.loop(checked)
            except ConsumerStopped:  # consumer.stop() set the stop flag
                return


def start_consumer(queue: JobQueue, workers: int) -> InProcessConsumer:
    """Start the consumer's scheduler and worker threads, in this process."""
    collect_after_jobs(queue)
    consumer = InProcessConsumer(
        queue.huey,
        workers=max(1, workers),
        worker_type="thread",
        periodic=True,
        check_worker_health=True,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
    )
    consumer.start()
    return consumer


def start_pruning(settings: Settings) -> None:
    """Prune the test environments (bot.prune) in a thread: a large removal
    must not hold up the start."""
    threading.Thread(target=prune_logged, args=(settings,), name="prune", daemon=True).start()


def start_checkpoints(queue: JobQueue, stop: threading.Event, every_s: float = CHECKPOINT_EVERY_S) -> None:
    """Checkpoint the SQLite logs off the request path, until `stop` is set."""

    def run() -> None:
        while not stop.wait(every_s):
            try:
                queue.checkpoint()
            except Exception:
                log.warning("SQLite checkpoint failed", exc_info=True)

    threading.Thread(target=run, name="sqlite-checkpoints", daemon=True).start()


def missing_settings(settings: Settings) -> list[str]:
    """What the App cannot run without, named as the operator sets it."""
    missing = []
    if not settings.github_app_id:
        missing.append("GITHUB_APP_ID")
    key_path = settings.github_private_key_path
    if settings.github_private_key is None and key_path is None:
        missing.append("GITHUB_PRIVATE_KEY or GITHUB_PRIVATE_KEY_PATH")
    elif settings.github_private_key is None and key_path is not None and not key_path.is_file():
        missing.append(f"GITHUB_PRIVATE_KEY_PATH to a readable file ({key_path} is not one)")
    if settings.github_webhook_secret is None or not settings.github_webhook_secret.get_secret_value():
        missing.append("GITHUB_WEBHOOK_SECRET")
    return missing


def check_private_key(settings: Settings) -> None:
    """Raises ValueError naming the setting when the App's private key does
    not parse, so a bad key stops the start instead of failing the first job.
    The message never quotes the key."""
    source = (
        "GITHUB_PRIVATE_KEY"
        if settings.github_private_key is not None
        else f"GITHUB_PRIVATE_KEY_PATH ({settings.github_private_key_path})"
    )
    try:
        text = settings.private_key() or ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"cannot read the App's private key from {source}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    try:
        signing_key(text)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError(
            f"{source} does not hold a PEM private key (expected the .pem file GitHub gives for"
            " the App, starting with -----BEGIN RSA PRIVATE KEY-----)"
        ) from None


def quiet_model_log(verbose: bool) -> None:
    """BAML's Rust core logs to stdout, and at its default level ("warn") each
    failed call's whole prompt: a repository's code and a requester's words
    would fill the server's journal whenever a model failed. Only `--verbose`
    lets them in; a BAML_LOG left in the service's environment does not."""
    os.environ["BAML_LOG"] = "info" if verbose else "error"


def configure_logs(settings: Settings) -> None:
    """Structured lines on stderr, with every secret the process holds masked."""
    webhook = settings.github_webhook_secret
    secrets = [webhook.get_secret_value() if webhook else None, *(t.api_key() for t in settings.tiers)]
    # A key that cannot be read cannot leak either; check_private_key says why.
    with contextlib.suppress(OSError, ValueError):
        secrets.append(settings.private_key())
    logs.configure(settings.log_format, secrets=secrets)


def unconfigured(settings: Settings) -> bool:
    """No App setting at all: a first run, which starts in setup mode. Some
    set and some missing is a mistake to name instead."""
    return not (
        settings.github_app_id
        or settings.github_private_key is not None
        or settings.github_private_key_path is not None
        or settings.github_webhook_secret is not None
    )


class Running:
    """The normal app's parts that a stop must end: the consumer and the checkpoints."""

    def __init__(self) -> None:
        self.queue: JobQueue | None = None
        self.consumer: Consumer | None = None
        self.stopping = threading.Event()

    def start(self, settings: Settings) -> Starlette:
        """Check the settings, then start the queue and its consumer; the webhook app.
        Raises ValueError, before anything is started, when they are incomplete."""
        missing = missing_settings(settings)
        if missing:
            raise ValueError("the GitHub App is not configured; set " + ", ".join(missing) + " (see README)")
        check_private_key(settings)
        configure_logs(settings)  # again: after setup mode, the App's secrets are new
        scrub_environment()
        queue = JobQueue(settings)
        resumed = queue.recover()
        start_pruning(settings)
        if resumed:
            log.info("resuming %d job(s) interrupted by the last stop", resumed)
        app = create_app(settings, queue=queue)
        settle_heap()
        self.queue = queue
        if queue.broker is not None:
            log.info("Redis mode: this server receives; `patchling worker` processes run the jobs")
            return app
        self.consumer = start_consumer(queue, settings.workers)
        start_checkpoints(queue, self.stopping)
        backend = type(queue.huey).__name__
        log.info("consumer started with %d worker thread(s); queue: %s", settings.workers, backend)
        return app

    def stop(self) -> None:
        if self.consumer is None or self.queue is None:
            return  # setup mode, or Redis mode: no consumer here
        log.info("stopping the consumer (waiting up to %.0fs for running jobs)", SHUTDOWN_TIMEOUT_S)
        self.consumer.stop(graceful=True)
        self.stopping.set()
        self.queue.checkpoint()


def run_worker(settings: Settings, *, verbose: bool = False) -> None:
    """`patchling worker`: take jobs from Redis and run them until SIGTERM or
    SIGINT, then let running jobs finish (up to SHUTDOWN_TIMEOUT_S; one cut
    short is taken up by another worker once its lease ends). Raises
    ValueError, before anything is started, without a Redis queue_url or
    with incomplete App settings."""
    if not redis_url(settings):
        raise ValueError(
            "`patchling worker` takes jobs from Redis: set PATCHLING_QUEUE_URL=redis://host:6379/0"
        )
    missing = missing_settings(settings)
    if missing:
        raise ValueError("the GitHub App is not configured; set " + ", ".join(missing) + " (see README)")
    check_private_key(settings)
    quiet_model_log(verbose)
    configure_logs(settings)
    scrub_environment()
    queue = JobQueue(settings)
    worker = queue.worker(max(1, settings.workers))
    start_pruning(settings)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, frame: stop.set())
    worker.start()
    log.info("worker started with %d thread(s); lease %.0fs", max(1, settings.workers), settings.lease_s)
    stop.wait()
    log.info("stopping the worker (waiting up to %.0fs for running jobs)", SHUTDOWN_TIMEOUT_S)
    worker.stop(timeout=int(SHUTDOWN_TIMEOUT_S * 1000))


def local_address(host: str, port: int) -> str:
    """This server as a local client reaches it."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


def serve(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 3000,
    *,
    verbose: bool = False,
    forward: str | None = None,
    config_file: Path | None = None,
) -> None:
    """Raises ValueError, before anything is started or written, when the App's
    settings are incomplete or its private key does not parse; with none of
    them set, starts in setup mode instead (bot.setup_mode). `verbose` logs the
    models' prompts and replies too; `forward` (or WEBHOOK_PROXY_URL) is a
    smee-style channel whose deliveries are relayed to this server."""
    quiet_model_log(verbose)
    configure_logs(settings)
    running = Running()
    app: Starlette | Switch
    if unconfigured(settings):
        app = setup_app(settings, running.start, reload=lambda: load_settings(config_file))
        log.info(
            "no GitHub App configured: setup mode; open %s/ to register one",
            (settings.public_url or local_address(host, port)).rstrip("/"),
        )
    else:
        app = running.start(settings)
    channel = forward or settings.webhook_proxy_url
    stop_forwarding = (
        start_forwarder(channel, local_address(host, port) + WEBHOOK_PATH) if channel else threading.Event()
    )
    # log_config=None: uvicorn's lines go through the structured handler too.
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="info", proxy_headers=True, log_config=None)
    )
    received: list[int] = []
    # uvicorn handles SIGTERM/SIGINT while it runs, then restores these and
    # raises the signal again: recording it (instead of the default, which
    # would kill the process) lets the consumer stop cleanly below.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, frame: received.append(signum))
    try:
        server.run()
    finally:
        stop_forwarding.set()
        running.stop()
    log.info("stopped (%s)", ", ".join(signal.Signals(s).name for s in received) or "server exited")
