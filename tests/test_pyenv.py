"""The repository's own test environment: real uv, real pytest runs."""

from __future__ import annotations

import importlib.util
import shutil
import textwrap
from pathlib import Path

import pytest

from bot.pyenv import EnvError, ensure_env, env_key, install_plan, needs_env, scope_cache
from bot.verify import default_test_command, run_tests
from tests.conftest import CALCULATOR


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


# A src-layout project named like a package Patchling's own environment has.
SHADOW = {
    "pyproject.toml": '[project]\nname = "requests"\nversion = "0"\n',
    "src/requests/__init__.py": 'ORIGIN = "checkout"\n',
    "src/requests/sessions.py": "class Session:\n    pass\n",
    "tests/test_origin.py": """
        import requests
        from requests.sessions import Session


        def test_the_checkout_is_tested():
            assert requests.ORIGIN == "checkout"
            assert Session
        """,
}


@pytest.mark.slow
def test_tests_import_the_checkout_not_patchlings_copy(tmp_path: Path, shared_data_dir: Path) -> None:
    assert importlib.util.find_spec("requests") is not None  # the trap: Patchling has its own requests
    root = write(tmp_path / "repo", SHADOW)
    command = default_test_command(root)
    assert command is not None
    env = ensure_env(root, shared_data_dir / "envs")
    run = run_tests(root, command, 120, pyenv=env)
    assert (run.passed, run.failed, run.could_not_run) == (1, 0, None), run.output_tail

    # The reported case: the edit lost Session. Importing Patchling's copy hid it.
    (root / "src/requests/sessions.py").write_text('"""Sessions."""\n')
    broken = run_tests(root, command, 120, pyenv=ensure_env(root, shared_data_dir / "envs"))
    assert broken.could_not_run is not None and not broken.ok
    assert "cannot import name 'Session'" in broken.could_not_run
    assert broken.summary().startswith("tests could not run: collection errors")


@pytest.mark.slow
def test_an_environment_is_built_once_and_reused(tmp_path: Path, shared_data_dir: Path) -> None:
    envs = shared_data_dir / "envs"
    root = write(tmp_path / "repo", {"pyproject.toml": '[project]\nname = "solo"\nversion = "0"\n'})
    first = ensure_env(root, envs, setup_command="true")
    again = ensure_env(root, envs, setup_command="true")
    assert not first.reused and again.reused and again.path == first.path
    assert first.installed == ["pyproject.toml", "pytest", "coverage"]
    assert first.path.parent == envs and not first.path.is_relative_to(root)
    assert [p.name for p in envs.iterdir() if p.name.startswith(".build-")] == []
    assert (first.bin_dir / "pytest").is_file()
    # The setup command runs in the environment too, never in Patchling's.
    setup = "python -c \"import sys; open('prefix.txt', 'w').write(sys.prefix)\""
    run = run_tests(root, "true", 60, setup_command=setup, pyenv=again)
    assert run.ok and (root / "prefix.txt").read_text() == str(first.path)
    data = first.to_json()
    assert set(data) == {"key", "installed", "seconds", "reused"} and str(envs) not in str(data)


@pytest.mark.slow
def test_a_cached_environment_builds_without_the_network(tmp_path: Path, shared_data_dir: Path) -> None:
    root = write(tmp_path / "repo", {"pyproject.toml": '[project]\nname = "solo"\nversion = "0"\n'})
    envs = shared_data_dir / "envs"
    first = ensure_env(root, envs)  # fills this scope's uv cache, if anything was missing
    shutil.rmtree(first.path)
    fresh = ensure_env(root, envs, network="none")  # a new environment, from the cache alone
    assert not fresh.reused and (fresh.bin_dir / "pytest").is_file()


def test_each_repository_has_its_own_environment_and_cache(tmp_path: Path) -> None:
    root = write(tmp_path / "repo", {"pyproject.toml": '[project]\nname = "solo"\nversion = "0"\n'})
    # A setup command writes into the environment: two repositories never share one.
    assert env_key(root, "pip install -e .", "a/one") != env_key(root, "pip install -e .", "b/two")
    assert scope_cache(tmp_path, "a/one") != scope_cache(tmp_path, "b/two")


@pytest.mark.slow
def test_requirements_files_are_installed(tmp_path: Path, shared_data_dir: Path) -> None:
    root = write(
        tmp_path / "repo",
        {
            "setup.py": "from setuptools import setup\nsetup(name='app', version='0')\n",
            "requirements-dev.txt": "./vendor/helper\n",
            "vendor/helper/pyproject.toml": """
                [build-system]
                requires = ["setuptools>=61"]
                build-backend = "setuptools.build_meta"

                [project]
                name = "helper-pkg"
                version = "1.0"
                """,
            "vendor/helper/helper_pkg/__init__.py": "VALUE = 1\n",
            "tests/test_helper.py": "import helper_pkg\n\ndef test_it():\n    assert helper_pkg.VALUE\n",
        },
    )
    env = ensure_env(root, shared_data_dir / "envs")
    assert env.installed == ["setup.py", "requirements-dev.txt", "pytest", "coverage"]
    run = run_tests(root, "python -m pytest -q tests", 120, pyenv=env)
    assert (run.passed, run.could_not_run) == (1, None), run.output_tail


def test_a_failed_build_leaves_nothing_behind(tmp_path: Path) -> None:
    root = write(tmp_path / "repo", {"requirements.txt": "./no-such-directory\n", "test_x.py": ""})
    envs = tmp_path / "envs"
    with pytest.raises(EnvError, match="failed"):
        ensure_env(root, envs)
    # Only the repository's uv cache stays (by design), never a half-built environment.
    assert sorted(p.name for p in envs.iterdir() if not p.name.endswith((".lock", ".use"))) == [".uv-cache"]


def test_the_key_follows_the_dependency_files(tmp_path: Path) -> None:
    root = write(tmp_path / "repo", {"pyproject.toml": '[project]\nname = "a"\nversion = "0"\n'})
    key = env_key(root, None)
    assert env_key(root, None) == key
    assert env_key(root, "pip install -e .") != key
    (root / "README.md").write_text("not a dependency file\n")
    assert env_key(root, None) == key
    (root / "requirements-dev.txt").write_text("pytest\n")
    assert env_key(root, None) != key


def test_what_is_installed(tmp_path: Path) -> None:
    flask_like = write(
        tmp_path / "flask",
        {
            "pyproject.toml": """
                [project]
                name = "flask"
                version = "3"
                dependencies = ["werkzeug"]
                [project.optional-dependencies]
                async = ["asgiref"]
                dotenv = ["python-dotenv"]
                """,
            "requirements/tests.txt": "pytest\n",
            "requirements/tests-min.txt": "werkzeug==3.0.0\n",
            "requirements/docs.txt": "sphinx\n",
            "requirements/dev.txt": "tox\n",
        },
    )
    assert install_plan(flask_like) == (
        ["-r", "pyproject.toml", "-r", "requirements/tests.txt", "pytest", "coverage"],
        ["pyproject.toml", "requirements/tests.txt", "pytest", "coverage"],
    )
    extras = write(
        tmp_path / "extras",
        {
            "pyproject.toml": """
                [project]
                name = "x"
                version = "0"
                [project.optional-dependencies]
                dev = ["ruff"]
                test = ["hypothesis"]
                """,
            "requirements.txt": "attrs\n",
        },
    )
    assert install_plan(extras)[0] == [
        *("-r", "pyproject.toml", "--extra", "test", "--extra", "dev"),
        *("-r", "requirements.txt", "pytest", "coverage"),
    ]
    # A pyproject.toml holding only tool settings is no project to install.
    tools_only = write(tmp_path / "tools", {"pyproject.toml": "[tool.ruff]\nline-length = 100\n"})
    assert install_plan(tools_only)[0] == ["pytest", "coverage"]


def test_which_commands_need_the_environment(tmp_path: Path) -> None:
    plain = write(tmp_path / "plain", {"notes.txt": "one\n"})
    assert not needs_env(CALCULATOR, ["true"])
    assert not needs_env(CALCULATOR, ['touch "$HOME/ready"', 'test -f "$HOME/ready" && echo ok'])
    assert needs_env(CALCULATOR, ["make test"])
    assert needs_env(CALCULATOR, [None, "FOO=1 python -m pytest -q"])
    assert not needs_env(plain, ["make test"])
    assert needs_env(plain, ["true && python check.py"])
