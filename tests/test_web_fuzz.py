"""Hostile input at the webhook endpoint and in the command parser: whatever
arrives, the answer is a 2xx or a 4xx (never a 5xx or a crash), an unsigned
body never becomes a job, and an oversized one is refused without being held."""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.commands import MAX_INSTRUCTION, issue_command, parse_comment
from bot.config import Settings
from bot.web import MAX_BODY, WEBHOOK_PATH, create_app, sign
from tests.fakegithub import WEBHOOK_SECRET, FakePull, RemoteRepo, issue_comment, payload, review_comment
from tests.test_web import RecordingQueue

REPO = RemoteRepo(owner="acme", name="calculator", clone_url="https://github.test/acme/calculator.git")
PULL = FakePull(number=12, head_ref="feature", head_repo=REPO.full_name)
EVENTS = [
    "issue_comment",
    "pull_request_review_comment",
    "ping",
    "installation",
    "installation_repositories",
    "push",
]
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, RecordingQueue]]:
    # One app for every example: hypothesis runs many inside one test.
    path = tmp_path_factory.mktemp("fuzz")
    queue = RecordingQueue(path / "jobs.sqlite3")
    config = Settings(_env_file=None, data_dir=path, github_webhook_secret=WEBHOOK_SECRET)
    yield create_app(config, queue=queue), queue


async def _post(app: Any, content: bytes | AsyncIterator[bytes], headers: dict[str, str]) -> httpx.Response:
    # The app's exceptions are raised here, so a crash fails the test rather than hiding as a 500.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://patchling.test") as client:
        return await client.post(WEBHOOK_PATH, content=content, headers=headers)


def deliver(app: Any, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return asyncio.run(_post(app, body, headers))


# -- strategies -------------------------------------------------------------------------

header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@st.composite
def deep_nesting(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(min_value=500, max_value=200_000))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    return (opener * depth + "1" + closer * depth).encode()


@st.composite
def mutated_delivery(draw: st.DrawFn) -> bytes:
    """A real delivery with one part replaced by anything JSON can hold."""
    base = draw(
        st.sampled_from(
            [
                lambda: issue_comment(REPO, "/edit add memory clear"),
                lambda: review_comment(
                    REPO, "/edit add memory clear", pull=PULL, path="calculator/cli.py", line=24
                ),
                lambda: payload("installation/created"),
                lambda: payload("installation_repositories/added"),
                lambda: payload("ping/with-app_id"),
            ]
        )
    )()
    node: Any = base
    keys = draw(st.lists(st.text(max_size=12), min_size=1, max_size=3))
    for key in keys[:-1]:
        if isinstance(node, dict) and node:
            key = draw(st.sampled_from(sorted(node)))
            if isinstance(node[key], dict):
                node = node[key]
    if isinstance(node, dict) and node and draw(st.booleans()):
        del node[draw(st.sampled_from(sorted(node)))]
    elif isinstance(node, dict):
        replace_existing: bool = bool(node) and draw(st.booleans())
        target = draw(st.sampled_from(sorted(node))) if replace_existing else keys[-1]
        node[target] = draw(json_values)
    return json.dumps(base).encode()


bodies = st.one_of(
    st.binary(max_size=2_000),
    json_values.map(lambda value: json.dumps(value).encode()),
    mutated_delivery(),
    deep_nesting(),
    st.integers(min_value=4_000, max_value=20_000).map(lambda n: b"1" * n),  # past int's digit limit
    st.sampled_from(
        [b"NaN", b'{"zen": NaN}', b'{"zen": Infinity}', '{"a": 1}'.encode("utf-16"), b'{"a": "\\ud800"}']
    ),
)


@st.composite
def request_headers(draw: st.DrawFn, body: bytes, signed: bool) -> dict[str, str]:
    headers = {
        "content-type": draw(
            st.sampled_from(
                ["application/json", "application/x-www-form-urlencoded", "text/plain; charset=utf-16"]
            )
            | header_text
        ),
        "x-github-event": draw(st.sampled_from(EVENTS) | header_text),
        "x-github-delivery": draw(header_text),
    }
    if draw(st.booleans()):
        headers["content-encoding"] = draw(st.sampled_from(["gzip", "br", "identity"]) | header_text)
    secret = WEBHOOK_SECRET.encode() if signed else draw(st.binary(max_size=20))
    if signed or draw(st.booleans()):
        headers["x-hub-signature-256"] = sign(secret, body) if signed or secret else draw(header_text)
    return headers


# -- the endpoint -----------------------------------------------------------------------


@FUZZ
@given(data=st.data(), body=bodies)
def test_a_signed_body_is_answered_2xx_or_4xx(
    served: tuple[Any, RecordingQueue], data: Any, body: bytes
) -> None:
    app, _ = served
    response = deliver(app, body, data.draw(request_headers(body, signed=True)))
    assert 200 <= response.status_code < 500, response.text


@FUZZ
@given(data=st.data(), body=bodies)
def test_an_unsigned_body_never_becomes_a_job(
    served: tuple[Any, RecordingQueue], data: Any, body: bytes
) -> None:
    app, queue = served
    jobs = len(queue.jobs)
    response = deliver(app, body, data.draw(request_headers(body, signed=False)))
    assert response.status_code == 401
    assert len(queue.jobs) == jobs


def test_the_fuzzed_shapes_reach_the_handlers(served: tuple[Any, RecordingQueue]) -> None:
    """The fuzzing above is only worth something if valid deliveries pass: one that does."""
    app, queue = served
    body = json.dumps(issue_comment(REPO, "/edit add memory clear")).encode()
    signature = sign(WEBHOOK_SECRET.encode(), body)
    headers = {
        "x-github-event": "issue_comment",
        "x-github-delivery": "d-fuzz",
        "x-hub-signature-256": signature,
    }
    assert deliver(app, body, headers).status_code == 202
    assert queue.jobs[-1].delivery_id == "d-fuzz"


def _peak_while_posting(app: Any, size: int, chunked: bool) -> tuple[int, int]:
    """(status, peak bytes traced) for a `size`-byte body of 1 MiB chunks, each a
    fresh object as off the wire, so whatever the server keeps shows in the peak."""
    chunk = 1024 * 1024
    headers = {"x-github-event": "issue_comment", "x-github-delivery": "d-big", "x-hub-signature-256": "x"}

    async def stream() -> AsyncIterator[bytes]:
        for _ in range(size // chunk):
            yield bytes(chunk)

    tracemalloc.start()
    try:
        content: bytes | AsyncIterator[bytes] = stream() if chunked else bytes(size)
        response = asyncio.run(_post(app, content, headers))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return response.status_code, peak - (0 if chunked else size)  # the client's own body is not the server's


def test_a_30_mb_body_is_refused_without_being_held(served: tuple[Any, RecordingQueue]) -> None:
    app, queue = served
    jobs = len(queue.jobs)
    size = 30 * 1024 * 1024
    # With a length, nothing is read; without one (chunked), reading stops at the cap.
    status, peak = _peak_while_posting(app, size, chunked=False)
    assert status == 413 and peak < 4 * 1024 * 1024
    status, peak = _peak_while_posting(app, size, chunked=True)
    # At most the cap plus the chunk in flight that crossed it (about 27 MB here, not 30).
    assert status == 413 and peak <= MAX_BODY + 2 * 1024 * 1024
    assert len(queue.jobs) == jobs


# -- the command parser -----------------------------------------------------------------

comment_text = st.one_of(
    st.text(max_size=3_000),
    st.tuples(
        st.sampled_from(
            ["/edit ", "/EDIT\n", "  /edit ", "> /edit ", "```\n/edit ", "<!-- /edit ", "/edit <!--"]
        ),
        st.text(max_size=3_000),
        st.sampled_from(["", "-->", "\n```", "\n\n/edit again"]),
    ).map("".join),
    st.integers(min_value=MAX_INSTRUCTION - 5, max_value=3 * MAX_INSTRUCTION).map(
        lambda n: "/edit " + "a\u200b" * n
    ),
)


@settings(max_examples=150, deadline=None)
@given(body=comment_text)
def test_the_command_parser_never_raises_and_keeps_within_bounds(body: str) -> None:
    command = parse_comment(body)
    if command is None:
        return
    assert command.name in ("edit", "help")
    assert len(command.instruction) <= MAX_INSTRUCTION
    assert "<!--" not in command.instruction and "\u200b" not in command.instruction
    assert (command.name == "help") == bool(command.reply)


@settings(max_examples=60, deadline=None)
@given(title=st.text(max_size=300), body=st.none() | st.text(max_size=3 * MAX_INSTRUCTION))
def test_an_issue_as_instruction_keeps_within_bounds(title: str, body: str | None) -> None:
    command = issue_command(title, body)
    assert len(command.instruction) <= MAX_INSTRUCTION
    assert command.name == "edit" or "shorten" in command.reply
