"""GitHub as an App, through githubkit: installation tokens and the few REST
calls a job makes, plus the Markdown of what Patchling posts.

A job mints one installation token scoped to its one repository and to the
permissions in JOB_PERMISSIONS, uses it for the API and for git, and revokes
it at the end. Every body posted passes through `RepoAPI`, which strips the
job's secrets and the model servers' addresses from it and keeps it under
GitHub's size limit.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, TypeVar, cast
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from githubkit import AppAuthStrategy, GitHub, TokenAuthStrategy
from githubkit.cache import BaseCacheStrategy, MemCacheStrategy
from githubkit.exception import GitHubException, RateLimitExceeded, RequestFailed
from githubkit.retry import RetryOption
from githubkit_schemas.latest.types import AppPermissionsType

from bot import logs
from bot.config import Settings
from bot.messages import clip
from bot.redact import redact, secret_parts

log = logging.getLogger(__name__)

# What a job needs, and nothing more: push, open PRs, comment and react.
JOB_PERMISSIONS: AppPermissionsType = {
    "contents": "write",
    "pull_requests": "write",
    "issues": "write",
    "metadata": "read",
}
WRITE_ROLES = frozenset({"admin", "maintain", "write"})

Reaction = Literal["eyes", "rocket", "confused", "+1", "-1", "laugh", "hooray", "heart"]
CommentKind = Literal["issue", "review"]
GitHubFactory = Callable[[], GitHub[Any]]
T = TypeVar("T")
# What a model server's address becomes in a posted body.
ENDPOINT_LABEL = "the model server"


class GitHubConfigError(RuntimeError):
    """The server lacks the App's id or private key."""


class RepositoryGone(RuntimeError):
    """The repository cannot be read with the job's token: deleted, or out of reach."""


class Retry:
    """When to call GitHub again: after a rate limit (primary, or secondary:
    403/429 with `retry-after`) once, waiting as GitHub asks, but at least a
    second (githubkit reads a zero wait as 60 s) and at most `max_wait_s`
    (longer, the job stops and says so); after a 5xx up to `server_retries`
    times, waiting backoff_s × 1, 4, 9…"""

    def __init__(self, *, max_wait_s: float = 60.0, server_retries: int = 3, backoff_s: float = 1.0) -> None:
        self.max_wait_s = max_wait_s
        self.server_retries = server_retries
        self.backoff_s = backoff_s

    def __call__(self, exc: GitHubException, retry_count: int) -> RetryOption:
        if isinstance(exc, RateLimitExceeded):
            wait = max(exc.retry_after.total_seconds(), 1.0)
            if retry_count < 1 and wait <= self.max_wait_s:
                log.warning("GitHub's rate limit: calling again in %.0fs", wait)
                return RetryOption(True, timedelta(seconds=wait))
            return RetryOption(False)
        failed = isinstance(exc, RequestFailed) and exc.response.status_code >= 500
        if failed and retry_count < self.server_retries:
            log.warning("GitHub failed (5xx); calling again")
            return RetryOption(True, timedelta(seconds=self.backoff_s * (retry_count + 1) ** 2))
        return RetryOption(False)


class SharedTransport(httpx.HTTPTransport):
    """One connection pool, with its TLS context, for every GitHub client of the
    process. githubkit opens an httpx client for each call and closes it after,
    and each new client loaded the CA store afresh: some 30 ms of CPU a call,
    about 0.5 s a job (bench.workers), and a TLS handshake every time. The
    clients' close() leaves this one open: it lasts as long as the process
    (the pool is thread-safe; connections idle past keep-alive are dropped)."""

    def close(self) -> None:
        pass


@functools.cache
def shared_transport() -> httpx.HTTPTransport:
    return SharedTransport()


@functools.lru_cache(maxsize=4)
def signing_key(pem: str) -> PrivateKeyTypes:
    """The App's key, parsed once per process. githubkit hands the key to PyJWT,
    which takes a parsed key as well as PEM text, and would otherwise parse the PEM
    for every JWT: 37 ms of CPU each, against 0.3 ms to sign with the parsed key
    (measured, 2048-bit RSA). ValueError/TypeError when it is not a PEM private key."""
    return serialization.load_pem_private_key(pem.encode(), password=None)


def app_client(
    settings: Settings,
    *,
    auto_retry: bool | Retry = True,
    cache_strategy: BaseCacheStrategy | None = None,
) -> GitHub[AppAuthStrategy]:
    """A client authenticated as the App (JWT), against `github_api_url` (GHES too).
    Its own token cache unless one is given: tests must not share tokens.
    `auto_retry`: True for Retry(), or a Retry of one's own, or False."""
    key = settings.private_key()
    if not settings.github_app_id or not key:
        raise GitHubConfigError("GITHUB_APP_ID and GITHUB_PRIVATE_KEY(_PATH) must be set")
    return GitHub(
        # A parsed key where githubkit's annotation says str (see signing_key); its
        # repr names the key's type, never the key.
        AppAuthStrategy(settings.github_app_id, cast(str, signing_key(key))),
        base_url=settings.github_api_url,
        auto_retry=Retry() if auto_retry is True else auto_retry,
        cache_strategy=cache_strategy or MemCacheStrategy(),
        http_cache=False,
        transport=shared_transport(),
        timeout=30.0,
        user_agent="patchling",
    )


def find_installation(app: GitHub[Any], owner: str, repo: str) -> int:
    """The installation that covers a repository (for deliveries without one)."""
    return app.rest.apps.get_repo_installation(owner, repo).parsed_data.id


def mint_token(app: GitHub[Any], installation_id: int, repo: str) -> str:
    """An installation token for the one repository `repo` (its name, no owner)."""
    response = app.rest.apps.create_installation_access_token(
        installation_id, repositories=[repo], permissions=JOB_PERMISSIONS.copy()
    )
    token = response.parsed_data.token
    logs.hide(token)  # masked in every log line while it lives
    return token


def status_of(exc: BaseException) -> int | None:
    return exc.response.status_code if isinstance(exc, RequestFailed) else None


def describe_failure(exc: BaseException) -> str | None:
    """What GitHub's refusal means, for the requester; None when it is no API error."""
    status = status_of(exc)
    if status is None:
        return None
    if isinstance(exc, RateLimitExceeded):
        wait = exc.retry_after.total_seconds()
        return f"GitHub's rate limit held it back (GitHub asked to wait {wait:.0f}s)"
    if status >= 500:
        return f"GitHub answered {status} (trouble on GitHub's side; ask again later)"
    if status == 404:
        return "GitHub answered 404 (the repository is gone or out of the App's reach)"
    return f"GitHub answered {status}"


@dataclass(frozen=True)
class Posted:
    """A comment we posted, and who GitHub says posted it: the App's bot user
    (`<slug>[bot]` and its id), which is the identity its commits carry."""

    id: int
    author_login: str
    author_id: int


@dataclass(frozen=True)
class Pull:
    number: int
    state: str
    head_ref: str
    head_sha: str
    head_repo: str | None  # None when the fork was deleted
    base_ref: str
    html_url: str


class RepoAPI:
    """The REST calls of one job on one repository, with an installation token.
    With `renew`, a call answered 401 (the token expired mid-job, or was
    revoked) mints a new token once and is made again."""

    def __init__(
        self,
        gh: GitHub[Any],
        owner: str,
        repo: str,
        *,
        secrets: Sequence[str] = (),
        endpoints: Iterable[str | None] = (),
        token: str | None = None,
        renew: Callable[[], str] | None = None,
    ) -> None:
        self.gh = gh
        self.owner = owner
        self.repo = repo
        self.token = token
        self._renew = renew
        self._secrets = secret_parts(secrets)
        self._endpoints = endpoint_pattern(endpoints)

    @classmethod
    def with_token(
        cls,
        app: GitHub[Any],
        token: str,
        owner: str,
        repo: str,
        *,
        secrets: Sequence[str | None] = (),
        endpoints: Iterable[str | None] = (),
        renew: Callable[[], str] | None = None,
    ) -> RepoAPI:
        """`secrets`: more values never to post (model API keys, the webhook secret,
        the App's private key, masked line by line). `endpoints`: model servers'
        base URLs, posted as ENDPOINT_LABEL. `renew`: mints a new token for the
        same repository."""
        kept = [token, *(s for s in secrets if s)]
        return cls(
            app.with_auth(TokenAuthStrategy(token)),
            owner,
            repo,
            secrets=kept,
            endpoints=endpoints,
            token=token,
            renew=renew,
        )

    def _rest(self, call: Callable[[GitHub[Any]], T]) -> T:
        try:
            return call(self.gh)
        except RequestFailed as exc:
            if exc.response.status_code != 401 or self._renew is None:
                raise
        log.info("the token for %s/%s was refused; minting a new one", self.owner, self.repo)
        token = self._renew()
        self.token = token
        self._secrets = secret_parts([*self._secrets, token])
        self.gh = self.gh.with_auth(TokenAuthStrategy(token))
        return call(self.gh)

    def safe(self, body: str) -> str:
        body = redact(body, self._secrets)
        if self._endpoints is not None:
            body = self._endpoints.sub(ENDPOINT_LABEL, body)
        return clip(body)

    def permission(self, username: str) -> str:
        """The user's role ('admin', 'maintain', 'write', 'triage', 'read' or 'none').
        Raises RepositoryGone when the repository itself cannot be read."""
        try:
            data = self._rest(
                lambda g: g.rest.repos.get_collaborator_permission_level(self.owner, self.repo, username)
            ).parsed_data
        except RequestFailed as exc:
            if exc.response.status_code != 404:
                raise
            # GitHub answers 404 both for a user who is no collaborator and for
            # a repository that is gone: only the second is worth failing over.
            try:
                self._rest(lambda g: g.rest.repos.get(self.owner, self.repo))
            except RequestFailed as missing:
                if missing.response.status_code == 404:
                    raise RepositoryGone(
                        f"{self.owner}/{self.repo} is gone or out of the App's reach"
                    ) from None
                raise
            return "none"
        # role_name tells maintain from write; `permission` folds them together.
        return data.role_name or data.permission

    def size_kb(self) -> int | None:
        """The repository's size as GitHub reports it (KB of git data, roughly;
        None when it says nothing). Read raw: only this one field is needed."""
        size = self._rest(lambda g: g.rest.repos.get(self.owner, self.repo)).json().get("size")
        return int(size) if isinstance(size, int | float) else None

    def react(self, kind: CommentKind, comment_id: int, content: Reaction) -> None:
        if kind == "review":
            self._rest(
                lambda g: g.rest.reactions.create_for_pull_request_review_comment(
                    self.owner, self.repo, comment_id, content=content
                )
            )
        else:
            self._rest(
                lambda g: g.rest.reactions.create_for_issue_comment(
                    self.owner, self.repo, comment_id, content=content
                )
            )

    def comment(self, number: int, body: str) -> Posted:
        data = self._rest(
            lambda g: g.rest.issues.create_comment(self.owner, self.repo, number, body=self.safe(body))
        ).parsed_data
        return Posted(data.id, data.user.login if data.user else "", data.user.id if data.user else 0)

    def edit_comment(self, comment_id: int, body: str) -> None:
        self._rest(
            lambda g: g.rest.issues.update_comment(self.owner, self.repo, comment_id, body=self.safe(body))
        )

    def reply_in_thread(self, pull_number: int, comment_id: int, body: str) -> int:
        return self._rest(
            lambda g: g.rest.pulls.create_reply_for_review_comment(
                self.owner, self.repo, pull_number, comment_id, body=self.safe(body)
            )
        ).parsed_data.id

    def pull(self, number: int) -> Pull:
        data = self._rest(lambda g: g.rest.pulls.get(self.owner, self.repo, number)).parsed_data
        return Pull(
            number=data.number,
            state=data.state,
            head_ref=data.head.ref,
            head_sha=data.head.sha,
            head_repo=data.head.repo.full_name if data.head.repo else None,
            base_ref=data.base.ref,
            html_url=data.html_url,
        )

    def open_pull_for(self, branch: str) -> tuple[int, str] | None:
        """The open PR whose head is `branch` of this repository, if any."""
        pulls = self._rest(
            lambda g: g.rest.pulls.list(self.owner, self.repo, state="open", head=f"{self.owner}:{branch}")
        ).parsed_data
        return (pulls[0].number, pulls[0].html_url) if pulls else None

    def create_pull(self, *, title: str, head: str, base: str, body: str, draft: bool) -> tuple[int, str]:
        data = self._rest(
            lambda g: g.rest.pulls.create(
                self.owner,
                self.repo,
                title=clip(title, 250),
                head=head,
                base=base,
                body=self.safe(body),
                draft=draft,
            )
        ).parsed_data
        return data.number, data.html_url

    def revoke_token(self) -> None:
        """End the token's life with the job; a failure only shortens nothing."""
        try:
            self.gh.rest.apps.revoke_installation_access_token()
        except Exception:  # the token expires within the hour anyway
            log.warning("could not revoke the installation token for %s/%s", self.owner, self.repo)


# Where a host:port ends (not inside a longer name or port), and a URL's path
# (any trailing punctuation left to the sentence).
_HOST_END = r"(?![\w-]|\.\w|:\d)"
_PATH = r"(?:/(?:[^\s)\]\"'`<>]*[^\s)\]\"'`<>.,:;])?)?"


def endpoint_pattern(urls: Iterable[str | None]) -> re.Pattern[str] | None:
    """What names one of these servers in a text: any URL on its host and
    port, or its bare host:port (as connect errors word it). A bare host
    without a port is left alone: "localhost" in a posted diff is code, not
    an address to hide."""
    forms: set[str] = set()
    for url in urls:
        netloc = urlsplit(url).netloc.rpartition("@")[2] if url else ""
        if not netloc:
            continue
        forms.add(rf"\b[a-zA-Z][a-zA-Z0-9+.-]*://{re.escape(netloc)}{_HOST_END}{_PATH}")
        if urlsplit(url).port is not None:
            forms.add(rf"(?<![\w.-]){re.escape(netloc)}{_HOST_END}")
    # Scanning left to right, a URL matches at its scheme, before its host:port could.
    return re.compile("|".join(sorted(forms))) if forms else None
