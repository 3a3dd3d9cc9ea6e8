"""The repository's own Python environment, so its tests import the checkout
and its dependencies, never Patchling's.

One virtual environment per set of dependency files, built with uv under
`<envs_dir>/<key>/` and reused by every job whose files hash the same. It holds
the project's *dependencies* (plus pytest and coverage.py), not the project: each job has its
own scratch checkout, so the checkout reaches the tests through PYTHONPATH
(root, and src/ when there is one), which Python searches before site-packages.

Building runs repository code (setup.py, build backends), so uv runs in the
same sandbox as the tests (bot.sandbox): only the uv binary (bound read-only
on its own, never Patchling's install), the base interpreter's prefix, the
checkout, the environment being built and a uv cache are mounted, with the
network only when the repository's `network` setting allows it in setup.

uv's cache is per scope (the repository), never the cache of the user running
Patchling: a hostile build could otherwise leave a poisoned wheel there for
every other repository. The environment's key includes the scope too: setup
commands write into the environment, so two repositories with the same
dependency files must not share one. The cost is a download per repository
the first time; environments and caches are then reused.

The env is built in a temporary
directory beside its final place and renamed into place (uv's --relocatable
keeps its scripts working after the move), under a lock (bot.buildcache), so
a failed or concurrent build never leaves a half-made environment behind.
"""

from __future__ import annotations

import configparser
import hashlib
import os
import re
import shlex
import sys
import tempfile
import time
import tomllib
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from bot.buildcache import PROXY_AND_CA_ENV, EnvError, build_once, use
from bot.config import APP_NAME
from bot.sandbox import Network, Sandbox, SandboxUnavailable
from bot.sandbox import run as sandboxed
from bot.verify import Mounts, has_python_tests, scrubbed_env

# Bump when the way an environment is built changes: old ones are then not reused.
SCHEME = "3"
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
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_INDEX",
    "UV_NATIVE_TLS",
    "UV_OFFLINE",
    *PROXY_AND_CA_ENV,
)
# A first build may download much; later ones come from uv's cache.
BUILD_TIMEOUT_S = 900.0
ERROR_TAIL_CHARS = 1500
# Where the uv binary appears inside the sandbox.
UV_IN_SANDBOX = "/run/uv/uv"
CACHE_DIR = ".uv-cache"


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

    @property
    def base_prefix(self) -> Path | None:
        """The prefix of the interpreter the environment links to (pyvenv.cfg's
        `home` is its bin/): the sandbox mounts it read-only, and no more."""
        return venv_base_prefix(self.path)

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

    def mounts(self, root: Path, setup: bool) -> Mounts:
        """Writable for the setup command (it installs there), read-only for
        the tests; the base interpreter's prefix read-only for both."""
        base = [self.base_prefix] if self.base_prefix is not None else []
        if setup:
            return Mounts(writable=[self.path], readable=base)
        return Mounts(readable=[*base, self.path])

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
    """uv pip install arguments for the project's dependencies, pytest and coverage, and
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
    # coverage.py: the tests after a change run under it (bot.evidence).
    args += ["pytest", "coverage"]
    words += ["pytest", "coverage"]
    return args, words


def env_key(root: Path, setup_command: str | None, scope: str = "") -> str:
    """Hash of what decides the environment's contents, and of who may write it."""
    digest = hashlib.sha256()
    for part in (SCHEME, sys.version, sys.platform, setup_command or "", scope):
        digest.update(part.encode() + b"\0")
    for name in dependency_files(root):
        digest.update(name.encode() + b"\0")
        digest.update((root / name).read_bytes() + b"\0")
    return digest.hexdigest()[:24]


# -- how --------------------------------------------------------------------------


def uv_bin() -> str:
    from uv import find_uv_bin

    return find_uv_bin()


def venv_base_prefix(env: Path) -> Path | None:
    """The base interpreter's prefix of the virtual environment at `env`."""
    try:
        text = (env / "pyvenv.cfg").read_text(encoding="utf-8")
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition("=")
        if name.strip() == "home" and value.strip():
            return Path(value.strip()).parent
    return None


def base_interpreter() -> tuple[Path, Path]:
    """The interpreter environments are made with, and its prefix: Patchling's
    base Python, never Patchling's own virtual environment."""
    executable = Path(getattr(sys, "_base_executable", sys.executable))
    return executable, Path(sys.base_prefix).resolve()


def scope_cache(envs_dir: Path, scope: str) -> Path:
    """uv's cache for one scope (repository)."""
    name = hashlib.sha256(scope.encode()).hexdigest()[:16]
    return envs_dir / CACHE_DIR / name


def _uv_env(home: Path) -> dict[str, str]:
    env = scrubbed_env(home)
    env.update({name: os.environ[name] for name in UV_ALLOW if name in os.environ})
    env.update({"UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"})
    return env


@dataclass
class _Builder:
    """Runs uv for one build, in the sandbox."""

    root: Path
    target: Path
    cache: Path
    sandbox: Sandbox
    network: bool
    deadline: float

    def uv(self, args: list[str]) -> None:
        """Run uv; on failure raise EnvError with the end of its output."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise EnvError("building the test environment timed out")
        program = UV_IN_SANDBOX if self.sandbox.enabled else uv_bin()
        _, prefix = base_interpreter()
        with tempfile.TemporaryDirectory(prefix="patchling-uv-") as home:
            env = {**_uv_env(Path(home)), "UV_CACHE_DIR": str(self.cache)}
            if not self.network:
                env["UV_OFFLINE"] = "1"  # from the cache alone, without waiting on DNS
            try:
                outcome = sandboxed(
                    self.sandbox,
                    [program, *args],
                    cwd=self.root,
                    env=env,
                    timeout_s=remaining,
                    writable=[self.root, self.target.parent, self.cache],
                    readable=[prefix],
                    binds=[(Path(uv_bin()), UV_IN_SANDBOX)],
                    network=self.network,
                )
            except SandboxUnavailable as exc:
                raise EnvError(f"sandbox unavailable: {exc}") from None
        if outcome.timed_out:
            raise EnvError("building the test environment timed out")
        if outcome.exit_code != 0:
            tail = outcome.output.strip()[-ERROR_TAIL_CHARS:]
            raise EnvError(f"uv {args[0]} {args[1] if len(args) > 1 else ''} failed: {tail}".strip())

    def build(self, args: list[str]) -> None:
        python, _ = base_interpreter()
        # --seed: pip inside, for setup commands like `pip install -e .`.
        self.uv(["venv", "--relocatable", "--seed", "--python", str(python), str(self.target)])
        target_python = str(self.target / "bin" / "python")
        # From the cache alone when it has everything (works offline), else from the index.
        try:
            self.uv(["pip", "install", "--offline", "--python", target_python, *args])
        except EnvError:
            if not self.network:
                raise
            self.uv(["pip", "install", "--python", target_python, *args])


def ensure_env(
    root: Path,
    envs_dir: Path,
    setup_command: str | None = None,
    timeout_s: float = BUILD_TIMEOUT_S,
    *,
    scope: str = "",
    sandbox: Sandbox | None = None,
    network: Network = "setup",
    hold: ExitStack | None = None,
) -> PyEnv:
    """The environment for the checkout at `root` (of the repository `scope`):
    reused when one with the same key exists, else built in `sandbox`, with
    the network when `network` allows it during setup; kept from pruning until
    `hold` closes. Raises EnvError when it cannot be built."""
    root = Path(root)
    started = time.monotonic()
    key = env_key(root, setup_command, scope)
    args, words = install_plan(root)
    cache = scope_cache(envs_dir, scope)

    def build(target: Path) -> None:
        with ExitStack() as using:
            use(cache.parent, cache.name, using)  # the cache too is pruned when unused
            cache.mkdir(parents=True, exist_ok=True)
            net = network in ("setup", "all")
            _Builder(root, target, cache, sandbox or Sandbox(), net, started + timeout_s).build(args)

    built = build_once(envs_dir, key, INFO_FILE, build, "the test environment", hold)
    return PyEnv(built.path, key, words, built.seconds, reused=built.reused)


def default_envs_dir() -> Path:
    """Where environments live when no data directory is given: the user's cache
    (the same place the CLI keeps its index cache)."""
    return platformdirs.user_cache_path(APP_NAME) / "envs"


def envs_dir_in(data_dir: Path) -> Path:
    """Where a data directory keeps its environments."""
    return Path(data_dir) / "envs"
