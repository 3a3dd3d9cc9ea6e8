"""Structured logs: one JSON object per line, secrets masked.

structlog renders every record, Patchling's own (stdlib loggers throughout)
and its libraries' (uvicorn, huey, httpx), through the same processors, so
one format covers them all and a job's ids reach every line logged while it
runs: they are bound in context variables at the job's start, which also
follow the engine into its event loop and threads.

Secrets are masked in the rendered line whatever logged them: the App's
webhook secret and private key, the tiers' API keys, installation tokens as
they are minted (and by their `ghs_`-style shape), values under keys named
like a secret, and URL query values such as a setup callback's `code`.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import IO, Any, Literal

import structlog
from structlog.typing import EventDict, WrappedLogger

from bot.redact import MASK, secret_parts

LogFormat = Literal["json", "text"]

# Keys whose values are never logged, whatever they hold.
SECRET_KEYS = re.compile(r"token|secret|password|passwd|private_key|api_key|authorization|cookie", re.I)
# GitHub's token shapes (installation, user, OAuth, refresh, fine-grained PAT).
GITHUB_TOKEN = re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})")
# Query values that grant something: the manifest flow's code, OAuth's state, tokens.
SECRET_QUERY = re.compile(
    r"([?&](?:code|state|token|access_token|client_secret|secret|key)=)[^&\s\"']+", re.I
)
# Tokens minted lately; one lives an hour, so the newest few hundred cover every live one.
RECENT_SECRETS = 512

_lock = threading.Lock()
_fixed: list[str] = []
_recent: deque[str] = deque(maxlen=RECENT_SECRETS)
_parts: list[str] = []


def hide(*secrets: str | None) -> None:
    """Mask these values in every log line from now on (installation tokens as minted)."""
    fresh = [s for s in secrets if s]
    if not fresh:
        return
    with _lock:
        _recent.extend(fresh)
        _rebuild()


def _rebuild() -> None:
    global _parts
    _parts = secret_parts([*_fixed, *_recent])


def _mask(text: str) -> str:
    for part in _parts:
        text = text.replace(part, MASK)
    text = GITHUB_TOKEN.sub(MASK, text)
    return SECRET_QUERY.sub(lambda m: m[1] + MASK, text)


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return _mask(value)
    if isinstance(value, dict):
        return {k: MASK if SECRET_KEYS.search(str(k)) else _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def redact_secrets(logger: WrappedLogger, name: str, event: EventDict) -> EventDict:
    """The last processor before rendering: nothing secret leaves in a line."""
    return {k: MASK if SECRET_KEYS.search(k) else _clean(v) for k, v in event.items()}


def drop_color_message(logger: WrappedLogger, name: str, event: EventDict) -> EventDict:
    """uvicorn repeats each message with ANSI colours as an extra: one copy is enough."""
    event.pop("color_message", None)
    return event


def _renderer(fmt: LogFormat) -> Any:
    if fmt == "json":
        return structlog.processors.JSONRenderer()
    return structlog.dev.ConsoleRenderer(colors=False)


def formatter(fmt: LogFormat = "json") -> structlog.stdlib.ProcessorFormatter:
    """The formatter for every handler: stdlib records in, one masked line out."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),
            drop_color_message,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_secrets,
            _renderer(fmt),
        ],
    )


def configure(
    fmt: LogFormat = "json",
    *,
    secrets: Iterable[str | None] = (),
    level: int = logging.INFO,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Route the root logger through one structured handler (replacing any
    handler it had) and mask `secrets` in every line. Returns the handler."""
    with _lock:
        _fixed[:] = [s for s in secrets if s]
        _rebuild()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


# structlog's own loggers become stdlib records whose fields travel as `extra`,
# so they meet the same formatter as everything else (and pytest's caplog).
structlog.configure(
    processors=[structlog.stdlib.filter_by_level, structlog.stdlib.render_to_log_kwargs],
    logger_factory=structlog.stdlib.LoggerFactory(),
    wrapper_class=structlog.stdlib.BoundLogger,
    cache_logger_on_first_use=True,
)


def get_logger(name: str) -> Any:
    return structlog.stdlib.get_logger(name)


@contextmanager
def job_context(job_id: str | None, delivery_id: str | None, repo: str | None) -> Iterator[None]:
    """Every line logged in this block (and the tasks and threads it starts) names the job."""
    with structlog.contextvars.bound_contextvars(job_id=job_id, delivery_id=delivery_id, repo=repo):
        yield
