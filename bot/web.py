"""Receiving webhooks: verify, read, record, enqueue, answer. Nothing else.

The request does no GitHub, git or model work: it checks the signature over
the raw body before looking at it, reads the few fields a job is made of, and
hands a JobRequest to the queue, which records it (deduplicating on delivery
and comment) and enqueues it before the 202 goes out. Handlers are plain
functions of the delivery id, the event and the ledger; they answer or return
a job. The JobRequest is all the worker gets and all it needs: the worker
validates it again as it takes it from the queue, and the rest of the
delivery is never turned into objects.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot import metrics
from bot.commands import Command, is_bot, issue_command, parse_comment
from bot.config import Settings
from bot.dashboard import dashboard_routes
from bot.health import Readiness
from bot.ledger import JobLedger, JobRequest, new_job_id
from bot.queue import Intake, Submitter

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


# -- handlers: (delivery id, event, ledger) -> a response, or a job to submit ------------

Outcome = Response | JobRequest
Handler = Callable[[str, Any, JobLedger], Outcome]


def handle_ping(delivery: str, payload: dict[str, Any], ledger: JobLedger) -> Outcome:
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


def handle_installation(delivery: str, event: InstallationEvent, ledger: JobLedger) -> Outcome:
    installation_id = event.installation.id
    if event.action in ("deleted", "suspend"):
        ledger.remove_repositories(installation_id)
    elif event.action in ("created", "new_permissions_accepted", "unsuspend"):
        ledger.add_repositories(installation_id, _names(event.repositories))
    return JSONResponse({"installation": installation_id, "action": event.action})


def handle_installation_repositories(delivery: str, event: InstallationEvent, ledger: JobLedger) -> Outcome:
    installation_id = event.installation.id
    ledger.add_repositories(installation_id, _names(event.repositories_added))
    ledger.remove_repositories(installation_id, _names(event.repositories_removed))
    return JSONResponse({"installation": installation_id, "action": event.action})


def _names(repos: list[_Repository] | None) -> list[str]:
    return [r.full_name for r in repos or [] if r.full_name]


# -- comment deliveries: only the fields a job is made of ------------------------------
# GitHub sends about 15 kB a comment; routing reads a few hundred bytes of it.
# These models validate what is read (types, presence) and skip the rest,
# which costs a fraction of parsing the whole event into githubkit's models.


class _User(BaseModel):
    login: str
    id: int
    type: str | None = None


class _Comment(BaseModel):
    id: int
    body: str | None = None
    html_url: str = ""
    user: _User | None = None  # GitHub sends null for a deleted account


class _ReviewComment(_Comment):
    path: str
    line: int | None = None
    start_line: int | None = None
    original_line: int | None = None
    original_start_line: int | None = None
    diff_hunk: str | None = None


class _Owner(BaseModel):
    login: str


class _CommentRepository(BaseModel):
    name: str
    full_name: str
    owner: _Owner
    clone_url: str
    default_branch: str


class _Issue(BaseModel):
    number: int
    title: str
    body: str | None = None
    pull_request: dict[str, Any] | None = None  # present when the issue is a pull request


class _Pull(BaseModel):
    number: int
    title: str


class _CommentDelivery(BaseModel):
    action: str
    comment: _Comment
    repository: _CommentRepository
    installation: _Installation | None = None  # absent when not sent to an App


class IssueCommentDelivery(_CommentDelivery):
    issue: _Issue


class ReviewCommentDelivery(_CommentDelivery):
    comment: _ReviewComment
    pull_request: _Pull


def _command_of(event: _CommentDelivery) -> tuple[Command, _User] | None:
    """The comment's command and who asked, or None when it asks for nothing."""
    if event.action != "created":
        return None  # edits and deletions never start work
    user = event.comment.user
    if user is None or is_bot(user.login, user.type):
        return None  # bots, Patchling included, would loop
    command = parse_comment(event.comment.body)
    return None if command is None else (command, user)


def handle_issue_comment(delivery: str, event: IssueCommentDelivery, ledger: JobLedger) -> Outcome:
    found = _command_of(event)
    if found is None:
        return Response(status_code=204)
    command, requester = found
    issue = event.issue
    on_pull = bool(issue.pull_request)
    if command.name == "edit" and not command.instruction:
        # A PR asks for nothing by itself; an issue asks for what it says.
        command = Command("help") if on_pull else issue_command(issue.title, issue.body)
    return _job(
        delivery,
        "issue_comment",
        event,
        requester,
        command,
        command.instruction,
        ledger,
        target="pull" if on_pull else "issue",
        number=issue.number,
        title=issue.title,
    )


def handle_review_comment(delivery: str, event: ReviewCommentDelivery, ledger: JobLedger) -> Outcome:
    found = _command_of(event)
    if found is None:
        return Response(status_code=204)
    command, requester = found
    comment = event.comment
    if command.name == "edit" and not command.instruction:
        command = Command("help")
    return _job(
        delivery,
        "pull_request_review_comment",
        event,
        requester,
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
    delivery: str,
    name: str,
    event: _CommentDelivery,
    requester: _User,
    command: Command,
    instruction: str,
    ledger: JobLedger,
    **fields: Any,
) -> JobRequest:
    repo = event.repository
    installation = event.installation
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
        requester_login=requester.login,
        requester_id=requester.id,
        **fields,
    )


# Comment events are read into the small typed models above; a comment that
# asks for nothing is still ignored, even in a shape they refuse (see _refused).
TYPED_HANDLERS: dict[str, Handler] = {
    "issue_comment": handle_issue_comment,
    "pull_request_review_comment": handle_review_comment,
}
# Every event with a model, read straight from the raw JSON. githubkit's own
# models would reject real installation deliveries, and cost too much on comments.
_SHAPES: dict[str, TypeAdapter[Any]] = {
    "issue_comment": TypeAdapter(IssueCommentDelivery),
    "pull_request_review_comment": TypeAdapter(ReviewCommentDelivery),
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
    """The delivery as its handler takes it: a small typed model of the fields
    it reads, or a JSON object. Every way a body can be wrong ends here, as `Unparsed`."""
    try:
        if event in _SHAPES:
            return _SHAPES[event].validate_json(body)
        payload = json.loads(body)
    except (ValidationError, ValueError, RecursionError) as exc:
        # RecursionError: json.loads on deeply nested input.
        raise Unparsed(str(event)) from exc
    if not isinstance(payload, dict):
        raise Unparsed(str(event))
    return payload


def route(event: str, delivery: str, body: bytes, ledger: JobLedger) -> Outcome:
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
    """The webhook app. `queue` is a queue.JobQueue (or anything with a ledger
    and `submit_many`); submissions go through an Intake (group commit)."""
    if settings.github_webhook_secret is None or not settings.github_webhook_secret.get_secret_value():
        raise ValueError("GITHUB_WEBHOOK_SECRET must be set: unsigned deliveries are never accepted")
    secret = settings.github_webhook_secret.get_secret_value().encode()
    intake = Intake(queue)

    async def webhook(request: Request) -> Response:
        # The few headers read, looked up once (each Headers.get scans them all);
        # of a repeated name the first counts, as with Headers.get.
        headers = dict(reversed(request.headers.items()))
        response = await receive(request, headers)
        duplicate = getattr(request.state, "duplicate", False)
        metrics.delivery(headers.get("x-github-event"), response.status_code, duplicate=duplicate)
        return response

    async def receive(request: Request, headers: dict[str, str]) -> Response:
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY:
            return JSONResponse({"error": "payload too large"}, status_code=413)
        body = await _read_capped(request)
        if body is None:
            return JSONResponse({"error": "payload too large"}, status_code=413)
        event = headers.get("x-github-event")
        delivery = headers.get("x-github-delivery")
        if not verify_signature(secret, body, headers.get("x-hub-signature-256")):
            log.warning(
                "delivery %s (%s) refused: bad signature; does GITHUB_WEBHOOK_SECRET match the"
                " webhook secret in the App's settings?",
                (delivery or "?")[:80],
                (event or "?")[:80],
            )
            return JSONResponse({"error": "bad signature"}, status_code=401)
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
        # No body: it would cost a second write to the socket per delivery (bench.webhooks);
        # the job id rides in a header, which GitHub's delivery log shows as well.
        return Response(status_code=202, headers={"x-patchling-job": outcome.job_id})

    return Starlette(
        routes=[
            Route(WEBHOOK_PATH, webhook, methods=["POST"]),
            *operate_routes(settings, queue),
            # GET /dashboard, only when an access token is set.
            *dashboard_routes(settings, queue.ledger),
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
