"""A scripted OpenAI-compatible chat server for tests and benchmarks.

It runs in its own process (BAML's HTTP client lives in Rust and is invisible
to respx, and a synchronous BAML stream would hold an in-process server's
interpreter). Tests script it over HTTP:

    POST /_script  {"rules": [{"match": "calc.py", "reply": "...", "delay": 1.0,
                               "times": 1, "model": "tiny", "status": 200}]}
    GET  /_calls   every request received, with start/end times

A request takes the first rule whose `model` (if set) equals the request's
model, whose `match` (if set) occurs in the concatenated message text, and
whose `times` budget is not spent. No matching rule answers 500.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.processes import LoopbackProcess
from tests.processes import free_port as free_port


@dataclass
class _State:
    rules: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    model_lists: int = 0


def _message_text(messages: list[dict[str, Any]]) -> str:
    parts: list[str] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "\n".join(parts)


def build_app() -> Starlette:
    state = _State()

    def pick(model: str, text: str) -> dict[str, Any] | None:
        for rule in state.rules:
            if rule.get("model") not in (None, model):
                continue
            if rule.get("match") is not None and rule["match"] not in text:
                continue
            if rule.get("times") is not None:
                if rule["times"] <= 0:
                    continue
                rule["times"] -= 1
            return rule
        return None

    async def completions(request: Request) -> JSONResponse:
        started = time.time()
        body = await request.json()
        model = str(body.get("model", ""))
        text = _message_text(body.get("messages", []))
        rule = pick(model, text)
        call = {"model": model, "messages": body.get("messages", []), "started": started}
        state.calls.append(call)
        if rule is None:
            call["ended"] = time.time()
            return JSONResponse({"error": {"message": "no scripted reply"}}, status_code=500)
        await asyncio.sleep(float(rule.get("delay", 0)))
        call["ended"] = time.time()
        status = int(rule.get("status", 200))
        if status != 200:
            return JSONResponse({"error": {"message": rule.get("reply", "error")}}, status_code=status)
        reply = str(rule.get("reply", ""))
        return JSONResponse(
            {
                "id": f"chatcmpl-{len(state.calls)}",
                "object": "chat.completion",
                "created": int(started),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply},
                        "finish_reason": rule.get("finish_reason", "stop"),
                    }
                ],
                "usage": {
                    "prompt_tokens": max(1, len(text) // 4),
                    "completion_tokens": max(1, len(reply) // 4),
                    "total_tokens": max(1, len(text) // 4) + max(1, len(reply) // 4),
                },
            }
        )

    async def script(request: Request) -> JSONResponse:
        body = await request.json()
        state.rules = list(body.get("rules", []))
        state.calls.clear()
        return JSONResponse({"rules": len(state.rules)})

    async def calls(request: Request) -> JSONResponse:
        return JSONResponse(state.calls)

    async def models(request: Request) -> JSONResponse:
        state.model_lists += 1  # what reachability probes ask for
        return JSONResponse({"object": "list", "data": []})

    async def probes(request: Request) -> JSONResponse:
        return JSONResponse({"models": state.model_lists})

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/v1/models", models),
            Route("/_script", script, methods=["POST"]),
            Route("/_calls", calls),
            Route("/_probes", probes),
            Route("/healthz", healthz),
        ]
    )


class ScriptedModel(LoopbackProcess):
    """Handle on a model server process: start, script, read calls, stop."""

    module = "tests.modelserver"

    def __init__(self) -> None:
        super().__init__()
        self.url = f"{self.root}/v1"

    def start(self) -> ScriptedModel:
        self.launch()
        return self

    def script(self, *rules: dict[str, Any]) -> None:
        httpx.post(f"{self.root}/_script", json={"rules": list(rules)}, timeout=5).raise_for_status()

    def calls(self) -> list[dict[str, Any]]:
        return list(httpx.get(f"{self.root}/_calls", timeout=5).json())

    def probes(self) -> int:
        """How often /v1/models was asked for since the server started."""
        return int(httpx.get(f"{self.root}/_probes", timeout=5).json()["models"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(build_app(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
