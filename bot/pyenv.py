"""The repository's own Python environment, so its tests import the checkout
and its dependencies, never Patchling's.

One virtual environment per set of dependency files, built with uv under
`<envs_dir>/<key>/` and reused by every job whose files hash the same. It holds
the project's *dependencies* (plus pytest), not the project: each job has its
own scratch checkout, so the checkout reaches the tests through PYTHONPATH
(root, and src/ when there is one), which Python searches before site-packages.

Building runs repository code (setup.py, build backends), so uv runs in the
same scrubbed environment as the tests. The env is built in a temporary
directory beside its final place and renamed into place (uv's --relocatable
keeps its scripts working after the move), under a lock, so a failed or
concurrent build never leaves a half-made environment behind.
"""

from __future__ import annotations

import configparser
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs
from filelock import FileLock, Timeout

from bot.config import APP_NAME
from bot.verify import has_python_tests, scrubbed_env

# Bump when the way an environment is built changes: old ones are then not reused.
SCHEME = "1"
# Extras that carry a project's test dependencies, most specific first.
TEST_EXTRAS = ("test", "tests", "testing", "dev")
# A requirements file's "kind" (its name minus "requirements" and separators), most specific first.
TEST_REQUIREMENT_KINDS = ("test", "tests", "testing", "dev", "development")
INFO_FILE = "patchling-env.txt"
# Programs that need no environment: a command made only of these runs as it is.
TRIVIAL_PROGRAMS = frozenset({"true", "false", ":", "echo", "printf", "test", "[", "exit", "touch"})
# Programs that mean Python even where the repository has no Python project files.
PYTHON_PROGRAMS = frozenset({"python", "python3", "pytest", "py.test", "pip", "pip3", "uv", "tox", "nox"})
# What uv may see beyond the test sandbox's allow-list: where the index is and how to reach it.
UV_ALLOW = (
    "UV_CACHE_DIR",
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_INDEX",
    "UV_NATIVE_TLS",
    "UV_OFFLINE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)
# A first build may download much; later ones come from uv's cache.
BUILD_TIMEOUT_S = 900.0
LOCK_TIMEOUT_S = 1800.0
ERROR_TAIL_CHARS = 1500


class EnvError(Exception):
    """The environment could not be built; the message says why, for people."""


@dataclass
class PyEnv:
    path: Path
    key: str
    installed: list[str]  # what went in, e.g. "pyproject.toml [test]", "requirements-dev.txt", "pytest"
    seconds: float  # time spent building, or finding it when reused
    reused: bool

    @property
    def bin_dir(self) -> Path:
        return self.path / "bin"

    def apply(self, env: dict[str, str], root: Path) -> dict[str, str]:
        """`env` with this environment's programs first on PATH and the checkout
        (root, and src/ when present) first on PYTHONPATH."""
        roots = [str(root)] + ([str(root / "src")] if (root / "src").is_dir() else [])
        return {
            **env,
            "PATH": os.pathsep.join([str(self.bin_dir), env.get("PATH", os.defpath)]),
            "VIRTUAL_ENV": str(self.path),
            "PYTHONPATH": os.pathsep.join(roots),
        }

    def describe(self) -> str:
        what = ", ".join(self.installed)
        if self.reused:
            return f"test environment reused ({what})"
        return f"test environment built in {self.seconds:.1f}s ({what})"

    def to_json(self) -> dict[str, Any]:
        # No path: reports and --json name nothing of the server's file system.
        return {
            "key": self.key,
            "installed": self.installed,
            "seconds": round(self.seconds, 3),
            "reused": self.reused,
        }


# -- when -------------------------------------------------------------------------


def _programs(command: str) -> list[str]:
    """The program of each simple command in `command` (`a && b | c` -> a, b, c),
    skipping VAR=value prefixes."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    programs: list[str] = []
    expect = True
    try:
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes: the runner will say so
        return [command]
    for token in tokens:
        if token and set(token) <= set("|&;()<>"):
            expect = True
            continue
        if expect and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", token):
            continue
        if expect:
            programs.append(Path(token).name)
            expect = False
    return programs


def is_python_project(root: Path) -> bool:
    """Files that say the repository is a Python project."""
    return bool(dependency_files(root)) or has_python_tests(root)


def needs_env(root: Path, commands: Sequence[str | None]) -> bool:
    """Whether these commands should run in the repository's environment: any
    command that runs a real program, in a Python project or naming Python."""
    programs = [p for c in commands if c for p in _programs(c)]
    if all(p in TRIVIAL_PROGRAMS for p in programs):
        return False
    return any(p in PYTHON_PROGRAMS for p in programs) or is_python_project(root)


# -- what -------------------------------------------------------------------------


def _requirement_kind(name: str) -> str:
    stem = name.removesuffix(".txt").lower()
    return re.sub(r"[-_.]", "", stem.replace("requirements", ""))


def dependency_files(root: Path) -> list[str]:
    """Files that decide what the environment holds, relative to root, sorted."""
    found = [n for n in ("pyproject.toml", "setup.py", "setup.cfg", "Pipfile") if (root / n).is_file()]
    found += [p.name for p in root.glob("*requirements*.txt") if p.is_file()]
    req_dir = root / "requirements"
    if req_dir.is_dir() and not req_dir.is_symlink():
        found += [f"requirements/{p.name}" for p in req_dir.glob("*.txt") if p.is_file()]
    # Never follow a link out of the checkout.
    return sorted(n for n in found if not (root / n).is_symlink())


def _pyproject(root: Path) -> dict[str, Any]:
    try:
        return tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def _project_source(root: Path, files: list[str]) -> tuple[str, list[str]] | None:
    """The file uv reads the project's dependencies from, and its test extras."""
    if "pyproject.toml" in files:
        data = _pyproject(root)
        project = data.get("project")
        if isinstance(project, dict):
            extras = project.get("optional-dependencies") or {}
            return "pyproject.toml", [e for e in TEST_EXTRAS if e in extras]
        if "build-system" in data and "setup.py" not in files:
            return "pyproject.toml", []
    if "setup.cfg" in files:
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(root / "setup.cfg", encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError):
            parser = configparser.ConfigParser()
        if parser.has_section("options") or parser.has_section("metadata"):
            extras = (
                parser.options("options.extras_require")
                if parser.has_section("options.extras_require")
                else []
            )
            if "setup.py" not in files:
                return "setup.cfg", [e for e in TEST_EXTRAS if e in extras]
            return "setup.py", [e for e in TEST_EXTRAS if e in extras]
    if "setup.py" in files:
        return "setup.py", []
    return None


def _requirement_files(files: list[str]) -> list[str]:
    """requirements.txt, plus the one requirements file meant for testing (the
    most specific kind found): never all of them, whose pins may conflict."""
    chosen = [n for n in files if n in ("requirements.txt", "requirements/base.txt")]
    reqs = [n for n in files if n.endswith(".txt")]
    for kind in TEST_REQUIREMENT_KINDS:
        match = [n for n in reqs if _requirement_kind(Path(n).name) == kind]
        if match:
            chosen.append(match[0])
            break
    return chosen


def install_plan(root: Path) -> tuple[list[str], list[str]]:
    """uv pip install arguments for the project's dependencies and pytest, and
    the same in words for reports."""
    files = dependency_files(root)
    args: list[str] = []
    words: list[str] = []
    source = _project_source(root, files)
    if source is not None:
        name, extras = source
        args += ["-r", name, *(a for e in extras for a in ("--extra", e))]
        words.append(name + (f" [{', '.join(extras)}]" if extras else ""))
    for name in _requirement_files(files):
        args += ["-r", name]
        words.append(name)
    args.append("pytest")
    words.append("pytest")
    return args, words


def env_key(root: Path, setup_command: str | None) -> str:
    """Hash of what decides the environment's contents."""
    digest = hashlib.sha256()
    for part in (SCHEME, sys.version, sys.platform, setup_command or ""):
        digest.update(part.encode() + b"\0")
    for name in dependency_files(root):
        digest.update(name.encode() + b"\0")
        digest.update((root / name).read_bytes() + b"\0")
    return digest.hexdigest()[:24]


# -- how --------------------------------------------------------------------------


def uv_bin() -> str:
    from uv import find_uv_bin

    return find_uv_bin()


def uv_cache_dir() -> str:
    """uv's own cache, resolved with Patchling's environment (the build runs
    with a scrubbed one, whose HOME is temporary)."""
    if os.environ.get("UV_CACHE_DIR"):
        return os.environ["UV_CACHE_DIR"]
    out = subprocess.run([uv_bin(), "cache", "dir"], capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.strip()


def _uv_env(home: Path, cache_dir: str) -> dict[str, str]:
    env = scrubbed_env(home)
    env.update({name: os.environ[name] for name in UV_ALLOW if name in os.environ})
    env.update({"UV_CACHE_DIR": cache_dir, "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"})
    return env


def _uv(args: list[str], root: Path, env: dict[str, str], deadline: float) -> None:
    """Run uv; on failure raise EnvError with the end of its output."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise EnvError("building the test environment timed out")
    try:
        proc = subprocess.run(
            [uv_bin(), *args],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=remaining,
        )
    except subprocess.TimeoutExpired:
        raise EnvError("building the test environment timed out") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-ERROR_TAIL_CHARS:]
        raise EnvError(f"uv {args[0]} {args[1] if len(args) > 1 else ''} failed: {tail}".strip())


def _install(root: Path, target: Path, args: list[str], env: dict[str, str], deadline: float) -> None:
    """Install from the cache alone when it has everything (works offline),
    else from the index."""
    python = str(target / "bin" / "python")
    try:
        _uv(["pip", "install", "--offline", "--python", python, *args], root, env, deadline)
    except EnvError:
        _uv(["pip", "install", "--python", python, *args], root, env, deadline)


def _build(root: Path, target: Path, args: list[str], deadline: float) -> None:
    with tempfile.TemporaryDirectory(prefix="patchling-uv-") as home:
        env = _uv_env(Path(home), uv_cache_dir())
        # --seed: pip inside, for setup commands like `pip install -e .`.
        _uv(["venv", "--relocatable", "--seed", "--python", sys.executable, str(target)], root, env, deadline)
        _install(root, target, args, env, deadline)


def ensure_env(
    root: Path, envs_dir: Path, setup_command: str | None = None, timeout_s: float = BUILD_TIMEOUT_S
) -> PyEnv:
    """The environment for the checkout at `root`: reused when one with the same
    key exists, else built. Raises EnvError when it cannot be built."""
    root = Path(root)
    started = time.monotonic()
    key = env_key(root, setup_command)
    args, words = install_plan(root)
    envs_dir.mkdir(parents=True, exist_ok=True)
    final = envs_dir / key
    if (final / INFO_FILE).is_file():
        return PyEnv(final, key, words, time.monotonic() - started, reused=True)
    try:
        with FileLock(str(envs_dir / f"{key}.lock"), timeout=LOCK_TIMEOUT_S):
            if (final / INFO_FILE).is_file():  # another job built it while we waited
                return PyEnv(final, key, words, time.monotonic() - started, reused=True)
            building = Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=envs_dir))
            try:
                _build(root, building / "env", args, started + timeout_s)
                (building / "env" / INFO_FILE).write_text(" ".join(words) + "\n")
                shutil.rmtree(final, ignore_errors=True)  # a leftover without its info file
                (building / "env").rename(final)
            finally:
                shutil.rmtree(building, ignore_errors=True)
    except Timeout:
        raise EnvError("another job is still building this test environment") from None
    except (OSError, subprocess.SubprocessError) as exc:
        raise EnvError(f"could not build the test environment: {exc}") from None
    return PyEnv(final, key, words, time.monotonic() - started, reused=False)


def default_envs_dir() -> Path:
    """Where environments live when no data directory is given: the user's cache
    (the same place the CLI keeps its index cache)."""
    return platformdirs.user_cache_path(APP_NAME) / "envs"
