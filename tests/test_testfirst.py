"""Test-first edits beyond pytest: which runner runs the new test alone (the
one bot.runners reads the repository's tests with), which test file it
follows (bot.files.ecosystem_of_test), and `patchling edit --write-test` on the
Go and TypeScript examples with the scripted model: the test written first
fails before the change, passes after and is kept; one that passes before is
discarded with a note. The pytest side is in tests/test_evidence.py."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.config import Tier
from bot.files import ecosystem_of_test, is_test_path
from bot.runners import NoAlone, cargo_alone, go_alone, node_alone
from bot.testfirst import NoTest, draft, fails_before, new_test_path, style_example, way_of
from bot.verify import TestRun
from tests.conftest import make_git_repo
from tests.modelserver import ScriptedModel
from tests.test_cli import write_config
from tests.test_languages_e2e import (
    MILES,
    REMOVE,
    TODO_TS,
    UNITS_GO,
    answers,
    example,
    plan,
    prompts_of,
)

runner = CliRunner()

# -- which files are tests, and where a new one goes ---------------------------------


def test_each_ecosystem_names_its_test_files_by_its_runners_conventions() -> None:
    found = {
        p: ecosystem_of_test(p)
        for p in (
            "tests/test_calc.py",
            "calc_test.py",
            "calc.py",
            "pkg/units_test.go",
            "units.go",
            "src/todo.test.ts",
            "src/todo.spec.js",
            "test/helpers.ts",
            "__tests__/app.tsx",
            "types/node.d.ts",
            "test/fixture.json",
            "tests/shapes.rs",
            "crates/geo/tests/area.rs",
            "tests/common/mod.rs",
            "src/lib.rs",
        )
    }
    assert found == {
        "tests/test_calc.py": "python",
        "calc_test.py": "python",
        "calc.py": None,
        "pkg/units_test.go": "go",
        "units.go": None,
        "src/todo.test.ts": "node",
        "src/todo.spec.js": "node",
        "test/helpers.ts": "node",
        "__tests__/app.tsx": "node",
        "types/node.d.ts": None,
        "test/fixture.json": None,
        "tests/shapes.rs": "rust",
        "crates/geo/tests/area.rs": "rust",
        "tests/common/mod.rs": None,  # a helper the test binaries share, no test binary itself
        "src/lib.rs": None,
    }
    # Ranking's wider "looks like a test" rule rests on the same one.
    assert is_test_path("test/fixture.json") and is_test_path("pkg/units_test.go")
    assert not is_test_path("src/todo.ts")


def test_the_new_test_is_named_as_its_example_is(tmp_path: Path) -> None:
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "add-a-remove-method.test.ts").write_text("")
    assert (
        new_test_path(tmp_path, "units_test.go", "Add MilesToKilometres") == "add_milestokilometres_test.go"
    )
    assert new_test_path(tmp_path, "test/todo.test.ts", "Add a remove method") == (
        "test/add-a-remove-method-2.test.ts"
    )
    assert new_test_path(tmp_path, "src/app.spec.js", "fix it") == "src/fix-it.spec.js"
    assert new_test_path(tmp_path, "crates/geo/tests/area.rs", "Add a perimeter") == (
        "crates/geo/tests/add_a_perimeter.rs"
    )


def test_the_style_example_is_a_test_file_of_the_runners_language(tmp_path: Path) -> None:
    repo = example("todo", tmp_path)
    (repo / "conftest.py").write_text("import pytest\n")  # a stray Python file is no example for node
    assert style_example(repo, "node") == ("test/todo.test.ts", (repo / "test/todo.test.ts").read_text())
    assert style_example(repo, "go") is None


# -- how it runs alone ---------------------------------------------------------------


def test_go_runs_the_new_files_test_functions_in_its_package(tmp_path: Path) -> None:
    text = "func TestMiles(t *testing.T) {}\n\nfunc Testify() {}\n\nfunc TestMiles_Zero(t *testing.T) {}\n"
    assert go_alone(tmp_path, "go test -json ./...", "conv/miles_test.go", text) == (
        "go test -json -run '^(TestMiles|TestMiles_Zero)$' ./conv"
    )
    assert go_alone(tmp_path, "go test ./...", "miles_test.go", "func Test(t *testing.T) {}").endswith(" .")
    with pytest.raises(NoAlone, match="holds no Go test function"):
        go_alone(tmp_path, "go test ./...", "miles_test.go", "func helper() {}\n")


def test_go_carries_the_repositorys_build_flags_and_drops_its_packages_and_run(tmp_path: Path) -> None:
    text = "func TestMiles(t *testing.T) {}\n"
    command = (
        "CGO_ENABLED=1 go test -v -tags integration -race -count=1 -run 'TestOld' ./... -timeout 5m -args -x"
    )
    assert go_alone(tmp_path, command, "conv/miles_test.go", text) == (
        "CGO_ENABLED=1 go test -json -tags integration -race -count=1 -timeout 5m -run '^(TestMiles)$' ./conv"
    )
    # Go's other spellings (--flag, -flag=value), quoted values, and a pipe after the command.
    piped = "go test --tags=a,b -ldflags '-s -w' -mod vendor ./pkg/... 2>&1 | tee log"
    assert go_alone(tmp_path, piped, "miles_test.go", text) == (
        "go test -json -tags=a,b -ldflags '-s -w' -mod vendor -run '^(TestMiles)$' ."
    )


def crate(root: Path, name: str, extra: str = "") -> Path:
    (root / "tests").mkdir(parents=True)
    (root / "Cargo.toml").write_text(f'[package]\nname = "{name}"\nversion = "0.1.0"\n{extra}')
    return root


def test_cargo_runs_the_new_integration_test_alone_with_the_repositorys_options(tmp_path: Path) -> None:
    shapes = crate(tmp_path / "shapes", "shapes")
    assert cargo_alone(shapes, "cargo test", "tests/area.rs", "") == "cargo test --test area"
    command = (
        "RUSTFLAGS='-D warnings' cargo +1.80 test --workspace --all-features --locked -F serde"
        " --release --lib old_filter -- --test-threads=1 --nocapture"
    )
    assert cargo_alone(shapes, command, "tests/area.rs", "") == (
        "RUSTFLAGS='-D warnings' cargo +1.80 test --all-features --locked -F serde --release"
        " --test area -- --test-threads=1"
    )
    assert cargo_alone(shapes, "cargo nextest run --features x", "tests/area.rs", "") == (
        "cargo test --features x --test area"
    )
    with pytest.raises(NoAlone, match=r"not a cargo integration test \(tests/<name>.rs\)"):
        cargo_alone(shapes, "cargo test", "tests/common/mod.rs", "")
    off = crate(tmp_path / "off", "off", "autotests = false\n")
    with pytest.raises(NoAlone, match="autotests = false"):
        cargo_alone(off, "cargo test", "tests/area.rs", "")


def test_in_a_workspace_the_new_test_runs_in_the_member_crate_that_holds_it(tmp_path: Path) -> None:
    (tmp_path / "Cargo.toml").write_text('[workspace]\nmembers = ["crates/*"]\n')
    crate(tmp_path / "crates" / "geo", "geo-core")
    assert cargo_alone(tmp_path, "cargo test --workspace", "crates/geo/tests/area.rs", "") == (
        "cargo test -p geo-core --test area"
    )
    (tmp_path / "crates" / "bare" / "tests").mkdir(parents=True)
    with pytest.raises(NoAlone, match=r"crates/bare/Cargo.toml names no \[package\]"):
        cargo_alone(tmp_path, "cargo test", "crates/bare/tests/area.rs", "")


def package(root: Path, test: str, **extra: Any) -> Path:
    root.mkdir(exist_ok=True)
    (root / "package.json").write_text(json.dumps({"scripts": {"test": test}, **extra}))
    (root / "test").mkdir(exist_ok=True)
    return root


def test_node_points_the_repositorys_runner_at_the_one_file(tmp_path: Path) -> None:
    jest = package(tmp_path / "jest", "jest --ci test/", devDependencies={"jest": "29"})
    assert node_alone(jest, "npm test", "test/a.test.js", "") == (
        'export PATH="$PWD/node_modules/.bin:$PATH" && jest --ci test/a.test.js'
    )
    vitest = package(tmp_path / "vitest", "vitest run 'src/**/*.spec.ts'")
    assert node_alone(vitest, "pnpm test", "src/a.spec.ts", "") == "vitest run src/a.spec.ts"
    # node --test on TypeScript runs what tsc compiles the file to, after the build step.
    todo = example("todo", tmp_path)
    assert node_alone(todo, "npm test", "test/x.test.ts", "") == "tsc -p . && node --test dist/test/x.test.js"
    assert node_alone(todo, "node --test test/", "test/x.test.mjs", "") == "node --test test/x.test.mjs"
    with pytest.raises(NoAlone, match="runs none of"):
        node_alone(package(tmp_path / "tap", "tap test/"), "npm test", "test/a.test.js", "")
    with pytest.raises(NoAlone, match=r"uses `\|`"):
        node_alone(package(tmp_path / "pipe", "jest | tee log"), "npm test", "test/a.test.js", "")


def test_node_test_on_typescript_follows_a_commented_tsconfig_and_its_base(tmp_path: Path) -> None:
    """tsc --init writes comments and trailing commas; outDir may come from a base."""
    root = package(tmp_path / "app", "tsc -p . && node --test build/test/")
    (root / "tsconfig.base.json").write_text('{"compilerOptions": {"outDir": "build", "rootDir": "."}}')
    (root / "tsconfig.json").write_text(
        '{\n  // shared options\n  "extends": "./tsconfig.base.json",\n'
        '  "compilerOptions": {\n    /* Modules */ "module": "node16",\n  },\n}\n'
    )
    assert (
        node_alone(root, "npm test", "test/x.test.ts", "") == "tsc -p . && node --test build/test/x.test.js"
    )
    (root / "tsconfig.base.json").write_text('{"compilerOptions": {"outDir": "build",, }}')
    with pytest.raises(NoAlone, match=r"tsconfig\.base\.json is not valid JSON with comments"):
        node_alone(root, "npm test", "test/x.test.ts", "")


def test_the_repositorys_command_decides_whether_a_test_can_be_written_first(tmp_path: Path) -> None:
    assert way_of(example("units", tmp_path), "go test -json ./...").ecosystem == "go"
    assert way_of(example("todo", tmp_path), "npm test").ecosystem == "node"
    python = tmp_path / "py"
    (python / "tests").mkdir(parents=True)
    (python / "tests" / "test_a.py").write_text("def test_a():\n    pass\n")
    with pytest.raises(NoTest, match="not pytest, and the repository shows no sign of pytest"):
        way_of(python, "make test")
    (python / "tox.ini").write_text("[testenv]\ndeps = pytest\ncommands = pytest\n")
    assert way_of(python, "tox").ecosystem == "python"
    assert way_of(tmp_path / "rust", "cargo test --workspace").ecosystem == "rust"
    with pytest.raises(NoTest, match="cover pytest, go test, cargo test and Node's runners"):
        way_of(tmp_path / "java", "mvn -B test")
    with pytest.raises(NoTest, match="no tests to run"):
        way_of(python, None)


def test_a_build_stopped_by_the_new_test_counts_as_its_failure() -> None:
    broken = "the build failed: test/x.test.ts(5,8): error TS2339: Property 'remove' does not exist"
    stopped = TestRun("tsc -p . && node --test", 0, 1, 0, 0, exit_code=2, could_not_run=broken)
    assert fails_before("test/x.test.ts", stopped) is None
    elsewhere = "the build failed: src/todo.ts(1,1): error TS1005: ';' expected"
    other = TestRun("tsc -p . && node --test", 0, 1, 0, 0, exit_code=2, could_not_run=elsewhere)
    assert "did not run before the change (the build failed: src/todo.ts" in (
        fails_before("test/x.test.ts", other) or ""
    )


def test_a_rust_build_stopped_at_the_new_test_counts_as_its_failure_and_elsewhere_does_not() -> None:
    error = "the build failed: error[E0599]: no method named `perimeter` found (at {})"
    stopped = TestRun(
        "cargo test --test x", 0, 1, 0, 0, exit_code=101, could_not_run=error.format("tests/x.rs:9:7")
    )
    assert fails_before("tests/x.rs", stopped) is None
    other = TestRun(
        "cargo test --test x", 0, 1, 0, 0, exit_code=101, could_not_run=error.format("src/lib.rs:3:1")
    )
    assert "did not run before the change (the build failed" in (fails_before("tests/x.rs", other) or "")
    failed = TestRun("cargo test --test x", 0, 1, 0, 0, exit_code=101)  # compiled, and its test failed
    assert fails_before("tests/x.rs", failed) is None


# -- patchling edit --write-test on the examples -------------------------------------


def write_test_rule(text: str, fence: str) -> dict[str, Any]:
    return {"model": "tiny", "match": "Write the new test file", "reply": f"```{fence}\n{text}```\n"}


def edit_writing_test(repo: Path, tmp_path: Path, server: ScriptedModel, instruction: str) -> dict[str, Any]:
    config = write_config(tmp_path / "patchling.toml", server.url, tmp_path / "data", ("tiny",))
    args = ["edit", "--repo", str(repo), "--config", str(config), "--json", "--write-test", instruction]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


GO_NEW_TEST = """package units

import "testing"

func TestMilesToKilometresOfTen(t *testing.T) {
	if got := MilesToKilometres(10); got < 16.09 || got > 16.10 {
		t.Fatalf("MilesToKilometres(10) = %v, want 16.09344", got)
	}
}
"""

GO_PASSING_TEST = """package units

import "testing"

func TestCelsiusToFahrenheitOfZero(t *testing.T) {
	if got := CelsiusToFahrenheit(0); got != 32 {
		t.Fatalf("CelsiusToFahrenheit(0) = %v, want 32", got)
	}
}
"""


def needs_go() -> None:
    if shutil.which("go") is None:
        pytest.skip("go is not installed (`make system` installs golang-go)")


@pytest.mark.slow
def test_go_test_written_first_fails_before_passes_after_and_is_kept(
    model_server: ScriptedModel, tmp_path: Path
) -> None:
    needs_go()
    repo = example("units", tmp_path)
    source = (repo / UNITS_GO).read_text()
    model_server.script(
        write_test_rule(GO_NEW_TEST, "go"), plan(UNITS_GO), *answers("tiny", {UNITS_GO: source + MILES}, "go")
    )
    data = edit_writing_test(repo, tmp_path, model_server, "add MilesToKilometres")
    path = "add_milestokilometres_test.go"
    assert data["status"] == "verified", data["message"]
    assert data["evidence"]["new_test"] == path and data["evidence"]["level"] == "new_test"
    assert data["files_changed"] == [path, UNITS_GO]
    assert (repo / path).read_text() == GO_NEW_TEST and f"+++ b/{path}" in data["diff"]
    assert (data["tests"]["before"]["passed"], data["tests"]["after"]["passed"]) == (4, 5)
    # The model was asked for a Go test, shown the Go example fenced as Go.
    [asked] = [t for t in prompts_of(model_server, "tiny") if "Write the new test file" in t]
    assert f"Write the new test file {path}, in Go" in asked and "```go\npackage units" in asked


@pytest.mark.slow
def test_go_test_that_passes_before_the_change_is_discarded_with_a_note(
    model_server: ScriptedModel, tmp_path: Path
) -> None:
    needs_go()
    repo = example("units", tmp_path)
    source = (repo / UNITS_GO).read_text()
    # It tests what the code already does: no evidence for the change.
    passing = GO_PASSING_TEST
    model_server.script(
        write_test_rule(passing, "go"), plan(UNITS_GO), *answers("tiny", {UNITS_GO: source + MILES}, "go")
    )
    data = edit_writing_test(repo, tmp_path, model_server, "add MilesToKilometres")
    path = "add_milestokilometres_test.go"
    assert data["evidence"]["new_test"] is None
    assert any(
        f"({path}) passes before the change, so it proves nothing" in n for n in data["evidence"]["notes"]
    )
    assert data["files_changed"] == [UNITS_GO] and not (repo / path).exists()
    # The repository's own tests pass, no worse, but none runs the new function (go test -coverprofile).
    assert data["status"] == "unexercised", data["message"]
    assert f"of {UNITS_GO} are not exercised" in data["message"]


TS_NEW_TEST = """import { test } from "node:test";
import * as assert from "node:assert/strict";
import { TodoList } from "../src/todo";

test("a removed item is no longer pending", () => {
  const list = new TodoList();
  const item = list.add("one");
  list.remove(item.id);
  assert.deepEqual(list.pending(), []);
});
"""


@pytest.mark.slow
def test_typescript_test_written_first_fails_before_passes_after_and_is_kept(
    model_server: ScriptedModel, tmp_path: Path
) -> None:
    if shutil.which("node") is None or shutil.which("tsc") is None:
        pytest.skip("node and tsc are not installed (`make system` installs nodejs and node-typescript)")
    repo = example("todo", tmp_path)
    source = (repo / TODO_TS).read_text()
    change = {TODO_TS: source.rstrip().removesuffix("}") + REMOVE}
    model_server.script(
        write_test_rule(TS_NEW_TEST, "typescript"), plan(TODO_TS), *answers("tiny", change, "typescript")
    )
    data = edit_writing_test(repo, tmp_path, model_server, "add a remove method to the to-do list")
    path = "test/add-a-remove-method-to.test.ts"
    assert data["status"] == "verified", data["message"]
    assert data["evidence"]["new_test"] == path
    assert data["evidence"]["notes"] == ["coverage not measured for TypeScript"]  # no note on the test
    assert data["files_changed"] == [TODO_TS, path] and (repo / path).read_text() == TS_NEW_TEST
    # tsc stops at the new test before the change (no remove yet); after it, node --test runs it too.
    assert (data["tests"]["before"]["passed"], data["tests"]["after"]["passed"]) == (3, 4)
    [asked] = [t for t in prompts_of(model_server, "tiny") if "Write the new test file" in t]
    assert f"{path}, in TypeScript" in asked and "```typescript\nimport { test }" in asked


SHAPES_LIB = """/// A rectangle.
pub struct Rect {
    pub width: f64,
    pub height: f64,
}

impl Rect {
    pub fn area(&self) -> f64 {
        self.width * self.height
    }
}
"""
PERIMETER = """
impl Rect {
    pub fn perimeter(&self) -> f64 {
        2.0 * (self.width + self.height)
    }
}
"""
SHAPES_TEST = """use shapes::Rect;

#[test]
fn area_of_a_square() {
    assert_eq!(Rect { width: 2.0, height: 2.0 }.area(), 4.0);
}
"""
RUST_NEW_TEST = """use shapes::Rect;

#[test]
fn perimeter_of_a_rectangle() {
    assert_eq!(Rect { width: 2.0, height: 3.0 }.perimeter(), 10.0);
}
"""
CARGO_LOCK = """# This file is automatically @generated by Cargo.
version = 4

[[package]]
name = "shapes"
version = "0.1.0"
"""


def shapes_crate(root: Path, *, with_tests: bool = True) -> Path:
    crate(root, "shapes", 'edition = "2021"\n')
    (root / "src").mkdir()
    (root / "src" / "lib.rs").write_text(SHAPES_LIB)
    (root / "Cargo.lock").write_text(CARGO_LOCK)
    (root / ".gitignore").write_text("/target\n")
    if with_tests:
        (root / "tests" / "area.rs").write_text(SHAPES_TEST)
    make_git_repo(root)
    return root


def test_a_crate_without_integration_tests_gets_a_note_not_a_guess(tmp_path: Path) -> None:
    repo = shapes_crate(tmp_path / "shapes", with_tests=False)
    test, _usage, note = asyncio.run(
        draft(Tier(name="t", model="t"), repo, "cargo test", "add perimeter", "")
    )
    assert test is None
    assert (
        note
        == "no test written first: the repository has no Rust integration test (tests/*.rs) file to follow"
    )


@pytest.mark.slow
def test_rust_test_written_first_fails_before_passes_after_and_is_kept(
    model_server: ScriptedModel, tmp_path: Path
) -> None:
    if shutil.which("cargo") is None:
        pytest.skip("cargo is not installed (rustup or Debian's cargo provides it)")
    repo = shapes_crate(tmp_path / "shapes")
    model_server.script(
        write_test_rule(RUST_NEW_TEST, "rust"),
        plan("src/lib.rs"),
        *answers("tiny", {"src/lib.rs": SHAPES_LIB + PERIMETER}, "rust"),
    )
    data = edit_writing_test(repo, tmp_path, model_server, "add a perimeter method")
    path = "tests/add_a_perimeter_method.rs"
    assert data["status"] == "verified", data["message"]
    assert data["evidence"]["new_test"] == path and data["evidence"]["level"] == "new_test"
    assert data["files_changed"] == ["src/lib.rs", path] and (repo / path).read_text() == RUST_NEW_TEST
    # Before the change rustc stops at the new test (no perimeter yet); after it, cargo runs it too.
    assert (data["tests"]["before"]["passed"], data["tests"]["after"]["passed"]) == (1, 2)
    [asked] = [t for t in prompts_of(model_server, "tiny") if "Write the new test file" in t]
    assert f"Write the new test file {path}, in Rust" in asked and "```rust\nuse shapes::Rect;" in asked
