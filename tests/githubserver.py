"""The fake GitHub of tests/fakegithub.py as a loopback HTTP server process,
for black-box runs of `patchling serve` (which must be able to die by kill -9
while the fake lives on). Requests are answered by the same respx routes the
in-process tests use; `GET /_state` tells what the App did.

    python -m tests.githubserver --port 8123 --clone-url file:///…/remote.git
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import httpx
import respx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakegithub import API_URL, WEBHOOK_SECRET, FakeGitHub, RemoteRepo, private_key_pem
from tests.processes import LoopbackProcess


def build_app(fake: FakeGitHub) -> Starlette:
    router = respx.MockRouter(assert_all_called=False)
    fake.install(router)

    async def api(request: Request) -> Response:
        query = f"?{request.url.query}" if request.url.query else ""
        # The routes are written for the fake's own host: the request is moved there.
        forwarded = httpx.Request(
            request.method,
            f"{API_URL}{request.url.path}{query}",
            headers=[(k, v) for k, v in request.headers.raw if k.lower() != b"host"],
            content=await request.body(),
        )
        answer = router.handler(forwarded)
        return Response(answer.content, status_code=answer.status_code, headers=dict(answer.headers))

    async def state(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "comments": {str(cid): c for cid, c in fake.comments.items()},
                "created_pulls": fake.created_pulls,
                "reactions": fake.reactions,
            }
        )

    return Starlette(
        routes=[
            Route("/_state", state),
            Route("/{path:path}", api, methods=["GET", "POST", "PATCH", "PUT", "DELETE"]),
        ]
    )


class GitHubProcess(LoopbackProcess):
    """Handle on a fake GitHub server process serving one repository."""

    module = "tests.githubserver"
    probe = "/_state"

    def __init__(self, repo: RemoteRepo) -> None:
        super().__init__()
        self.repo = repo
        self.url = self.root

    def start(self) -> GitHubProcess:
        self.launch("--clone-url", self.repo.clone_url)
        return self

    def state(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/_state", timeout=5).json())


def app_process_env(data_dir: Path, model_url: str, github_url: str, **extra: str) -> dict[str, str]:
    """The environment of a `patchling serve` or `worker` process in these tests:
    one scripted tier, a trivial test command, one worker thread, this fake GitHub."""
    tier = {"name": "tiny", "model": "tiny", "base_url": model_url, "edit_format": "whole"}
    return {
        **os.environ,
        "PATCHLING_DATA_DIR": str(data_dir),
        "PATCHLING_TIERS": json.dumps([tier]),
        "PATCHLING_TEST_COMMAND": "true",
        "PATCHLING_WORKERS": "1",
        "GITHUB_API_URL": github_url,
        "GITHUB_APP_ID": "12345",
        "GITHUB_PRIVATE_KEY": private_key_pem(),
        "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        **extra,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clone-url", required=True)
    args = parser.parse_args()
    fake = FakeGitHub(RemoteRepo(owner="acme", name="calculator", clone_url=args.clone_url))
    uvicorn.run(build_app(fake), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
