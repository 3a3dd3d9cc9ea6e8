"""A fake GitHub REST API for respx, answering with GitHub's own documented
example bodies (shared/github-api-examples) with ids, names, numbers, bodies
and URLs replaced, and webhook payloads built from real deliveries
(shared/github-payloads). It keeps what the bot did (comments, edits,
reactions, pull requests, replies, tokens) for tests to assert on.

It checks auth the way GitHub would: App endpoints want the JWT, repository
endpoints an installation token it minted (and not yet revoked).
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import itertools
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from bot.shared_data import shared_dir

SHARED = shared_dir()
API_EXAMPLES = SHARED / "github-api-examples"
PAYLOADS = SHARED / "github-payloads"
API_URL = "https://api.github.test"
BOT_LOGIN = "patchling[bot]"
BOT_ID = 4242


SHARED_MISSING = (
    f"needs the shared test data (real deliveries, GitHub's documented responses) at {SHARED}: "
    "put shared/ beside the checkout or set PATCHLING_SHARED"
)


def shared_present() -> bool:
    return (SHARED / "github-payloads").is_dir() and API_EXAMPLES.is_dir()


@cache
def _load(path: Path) -> Any:
    if not shared_present():
        # Only the tests that read it skip; the rest of the suite runs without it.
        pytest.skip(SHARED_MISSING)
    return json.loads(path.read_text())


def example(name: str) -> Any:
    """A fresh copy of a documented REST response, e.g. `pulls/get`."""
    return copy.deepcopy(_load(API_EXAMPLES / f"{name}.json"))


def payload(name: str) -> dict[str, Any]:
    """A fresh copy of a real webhook delivery, e.g. `issue_comment/created.with-installation`."""
    return copy.deepcopy(_load(PAYLOADS / f"{name}.payload.json"))


def _user(template: dict[str, Any], login: str, user_id: int, kind: str = "User") -> dict[str, Any]:
    user = copy.deepcopy(template)
    for key, value in list(user.items()):
        if isinstance(value, str):
            user[key] = value.replace(template["login"], login)
    user.update(login=login, id=user_id, type=kind)
    return user


@dataclass
class RemoteRepo:
    """The repository the fake serves, with a local bare repo as its git remote."""

    owner: str
    name: str
    clone_url: str
    default_branch: str = "main"

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass
class FakePull:
    number: int
    head_ref: str
    head_repo: str | None
    base_ref: str = "main"
    state: str = "open"
    head_sha: str = "0" * 40
    title: str = "A pull request"
    body: str = ""
    draft: bool = False


@dataclass
class FakeGitHub:
    repo: RemoteRepo
    installation_id: int = 1
    permissions: dict[str, str] = field(default_factory=dict)  # login -> role; default admin
    pulls: dict[int, FakePull] = field(default_factory=dict)
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> {number, body, edits}
    reactions: list[tuple[str, int, str]] = field(default_factory=list)  # (kind, comment id, content)
    replies: list[dict[str, Any]] = field(default_factory=list)
    created_pulls: list[dict[str, Any]] = field(default_factory=list)
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    installed: bool = True  # False: the App no longer covers the repository
    gone: bool = False  # True: the repository was deleted (its API answers 404)
    size_kb: int | None = None  # the repository's `size`, when not the example's
    requests: list[httpx.Request] = field(default_factory=list)
    # Called before each answer: a response to give instead (an outage, a rate
    # limit), None to answer as usual; it may also raise (a crash mid-call).
    fault: Callable[[httpx.Request], httpx.Response | None] | None = None
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(9001))

    # -- what the bot did ----------------------------------------------------------

    def reactions_on(self, comment_id: int) -> list[str]:
        return [content for _, cid, content in self.reactions if cid == comment_id]

    def bodies(self) -> list[str]:
        """Every text the bot posted, edits included."""
        texts = [text for c in self.comments.values() for text in c["edits"]]
        texts += [r["body"] for r in self.replies] + [p["body"] for p in self.created_pulls]
        return texts

    def posted_to(self, number: int) -> list[dict[str, Any]]:
        return [c for c in self.comments.values() if c["number"] == number]

    # -- routes --------------------------------------------------------------------

    def install(self, router: respx.MockRouter) -> respx.MockRouter:
        # The scripted model server (and anything else on loopback) is real.
        router.route(host="127.0.0.1").pass_through()
        repo = f"/repos/{self.repo.owner}/{self.repo.name}"
        routes: list[tuple[str, str, Any]] = [
            ("POST", r"/app/installations/(?P<iid>\d+)/access_tokens", self._mint),
            ("GET", rf"{repo}/installation", self._installation),
            ("DELETE", r"/installation/token", self._revoke),
            ("GET", rf"{repo}/collaborators/(?P<login>[^/]+)/permission", self._permission),
            ("GET", rf"{repo}", self._get_repo),
            ("POST", rf"{repo}/issues/comments/(?P<cid>\d+)/reactions", self._react_issue),
            ("POST", rf"{repo}/pulls/comments/(?P<cid>\d+)/reactions", self._react_review),
            ("POST", rf"{repo}/issues/(?P<number>\d+)/comments", self._comment),
            ("PATCH", rf"{repo}/issues/comments/(?P<cid>\d+)", self._edit_comment),
            ("GET", rf"{repo}/pulls/(?P<number>\d+)", self._get_pull),
            ("GET", rf"{repo}/pulls", self._list_pulls),
            ("POST", rf"{repo}/pulls", self._create_pull),
            ("POST", rf"{repo}/pulls/(?P<number>\d+)/comments/(?P<cid>\d+)/replies", self._reply),
        ]
        for method, path, handler in routes:
            router.route(method=method, url__regex=rf"^{re.escape(API_URL)}{path}(\?.*)?$").mock(
                side_effect=self._recorded(handler)
            )
        router.route(url__startswith=API_URL).mock(
            side_effect=lambda request: httpx.Response(404, json={"message": "Not Found"})
        )
        return router

    def _recorded(self, handler: Any) -> Any:
        def respond(request: httpx.Request, **params: str) -> httpx.Response:
            self.requests.append(request)
            if self.fault is not None and (instead := self.fault(request)) is not None:
                return instead
            return handler(request, **params)

        return respond

    def _auth(self, request: httpx.Request, *, app: bool = False) -> httpx.Response | None:
        header = request.headers.get("authorization", "")
        if app:
            ok = header.startswith("Bearer ") and header.count(".") == 2
        else:
            token = header.removeprefix("token ").strip()
            ok = header.startswith("token ") and token in self.tokens and token not in self.revoked
        return None if ok else httpx.Response(401, json={"message": "Bad credentials"})

    def _mint(self, request: httpx.Request, iid: str) -> httpx.Response:
        if denied := self._auth(request, app=True):
            return denied
        body = json.loads(request.content or b"{}")
        self.token_requests.append(body)
        if not self.installed:  # GitHub's answer when a named repository is not in the installation
            return httpx.Response(
                422, json={"message": "There is at least one repository that does not exist"}
            )
        token = "ghs_" + secrets.token_hex(18)
        self.tokens.append(token)
        data = example("apps/create-installation-access-token")
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        data.update(
            token=token,
            expires_at=expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            permissions=body.get("permissions", {}),
            repositories=[],
        )
        return httpx.Response(201, json=data)

    def _installation(self, request: httpx.Request) -> httpx.Response:
        if denied := self._auth(request, app=True):
            return denied
        if not self.installed:
            return httpx.Response(404, json={"message": "Not Found"})
        data = example("apps/get-repo-installation")
        data["id"] = self.installation_id
        return httpx.Response(200, json=data)

    def _revoke(self, request: httpx.Request) -> httpx.Response:
        if denied := self._auth(request):
            return denied
        self.revoked.append(request.headers["authorization"].removeprefix("token ").strip())
        return httpx.Response(204)

    def _permission(self, request: httpx.Request, login: str) -> httpx.Response:
        if denied := self._auth(request):
            return denied
        role = self.permissions.get(login, "admin")
        if role == "none" or self.gone:  # GitHub answers 404 for both
            return httpx.Response(404, json={"message": "Not Found"})
        data = example("repos/get-collaborator-permission-level")
        legacy = {"maintain": "write", "triage": "read"}.get(role, role)
        data["permission"] = legacy
        data["role_name"] = role
        data["user"] = _user(data["user"], login, 1000 + len(login))
        data["user"]["role_name"] = role  # missing from GitHub's example, required by githubkit
        return httpx.Response(200, json=data)

    def _get_repo(self, request: httpx.Request) -> httpx.Response:
        if denied := self._auth(request):
            return denied
        if self.gone:
            return httpx.Response(404, json={"message": "Not Found"})
        data = example("repos/get")
        data.update(name=self.repo.name, full_name=self.repo.full_name)
        if self.size_kb is not None:
            data["size"] = self.size_kb
        return httpx.Response(200, json=data)

    def _react(self, request: httpx.Request, kind: str, cid: str) -> httpx.Response:
        if denied := self._auth(request):
            return denied
        content = json.loads(request.content)["content"]
        # Like GitHub: one reaction per user, comment and content; again answers 200.
        again = (kind, int(cid), content) in self.reactions
        if not again:
            self.reactions.append((kind, int(cid), content))
        name = (
            "reactions/create-for-issue-comment"
            if kind == "issue"
            else "reactions/create-for-pull-request-review-comment"
        )
        data = example(name)
        data.update(id=next(self._ids), content=content)
        data["user"] = _user(data["user"], BOT_LOGIN, BOT_ID, "Bot")
        return httpx.Response(200 if again else 201, json=data)

    def _react_issue(self, request: httpx.Request, cid: str) -> httpx.Response:
        return self._react(request, "issue", cid)

    def _react_review(self, request: httpx.Request, cid: str) -> httpx.Response:
        return self._react(request, "review", cid)

    def _comment_body(self, template: str, cid: int, number: int, body: str) -> dict[str, Any]:
        data = example(template)
        base = f"{API_URL}/repos/{self.repo.full_name}"
        data.update(
            id=cid,
            body=body,
            url=f"{base}/issues/comments/{cid}",
            html_url=f"https://github.test/{self.repo.full_name}/issues/{number}#issuecomment-{cid}",
            issue_url=f"{base}/issues/{number}",
        )
        data["user"] = _user(data["user"], BOT_LOGIN, BOT_ID, "Bot")
        return data

    def _comment(self, request: httpx.Request, number: str) -> httpx.Response:
        if denied := self._auth(request):
            return denied
        body = json.loads(request.content)["body"]
        cid = next(self._ids)
        self.comments[cid] = {"number": int(number), "body": body, "edits": [body]}
        return httpx.Response(201, json=self._comment_body("issues/create-comment", cid, int(number), body))

    def _edit_comment(self, request: httpx.Request, cid: str) -> httpx.Response:
        if denied := self._auth(request):
            return denied
        comment = self.comments.get(int(cid))
        if comment is None:
            return httpx.Response(404, json={"message": "Not Found"})
        body = json.loads(request.content)["body"]
        comment["body"] = body
        comment["edits"].append(body)
        return httpx.Response(
            200, json=self._comment_body("issues/update-comment", int(cid), comment["number"], body)
        )

    def _pull_body(self, template: str, pull: FakePull) -> dict[str, Any]:
        data = example(template)
        if isinstance(data, list):
            data = data[0]
        text = json.dumps(data).replace("octocat/Hello-World", self.repo.full_name)
        data = json.loads(text.replace("/1347", f"/{pull.number}"))
        data.update(
            number=pull.number,
            state=pull.state,
            title=pull.title,
            body=pull.body,
            draft=pull.draft,
            labels=[],  # GitHub's examples lack fields githubkit requires in these
            requested_teams=[],
        )
        data["html_url"] = f"https://github.test/{self.repo.full_name}/pull/{pull.number}"
        data["head"].update(ref=pull.head_ref, sha=pull.head_sha, label=f"{self.repo.owner}:{pull.head_ref}")
        if pull.head_repo is None:
            data["head"]["repo"] = None
        else:
            data["head"]["repo"].update(full_name=pull.head_repo, name=pull.head_repo.split("/")[1])
            data["head"]["repo"]["language"] = None
        data["base"].update(ref=pull.base_ref, label=f"{self.repo.owner}:{pull.base_ref}")
        data["base"]["repo"].update(full_name=self.repo.full_name, name=self.repo.name)
        data["base"]["repo"]["language"] = None
        return data

    def _get_pull(self, request: httpx.Request, number: str) -> httpx.Response:
        if denied := self._auth(request):
            return denied
        pull = self.pulls.get(int(number))
        if pull is None:
            return httpx.Response(404, json={"message": "Not Found"})
        return httpx.Response(200, json=self._pull_body("pulls/get", pull))

    def _list_pulls(self, request: httpx.Request) -> httpx.Response:
        if denied := self._auth(request):
            return denied
        head = request.url.params.get("head")
        state = request.url.params.get("state", "open")
        found = [
            self._pull_body("pulls/list", p)
            for p in self.pulls.values()
            if (head is None or head == f"{self.repo.owner}:{p.head_ref}")
            and (state == "all" or p.state == state)
            and p.head_repo == self.repo.full_name
        ]
        return httpx.Response(200, json=found)

    def _create_pull(self, request: httpx.Request) -> httpx.Response:
        if denied := self._auth(request):
            return denied
        body = json.loads(request.content)
        self.created_pulls.append(body)
        number = max([*self.pulls, 100]) + 1
        pull = FakePull(
            number=number,
            head_ref=body["head"],
            head_repo=self.repo.full_name,
            base_ref=body["base"],
            title=body["title"],
            body=body.get("body") or "",
            draft=bool(body.get("draft")),
        )
        self.pulls[number] = pull
        return httpx.Response(201, json=self._pull_body("pulls/create", pull))

    def _reply(self, request: httpx.Request, number: str, cid: str) -> httpx.Response:
        if denied := self._auth(request):
            return denied
        body = json.loads(request.content)["body"]
        self.replies.append({"pull": int(number), "in_reply_to": int(cid), "body": body})
        data = example("pulls/create-reply-for-review-comment")
        data.update(id=next(self._ids), body=body, in_reply_to_id=int(cid))
        data["user"] = _user(data["user"], BOT_LOGIN, BOT_ID, "Bot")
        return httpx.Response(201, json=data)


# -- deliveries ------------------------------------------------------------------------


_delivery_ids = itertools.count(1)


def _point_at(data: dict[str, Any], repo: RemoteRepo) -> None:
    """Make a delivery's repository the fake's, cloning from the local remote."""
    source = data["repository"]
    old = source["full_name"]
    text = json.dumps(data).replace(old, repo.full_name)
    data.clear()
    data.update(json.loads(text))
    data["repository"].update(
        name=repo.name,
        full_name=repo.full_name,
        clone_url=repo.clone_url,
        default_branch=repo.default_branch,
    )
    data["repository"]["owner"]["login"] = repo.owner


def issue_comment(
    repo: RemoteRepo,
    body: str,
    *,
    login: str = "maintainer",
    user_id: int = 5150,
    user_type: str = "User",
    comment_id: int | None = None,
    number: int = 7,
    title: str = "Add a way to clear the memory",
    issue_body: str = "The calculator can store and recall memory, but not clear it.",
    on_pull: bool = False,
    action: str = "created",
) -> dict[str, Any]:
    data = payload("issue_comment/created.with-installation")
    _point_at(data, repo)
    data["action"] = action
    comment = data["comment"]
    comment.update(id=comment_id or 700_000 + next(_delivery_ids), body=body)
    comment["user"] = _user(comment["user"], login, user_id, user_type)
    comment["html_url"] = f"https://github.test/{repo.full_name}/issues/{number}#issuecomment-{comment['id']}"
    data["sender"] = _user(data["sender"], login, user_id, user_type)
    data["issue"].update(number=number, title=title, body=issue_body)
    if on_pull:
        data["issue"]["pull_request"] = {
            "url": f"{API_URL}/repos/{repo.full_name}/pulls/{number}",
            "html_url": f"https://github.test/{repo.full_name}/pull/{number}",
            "diff_url": f"https://github.test/{repo.full_name}/pull/{number}.diff",
            "patch_url": f"https://github.test/{repo.full_name}/pull/{number}.patch",
        }
    return data


def review_comment(
    repo: RemoteRepo,
    body: str,
    *,
    pull: FakePull,
    path: str,
    line: int,
    start_line: int | None = None,
    diff_hunk: str = "@@ -1 +1 @@",
    login: str = "maintainer",
    user_id: int = 5150,
    comment_id: int | None = None,
) -> dict[str, Any]:
    data = payload("pull_request_review_comment/created")
    _point_at(data, repo)
    comment = data["comment"]
    comment.update(
        id=comment_id or 800_000 + next(_delivery_ids),
        body=body,
        path=path,
        line=line,
        original_line=line,
        start_line=start_line,
        original_start_line=start_line,
        diff_hunk=diff_hunk,
    )
    comment["user"] = _user(comment["user"], login, user_id)
    data["sender"] = _user(data["sender"], login, user_id)
    pr = data["pull_request"]
    pr.update(number=pull.number, title=pull.title)
    pr["head"].update(ref=pull.head_ref, sha=pull.head_sha)
    if pull.head_repo is not None:
        pr["head"]["repo"]["full_name"] = pull.head_repo
    pr["base"]["ref"] = pull.base_ref
    return data


async def post(app: Any, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    """One request to the ASGI app, in process."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://patchling.test") as client:
        return await client.post(path, content=body, headers=headers)


def delivery_headers(
    secret: bytes, body: bytes, event: str, delivery: str | None = None, signature: str | None = None
) -> dict[str, str]:
    from bot.web import sign

    return {
        "content-type": "application/json",
        "x-github-event": event,
        "x-github-delivery": delivery or f"delivery-{next(_delivery_ids)}",
        "x-hub-signature-256": signature if signature is not None else sign(secret, body),
    }


# -- a whole App on a tmp_path ----------------------------------------------------------

WEBHOOK_SECRET = "webhook-secret-for-tests"


@cache
def private_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def seed_remote(tmp_path: Path, source: Path, name: str = "remote.git") -> tuple[Path, Any]:
    """A bare repository standing in for GitHub's remote, holding `source` on main."""
    import pygit2

    from tests.conftest import make_git_repo

    seed = tmp_path / "seed"
    make_git_repo(seed, source)
    remote = pygit2.clone_repository(str(seed), str(tmp_path / name), bare=True)
    return tmp_path / name, remote


@dataclass
class Harness:
    """Patchling wired to the fake GitHub: settings under tmp_path, a local bare
    remote, the web app (through Starlette's TestClient) and the job queue."""

    settings: Any
    remote_path: Path
    remote: Any  # pygit2.Repository, bare
    repo: RemoteRepo
    fake: FakeGitHub
    queue: Any  # bot.queue.JobQueue
    app: Any  # the Starlette app

    def deliver(
        self,
        event: str,
        data: dict[str, Any] | None = None,
        *,
        raw: bytes | None = None,
        delivery: str | None = None,
        signature: str | None = None,
        drop_signature: bool = False,
    ) -> httpx.Response:
        body = raw if raw is not None else json.dumps(data).encode()
        headers = delivery_headers(WEBHOOK_SECRET.encode(), body, event, delivery, signature)
        if drop_signature:
            del headers["x-hub-signature-256"]
        return asyncio.run(post(self.app, "/api/github/webhooks", body, headers))

    def run_jobs(self) -> int:
        """Run the queued jobs here, with GitHub's API answered by the fake."""
        with respx.mock(assert_all_called=False) as router:
            self.fake.install(router)
            return int(self.queue.run_pending())


def make_harness(
    tmp_path: Path,
    source: Path,
    model_url: str | None = None,
    *,
    tiers: list[Any] | None = None,
    **settings: Any,
) -> Harness:
    """By default the repository's tests are a trivial command that needs no
    environment: pass test_command=None to run its real tests. `tiers`
    replaces the one tier at `model_url`."""
    from githubkit.cache import MemCacheStrategy

    from bot.config import Settings, Tier
    from bot.github import app_client
    from bot.queue import JobQueue
    from bot.web import create_app

    remote_path, remote = seed_remote(tmp_path, source)
    repo = RemoteRepo(owner="acme", name="calculator", clone_url=f"file://{remote_path}")
    if tiers is None:
        tiers = [
            Tier(
                name="tiny", model="tiny", base_url=model_url or "http://127.0.0.1:9/v1", edit_format="whole"
            )
        ]
    config = Settings(
        _env_file=None,
        tiers=tiers,
        github_app_id="12345",
        github_private_key=private_key_pem(),
        github_webhook_secret=WEBHOOK_SECRET,
        github_api_url=API_URL,
        test_timeout_s=120,
        **{"data_dir": tmp_path / "data", "test_command": "true", **settings},
    )

    def github() -> Any:
        # Each job its own token cache, and no auto-retry (a retry-after: 0 waits 60 s).
        return app_client(config, auto_retry=False, cache_strategy=MemCacheStrategy())

    queue = JobQueue(config, github=github)
    return Harness(
        config, remote_path, remote, repo, FakeGitHub(repo), queue, create_app(config, queue=queue)
    )


def job_request(**overrides: Any) -> Any:
    """A small JobRequest for acme/calculator#1, as the webhook would make it."""
    from bot.ledger import JobRequest

    values: dict[str, Any] = {
        "job_id": "j0",
        "delivery_id": "d0",
        "event": "issue_comment",
        "target": "issue",
        "command": "edit",
        "owner": "acme",
        "repo": "calculator",
        "clone_url": "x",
        "default_branch": "main",
        "number": 1,
        "comment_id": 1,
        "requester_login": "m",
        "requester_id": 1,
    }
    return JobRequest(**{**values, **overrides})


def open_feature_pull(app: Harness, number: int = 12, branch: str = "feature") -> FakePull:
    """A branch off main on the remote, and the open pull request whose head it is."""
    import pygit2

    main = app.remote.references["refs/heads/main"].peel(pygit2.Commit)
    app.remote.references.create(f"refs/heads/{branch}", main.id)
    pull = FakePull(number=number, head_ref=branch, head_repo=app.repo.full_name, head_sha=str(main.id))
    app.fake.pulls[number] = pull
    return pull


def script_memory_clear(model: Any, new_source: str) -> None:
    """Script the model to plan an edit of calculator/calculator.py and write
    `new_source` as its whole new content."""
    model.script(*memory_clear_rules(new_source))


def memory_clear_rules(new_source: str) -> list[dict[str, Any]]:
    """The rules of script_memory_clear: the plan, then the file's new content."""
    plan = {
        "files": [{"path": "calculator/calculator.py", "change": "add a memory_clear method"}],
        "notes": "Adds Calculator.memory_clear, which empties the memory register.",
    }
    return [
        {"match": "decide which files", "reply": json.dumps(plan)},
        {"match": "What to change in calculator/calculator.py", "reply": f"```python\n{new_source}```"},
    ]
