"""Node, Go and Rust dependencies installed once per lockfile and seen by the
tests: real npm, go and cargo, offline (a `file:` tarball for npm, a file://
module proxy for Go, a git dependency on a file:// repository for cargo), in
the real sandbox."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import pygit2
import pytest

from bot.buildcache import EnvError
from bot.deps import Deps, ensure_test_env, plan
from bot.verify import run_tests

NODE_TEST = """\
const test = require("node:test");
const assert = require("node:assert");
const { double } = require("tiny");
test("doubles", () => { assert.strictEqual(double(2), 4); });
"""
GO_TEST = """\
package app

import (
\t"testing"

\t"example.com/tiny"
)

func TestQuad(t *testing.T) {
\tif tiny.Double(tiny.Double(1)) != 4 {
\t\tt.Fatal("4 expected")
\t}
}
"""
TINY_GO = "package tiny\n\nfunc Double(x int) int { return 2 * x }\n"
TINY_MOD = "module example.com/tiny\n\ngo 1.19\n"


def needs(program: str) -> None:
    if shutil.which(program) is None:
        pytest.skip(f"{program} is not installed (`make system` installs it)")


def snapshot(root: Path) -> dict[str, bytes]:
    """Every path under root, with a file's bytes (a directory's: empty)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() if p.is_file() else b"" for p in root.rglob("*")}


def leftovers(place: Path) -> list[str]:
    """What a build left in its place besides the lock files."""
    return (
        sorted(p.name for p in place.iterdir() if not p.name.endswith((".lock", ".use")))
        if place.is_dir()
        else []
    )


# -- Node: a package.json whose one dependency is a local tarball, pinned by package-lock.json


def tarball(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"package/{name}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def node_project(root: Path, *, lockfile: bool = True) -> Path:
    (root / "test").mkdir(parents=True)
    (root / "test" / "double.test.js").write_text(NODE_TEST)
    package = {"name": "tiny", "version": "1.0.0", "main": "index.js"}
    tgz = tarball({"package.json": json.dumps(package), "index.js": "exports.double = (x) => 2 * x;\n"})
    (root / "tiny-1.0.0.tgz").write_bytes(tgz)
    manifest = {
        "name": "proj",
        "version": "1.0.0",
        "private": True,
        "scripts": {"test": "node --test"},
        "devDependencies": {"tiny": "file:tiny-1.0.0.tgz"},
    }
    (root / "package.json").write_text(json.dumps(manifest, indent=2))
    if lockfile:
        integrity = "sha512-" + base64.b64encode(hashlib.sha512(tgz).digest()).decode()
        entry = {"version": "1.0.0", "resolved": "file:tiny-1.0.0.tgz", "integrity": integrity, "dev": True}
        lock = {
            "name": "proj",
            "version": "1.0.0",
            "lockfileVersion": 3,
            "requires": True,
            "packages": {
                "": {k: manifest[k] for k in ("name", "version", "devDependencies")},
                "node_modules/tiny": entry,
            },
        }
        (root / "package-lock.json").write_text(json.dumps(lock, indent=2))
    return root


def test_node_dependencies_are_installed_once_and_seen_by_the_tests(tmp_path: Path) -> None:
    needs("npm")
    root, envs = node_project(tmp_path / "repo"), tmp_path / "envs"
    before = snapshot(root)
    first = ensure_test_env(root, "npm test", None, envs, scope="o/r")
    again = ensure_test_env(root, "npm test", None, envs, scope="o/r")
    assert isinstance(first, Deps) and isinstance(again, Deps)
    assert not first.reused and again.reused and again.path == first.path and again.key == first.key
    assert first.installed == ["node dependencies from package-lock.json (npm ci)"]
    assert again.describe().endswith("reused") and "installed in" in first.describe()
    assert str(envs) not in json.dumps(first.to_json())
    assert (first.path / "node_modules" / "tiny" / "index.js").is_file()
    assert leftovers(envs / "node") == [first.key]

    run = run_tests(root, "npm test", 120, pyenv=again)
    assert (run.passed, run.failed, run.could_not_run) == (1, 0, None), run.output_tail
    # Installing and testing wrote nothing under the checkout.
    assert snapshot(root) == before
    # Another repository with the same files gets its own install.
    other = ensure_test_env(root, "npm test", None, envs, scope="o/other")
    assert isinstance(other, Deps) and not other.reused and other.key != first.key


def test_a_failed_install_leaves_nothing_and_says_why(tmp_path: Path) -> None:
    needs("npm")
    root, envs = node_project(tmp_path / "repo"), tmp_path / "envs"
    (root / "tiny-1.0.0.tgz").write_bytes(tarball({"package.json": '{"name": "tiny", "version": "6.6.6"}'}))
    with pytest.raises(EnvError, match=r"npm ci --ignore-scripts .*failed") as caught:
        ensure_test_env(root, "npm test", None, envs, scope="o/r")
    assert "integrity" in str(caught.value).lower()
    assert leftovers(envs / "node") == []
    assert not (root / "node_modules").exists()


def test_without_a_lockfile_nothing_is_installed(tmp_path: Path) -> None:
    root = node_project(tmp_path / "repo", lockfile=False)
    with pytest.raises(EnvError, match=r"^no lockfile: package.json declares dependencies \(tiny\)"):
        ensure_test_env(root, "npm test", None, tmp_path / "envs")
    assert not (tmp_path / "envs").exists()


def test_when_nothing_is_installed(tmp_path: Path) -> None:
    root = node_project(tmp_path / "repo")
    # A setup command installs what it wants itself; an unknown runner needs nothing.
    assert plan(root, "npm test", "npm ci") is None
    assert plan(root, "make check", None) is None
    (root / "node_modules").symlink_to(tmp_path)  # the checkout brings its own: never mounted over
    assert plan(root, "npm test", None) is None
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "package.json").write_text('{"scripts": {"test": "node --test"}}')
    assert plan(bare, "npm test", None) is None
    (bare / "go.mod").write_text("module x\n\ngo 1.19\n")
    assert plan(bare, "go test ./...", None) is None


# -- Go: a module that requires another, served by a file:// module proxy


def h1(files: dict[str, bytes]) -> str:
    """Go's go.sum hash (dirhash.Hash1) of these files."""
    summary = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(files.items()))
    return "h1:" + base64.b64encode(hashlib.sha256(summary.encode()).digest()).decode()


def go_proxy(place: Path) -> Path:
    versions = place / "example.com" / "tiny" / "@v"
    versions.mkdir(parents=True)
    (versions / "list").write_text("v1.0.0\n")
    (versions / "v1.0.0.info").write_text('{"Version": "v1.0.0", "Time": "2024-01-01T00:00:00Z"}')
    (versions / "v1.0.0.mod").write_text(TINY_MOD)
    with zipfile.ZipFile(versions / "v1.0.0.zip", "w") as archive:
        archive.writestr("example.com/tiny@v1.0.0/go.mod", TINY_MOD)
        archive.writestr("example.com/tiny@v1.0.0/tiny.go", TINY_GO)
    return place


def go_project(root: Path, tiny_go: str = TINY_GO) -> Path:
    root.mkdir(parents=True)
    (root / "go.mod").write_text("module example.com/app\n\ngo 1.19\n\nrequire example.com/tiny v1.0.0\n")
    (root / "app_test.go").write_text(GO_TEST)
    prefix = "example.com/tiny@v1.0.0/"
    content = {prefix + "go.mod": TINY_MOD.encode(), prefix + "tiny.go": tiny_go.encode()}
    (root / "go.sum").write_text(
        f"example.com/tiny v1.0.0 {h1(content)}\n"
        f"example.com/tiny v1.0.0/go.mod {h1({'go.mod': TINY_MOD.encode()})}\n"
    )
    return root


def test_go_modules_are_downloaded_once_and_the_tests_run_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    needs("go")
    proxy = go_proxy(tmp_path / "proxy")
    monkeypatch.setenv("GOPROXY", f"file://{proxy}")
    root, envs = go_project(tmp_path / "repo"), tmp_path / "envs"
    before = snapshot(root)
    command = "go test -json ./..."
    first = ensure_test_env(root, command, None, envs, scope="o/r")
    assert isinstance(first, Deps) and not first.reused
    assert first.installed == ["go dependencies from go.sum (go mod download)"]
    shutil.rmtree(proxy)  # from here on, nothing can be downloaded
    again = ensure_test_env(root, command, None, envs, scope="o/r")
    assert isinstance(again, Deps) and again.reused and again.path == first.path

    run = run_tests(root, command, 120, pyenv=again)
    assert (run.passed, run.failed, run.could_not_run) == (1, 0, None), run.output_tail
    assert snapshot(root) == before


def test_a_module_that_does_not_match_go_sum_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    needs("go")
    monkeypatch.setenv("GOPROXY", f"file://{go_proxy(tmp_path / 'proxy')}")
    root, envs = go_project(tmp_path / "repo", tiny_go="package tiny\n"), tmp_path / "envs"
    with pytest.raises(EnvError, match=r"go mod download failed") as caught:
        ensure_test_env(root, "go test ./...", None, envs, scope="o/r")
    assert "checksum mismatch" in str(caught.value)
    # The partly filled module cache (read-only, as Go writes it) is gone too.
    assert leftovers(envs / "go") == []


def test_go_needs_go_sum_and_skips_vendored_modules(tmp_path: Path) -> None:
    root = go_project(tmp_path / "repo")
    (root / "go.sum").unlink()
    with pytest.raises(EnvError, match=r"go\.sum is missing"):
        plan(root, "go test ./...", None)
    (root / "vendor").mkdir()
    assert plan(root, "go test ./...", None) is None


# -- Rust: a crate with a git dependency on a file:// repository inside the checkout
# (the fetch sees the checkout and nothing else of this machine: what the sandbox
# shows is never for a repository to name), cloned by cargo fetch into the cached
# CARGO_HOME.

APP_TOML = '[package]\nname = "app"\nversion = "0.1.0"\nedition = "2021"\n\n'
VENDORED = """\
[source.crates-io]
replace-with = "vendored-sources"

[source.vendored-sources]
directory = "vendor"
"""
CARGO_TEST = "#[test]\nfn quad() {\n    assert_eq!(app::quad(1), 4);\n}\n"
CARGO_LOCK = """\
# This file is automatically @generated by Cargo.
# It is not intended for manual editing.
version = 4

[[package]]
name = "app"
version = "0.1.0"
dependencies = [
 "tiny",
]

[[package]]
name = "tiny"
version = "0.1.0"
source = "git+{url}#{commit}"
"""


def tiny_crate(place: Path) -> str:
    """A library crate committed in its own git repository; the commit's id."""
    (place / "src").mkdir(parents=True)
    (place / "Cargo.toml").write_text('[package]\nname = "tiny"\nversion = "0.1.0"\nedition = "2021"\n')
    (place / "src" / "lib.rs").write_text("pub fn double(x: i32) -> i32 {\n    2 * x\n}\n")
    repo = pygit2.init_repository(str(place))
    repo.index.add_all()
    repo.index.write()
    who = pygit2.Signature("t", "t@example.com")
    return str(repo.create_commit("HEAD", who, who, "tiny", repo.index.write_tree(), []))


def cargo_project(root: Path, *, lockfile: bool = True) -> Path:
    """A crate whose test needs `tiny`, a git dependency; Cargo.lock pins its commit."""
    commit = tiny_crate(root / "deps" / "tiny")
    url = f"file://{root / 'deps' / 'tiny'}"
    for folder in ("tests", "src"):
        (root / folder).mkdir()
    (root / "tests" / "quad.rs").write_text(CARGO_TEST)
    (root / "src" / "lib.rs").write_text(
        "pub fn quad(x: i32) -> i32 {\n    tiny::double(tiny::double(x))\n}\n"
    )
    (root / "Cargo.toml").write_text(APP_TOML + f'[dependencies]\ntiny = {{ git = "{url}" }}\n')
    if lockfile:
        (root / "Cargo.lock").write_text(CARGO_LOCK.format(url=url, commit=commit))
    return root


def built(root: Path) -> dict[str, bytes]:
    """The checkout as a snapshot sees it, less cargo's target/ (its build, kept as cargo keeps it)."""
    return {k: v for k, v in snapshot(root).items() if k != "target" and not k.startswith("target/")}


def test_cargo_fetches_once_and_the_tests_build_offline(tmp_path: Path) -> None:
    needs("cargo")
    root, envs = cargo_project(tmp_path / "repo"), tmp_path / "envs"
    before = snapshot(root)
    first = ensure_test_env(root, "cargo test", None, envs, scope="o/r")
    assert isinstance(first, Deps) and not first.reused
    assert first.installed == ["cargo dependencies from Cargo.lock (cargo fetch)"]
    assert list((first.path / "home" / "git" / "checkouts").iterdir())  # cloned there, by cargo
    assert snapshot(root) == before  # fetching wrote nothing under the checkout

    shutil.rmtree(root / "deps")  # from here on, nothing can be fetched
    before = snapshot(root)
    again = ensure_test_env(root, "cargo test", None, envs, scope="o/r")
    assert isinstance(again, Deps) and again.reused and again.path == first.path
    run = run_tests(root, "cargo test", 120, pyenv=again)
    assert (run.passed, run.failed, run.could_not_run) == (1, 0, None), run.output_tail
    assert built(root) == before and (root / "target").is_dir()


def test_without_cargo_lock_the_fetch_resolves_one_outside_the_checkout(tmp_path: Path) -> None:
    needs("cargo")
    root, envs = cargo_project(tmp_path / "repo", lockfile=False), tmp_path / "envs"
    before = snapshot(root)
    deps = ensure_test_env(root, "cargo test", None, envs, scope="o/r")
    assert isinstance(deps, Deps) and not deps.reused
    unpinned = "no Cargo.lock committed: versions resolved when fetched"
    assert deps.installed == [f"cargo dependencies from Cargo.toml (cargo fetch; {unpinned})"]
    assert "tiny" in (deps.path / "Cargo.lock").read_text()  # resolved, and kept with the crates
    assert snapshot(root) == before

    shutil.rmtree(root / "deps")
    before = snapshot(root)
    run = run_tests(root, "cargo test", 120, pyenv=deps)
    assert (run.passed, run.failed, run.could_not_run) == (1, 0, None), run.output_tail
    assert built(root) == before  # no Cargo.lock left behind: it was the cached one, mounted


def test_a_cargo_lock_that_does_not_match_is_refused(tmp_path: Path) -> None:
    needs("cargo")
    root, envs = cargo_project(tmp_path / "repo"), tmp_path / "envs"
    lock = (root / "Cargo.lock").read_text()
    (root / "Cargo.lock").write_text(lock.replace('name = "tiny"', 'name = "tiny2"'))
    with pytest.raises(EnvError, match=r"cargo fetch --locked failed") as caught:
        ensure_test_env(root, "cargo test", None, envs, scope="o/r")
    assert "Cargo.lock" in str(caught.value)
    assert leftovers(envs / "cargo") == []


def test_when_cargo_fetches_nothing(tmp_path: Path) -> None:
    root = cargo_project(tmp_path / "repo")
    (root / ".cargo").mkdir()
    (root / ".cargo" / "config.toml").write_text(VENDORED)
    assert plan(root, "cargo test", None) is None  # `cargo vendor` put the crates in the checkout
    (root / ".cargo" / "config.toml").unlink()
    assert plan(root, "cargo test", None) is not None
    # Path dependencies only (a workspace's own crates): nothing comes from outside.
    (root / "Cargo.lock").unlink()
    (root / "Cargo.toml").write_text(
        APP_TOML + '[dependencies]\ntiny = { path = "deps/tiny", version = "0.1" }\n'
    )
    assert plan(root, "cargo test", None) is None
    (root / "Cargo.toml").write_text(APP_TOML + "[target.'cfg(unix)'.dependencies]\nlibc = \"0.2\"\n")
    assert plan(root, "cargo test", None) is not None  # a platform's dependencies count too
    (root / "Cargo.toml").write_text(
        '[package]\nname = "app"\nversion = "0.1.0"\n\n[dev-dependencies]\nserde = "1"\n'
    )
    chosen = plan(root, "cargo test", None)
    assert chosen is not None and chosen.argv == ("cargo", "fetch") and chosen.generated == "Cargo.lock"
    # Every manifest of the project's keys the fetch, the root's last (not the
    # nested git repository's: bot.files lists the project's own files).
    (root / "crates" / "geo").mkdir(parents=True)
    (root / "crates" / "geo" / "Cargo.toml").write_text('[package]\nname = "geo"\nversion = "0.1.0"\n')
    chosen = plan(root, "cargo test", None)
    assert chosen is not None and chosen.pins == ("crates/geo/Cargo.toml", "Cargo.toml")
