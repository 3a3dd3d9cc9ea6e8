"""`patchling serve --forward URL`: GitHub's deliveries through a smee-style
channel, for a server without a public address.

The channel (smee.io, or a server of the same kind) receives GitHub's webhook
and sends each delivery down a Server-Sent Events stream as one JSON object:
the request's headers (lower-case names), `body` (the parsed JSON) and
`query`. Each one is posted to the local receiver with its headers, so the
receiver still verifies `X-Hub-Signature-256`. The body is serialised again
as GitHub sends it (compact JSON, UTF-8), which is what smee's own client does.
"""

from __future__ import annotations

import json
import logging
import threading

import httpx
from httpx_sse import ServerSentEvent, connect_sse

log = logging.getLogger(__name__)

# Not the delivery's own: the local request sets these, or they describe the channel's hop.
_HOP_HEADERS = frozenset(
    {"host", "content-length", "connection", "transfer-encoding", "accept-encoding", "keep-alive"}
)
# smee sends a ping every few tens of seconds: a stream silent for longer is dead.
READ_TIMEOUT_S = 90.0
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0


class NotADelivery(ValueError):
    """An event on the channel that carries no delivery (smee's `ready`, a ping)."""


def delivery_of(event: ServerSentEvent) -> tuple[dict[str, str], bytes]:
    """The headers and body to post for one event on the channel."""
    if event.event not in ("message", ""):
        raise NotADelivery(event.event)
    try:
        data = json.loads(event.data)
    except ValueError:
        raise NotADelivery("not JSON") from None
    if not isinstance(data, dict) or "body" not in data:
        raise NotADelivery("no body")
    body = json.dumps(data["body"], separators=(",", ":"), ensure_ascii=False).encode()
    headers = {
        name: value
        for name, value in data.items()
        if isinstance(value, str) and name not in _HOP_HEADERS and name not in ("body", "query", "timestamp")
    }
    headers["content-type"] = "application/json"
    return headers, body


def relay(client: httpx.Client, target: str, event: ServerSentEvent) -> int | None:
    """Post one event's delivery to the receiver; its status, or None when the
    event carries no delivery."""
    try:
        headers, body = delivery_of(event)
    except NotADelivery:
        return None
    response = client.post(target, content=body, headers=headers)
    # Names only: the body and the signature stay out of the log.
    log.info(
        "forwarded delivery %s (%s): %d",
        headers.get("x-github-delivery", "?")[:80],
        headers.get("x-github-event", "?")[:80],
        response.status_code,
    )
    return response.status_code


def forward(channel: str, target: str, stop: threading.Event) -> None:
    """Relay every delivery on `channel` to `target` until `stop` is set,
    reconnecting (with a growing pause) whenever the stream ends or fails."""
    timeout = httpx.Timeout(10.0, read=READ_TIMEOUT_S)
    pause = RETRY_FIRST_S
    with httpx.Client(timeout=timeout) as source, httpx.Client(timeout=30.0) as receiver:
        while not stop.is_set():
            try:
                with connect_sse(source, "GET", channel) as stream:
                    stream.response.raise_for_status()
                    log.info("forwarding deliveries from %s to %s", channel, target)
                    pause = RETRY_FIRST_S
                    for event in stream.iter_sse():
                        if stop.is_set():
                            return
                        _relay_logged(receiver, target, event)
            except httpx.HTTPError as exc:
                log.warning("webhook channel %s: %s; retrying in %.0fs", channel, type(exc).__name__, pause)
            if stop.wait(pause):
                return
            pause = min(pause * 2, RETRY_MAX_S)


def _relay_logged(receiver: httpx.Client, target: str, event: ServerSentEvent) -> None:
    """One delivery the receiver cannot take is logged, never the end of the stream."""
    try:
        relay(receiver, target, event)
    except httpx.HTTPError as exc:
        log.warning("cannot forward a delivery to %s: %s", target, type(exc).__name__)


def start_forwarder(channel: str, target: str) -> threading.Event:
    """`forward` in a daemon thread; set the returned event to stop it."""
    stop = threading.Event()
    threading.Thread(
        target=forward, args=(channel, target, stop), name="webhook-forwarder", daemon=True
    ).start()
    return stop
