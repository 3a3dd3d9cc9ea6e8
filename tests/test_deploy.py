"""The deployment files: the systemd unit's hardening and the container's
ownership, read from the files themselves (no systemd boot, no Docker engine)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
import typer
import uvicorn

from bot.cli import app
from bot.config import PRIVATE_KEY_CREDENTIAL, Settings
from bot.serve import missing_settings
from bot.web import create_app

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "patchling.service"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
README = ROOT / "README.md"
# systemd-analyze's boundary between "OK" and "MEDIUM".
MAX_EXPOSURE = 3.9


def unit_settings(path: Path) -> dict[str, list[str]]:
    """Every `Key=value` of the unit; a key may repeat, as systemd allows."""
    settings: dict[str, list[str]] = defaultdict(list)
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            settings[key.strip()].append(value.strip())
    return settings


def _offline_analysis_available() -> str | None:
    """Why `systemd-analyze security --offline` cannot run here, or None."""
    if shutil.which("systemd-analyze") is None:
        return "systemd-analyze is not installed"
    usage = subprocess.run(["systemd-analyze", "--help"], capture_output=True, text=True).stdout
    return None if "--offline" in usage else "this systemd-analyze has no --offline"


def test_the_unit_is_rated_ok_by_systemd_analyze() -> None:
    why_not = _offline_analysis_available()
    if why_not:
        pytest.skip(why_not)
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", result.stdout)
    assert match is not None, result.stdout + result.stderr
    assert float(match[1]) <= MAX_EXPOSURE, result.stdout


def test_the_unit_leaves_bubblewrap_its_namespaces() -> None:
    unit = unit_settings(UNIT)
    namespaces = set(" ".join(unit["RestrictNamespaces"]).split())
    assert {"user", "pid", "ipc", "uts", "net", "mnt"} <= namespaces
    assert unit.get("PrivateUsers", ["false"]) == ["false"]  # would take bubblewrap's user namespace


def test_the_key_arrives_as_a_credential_the_app_reads() -> None:
    unit = unit_settings(UNIT)
    (credential,) = unit["LoadCredential"]
    assert credential.split(":", 1)[0] == PRIVATE_KEY_CREDENTIAL
    assert "GITHUB_PRIVATE_KEY_PATH" not in " ".join(unit["Environment"])


def test_the_units_command_is_the_documented_one() -> None:
    (exec_start,) = unit_settings(UNIT)["ExecStart"]
    assert f"`{exec_start}`" in README.read_text()
    program, *args = shlex.split(exec_start)
    assert program.endswith("/.venv/bin/patchling")
    # The options parse with the real command line (nothing runs).
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    with group.make_context("patchling", list(args)) as context:
        serve = group.get_command(context, args[0])
        assert serve is not None
        with serve.make_context(args[0], args[1:], parent=context) as parsed:
            assert parsed.params["port"] == 3000


def test_a_systemd_credential_supplies_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / PRIVATE_KEY_CREDENTIAL).write_text("-----BEGIN PRIVATE KEY-----\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    monkeypatch.delenv("GITHUB_PRIVATE_KEY", raising=False)
    monkeypatch.delenv("GITHUB_PRIVATE_KEY_PATH", raising=False)
    settings = Settings(_env_file=None, github_app_id="1", github_webhook_secret="s")
    assert settings.private_key() == "-----BEGIN PRIVATE KEY-----\n"
    assert missing_settings(settings) == []
    # An explicit path wins; without a credential, the key is still missing.
    explicit = tmp_path / "explicit.pem"
    explicit.write_text("explicit")
    assert Settings(_env_file=None, github_private_key_path=explicit).private_key() == "explicit"
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "none"))
    assert Settings(_env_file=None).private_key() is None


# -- the container ----------------------------------------------------------------------


def dockerfile_steps(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per step, continuation lines joined, comments dropped."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    steps = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, args = line.strip().partition(" ")
            steps.append((instruction.upper(), " ".join(args.split())))
    return steps


def test_the_install_is_roots_and_only_the_data_volume_is_the_users() -> None:
    steps = dockerfile_steps(DOCKERFILE)
    instructions = [name for name, _ in steps]
    run = " && ".join(args for name, args in steps if name == "RUN")
    # Everything is copied and built before the switch to the service user...
    user_at = instructions.index("USER")
    assert max(i for i, name in enumerate(instructions) if name in ("COPY", "RUN")) < user_at
    assert dict(steps)["USER"] not in ("root", "0")
    # ...and nothing of the install is handed to that user.
    assert "chown" not in run and "--chown" not in " ".join(a for n, a in steps if n == "COPY")
    # Only the data directory is: created for the user, declared as the volume, used as the data dir.
    assert re.search(r"install -d -o patchling -g patchling -m 0700 /data\b", run)
    assert re.findall(r'"([^"]+)"', dict(steps)["VOLUME"]) == ["/data"]
    assert "PATCHLING_DATA_DIR=/data" in dict(steps)["ENV"]
    # First-run setup writes .env to the working directory: the user's must be the volume.
    assert [args for name, args in steps if name == "WORKDIR"][-1] == "/data"


def test_the_image_has_git_bubblewrap_and_the_test_runners_toolchains() -> None:
    run = " ".join(args for name, args in dockerfile_steps(DOCKERFILE) if name == "RUN")
    install = re.search(r"apt-get install ([^&]+)", run)
    assert install is not None and {"git", "bubblewrap", "nodejs", "npm", "golang-go"} <= set(
        install[1].split()
    )
    # The test suite's own programs (a browser, a Redis server) stay out of the image.
    assert "make setup" not in run and "make .venv/.installed" in run


def healthcheck_command() -> list[str]:
    """The HEALTHCHECK's exec-form command."""
    (args,) = [args for name, args in dockerfile_steps(DOCKERFILE) if name == "HEALTHCHECK"]
    command = json.loads(args[args.index("CMD ") + len("CMD ") :])
    assert isinstance(command, list)
    return [str(part) for part in command]


def test_the_healthcheck_asks_healthz_on_the_served_port() -> None:
    steps = dict(dockerfile_steps(DOCKERFILE))
    program, *args = healthcheck_command()
    assert program == "/opt/patchling/.venv/bin/python"  # the slim image has no curl
    assert f"http://127.0.0.1:{steps['EXPOSE']}/healthz" in " ".join(args)
    assert "--port 3000" in " ".join(json.loads(steps["CMD"]))


def test_the_healthcheck_fails_unless_healthz_answers(tmp_path: Path) -> None:
    """The check's own Python line, against a live server and then none."""
    from tests.fakegithub import WEBHOOK_SECRET
    from tests.modelserver import free_port
    from tests.test_web import RecordingQueue

    settings = Settings(_env_file=None, data_dir=tmp_path, github_webhook_secret=WEBHOOK_SECRET)
    web = create_app(settings, queue=RecordingQueue(tmp_path / "jobs.sqlite3"))
    port = free_port()
    _, code = healthcheck_command()[1:]
    code = code.replace("127.0.0.1:3000", f"127.0.0.1:{port}")
    server = uvicorn.Server(uvicorn.Config(web, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started and thread.is_alive():
            time.sleep(0.02)
        assert server.started
        assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode != 0
