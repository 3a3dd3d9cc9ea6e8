"""First-run setup: the manifest flow from the Register button to a running App.
GitHub's conversion API is mocked with respx, from GitHub's documented response;
the .env and key files, the settings and the webhook app are real."""

from __future__ import annotations

import html
import json
import re
import stat
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx
from starlette.testclient import TestClient
from starlette.types import ASGIApp

from bot.config import Settings
from bot.setup_mode import manifest_for, merge_env, new_app_url, setup_app, web_url
from bot.web import WEBHOOK_PATH, create_app, sign
from tests.fakegithub import private_key_pem
from tests.test_web import RecordingQueue

EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "github-api-examples"
API = "https://api.github.com"
WEBHOOK_SECRET = "e340154128314309424b7c8e90325147d99fdafa"
APP_VARIABLES = (
    "GITHUB_APP_ID",
    "GITHUB_PRIVATE_KEY",
    "GITHUB_PRIVATE_KEY_PATH",
    "GITHUB_WEBHOOK_SECRET",
    "GITHUB_CLIENT_ID",
    "GITHUB_CLIENT_SECRET",
    "GITHUB_API_URL",
    "WEBHOOK_PROXY_URL",
    "PATCHLING_PUBLIC_URL",
)


def conversion_response(pem: str) -> dict[str, Any]:
    """GitHub's documented answer to POST /app-manifests/{code}/conversions: its
    `integration` example (GET /app's) plus the credentials the conversion adds."""
    app = json.loads((EXAMPLES / "apps" / "get-authenticated.json").read_text())
    return {
        **app,
        "client_id": "Iv1.8a61f9b3a7aba766",
        "client_secret": "1726be1638095a19edd134c77bde3aa2ece1e5d8",
        "webhook_secret": WEBHOOK_SECRET,
        "pem": pem,
    }


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in APP_VARIABLES:
        monkeypatch.delenv(name, raising=False)


class Flow:
    """Setup mode over a temporary directory, with the normal app it switches to."""

    def __init__(self, tmp_path: Path, **settings: Any) -> None:
        self.env_file = tmp_path / ".env"
        self.key_file = tmp_path / "data" / "github-app.private-key.pem"
        self.queue = RecordingQueue(tmp_path / "jobs.sqlite3")
        self.activated: list[Settings] = []
        base = Settings(_env_file=None, data_dir=tmp_path / "data", **settings)
        self.switch = setup_app(
            base,
            self.activate,
            env_file=self.env_file,
            key_file=self.key_file,
            reload=lambda: Settings(_env_file=self.env_file, data_dir=tmp_path / "data"),
        )
        self.client = TestClient(self.switch, base_url="http://patchling.test")

    def activate(self, settings: Settings) -> ASGIApp:
        self.activated.append(settings)
        return create_app(settings, queue=self.queue)

    def register(self, org: str = "") -> tuple[str, dict[str, Any]]:
        """Press the button; the GitHub page the form posts to, and the manifest."""
        page = self.client.post("/setup/register", content=f"org={org}".encode())
        assert page.status_code == 200, page.text
        action = re.search(r'<form id="manifest" method="post" action="([^"]+)"', page.text)
        value = re.search(r'name="manifest" value="([^"]+)"', page.text)
        assert action and value
        return html.unescape(action[1]), json.loads(html.unescape(value[1]))


def state_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["state"][0]


@pytest.mark.parametrize(
    ("api", "web"),
    [
        ("https://api.github.com", "https://github.com"),
        ("https://api.github.com/", "https://github.com"),
        ("https://github.example.com/api/v3", "https://github.example.com"),
        ("https://github.example.com/api/v3/", "https://github.example.com"),
        ("https://api.octo.ghe.com", "https://octo.ghe.com"),
    ],
)
def test_the_web_host_comes_from_the_api_url(api: str, web: str) -> None:
    assert web_url(api) == web


def test_new_app_page_for_a_person_or_an_organisation() -> None:
    assert new_app_url("https://github.com", None, "s1") == "https://github.com/settings/apps/new?state=s1"
    assert (
        new_app_url("https://ghe.test", "acme", "s2")
        == "https://ghe.test/organizations/acme/settings/apps/new?state=s2"
    )


def test_the_manifest_is_app_yml_with_this_servers_addresses() -> None:
    manifest = manifest_for("https://bot.example.org", "https://bot.example.org/api/github/webhooks")
    assert manifest["redirect_url"] == "https://bot.example.org/setup/callback"
    assert manifest["hook_attributes"] == {
        "url": "https://bot.example.org/api/github/webhooks",
        "active": True,
    }
    assert set(manifest["default_events"]) == {"issue_comment", "pull_request_review_comment"}
    assert manifest["public"] is False


def test_the_setup_page_offers_the_register_button(tmp_path: Path) -> None:
    page = Flow(tmp_path).client.get("/")
    assert page.status_code == 200
    assert "Register GitHub App" in page.text
    assert 'name="org"' in page.text


def test_every_other_route_points_to_setup_until_configured(tmp_path: Path) -> None:
    flow = Flow(tmp_path)
    for method, path in (("GET", "/dashboard"), ("POST", WEBHOOK_PATH), ("GET", "/readyz")):
        response = flow.client.request(method, path)
        assert response.status_code == 503, path
        assert response.json()["setup"] == "/"
    # Liveness is the process answering: a container in setup mode is healthy, just not ready.
    alive = flow.client.get("/healthz")
    assert alive.status_code == 200 and alive.json() == {"ok": True, "setup": "/"}


def test_register_posts_the_manifest_with_the_requests_host(tmp_path: Path) -> None:
    flow = Flow(tmp_path)
    action, manifest = flow.register()
    assert action.startswith("https://github.com/settings/apps/new?state=")
    assert manifest["hook_attributes"]["url"] == "http://patchling.test/api/github/webhooks"
    assert manifest["redirect_url"] == "http://patchling.test/setup/callback"
    second, _ = flow.register()
    assert state_of(second) != state_of(action)


def test_register_for_an_organisation_on_enterprise_server_with_a_public_url(tmp_path: Path) -> None:
    flow = Flow(
        tmp_path, github_api_url="https://ghe.example.com/api/v3", public_url="https://bot.example.com/"
    )
    action, manifest = flow.register(org="acme-corp")
    assert action.startswith("https://ghe.example.com/organizations/acme-corp/settings/apps/new?state=")
    assert manifest["hook_attributes"]["url"] == "https://bot.example.com/api/github/webhooks"
    assert manifest["url"] == "https://bot.example.com"


def test_a_proxy_channel_becomes_the_webhook(tmp_path: Path) -> None:
    flow = Flow(tmp_path, webhook_proxy_url="https://smee.example/abc")
    _, manifest = flow.register()
    assert manifest["hook_attributes"]["url"] == "https://smee.example/abc"


def test_a_bad_organisation_name_is_refused(tmp_path: Path) -> None:
    page = Flow(tmp_path).client.post("/setup/register", content=b"org=-not/a+name")
    assert page.status_code == 400
    assert "not a GitHub organisation name" in page.text


@respx.mock
def test_a_wrong_state_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    conversion = respx.post(f"{API}/app-manifests/abc123/conversions").mock(
        return_value=httpx.Response(201, json=conversion_response(private_key_pem()))
    )
    flow = Flow(tmp_path)
    action, _ = flow.register()
    for state in ("forged", "", state_of(action) + "x"):
        page = flow.client.get("/setup/callback", params={"code": "abc123", "state": state})
        assert page.status_code == 400
    assert not conversion.called
    assert not flow.env_file.exists() and not flow.key_file.exists()
    assert flow.activated == []


@respx.mock
def test_a_refused_code_writes_nothing(tmp_path: Path) -> None:
    respx.post(f"{API}/app-manifests/old/conversions").mock(
        return_value=httpx.Response(404, json={"message": "Not Found"})
    )
    flow = Flow(tmp_path)
    action, _ = flow.register()
    page = flow.client.get("/setup/callback", params={"code": "old", "state": state_of(action)})
    assert page.status_code == 502
    assert "register again" in page.text
    assert not flow.env_file.exists() and not flow.key_file.exists()


@respx.mock
def test_the_callback_saves_the_app_and_switches_to_normal_mode(tmp_path: Path) -> None:
    pem = private_key_pem()
    conversion = respx.post(f"{API}/app-manifests/abc123/conversions").mock(
        return_value=httpx.Response(201, json=conversion_response(pem))
    )
    flow = Flow(tmp_path)
    flow.env_file.write_text("# mine\nOPENAI_API_KEY=sk-kept\nGITHUB_APP_ID=999\nPATCHLING_WORKERS=3\n")
    flow.env_file.chmod(0o644)
    action, _ = flow.register()

    page = flow.client.get("/setup/callback", params={"code": "abc123", "state": state_of(action)})

    assert page.status_code == 200, page.text
    assert conversion.call_count == 1
    assert 'href="https://github.com/apps/octoapp/installations/new"' in page.text
    # .env: existing lines kept, the App's id replaced in place, the rest appended; 0600.
    lines = flow.env_file.read_text().splitlines()
    assert lines[:4] == ["# mine", "OPENAI_API_KEY=sk-kept", "GITHUB_APP_ID=1", "PATCHLING_WORKERS=3"]
    assert f"GITHUB_PRIVATE_KEY_PATH={flow.key_file.resolve()}" in lines
    assert f"GITHUB_WEBHOOK_SECRET={WEBHOOK_SECRET}" in lines
    assert "GITHUB_CLIENT_ID=Iv1.8a61f9b3a7aba766" in lines
    assert "GITHUB_CLIENT_SECRET=1726be1638095a19edd134c77bde3aa2ece1e5d8" in lines
    assert pem not in flow.env_file.read_text()
    assert stat.S_IMODE(flow.env_file.stat().st_mode) == 0o600
    assert flow.key_file.read_text() == pem
    assert stat.S_IMODE(flow.key_file.stat().st_mode) == 0o600
    # The settings read back from the files are complete.
    (settings,) = flow.activated
    assert settings.github_app_id == "1"
    assert settings.private_key() == pem
    assert settings.workers == 3
    assert settings.github_client_secret is not None

    # Normal mode, without a restart: a delivery signed with the new secret is taken...
    body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
    headers = {"x-github-event": "ping", "x-github-delivery": "d-1", "content-type": "application/json"}
    signed = flow.client.post(
        WEBHOOK_PATH,
        content=body,
        headers={**headers, "x-hub-signature-256": sign(WEBHOOK_SECRET.encode(), body)},
    )
    assert signed.status_code == 200
    assert signed.json()["pong"] is True
    # ... one signed with another is refused, and setup is over.
    forged = flow.client.post(
        WEBHOOK_PATH, content=body, headers={**headers, "x-hub-signature-256": sign(b"other", body)}
    )
    assert forged.status_code == 401
    assert (
        flow.client.get("/setup/callback", params={"code": "abc123", "state": state_of(action)}).status_code
        == 404
    )


@respx.mock
def test_a_state_is_good_once(tmp_path: Path) -> None:
    respx.post(f"{API}/app-manifests/abc123/conversions").mock(
        return_value=httpx.Response(404, json={"message": "Not Found"})
    )
    flow = Flow(tmp_path)
    action, _ = flow.register()
    params = {"code": "abc123", "state": state_of(action)}
    assert flow.client.get("/setup/callback", params=params).status_code == 502
    assert flow.client.get("/setup/callback", params=params).status_code == 400


def test_merge_env_replaces_in_place_drops_repeats_and_appends() -> None:
    text = "A=1\nexport B=old\n# B=comment stays\nB=again\nGITHUB_PRIVATE_KEY='inline'\n"
    merged = merge_env(text, {"B": "new", "C": "has space"}, drop=frozenset({"GITHUB_PRIVATE_KEY"}))
    assert merged.splitlines() == [
        "A=1",
        "B=new",
        "# B=comment stays",
        "",
        "# The GitHub App, registered by Patchling's setup page.",
        "C='has space'",
    ]


def test_merged_values_read_back_unchanged(tmp_path: Path) -> None:
    from dotenv import dotenv_values

    values = {"P": "/a dir/it's here", "Q": "plain.value-1", "R": "x y"}
    env_file = tmp_path / ".env"
    env_file.write_text(merge_env("", values))
    assert dotenv_values(env_file) == values
