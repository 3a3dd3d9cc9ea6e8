"""A repository's dependencies for the test runners beyond Python: node_modules
installed from its lockfile, Go modules downloaded from its go.sum, Rust crates
fetched from its Cargo.lock.

Like bot/pyenv.py, each is installed once per key (the repository, the files
that pin the dependencies, the install command) under `<envs_dir>/node/<key>/`,
`<envs_dir>/go/<key>/` or `<envs_dir>/cargo/<key>/` (bot.buildcache: built
beside its place, renamed under a lock, nothing left of a failed install) and
reused by every job whose files hash the same.

Installing runs the package manager, never the repository's code: npm, pnpm
and yarn with `--ignore-scripts` (no lifecycle script of any package runs),
`go mod download` and `cargo fetch` (neither runs anything it downloads: build
scripts run at build time, in the tests' sandbox). It still runs in the
sandbox, with the network when the repository's `network` setting allows it
in setup, the checkout read-only and only the place being built writable
(plus the package manager's download cache for this repository).

The tests then see the result read-only: node_modules mounted at
`<checkout>/node_modules` inside the sandbox (nothing is written to the
checkout: the empty directory bwrap mounts onto is removed after the run),
the module cache as GOMODCACHE with GOPROXY=off, the crates (registry and git
checkouts) as CARGO_HOME with CARGO_NET_OFFLINE, so the tests need no network.

Only pinned dependencies are installed: without a lockfile (or go.sum) two
runs of the same tests could install different versions, and a before/after
comparison would mean nothing, so the tests do not run and the reason says so.
Cargo is the exception, since libraries often commit no Cargo.lock: the fetch
then resolves one (into the cached place, mounted over `<checkout>/Cargo.lock`
while cargo writes it, never into the checkout), kept with the crates and
mounted read-only for the tests, so every run with the same manifests builds
the same versions; the description says the versions were not pinned.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import tomllib
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from bot import runners
from bot.buildcache import PROXY_AND_CA_ENV, EnvError, build_once, use
from bot.files import PathRefused, list_files, read_bytes, read_text
from bot.pyenv import ensure_env, needs_env
from bot.sandbox import Network, Sandbox, SandboxUnavailable
from bot.sandbox import run as sandboxed
from bot.verify import Environment, Mounts, scrubbed_env

# Bump when the way dependencies are installed changes: old installs are then not reused.
SCHEME = "1"
MARKER = "patchling-deps.txt"
NODE_MODULES = "node_modules"
BUILD_TIMEOUT_S = 900.0
ERROR_TAIL_CHARS = 1500
# Lockfile, and the install that follows it exactly without running any package's scripts.
NODE_INSTALLS = (
    ("npm-shrinkwrap.json", ("npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund")),
    ("package-lock.json", ("npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund")),
    ("pnpm-lock.yaml", ("pnpm", "install", "--frozen-lockfile", "--ignore-scripts")),
    ("yarn.lock", ("yarn", "install", "--frozen-lockfile", "--ignore-scripts", "--non-interactive")),
)
GO_DOWNLOAD = ("go", "mod", "download")
CARGO_LOCK = "Cargo.lock"
CARGO_TOML = "Cargo.toml"
# Cargo's own settings in the repository (source replacement, git fetching): they decide what is fetched.
CARGO_CONFIGS = (".cargo/config.toml", ".cargo/config")
CARGO_HOME = "home"  # inside the cached place: registry/ and git/
# Every table of a Cargo.toml that declares dependencies (besides `target.<cfg>.*`).
CARGO_DEP_TABLES = ("dependencies", "dev-dependencies", "build-dependencies")
# What a package manager may see of the server's settings: where the registry
# or module proxy is and how to reach it. Never a token: a repository's .npmrc
# could send it to a host of its choosing.
ALLOW = (
    "npm_config_registry",
    "NPM_CONFIG_REGISTRY",
    "YARN_REGISTRY",
    "NODE_EXTRA_CA_CERTS",
    "GOPROXY",
    "GOPRIVATE",
    "GONOPROXY",
    "GONOSUMDB",
    "GOSUMDB",
    "GOINSECURE",
    "CARGO_HTTP_PROXY",
    "CARGO_HTTP_CAINFO",
    *PROXY_AND_CA_ENV,
)
# Each package manager's download cache, per repository (never the server user's own).
CACHE_DIR = ".downloads"

Kind = Literal["node", "go", "cargo"]
KINDS: tuple[Kind, ...] = ("node", "go", "cargo")  # each one's place under the envs directory


@dataclass(frozen=True)
class Plan:
    kind: Kind
    pins: tuple[str, ...]  # the files whose bytes decide what is installed
    argv: tuple[str, ...]
    # A lockfile the install writes, none being committed: the tests see it at the checkout's root.
    generated: str = ""

    def words(self) -> list[str]:
        how = " ".join(a for a in self.argv if not a.startswith("-"))
        unpinned = f"; no {self.generated} committed: versions resolved when fetched" * bool(self.generated)
        return [f"{self.kind} dependencies from {self.pins[-1]} ({how}{unpinned})"]


@dataclass
class Deps:
    plan: Plan
    path: Path
    key: str
    seconds: float
    reused: bool

    @property
    def installed(self) -> list[str]:
        return self.plan.words()

    def apply(self, env: dict[str, str], root: Path) -> dict[str, str]:
        if self.plan.kind == "go":
            return {**env, "GOMODCACHE": str(self.path / "mod"), "GOPROXY": "off", "GOSUMDB": "off"}
        if self.plan.kind == "cargo":
            return {**env, "CARGO_HOME": str(self.path / CARGO_HOME), "CARGO_NET_OFFLINE": "true"}
        return env

    def mounts(self, root: Path, setup: bool) -> Mounts:
        if self.plan.kind == "go":
            return Mounts(readable=[self.path])
        if self.plan.kind == "cargo":
            lock = [(self.path / g, str(root / g)) for g in [self.plan.generated] if g]
            return Mounts(readable=[self.path], binds=lock)
        return Mounts(binds=[(self.path / NODE_MODULES, str(root / NODE_MODULES))])

    def describe(self) -> str:
        what = ", ".join(self.installed)
        return f"{what} reused" if self.reused else f"{what} installed in {self.seconds:.1f}s"

    def to_json(self) -> dict[str, Any]:
        # The same keys as bot.pyenv's, and no path of the server's.
        return {
            "key": self.key,
            "installed": self.installed,
            "seconds": round(self.seconds, 3),
            "reused": self.reused,
        }


# -- what ---------------------------------------------------------------------------


def _file(root: Path, name: str) -> bool:
    """A regular file at the checkout's root, not a link (bot.files never reads one)."""
    path = root / name
    return path.is_file() and not path.is_symlink()


def _node_plan(root: Path) -> Plan | None:
    data = runners.package_json(root)
    declared = sorted({**(data.get("dependencies") or {}), **(data.get("devDependencies") or {})})
    if not declared or os.path.lexists(root / NODE_MODULES):
        return None  # nothing to install, or the checkout brings its own
    for lockfile, argv in NODE_INSTALLS:
        if _file(root, lockfile):
            if shutil.which(argv[0]) is None:
                raise EnvError(f"{argv[0]} is not installed on this server; {lockfile} needs it")
            return Plan("node", ("package.json", lockfile), argv)
    shown = ", ".join(declared[:3]) + (" …" if len(declared) > 3 else "")
    raise EnvError(
        f"no lockfile: package.json declares dependencies ({shown}) but pins none of them;"
        " commit package-lock.json, pnpm-lock.yaml or yarn.lock so every run installs the same versions"
    )


def _go_requires(root: Path) -> bool:
    try:
        text = read_bytes(root, "go.mod").decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return re.search(r"^require\b", text, re.MULTILINE) is not None


def _go_plan(root: Path) -> Plan | None:
    if not _go_requires(root) or os.path.lexists(root / "vendor"):
        return None  # nothing to download, or vendored
    if not _file(root, "go.sum"):
        raise EnvError("go.sum is missing: go.mod requires modules but pins none of their hashes")
    if shutil.which("go") is None:
        raise EnvError("go is not installed on this server")
    return Plan("go", ("go.mod", "go.sum"), GO_DOWNLOAD)


def _toml(root: Path, name: str) -> dict[str, Any]:
    """A TOML file of the checkout; {} when it is missing or unreadable (cargo
    then says what is wrong with it, in the fetch or the tests)."""
    try:
        return tomllib.loads(read_text(root, name))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def _cargo_vendored(root: Path) -> bool:
    """Whether .cargo/config replaces a source by a directory (`cargo vendor`'s
    `[source.vendored-sources]`): the crates are in the checkout already."""
    sources = [_toml(root, name).get("source") for name in CARGO_CONFIGS]
    tables = [t for s in sources if isinstance(s, dict) for t in s.values()]
    return any(isinstance(t, dict) and "directory" in t for t in tables)


def _dep_tables(manifest: dict[str, Any]) -> list[Any]:
    """The dependency tables of a Cargo.toml: its own, per target, the workspace's."""
    target, workspace = manifest.get("target"), manifest.get("workspace")
    targets = [t for t in target.values() if isinstance(t, dict)] if isinstance(target, dict) else []
    found = [table.get(name) for table in (manifest, *targets) for name in CARGO_DEP_TABLES]
    return [*found, workspace.get("dependencies") if isinstance(workspace, dict) else None]


def _fetched(spec: Any) -> bool:
    """Whether a dependency comes from a registry or git (a version, a table
    without `path`), not from the checkout; `workspace = true` points to the
    workspace's table, checked itself."""
    return not isinstance(spec, dict) or not ("path" in spec or spec.get("workspace") is True)


def _cargo_fetches(root: Path, manifests: list[str]) -> bool:
    """Whether anything comes from outside the checkout: a locked package with
    a source, or, without Cargo.lock, a declared dependency that is not a path."""
    if _file(root, CARGO_LOCK):
        locked = _toml(root, CARGO_LOCK).get("package")
        return not isinstance(locked, list) or any(isinstance(p, dict) and "source" in p for p in locked)
    tables = [t for m in manifests for t in _dep_tables(_toml(root, m)) if isinstance(t, dict)]
    return any(_fetched(spec) for table in tables for spec in table.values())


def _cargo_plan(root: Path) -> Plan | None:
    if not _file(root, CARGO_TOML) or _cargo_vendored(root):
        return None  # not a crate at the root, or vendored
    manifests = sorted(f for f in list_files(root) if PurePosixPath(f).name == CARGO_TOML and f != CARGO_TOML)
    manifests += [CARGO_TOML]  # the root's last: the one the description names
    if not _cargo_fetches(root, manifests):
        return None
    if shutil.which("cargo") is None:
        raise EnvError("cargo is not installed on this server")
    configs = [c for c in CARGO_CONFIGS if _file(root, c)]
    if _file(root, CARGO_LOCK):
        return Plan("cargo", (*configs, *manifests, CARGO_LOCK), ("cargo", "fetch", "--locked"))
    return Plan("cargo", (*configs, *manifests), ("cargo", "fetch"), generated=CARGO_LOCK)


def plan(root: Path, command: str, setup_command: str | None) -> Plan | None:
    """What to install before `command` runs, or None. A `setup:` command
    installs what it wants itself, as it always has. Raises EnvError when
    dependencies are declared but cannot be installed the same way each time."""
    runner = runners.runner_for(command)
    if setup_command or runner is None:
        return None
    if runner is runners.NODE:
        return _node_plan(root)
    if runner is runners.GO:
        return _go_plan(root)
    if runner is runners.CARGO:
        return _cargo_plan(root)
    return None


def deps_key(root: Path, chosen: Plan, scope: str) -> str:
    digest = hashlib.sha256()
    for part in (SCHEME, chosen.kind, scope, *chosen.argv):
        digest.update(part.encode() + b"\0")
    for name in chosen.pins:
        try:
            digest.update(name.encode() + b"\0" + read_bytes(root, name) + b"\0")
        except (OSError, PathRefused) as exc:
            raise EnvError(f"cannot read {name}: {exc}") from None
    return digest.hexdigest()[:24]


# -- how ----------------------------------------------------------------------------


def _pm_env(program: str, home: Path, cache: Path, network: bool) -> dict[str, str]:
    """The package manager's variables: the scrubbed set, the server's registry
    settings, its download cache for this repository, and nothing that asks."""
    env = scrubbed_env(home)
    env.update({name: os.environ[name] for name in ALLOW if name in os.environ})
    env.update(PM_SETTINGS[program](cache))
    if not network:
        env.update({"npm_config_offline": "true", "GOPROXY": "off", "CARGO_NET_OFFLINE": "true"})
    return env


_NPM_QUIET = {"npm_config_update_notifier": "false", "npm_config_fund": "false", "npm_config_audit": "false"}
PM_SETTINGS: dict[str, Callable[[Path], dict[str, str]]] = {
    "npm": lambda cache: {"npm_config_cache": str(cache / "npm"), **_NPM_QUIET},
    "pnpm": lambda cache: {"npm_config_store_dir": str(cache / "pnpm"), **_NPM_QUIET},
    "yarn": lambda cache: {"YARN_CACHE_FOLDER": str(cache / "yarn"), **_NPM_QUIET},
    "go": lambda cache: {
        "GOTOOLCHAIN": "local",
        "GOTELEMETRY": "off",
        "GOFLAGS": "-mod=readonly",
        "CGO_ENABLED": "0",
    },
    # The tests' settings (the toolchain, no colour), but online: fetching is what this step is for.
    "cargo": lambda cache: {k: v for k, v in runners.cargo_env(Path()).items() if k != "CARGO_NET_OFFLINE"},
}


def _local_proxies(env: dict[str, str]) -> list[Path]:
    """Directories a file:// GOPROXY names: the sandbox shows them read-only."""
    found = [Path(p.removeprefix("file://")) for p in re.split(r"[,|]", env.get("GOPROXY", ""))]
    return [p for p in found if p.is_absolute() and p.is_dir()]


def _go_mounts(root: Path, chosen: Plan, target: Path, cache: Path, env: dict[str, str]) -> Mounts:
    env["GOMODCACHE"] = str(target / "mod")
    return Mounts(writable=[target, cache], readable=[root, *_local_proxies(env)])


def _node_mounts(root: Path, chosen: Plan, target: Path, cache: Path, env: dict[str, str]) -> Mounts:
    (target / NODE_MODULES).mkdir()
    return Mounts(
        writable=[cache], readable=[root], writable_binds=[(target / NODE_MODULES, str(root / NODE_MODULES))]
    )


def _cargo_mounts(root: Path, chosen: Plan, target: Path, cache: Path, env: dict[str, str]) -> Mounts:
    """CARGO_HOME in the place being built; the lockfile cargo resolves, when
    none is committed, written there too, through a mount at the checkout's root."""
    env["CARGO_HOME"] = str(target / CARGO_HOME)
    generated = [target / g for g in [chosen.generated] if g]
    for path in generated:
        path.touch()
    return Mounts(
        writable=[target, cache],
        readable=[root, *runners.cargo_toolchain()],
        writable_binds=[(p, str(root / p.name)) for p in generated],
    )


# What the install sees besides its home, per kind; each sets its own variables in `env`.
INSTALL_MOUNTS: dict[Kind, Callable[[Path, Plan, Path, Path, dict[str, str]], Mounts]] = {
    "go": _go_mounts,
    "node": _node_mounts,
    "cargo": _cargo_mounts,
}


def _install(
    root: Path, chosen: Plan, target: Path, cache: Path, sandbox: Sandbox, network: bool, timeout_s: float
) -> None:
    """Run the plan's install in the sandbox: the checkout read-only, only
    `target` (and the download cache) writable."""
    target.mkdir()
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="patchling-deps-") as home:
        env = _pm_env(chosen.argv[0], Path(home), cache, network)
        mounts = INSTALL_MOUNTS[chosen.kind](root, chosen, target, cache, env)
        try:
            outcome = sandboxed(
                sandbox,
                list(chosen.argv),
                cwd=root,
                env=env,
                timeout_s=timeout_s,
                writable=mounts.writable,
                readable=mounts.readable,
                writable_binds=mounts.writable_binds,
                network=network,
            )
        except SandboxUnavailable as exc:
            raise EnvError(f"sandbox unavailable: {exc}") from None
    command = " ".join(chosen.argv)
    if outcome.timed_out:
        raise EnvError(f"{command} timed out")
    if outcome.exit_code != 0:
        tail = outcome.output.strip()[-ERROR_TAIL_CHARS:]
        raise EnvError(f"{command} failed (exit {outcome.exit_code}): {tail}")


def ensure_deps(
    root: Path,
    chosen: Plan,
    envs_dir: Path,
    *,
    scope: str = "",
    sandbox: Sandbox | None = None,
    network: Network = "setup",
    timeout_s: float = BUILD_TIMEOUT_S,
    hold: ExitStack | None = None,
) -> Deps:
    """The installed dependencies for the checkout at `root`: reused when an
    install with the same key exists, else installed; kept from pruning until
    `hold` closes. Raises EnvError."""
    key = deps_key(root, chosen, scope)
    cache = envs_dir / CACHE_DIR / hashlib.sha256(scope.encode()).hexdigest()[:16]
    net = network in ("setup", "all")

    def build(target: Path) -> None:
        with ExitStack() as using:
            use(cache.parent, cache.name, using)  # the cache too is pruned when unused
            _install(root, chosen, target, cache, sandbox or Sandbox(), net, timeout_s)

    what = f"the {chosen.kind} dependencies"
    built = build_once(envs_dir / chosen.kind, key, MARKER, build, what, hold)
    return Deps(chosen, built.path, key, built.seconds, built.reused)


def ensure_test_env(
    root: Path,
    command: str,
    setup_command: str | None,
    envs_dir: Path,
    *,
    scope: str = "",
    sandbox: Sandbox | None = None,
    network: Network = "setup",
    hold: ExitStack | None = None,
) -> Environment | None:
    """What `command` runs in besides the checkout: the repository's Python
    environment when it needs one, else its installed dependencies, else
    nothing; kept from pruning until `hold` closes. Raises EnvError when what
    it needs cannot be had."""
    if needs_env(root, [command, setup_command]):
        return ensure_env(
            root, envs_dir, setup_command, scope=scope, sandbox=sandbox, network=network, hold=hold
        )
    chosen = plan(root, command, setup_command)
    if chosen is None:
        return None
    return ensure_deps(root, chosen, envs_dir, scope=scope, sandbox=sandbox, network=network, hold=hold)
