"""Receiving webhooks: verify, parse, record, enqueue, answer. Nothing else.

The request does no GitHub, git or model work: it checks the signature over
the raw body before looking at it, parses the event, and hands a JobRequest to
the queue, which records it (deduplicating on delivery and comment) and
enqueues it before the 202 goes out. Handlers are plain functions of the
delivery id, the event and the ledger; they answer or return a job.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable
from functools import cache
from typing import Any

from githubkit_schemas.latest.webhooks import IssueCommentEvent, PullRequestReviewCommentEvent
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot import metrics
from bot.commands import Command, is_bot, issue_command, parse_comment
from bot.config import Settings
from bot.health import Readiness
from bot.jobs import Intake, JobRequest, Ledger, Submitter, new_job_id

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/api/github/webhooks"
# GitHub caps deliveries at 25 MB.
MAX_BODY = 25 * 1024 * 1024
_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """`X-Hub-Signature-256` over the raw body. Only sha256: the sha1 header
    GitHub also sends is not accepted on its own."""
    match = _SIGNATURE.fullmatch(header or "")
    if match is None:
        return False
    return hmac.compare_digest(hmac.digest(secret, body, "sha256"), bytes.fromhex(match[1]))


def sign(secret: bytes, body: bytes) -> str:
    """The header value GitHub would send (for tests and the benchmark)."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


@cache
def _adapter(event: str) -> TypeAdapter[Any]:
    # githubkit's own event unions; githubkit.webhooks.parse builds this adapter
    # anew on every call (about 1 ms), so build it once per event.
    # Annotated unions are typing forms, not classes: Any is their only static type.
    events: dict[str, Any] = {
        "issue_comment": IssueCommentEvent,
        "pull_request_review_comment": PullRequestReviewCommentEvent,
    }
    return TypeAdapter(events[event])


def parse_event(event: str, body: bytes) -> Any:
    """The typed githubkit event, parsed straight from the raw JSON."""
    return _adapter(event).validate_json(body)


# -- handlers: (delivery id, event, ledger) -> a response, or a job to submit ------------

Outcome = Response | JobRequest
Handler = Callable[[str, Any, Ledger], Outcome]


def handle_ping(delivery: str, payload: dict[str, Any], ledger: Ledger) -> Outcome:
    log.info("delivery %s: ping from GitHub", delivery)
    zen = payload.get("zen")
    return JSONResponse({"pong": True, "zen": zen if isinstance(zen, str) else None})


class _Installation(BaseModel):
    id: int = Field(gt=0, lt=2**63)  # SQLite's integer range


class _Repository(BaseModel):
    full_name: str


class InstallationEvent(BaseModel):
    """What the installation handlers rely on; the rest of the payload passes unchecked."""

    installation: _Installation
    action: str | None = None
    repositories: list[_Repository] | None = None
    repositories_added: list[_Repository] | None = None
    repositories_removed: list[_Repository] | None = None


def handle_installation(delivery: str, event: InstallationEvent, ledger: Ledger) -> Outcome:
    installation_id = event.installation.id
    if event.action in ("deleted", "suspend"):
        ledger.remove_repositories(installation_id)
    elif event.action in ("created", "new_permissions_accepted", "unsuspend"):
        ledger.add_repositories(installation_id, _names(event.repositories))
    return JSONResponse({"installation": installation_id, "action": event.action})


def handle_installation_repositories(delivery: str, event: InstallationEvent, ledger: Ledger) -> Outcome:
    installation_id = event.installation.id
    ledger.add_repositories(installation_id, _names(event.repositories_added))
    ledger.remove_repositories(installation_id, _names(event.repositories_removed))
    return JSONResponse({"installation": installation_id, "action": event.action})


def _names(repos: list[_Repository] | None) -> list[str]:
    return [r.full_name for r in repos or [] if r.full_name]


def _command_of(event: Any) -> Command | None:
    if event.action != "created":
        return None  # edits and deletions never start work
    user = event.comment.user
    if user is None or is_bot(user.login, user.type):
        return None  # bots, Patchling included, would loop
    return parse_comment(event.comment.body)


def handle_issue_comment(delivery: str, event: Any, ledger: Ledger) -> Outcome:
    command = _command_of(event)
    if command is None:
        return Response(status_code=204)
    issue = event.issue
    on_pull = bool(issue.pull_request)
    if command.name == "edit" and not command.instruction:
        # A PR asks for nothing by itself; an issue asks for what it says.
        command = Command("help") if on_pull else issue_command(issue.title, issue.body)
    return _job(
        delivery,
        "issue_comment",
        event,
        command,
        command.instruction,
        ledger,
        target="pull" if on_pull else "issue",
        number=issue.number,
        title=issue.title,
    )


def handle_review_comment(delivery: str, event: Any, ledger: Ledger) -> Outcome:
    command = _command_of(event)
    if command is None:
        return Response(status_code=204)
    comment = event.comment
    if command.name == "edit" and not command.instruction:
        command = Command("help")
    return _job(
        delivery,
        "pull_request_review_comment",
        event,
        command,
        command.instruction,
        ledger,
        target="review",
        number=event.pull_request.number,
        title=event.pull_request.title,
        path=comment.path,
        # Lines of the current diff, or of the original one for an outdated comment.
        start_line=comment.start_line or comment.original_start_line,
        end_line=comment.line or comment.original_line,
        diff_hunk=comment.diff_hunk,
    )


def _job(
    delivery: str, name: str, event: Any, command: Command, instruction: str, ledger: Ledger, **fields: Any
) -> JobRequest:
    repo = event.repository
    installation = getattr(event, "installation", None)
    return JobRequest(
        job_id=new_job_id(),
        delivery_id=delivery,
        event=name,
        command=command.name,
        instruction=instruction,
        reply=command.reply,
        owner=repo.owner.login,
        repo=repo.name,
        clone_url=repo.clone_url,
        default_branch=repo.default_branch,
        # Deliveries to an App carry the installation; else what we recorded.
        installation_id=installation.id if installation else ledger.installation_for(repo.full_name),
        comment_id=event.comment.id,
        comment_url=event.comment.html_url,
        requester_login=event.comment.user.login,
        requester_id=event.comment.user.id,
        **fields,
    )


# Comment events are parsed into githubkit's typed models; the others into the
# little they need (githubkit's models reject real installation deliveries).
TYPED_HANDLERS: dict[str, Handler] = {
    "issue_comment": handle_issue_comment,
    "pull_request_review_comment": handle_review_comment,
}
_SHAPES: dict[str, TypeAdapter[Any]] = {
    "installation": TypeAdapter(InstallationEvent),
    "installation_repositories": TypeAdapter(InstallationEvent),
}
JSON_HANDLERS: dict[str, Handler] = {
    "ping": handle_ping,
    "installation": handle_installation,
    "installation_repositories": handle_installation_repositories,
}


class Unparsed(ValueError):
    """The delivery is not what its event promises: malformed or the wrong shape."""


def parse_delivery(event: str, body: bytes) -> Any:
    """The delivery as its handler takes it: a typed event or a JSON object.
    Every way a body can be wrong ends here, as `Unparsed`."""
    try:
        if event in TYPED_HANDLERS:
            return parse_event(event, body)
        payload = json.loads(body)
        if event in _SHAPES and isinstance(payload, dict):
            return _SHAPES[event].validate_python(payload)
    except (ValidationError, ValueError, RecursionError) as exc:
        # RecursionError: json.loads on deeply nested input.
        raise Unparsed(str(event)) from exc
    if not isinstance(payload, dict):
        raise Unparsed(str(event))
    return payload


def route(event: str, delivery: str, body: bytes, ledger: Ledger) -> Outcome:
    """The verified delivery's outcome: an answer, or a job to submit.
    A body that does not parse is a 400; a handler that fails on a parsed one
    is our bug, a 500, so that GitHub delivers it again once it is fixed."""
    handler = TYPED_HANDLERS.get(event) or JSON_HANDLERS.get(event)
    try:
        parsed = parse_delivery(event, body)
    except Unparsed:
        return _refused(event, delivery, body)
    if handler is None:
        return Response(status_code=204)
    try:
        return handler(delivery, parsed, ledger)
    except Exception:
        # The delivery id finds the body again in GitHub's log; neither the body nor the secret is logged.
        log.exception("delivery %s (%s): the handler failed", delivery, event)
        return JSONResponse({"error": "internal error", "delivery": delivery}, status_code=500)


def _refused(event: str, delivery: str, body: bytes) -> Response:
    """A delivery that did not parse: malformed JSON, or a shape we do not know.
    A comment that asks for nothing is still just ignored, even in an odd shape."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return JSONResponse({"error": "malformed JSON"}, status_code=400)
    if isinstance(payload, dict) and event in TYPED_HANDLERS:
        comment = found if isinstance(found := payload.get("comment"), dict) else {}
        if payload.get("action") != "created" or parse_comment(str(comment.get("body") or "")) is None:
            return Response(status_code=204)
    log.warning("delivery %s (%s) does not have the expected shape", delivery, event)
    return JSONResponse({"error": f"unexpected {event} payload"}, status_code=400)


async def _read_capped(request: Request) -> bytes | None:
    """The body, or None once it passes MAX_BODY: a chunked delivery has no
    Content-Length to refuse it by, so the cap holds while reading."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(settings: Settings, queue: Submitter) -> Starlette:
    """The webhook app. `queue` is a jobs.JobQueue (or anything with a ledger
    and `submit_many`); submissions go through an Intake (group commit)."""
    if settings.github_webhook_secret is None or not settings.github_webhook_secret.get_secret_value():
        raise ValueError("GITHUB_WEBHOOK_SECRET must be set: unsigned deliveries are never accepted")
    secret = settings.github_webhook_secret.get_secret_value().encode()
    intake = Intake(queue)
    for event in TYPED_HANDLERS:
        _adapter(event)  # build the validators now, not in the first request

    async def webhook(request: Request) -> Response:
        response = await receive(request)
        duplicate = getattr(request.state, "duplicate", False)
        metrics.delivery(request.headers.get("x-github-event"), response.status_code, duplicate=duplicate)
        return response

    async def receive(request: Request) -> Response:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY:
            return JSONResponse({"error": "payload too large"}, status_code=413)
        body = await _read_capped(request)
        if body is None:
            return JSONResponse({"error": "payload too large"}, status_code=413)
        if not verify_signature(secret, body, request.headers.get("x-hub-signature-256")):
            log.warning(
                "delivery %s (%s) refused: bad signature; does GITHUB_WEBHOOK_SECRET match the"
                " webhook secret in the App's settings?",
                request.headers.get("x-github-delivery", "?")[:80],
                request.headers.get("x-github-event", "?")[:80],
            )
            return JSONResponse({"error": "bad signature"}, status_code=401)
        event = request.headers.get("x-github-event")
        delivery = request.headers.get("x-github-delivery")
        if not event or not delivery:
            return JSONResponse({"error": "missing X-GitHub-Event or X-GitHub-Delivery"}, status_code=400)
        outcome = route(event, delivery, body, queue.ledger)
        if isinstance(outcome, Response):
            return outcome
        if not await intake.submit(outcome):
            log.info("delivery %s repeats an earlier one (comment %s)", delivery, outcome.comment_key)
            request.state.duplicate = True
            return JSONResponse({"duplicate": True}, status_code=200)
        log.info("delivery %s: job %s for %s#%s", delivery, outcome.job_id, outcome.full_name, outcome.number)
        return JSONResponse({"job": outcome.job_id}, status_code=202)

    return Starlette(
        routes=[
            Route(WEBHOOK_PATH, webhook, methods=["POST"]),
            *operate_routes(settings, queue),
        ]
    )


def operate_routes(settings: Settings, queue: Submitter) -> list[Route]:
    """What an operator's probes and Prometheus read: liveness, readiness, metrics."""
    readiness = Readiness(settings, queue)
    served = metrics.registry(queue.ledger)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})  # the process answers: nothing more is claimed

    async def readyz(request: Request) -> Response:
        ready, checks = await readiness.check()
        body = {"ready": ready, **{name: {"ok": c.ok, "detail": c.detail} for name, c in checks.items()}}
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics_page(request: Request) -> Response:
        body = await asyncio.to_thread(metrics.exposition, served)  # reads the ledger
        return Response(body, media_type=metrics.CONTENT_TYPE_LATEST)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_page, methods=["GET"]),
    ]
