"""First run: register the GitHub App from its manifest, as Probot does.

With no App credentials, `patchling serve` starts in setup mode. `/` offers a
"Register GitHub App" button that posts `app.yml` (its URLs filled in with
this server's) to GitHub's new-app page with a random `state`; GitHub sends the
browser back to `/setup/callback` with a one-time code, which is exchanged for
the App's credentials (`POST /app-manifests/{code}/conversions`). They are
written to `.env` (merged, mode 0600) and the key to its own 0600 file, and the
server switches to the normal app in the same process. Until then every other
route but /healthz answers 503 and points to `/`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit, urlunsplit

import httpx
import yaml
from githubkit import GitHub
from githubkit.exception import RequestFailed
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send

from bot.config import Settings

log = logging.getLogger(__name__)

REGISTER_PATH = "/setup/register"
CALLBACK_PATH = "/setup/callback"
WEBHOOK_PATH = "/api/github/webhooks"  # bot.web's; not imported, so setup mode loads no githubkit schemas
# GitHub's codes are valid for an hour; a state lives as long.
STATE_TTL_S = 3600.0
KEY_FILE_NAME = "github-app.private-key.pem"
# A GitHub login: letters, digits, single hyphens inside, at most 39.
_LOGIN = re.compile(r"[A-Za-z0-9](?:-?[A-Za-z0-9]){0,38}")
# The code goes into a URL path: nothing but what GitHub's codes are made of.
_CODE = re.compile(r"[A-Za-z0-9_-]{1,200}")
# The setup form is one short field; anything longer is not ours.
_MAX_FORM = 4096


def web_url(api_url: str) -> str:
    """GitHub's web address for its REST API root: https://api.github.com →
    https://github.com; GitHub Enterprise Server's https://HOST/api/v3 → https://HOST;
    GHE.com's https://api.SUB.ghe.com → https://SUB.ghe.com."""
    parts = urlsplit(api_url.strip().rstrip("/"))
    path = parts.path
    netloc = parts.netloc
    if path.endswith("/api/v3"):
        path = path.removesuffix("/api/v3")
    elif netloc.startswith("api."):
        netloc = netloc.removeprefix("api.")
    return urlunsplit((parts.scheme or "https", netloc, path, "", ""))


def new_app_url(web: str, org: str | None, state: str) -> str:
    """GitHub's page that registers an App from a posted manifest, for the
    user's own account or for an organisation."""
    page = f"{web}/organizations/{quote(org)}/settings/apps/new" if org else f"{web}/settings/apps/new"
    return f"{page}?{urlencode({'state': state})}"


def manifest_text() -> str:
    """The App manifest: `app.yml` at the top of the checkout, which a build
    copies into the package (setup.py), so an installed wheel has it too."""
    packaged = files("bot").joinpath("app.yml")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parents[1] / "app.yml").read_text(encoding="utf-8")


def load_manifest() -> dict[str, Any]:
    data = yaml.safe_load(manifest_text())
    if not isinstance(data, dict):
        raise ValueError("app.yml is not a manifest")
    return data


def manifest_for(base_url: str, hook_url: str) -> dict[str, Any]:
    """app.yml with this server's addresses: its home page, the webhook, and
    where GitHub sends the browser back with the code."""
    data = load_manifest()
    data["url"] = base_url
    data["hook_attributes"] = {**data.get("hook_attributes", {}), "url": hook_url}
    data["redirect_url"] = base_url + CALLBACK_PATH
    return data


class States:
    """The `state` values this server handed out: each good once, for an hour.
    Kept in memory: a restart in between means registering again, as with any
    expired link."""

    def __init__(self, ttl_s: float = STATE_TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_s
        self._clock = clock
        self._issued: dict[str, float] = {}

    def issue(self) -> str:
        now = self._clock()
        self._issued = {s: t for s, t in self._issued.items() if now - t < self._ttl}
        state = secrets.token_urlsafe(32)
        self._issued[state] = now
        return state

    def take(self, state: str) -> bool:
        issued = self._issued.pop(state, None)
        return issued is not None and self._clock() - issued < self._ttl


@dataclass(frozen=True)
class AppCredentials:
    """What GitHub returns for a manifest code; the secrets stay out of repr."""

    app_id: int
    slug: str
    name: str
    html_url: str
    client_id: str
    pem: str = field(repr=False)
    webhook_secret: str = field(repr=False)
    client_secret: str = field(repr=False)

    @property
    def install_url(self) -> str:
        return f"{self.html_url.rstrip('/')}/installations/new"


class SetupError(Exception):
    """A step of the registration failed; the message says what to do."""


async def convert(code: str, api_url: str) -> AppCredentials:
    """Exchange the manifest code for the App's credentials (no authentication:
    the code itself is the proof, good once within an hour)."""
    if not _CODE.fullmatch(code):
        raise SetupError("the code GitHub sent back is malformed; register again from /")
    try:
        async with GitHub(base_url=api_url) as github:
            response = await github.rest.apps.async_create_from_manifest(code)
    except RequestFailed as exc:
        raise SetupError(
            f"GitHub refused the code ({exc.response.status_code}): codes are good once, within an"
            " hour; register again from /"
        ) from None
    except httpx.HTTPError as exc:
        raise SetupError(f"cannot reach GitHub at {api_url}: {type(exc).__name__}") from None
    app = response.parsed_data
    if not app.webhook_secret:
        raise SetupError("GitHub returned no webhook secret for the App; register again from /")
    return AppCredentials(
        app_id=app.id,
        slug=app.slug or "",
        name=app.name,
        html_url=app.html_url,
        client_id=app.client_id,
        pem=app.pem,
        webhook_secret=app.webhook_secret,
        client_secret=app.client_secret,
    )


# -- files ------------------------------------------------------------------------------------

_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")
_PLAIN = re.compile(r"[A-Za-z0-9_./:@+,-]*")


def _env_value(value: str) -> str:
    """A value as .env readers take it back unchanged."""
    if _PLAIN.fullmatch(value):
        return value
    if "'" not in value and "\n" not in value:
        return f"'{value}'"  # single quotes: no escapes inside
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def merge_env(text: str, values: Mapping[str, str], drop: frozenset[str] = frozenset()) -> str:
    """`text` (a .env file) with `values` set: a variable already there is
    replaced where it stands (later repeats removed), new ones are appended;
    variables in `drop` are removed. Every other line stays as it was."""
    out: list[str] = []
    written: set[str] = set()
    for line in text.splitlines():
        match = _ASSIGNMENT.match(line)
        name = match.group(1) if match else None
        if name in drop or name in written:
            continue
        if name is not None and name in values:
            out.append(f"{name}={_env_value(values[name])}")
            written.add(name)
        else:
            out.append(line)
    added = [f"{name}={_env_value(value)}" for name, value in values.items() if name not in written]
    if added:
        if out and out[-1].strip():
            out.append("")
        out += ["# The GitHub App, registered by Patchling's setup page.", *added]
    return "\n".join(out) + "\n"


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only (0600), all or nothing:
    a temporary file created 0600 beside it, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def save_credentials(app: AppCredentials, env_file: Path, key_file: Path) -> None:
    """The key to its own file, then the rest merged into .env (both 0600).
    An inline key left in .env would win over the new file: it is dropped."""
    write_private(key_file, app.pem)
    existing = env_file.read_text(encoding="utf-8") if env_file.exists() else ""
    values = {
        "GITHUB_APP_ID": str(app.app_id),
        "GITHUB_PRIVATE_KEY_PATH": str(key_file.resolve()),
        "GITHUB_WEBHOOK_SECRET": app.webhook_secret,
        "GITHUB_CLIENT_ID": app.client_id,
        "GITHUB_CLIENT_SECRET": app.client_secret,
    }
    write_private(env_file, merge_env(existing, values, drop=frozenset({"GITHUB_PRIVATE_KEY"})))


# -- the app ----------------------------------------------------------------------------------


class Switch:
    """The ASGI app uvicorn serves: setup mode until the App is registered,
    then the normal app, without a restart."""

    def __init__(self, app: ASGIApp | None = None) -> None:
        self.app: ASGIApp | None = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app is None:
            raise RuntimeError("the server has no app yet")
        await self.app(scope, receive, send)


def _templates() -> Jinja2Templates:
    environment = Environment(
        loader=PackageLoader("bot", "templates"), autoescape=select_autoescape(default=True)
    )
    return Jinja2Templates(env=environment)


def base_url(settings: Settings, request: Request) -> str:
    """This server's address as GitHub and the browser reach it."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    return str(request.base_url).rstrip("/")


def webhook_url(settings: Settings, base: str) -> str:
    """Deliveries go to the proxy channel when one forwards them here."""
    return settings.webhook_proxy_url or base + WEBHOOK_PATH


def setup_app(
    settings: Settings,
    activate: Callable[[Settings], ASGIApp],
    *,
    env_file: Path = Path(".env"),
    key_file: Path | None = None,
    reload: Callable[[], Settings] | None = None,
) -> Switch:
    """The setup-mode server. Once the App is registered, `reload()` reads the
    settings again (from the .env just written) and `activate` builds the
    normal app from them, which then serves every request."""
    switch = Switch()
    states = States()
    templates = _templates()
    key_path = key_file or settings.data_dir / KEY_FILE_NAME
    reread = reload or (lambda: Settings(_env_file=env_file))

    def page(request: Request, name: str, status: int = 200, **context: Any) -> Response:
        return templates.TemplateResponse(request, name, context, status_code=status)

    async def index(request: Request) -> Response:
        return page(
            request, "setup.html", github=web_url(settings.github_api_url), register_path=REGISTER_PATH
        )

    async def register(request: Request) -> Response:
        body = await request.body()
        if len(body) > _MAX_FORM:
            return page(request, "setup_problem.html", 413, problem="The form is too large.")
        org = (parse_qs(body.decode("utf-8", "replace")).get("org") or [""])[0].strip()
        if org and not _LOGIN.fullmatch(org):
            return page(
                request, "setup_problem.html", 400, problem=f"{org!r} is not a GitHub organisation name."
            )
        base = base_url(settings, request)
        manifest = manifest_for(base, webhook_url(settings, base))
        target = new_app_url(web_url(settings.github_api_url), org or None, states.issue())
        return page(request, "setup_register.html", target=target, manifest=json.dumps(manifest), org=org)

    async def callback(request: Request) -> Response:
        state = request.query_params.get("state", "")
        if not states.take(state):
            log.warning("setup callback refused: unknown or expired state")
            return page(
                request,
                "setup_problem.html",
                400,
                problem="This link was not started by this server, was used already, or has expired.",
            )
        try:
            app = await convert(request.query_params.get("code", ""), settings.github_api_url)
        except SetupError as exc:
            return page(request, "setup_problem.html", 502, problem=str(exc))
        try:
            save_credentials(app, env_file, key_path)
        except OSError as exc:
            log.error("setup: cannot write the App's credentials: %s", exc.strerror or exc)
            return page(
                request,
                "setup_problem.html",
                500,
                problem=(
                    f"GitHub registered the App ({app.html_url}), but its credentials could not be"
                    f" written: {exc.strerror or exc}. Generate a private key and a webhook secret on the"
                    " App's settings page and put them in .env by hand (see README)."
                ),
            )
        log.info("setup: registered the GitHub App %s (id %s)", app.slug, app.app_id)
        try:
            switch.app = activate(reread())
        except ValueError as exc:
            return page(request, "setup_problem.html", 500, problem=f"{exc}; restart Patchling.")
        return page(request, "setup_done.html", app=app, env_file=env_file.resolve(), key_file=key_path)

    async def not_yet(request: Request, exc: Exception) -> Response:
        return JSONResponse(
            {"error": "Patchling is in setup mode: register the GitHub App first", "setup": "/"},
            status_code=503,
        )

    async def healthz(request: Request) -> Response:
        # The process answers (a container's liveness probe); /readyz stays 503.
        return JSONResponse({"ok": True, "setup": "/"})

    switch.app = Starlette(
        routes=[
            Route("/", index, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route(REGISTER_PATH, register, methods=["POST"]),
            Route(CALLBACK_PATH, callback, methods=["GET"]),
        ],
        exception_handlers={404: not_yet},
    )
    return switch
