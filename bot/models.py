"""Model tiers as BAML clients: one ClientRegistry per tier, thin async calls.

Every call gets its own Collector so tokens and latency are per call. Errors of
any kind (unreachable, timeout, HTTP status, unparseable reply) become a
`ModelError` with a short message; escalation to the next tier is the engine's
job, so BAML's own retries are off.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any

# BAML prints every prompt at its default level; set before the client loads.
os.environ.setdefault("BAML_LOG", "warn")

import baml_py
import httpx
from baml_py import errors as baml_errors

from bot.baml_client.async_client import b
from bot.baml_client.types import EditPlan, FileChange
from bot.config import Tier

__all__ = [
    "EditPlan",
    "FileChange",
    "ModelError",
    "Usage",
    "base_url",
    "client_registry",
    "plan",
    "reachable",
    "write_file_edit",
]

# Where providers live when a tier names no base_url (only used to say where
# a tier points, and for the reachability check).
DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com/v1",
}
# Seconds added to the tier's own timeout before asyncio gives up on BAML.
TIMEOUT_GRACE_S = 5.0
FUNCTIONS_BY_FORMAT = {
    "whole": "RewriteFile",
    "search_replace": "EditSearchReplace",
    "diff": "EditUnifiedDiff",
}


@dataclass(frozen=True)
class Usage:
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.tokens_in + other.tokens_in,
            self.tokens_out + other.tokens_out,
            self.latency_s + other.latency_s,
        )


class ModelError(Exception):
    """A tier could not give a usable answer.

    `kind` is one of "unreachable", "timeout", "http", "unparseable", "error";
    `raw_output` keeps what the model said when it said something unusable.
    """

    def __init__(
        self, message: str, *, kind: str = "error", raw_output: str = "", usage: Usage | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.raw_output = raw_output
        self.usage = usage or Usage()


def base_url(tier: Tier) -> str:
    return (tier.base_url or DEFAULT_BASE_URLS.get(tier.provider, f"<{tier.provider} default>")).rstrip("/")


def _client_options(tier: Tier) -> dict[str, Any]:
    timeout_ms = max(1, int(tier.timeout_s * 1000))
    options: dict[str, Any] = {
        "model": tier.model,
        "max_retries": 0,
        "max_tokens": tier.max_output_tokens,
        "http": {"request_timeout_ms": timeout_ms, "connect_timeout_ms": min(timeout_ms, 10_000)},
    }
    if tier.base_url:
        options["base_url"] = tier.base_url
    key = tier.api_key()
    if key:
        options["api_key"] = key
    elif tier.provider == "openai-generic":
        # Local servers need no key; an explicit empty one stops any default lookup.
        options["api_key"] = ""
    return options


def client_registry(tier: Tier) -> baml_py.ClientRegistry:
    """A registry whose primary client is this tier. Built per call so a key
    read from the environment lives no longer than the call."""
    registry = baml_py.ClientRegistry()
    registry.add_llm_client(tier.name, provider=tier.provider, options=_client_options(tier))
    registry.set_primary(tier.name)
    return registry


def _usage(collector: baml_py.Collector, started: float) -> Usage:
    usage = collector.usage
    return Usage(
        tokens_in=int(usage.input_tokens or 0),
        tokens_out=int(usage.output_tokens or 0),
        latency_s=time.perf_counter() - started,
    )


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_error(tier: Tier, exc: BaseException) -> tuple[str, str]:
    """(kind, short message) for an exception raised by a BAML call."""
    where = base_url(tier)
    prefix = f"tier {tier.name}"
    if isinstance(exc, baml_errors.BamlTimeoutError | asyncio.TimeoutError | TimeoutError):
        return "timeout", f"{prefix}: no answer from {where} within {tier.timeout_s:g}s"
    if isinstance(exc, baml_errors.BamlValidationError):
        return "unparseable", f"{prefix}: the reply could not be parsed ({_short(exc.message, 90)})"
    if isinstance(exc, baml_errors.BamlClientFinishReasonError):
        return "unparseable", f"{prefix}: the reply stopped early (finish reason {exc.finish_reason})"
    if isinstance(exc, baml_errors.BamlClientHttpError):
        message = str(exc.message)
        if "ConnectionRefused" in message or "Connection refused" in message:
            return "unreachable", f"{prefix}: cannot reach {where} (connection refused)"
        if "dns error" in message.lower() or "ConnectError" in message or "kind: Connect" in message:
            return "unreachable", f"{prefix}: cannot reach {where} ({_short(message, 120)})"
        if "timed out" in message.lower():
            return "timeout", f"{prefix}: no answer from {where} within {tier.timeout_s:g}s"
        return "http", f"{prefix}: HTTP {exc.status_code} from {where}: {_short(message, 160)}"
    return "error", f"{prefix}: {type(exc).__name__}: {_short(str(exc), 160)}"


async def _call(tier: Tier, function: str, **kwargs: str) -> tuple[Any, Usage]:
    collector = baml_py.Collector(name=f"patchling-{tier.name}")
    try:
        registry = client_registry(tier)
    except baml_errors.BamlError as exc:  # an unknown provider, a bad option
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"tier {tier.name}: invalid client settings: {_short(first_line, 120)}") from None
    options: dict[str, Any] = {"client_registry": registry, "collector": collector}
    started = time.perf_counter()
    try:
        method = getattr(b, function)
        result = await asyncio.wait_for(
            method(**kwargs, baml_options=options), timeout=tier.timeout_s + TIMEOUT_GRACE_S
        )
    except (baml_errors.BamlError, TimeoutError) as exc:
        kind, message = describe_error(tier, exc)
        raw = getattr(exc, "raw_output", "") or ""
        raise ModelError(message, kind=kind, raw_output=str(raw), usage=_usage(collector, started)) from None
    return result, _usage(collector, started)


async def plan(tier: Tier, instruction: str, context: str) -> tuple[EditPlan, Usage]:
    """Ask the tier which files to change (BAML function PlanEdit)."""
    result, usage = await _call(tier, "PlanEdit", instruction=instruction, context=context)
    return result, usage


async def write_file_edit(
    tier: Tier,
    instruction: str,
    change: str,
    path: str,
    content: str,
    context: str,
    feedback: str = "",
) -> tuple[str, Usage]:
    """One file's edit, in the tier's edit format; returns the raw reply text."""
    function = FUNCTIONS_BY_FORMAT[tier.edit_format]
    reply, usage = await _call(
        tier,
        function,
        instruction=instruction,
        change=change,
        path=path,
        content=content,
        context=context,
        feedback=feedback,
    )
    return str(reply), usage


async def reachable(tier: Tier, timeout_s: float = 3.0) -> str | None:
    """None when the tier's server answers HTTP at all (any status: a 401 still
    proves it is there), else a short reason such as "connection refused"."""
    url = f"{base_url(tier)}/models"
    if not url.startswith(("http://", "https://")):
        return None  # A provider without a URL we know: let the call itself tell.
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            await client.get(url)
    except httpx.ConnectError as exc:
        text = str(exc)
        # httpx's anyio backend words a refused connect as "All connection attempts failed".
        if not text or "refused" in text.lower() or "all connection attempts failed" in text.lower():
            return "connection refused"
        return _short(text, 80)
    except httpx.TimeoutException:
        return f"no answer within {timeout_s:g}s"
    except httpx.HTTPError as exc:
        return _short(f"{type(exc).__name__}: {exc}", 80)
    return None
