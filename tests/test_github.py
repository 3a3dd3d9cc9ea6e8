"""The App's GitHub calls through githubkit, against the respx fake that
answers with GitHub's documented example bodies."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import githubkit.core
import httpx
import pytest
import respx
from githubkit.cache import MemCacheStrategy
from githubkit.exception import RequestFailed

from bot import github as gh
from bot import messages
from bot.config import Settings
from tests.fakegithub import API_URL, BOT_ID, BOT_LOGIN, FakeGitHub, FakePull, RemoteRepo, private_key_pem

REPO = RemoteRepo(owner="acme", name="calculator", clone_url="https://github.test/acme/calculator.git")


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "github_app_id": "12345",
        "github_private_key": private_key_pem(),
        "github_api_url": API_URL,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    fake = FakeGitHub(REPO)
    with respx.mock(assert_all_called=False) as router:
        fake.install(router)
        yield fake


@pytest.fixture
def app() -> Any:
    return gh.app_client(settings(), auto_retry=False, cache_strategy=MemCacheStrategy())


@pytest.fixture
def api(fake: FakeGitHub, app: Any) -> gh.RepoAPI:
    token = gh.mint_token(app, 1, REPO.name)
    return gh.RepoAPI.with_token(app, token, REPO.owner, REPO.name)


def test_app_client_needs_the_app_credentials() -> None:
    with pytest.raises(gh.GitHubConfigError):
        gh.app_client(settings(github_app_id=None))
    with pytest.raises(gh.GitHubConfigError):
        gh.app_client(settings(github_private_key=None))


def test_token_is_scoped_to_one_repository(fake: FakeGitHub, app: Any) -> None:
    token = gh.mint_token(app, 1, "calculator")
    assert token in fake.tokens and token.startswith("ghs_")
    assert fake.token_requests == [{"repositories": ["calculator"], "permissions": gh.JOB_PERMISSIONS}]
    # Minted with the App's JWT, not a token.
    assert fake.requests[0].headers["authorization"].startswith("Bearer ")


def test_installation_of_a_repository(fake: FakeGitHub, app: Any) -> None:
    fake.installation_id = 77
    assert gh.find_installation(app, "acme", "calculator") == 77


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("admin", "admin"),
        ("maintain", "maintain"),
        ("write", "write"),
        ("triage", "triage"),
        ("read", "read"),
    ],
)
def test_permission_reads_role_name(fake: FakeGitHub, api: gh.RepoAPI, role: str, expected: str) -> None:
    fake.permissions["someone"] = role
    assert api.permission("someone") == expected
    assert (expected in gh.WRITE_ROLES) is (role in ("admin", "maintain", "write"))


def test_permission_of_a_stranger_is_none(fake: FakeGitHub, api: gh.RepoAPI) -> None:
    fake.permissions["stranger"] = "none"
    assert api.permission("stranger") == "none"


def test_permission_when_the_repository_is_gone_is_an_error(fake: FakeGitHub, api: gh.RepoAPI) -> None:
    fake.gone = True  # the permission API answers 404, as for a stranger
    with pytest.raises(gh.RepositoryGone, match="acme/calculator"):
        api.permission("maintainer")


def test_extra_secrets_are_scrubbed_too(fake: FakeGitHub, app: Any) -> None:
    token = gh.mint_token(app, 1, REPO.name)
    api = gh.RepoAPI.with_token(app, token, REPO.owner, REPO.name, secrets=["sk-model-key", None, ""])
    posted = api.comment(7, f"{token} sk-model-key")
    assert fake.comments[posted.id]["body"] == "*** ***"


ENDPOINTS = ["http://10.0.0.5:8000/v1", "http://localhost/v1", None]


@pytest.mark.parametrize(
    ("text", "posted"),
    [
        ("HTTP 500 from http://10.0.0.5:8000/v1: overloaded", "HTTP 500 from the model server: overloaded"),
        ("url (http://10.0.0.5:8000/v1/chat/completions)", "url (the model server)"),
        ("tcp connect error 10.0.0.5:8000: refused.", "tcp connect error the model server: refused."),
        ("cannot reach http://localhost/v1.", "cannot reach the model server."),
        # Other servers, and a bare host in code, are left as they are.
        ("http://10.0.0.5:80001/v1 and 10.0.0.55:8000", "http://10.0.0.5:80001/v1 and 10.0.0.55:8000"),
        ('+HOST = "localhost"', '+HOST = "localhost"'),
    ],
)
def test_model_server_addresses_are_never_posted(fake: FakeGitHub, app: Any, text: str, posted: str) -> None:
    token = gh.mint_token(app, 1, REPO.name)
    api = gh.RepoAPI.with_token(app, token, REPO.owner, REPO.name, endpoints=ENDPOINTS)
    comment = api.comment(7, text)
    assert fake.comments[comment.id]["body"] == posted


def test_comments_are_scrubbed_and_clipped(fake: FakeGitHub, api: gh.RepoAPI) -> None:
    token = fake.tokens[0]
    posted = api.comment(7, f"oops {token} leaked")
    assert (posted.author_login, posted.author_id) == (BOT_LOGIN, BOT_ID)
    assert fake.comments[posted.id]["body"] == "oops *** leaked"
    api.edit_comment(posted.id, "x" * 100_000)
    body = fake.comments[posted.id]["body"]
    assert len(body) <= messages.MAX_BODY and body.endswith("(cut to fit GitHub's limit)")


def test_reactions_go_to_the_right_kind_of_comment(fake: FakeGitHub, api: gh.RepoAPI) -> None:
    api.react("issue", 11, "eyes")
    api.react("review", 22, "rocket")
    assert fake.reactions == [("issue", 11, "eyes"), ("review", 22, "rocket")]


def test_pulls(fake: FakeGitHub, api: gh.RepoAPI) -> None:
    fake.pulls[5] = FakePull(number=5, head_ref="feature", head_repo=REPO.full_name, head_sha="a" * 40)
    fake.pulls[6] = FakePull(number=6, head_ref="patch-1", head_repo=None)
    pull = api.pull(5)
    assert (pull.head_ref, pull.head_repo, pull.head_sha, pull.state) == (
        "feature",
        REPO.full_name,
        "a" * 40,
        "open",
    )
    assert api.pull(6).head_repo is None
    assert api.open_pull_for("feature") == (5, "https://github.test/acme/calculator/pull/5")
    assert api.open_pull_for("other") is None
    number, url = api.create_pull(title="T", head="patchling/1-x", base="main", body="B", draft=True)
    assert fake.created_pulls == [
        {"title": "T", "head": "patchling/1-x", "base": "main", "body": "B", "draft": True}
    ]
    assert url.endswith(f"/pull/{number}")


def test_reply_in_thread(fake: FakeGitHub, api: gh.RepoAPI) -> None:
    api.reply_in_thread(5, 284312630, "done")
    assert fake.replies == [{"pull": 5, "in_reply_to": 284312630, "body": "done"}]


def test_revoke_ends_the_token_and_never_raises(fake: FakeGitHub, api: gh.RepoAPI) -> None:
    api.revoke_token()
    assert fake.revoked == fake.tokens
    with pytest.raises(RequestFailed):
        api.comment(7, "after revocation")  # the fake, like GitHub, refuses a revoked token
    api.revoke_token()  # a second time fails quietly


def test_enterprise_base_url_and_no_auto_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    # githubkit's retry sleeps for the Retry-After: record the sleeps instead of sleeping.
    sleeps: list[float] = []
    monkeypatch.setattr(githubkit.core.time, "sleep", sleeps.append)
    ghes = "https://ghe.test/api/v3"
    app = gh.app_client(settings(github_api_url=ghes), auto_retry=False, cache_strategy=MemCacheStrategy())
    with respx.mock() as router:
        route = router.post(f"{ghes}/app/installations/9/access_tokens").mock(
            return_value=httpx.Response(429, headers={"retry-after": "60"}, json={"message": "slow down"})
        )
        with pytest.raises(RequestFailed):
            gh.mint_token(app, 9, "calculator")
    assert route.call_count == 1
    assert sleeps == []


def test_markdown_helpers() -> None:
    assert messages.fenced("a ``` b") == "````\na ``` b\n````"
    assert messages.fenced("x", "diff") == "```diff\nx\n```"
    assert messages.quote("one\ntwo") == "> one\n> two"
    assert "<summary>s</summary>" in messages.details("s", "b")


def test_the_app_key_is_parsed_once_and_never_shown() -> None:
    import jwt

    client = gh.app_client(settings())
    again = gh.app_client(settings())
    key = client.auth.private_key
    assert key is again.auth.private_key  # one parse per process, whatever the number of clients
    assert "PRIVATE KEY" not in repr(client.auth)
    token = jwt.encode({"iss": "12345"}, key, algorithm="RS256")  # the way githubkit signs with it
    public = key.public_key()  # type: ignore[attr-defined]
    assert jwt.decode(token, public, algorithms=["RS256"])["iss"] == "12345"
