"""Model tiers as BAML clients: one ClientRegistry per tier, thin async calls.

Every call gets its own Collector so tokens and latency are per call. Errors of
any kind (refused connection, unknown model, refused key, timeout, unparseable
reply) become a `ModelError` whose `kind` is the attempt's outcome and whose
message says what to do next; escalation to the next tier is the engine's job,
so BAML's own retries are off.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# BAML writes its log to stdout, and at "warn" (its default) every failed
# call's whole prompt: quiet unless the user asks (the CLI's --verbose, or
# BAML_LOG set by hand). BAML reads the variable at each call.
os.environ.setdefault("BAML_LOG", "error")

import baml_py
import httpx
from baml_py import errors as baml_errors

from bot import fences
from bot.baml_client.async_client import b
from bot.baml_client.types import EditPlan, FileChange
from bot.config import Tier

__all__ = [
    "NO_ANSWER_KINDS",
    "EditPlan",
    "FileChange",
    "ModelError",
    "Usage",
    "base_url",
    "client_registry",
    "next_steps",
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
# Ollama's OpenAI-compatible endpoint: a tier there gets `ollama` advice.
OLLAMA_PORT = ":11434"
# ModelError kinds that mean no model answered at all (the rest are replies
# that could not be used). Records count only attempts a model answered.
NO_ANSWER_KINDS = frozenset(
    {"unreachable", "connection_refused", "model_not_found", "auth_failed", "timeout", "server_error"}
)
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

    `kind` is the attempt's outcome: "connection_refused", "unreachable"
    (another connect failure), "model_not_found", "auth_failed", "timeout",
    "server_error" (any other HTTP status), "bad_reply" (unparseable or cut
    short) or "model_error" (anything else); `raw_output` keeps what the model
    said when it said something unusable.
    """

    def __init__(
        self, message: str, *, kind: str = "model_error", raw_output: str = "", usage: Usage | None = None
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


def is_ollama(tier: Tier) -> bool:
    return OLLAMA_PORT in base_url(tier)


def _not_found_advice(tier: Tier) -> str:
    if is_ollama(tier):
        return f"run `ollama pull {tier.model}`"
    return f"check the model name of tier {tier.name} in patchling.toml"


def _http_error(tier: Tier, status: int | None, message: str) -> tuple[str, str]:
    where = base_url(tier)
    prefix = f"tier {tier.name}"
    # BAML words its connect failures with status 2 (its own, not HTTP's).
    if "ConnectionRefused" in message or "Connection refused" in message:
        return "connection_refused", f"{prefix}: cannot reach {where} (connection refused)"
    if "dns error" in message.lower() or "ConnectError" in message or "kind: Connect" in message:
        return "unreachable", f"{prefix}: cannot reach {where} ({_short(message, 120)})"
    if "timed out" in message.lower():
        return "timeout", f"{prefix}: no answer from {where} within {tier.timeout_s:g}s"
    if status == 404:
        return "model_not_found", (
            f"{prefix}: {where} has no model {tier.model!r} (HTTP 404); {_not_found_advice(tier)}"
        )
    if status in (401, 403):
        key = f"check {tier.api_key_env}" if tier.api_key_env else "the tier sets no api_key_env"
        return "auth_failed", f"{prefix}: {where} refused the credentials (HTTP {status}); {key}"
    return "server_error", f"{prefix}: HTTP {status} from {where}: {_short(message, 160)}"


def describe_error(tier: Tier, exc: BaseException) -> tuple[str, str]:
    """(kind, short message) for an exception raised by a BAML call."""
    where = base_url(tier)
    prefix = f"tier {tier.name}"
    if isinstance(exc, baml_errors.BamlTimeoutError | asyncio.TimeoutError | TimeoutError):
        return "timeout", f"{prefix}: no answer from {where} within {tier.timeout_s:g}s"
    if isinstance(exc, baml_errors.BamlValidationError):
        return "bad_reply", f"{prefix}: the reply could not be parsed ({_short(exc.message, 90)})"
    if isinstance(exc, baml_errors.BamlClientFinishReasonError):
        return "bad_reply", f"{prefix}: the reply stopped early (finish reason {exc.finish_reason})"
    if isinstance(exc, baml_errors.BamlClientHttpError):
        return _http_error(tier, exc.status_code, str(exc.message))
    return "model_error", f"{prefix}: {type(exc).__name__}: {_short(str(exc), 160)}"


def next_steps(tiers: Sequence[Tier]) -> str:
    """What a user can do when none of `tiers` can be used: said once, at
    the end of the "no tier" message."""
    steps: list[str] = []
    local = [t for t in tiers if is_ollama(t)]
    if local:
        steps.append(f"start Ollama (`ollama serve`) and run `ollama pull {local[0].model}`")
    steps.append("configure a tier you can reach in patchling.toml (see README, Model tiers)")
    keys = sorted({t.api_key_env for t in tiers if t.api_key_env and not t.available()})
    if keys:
        steps.append(f"set {' or '.join(keys)}")
    return "to go on: " + "; or ".join(steps)


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
    conventions: str = "",
) -> tuple[str, Usage]:
    """One file's edit, in the tier's edit format; returns the raw reply text.
    `conventions`: the repository's guidance for contributors (bot.conventions)."""
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
        language=fences.language_name(path),
        fence=fences.fence_tag(path),
        conventions=conventions,
    )
    return str(reply), usage


async def write_test(
    tier: Tier, instruction: str, path: str, context: str, example: tuple[str, str], conventions: str = ""
) -> tuple[str, Usage]:
    """A new test file for `instruction`, at `path`, in the style of `example`
    (path, text), its language named and fenced by the path; returns the raw
    reply text (BAML function WriteTest)."""
    reply, usage = await _call(
        tier,
        "WriteTest",
        instruction=instruction,
        path=path,
        context=context,
        example_path=example[0],
        example=example[1],
        conventions=conventions,
        language=fences.language_name(path),
        fence=fences.fence_tag(path),
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
