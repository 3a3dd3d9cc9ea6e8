"""`serve --forward`: deliveries from a smee-style Server-Sent Events channel
reach the real webhook receiver with their headers, so signatures still count.
Both the channel and the receiver are real servers on loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from httpx_sse import ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from bot.config import Settings
from bot.forward import NotADelivery, delivery_of, forward
from bot.web import WEBHOOK_PATH, create_app, sign
from tests.fakegithub import WEBHOOK_SECRET, RemoteRepo, issue_comment
from tests.test_web import RecordingQueue

REPO = RemoteRepo(owner="acme", name="calculator", clone_url="https://github.test/acme/calculator.git")
# Bounds a wait for the threads, not a measure of speed.
PATIENCE_S = 30.0


def smee_message(event: str, delivery: str, data: dict[str, Any], secret: str = WEBHOOK_SECRET) -> str:
    """One delivery as a smee channel sends it: the headers GitHub sent, the
    parsed body, the query; signed over GitHub's compact JSON."""
    raw = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    message = {
        "host": "smee.example",
        "content-length": str(len(raw)),
        "x-github-event": event,
        "x-github-delivery": delivery,
        "x-hub-signature-256": sign(secret.encode(), raw),
        "content-type": "application/json",
        "body": data,
        "query": {},
        "timestamp": 1700000000000,
    }
    return f"data: {json.dumps(message)}\n\n"


@contextmanager
def serving(app: ASGIApp) -> Iterator[str]:
    """`app` under uvicorn on a loopback port of its own, in a thread."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + PATIENCE_S
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(PATIENCE_S)
        sock.close()


def channel(messages: list[str], done: threading.Event) -> Starlette:
    """A smee-style channel: `ready`, the messages, then silence until `done`."""

    async def events(request: Request) -> Response:
        async def stream() -> AsyncIterator[str]:
            yield "event: ready\ndata: {}\n\n"
            for message in messages:
                yield message
            yield "event: ping\ndata: {}\n\n"
            while not done.is_set():
                await asyncio.sleep(0.05)

        return StreamingResponse(stream(), media_type="text/event-stream")

    return Starlette(routes=[Route("/channel", events)])


def wait_for(condition: Any) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_deliveries_reach_the_receiver_and_signatures_still_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    queue = RecordingQueue(tmp_path / "jobs.sqlite3")
    settings = Settings(_env_file=None, data_dir=tmp_path, github_webhook_secret=WEBHOOK_SECRET)
    edit = issue_comment(REPO, "/edit rename the helper to déjà_vu")
    forged = issue_comment(REPO, "/edit delete everything")
    forged["comment"]["id"] += 1
    messages = [
        smee_message("ping", "d-ping", {"zen": "Design for failure.", "hook_id": 1}),
        smee_message("issue_comment", "d-edit", edit),
        smee_message("issue_comment", "d-forged", forged, secret="not-the-secret"),
    ]
    done = threading.Event()
    stop = threading.Event()
    caplog.set_level(logging.INFO)
    with serving(create_app(settings, queue=queue)) as receiver, serving(channel(messages, done)) as smee:
        thread = threading.Thread(target=forward, args=(f"{smee}/channel", receiver + WEBHOOK_PATH, stop))
        thread.start()
        wait_for(lambda: "forwarded delivery d-forged" in caplog.text)
        stop.set()
        done.set()
        thread.join(PATIENCE_S)

    assert not thread.is_alive()
    assert "forwarded delivery d-ping (ping): 200" in caplog.text
    assert "forwarded delivery d-edit (issue_comment): 202" in caplog.text
    assert "forwarded delivery d-forged (issue_comment): 401" in caplog.text
    (job,) = queue.jobs
    assert job.delivery_id == "d-edit"
    assert job.instruction == "rename the helper to déjà_vu"
    assert WEBHOOK_SECRET not in caplog.text


def test_the_forwarder_outlives_a_channel_that_is_not_there(caplog: pytest.LogCaptureFixture) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens here
    stop = threading.Event()
    caplog.set_level(logging.INFO)
    thread = threading.Thread(
        target=forward, args=(f"http://127.0.0.1:{port}/c", "http://127.0.0.1:9/x", stop)
    )
    thread.start()
    wait_for(lambda: "retrying" in caplog.text)
    stop.set()
    thread.join(PATIENCE_S)
    assert not thread.is_alive()
    assert f"webhook channel http://127.0.0.1:{port}/c: ConnectError; retrying" in caplog.text


def test_delivery_of_keeps_the_deliverys_headers_only() -> None:
    message = json.loads(smee_message("ping", "d-1", {"a": "é"})[len("data: ") :])
    headers, body = delivery_of(ServerSentEvent(data=json.dumps(message)))
    assert body == '{"a":"é"}'.encode()
    assert headers == {
        "x-github-event": "ping",
        "x-github-delivery": "d-1",
        "x-hub-signature-256": sign(WEBHOOK_SECRET.encode(), body),
        "content-type": "application/json",
    }


@pytest.mark.parametrize(
    "event",
    [
        ServerSentEvent(event="ready", data="{}"),
        ServerSentEvent(event="ping", data="{}"),
        ServerSentEvent(data="not json"),
        ServerSentEvent(data='{"x-github-event": "ping"}'),
    ],
)
def test_channel_events_without_a_delivery_are_skipped(event: ServerSentEvent) -> None:
    with pytest.raises(NotADelivery):
        delivery_of(event)
