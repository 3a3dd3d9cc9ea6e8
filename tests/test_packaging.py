"""What `pip install .` gives: a wheel with the generated BAML client, whose
console script runs from a fresh environment.

Built offline (--no-build-isolation, with the project environment's
setuptools and baml-py) and installed without dependencies into a fresh venv
that sees the project environment's packages through a .pth file: the wheel's
own files are what gets imported, nothing is downloaded."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("patchling-*.whl")
    return built


def test_wheel_contains_the_generated_client(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "bot/baml_client/__init__.py" in names
    assert "bot/baml_client/async_client.py" in names
    assert any(name.endswith("licenses/LICENSE") for name in names)
    # The App manifest, the dashboard's pages and the chart library it serves, with its licence,
    # and the index's tag queries.
    packaged = ["app.yml", "templates/dashboard.html", "static/chart.umd.min.js"]
    packaged += ["static/chart.js.LICENSE.md", "queries/go.scm", "queries/typescript.scm"]
    for name in packaged:
        assert f"bot/{name}" in names


def test_installed_wheel_runs(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # The dependencies, from the project environment (a path, not a site dir:
    # its editable install of this project is not loaded).
    (site / "project-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    version = subprocess.run(
        [str(env_dir / "bin" / "patchling"), "--version"], cwd=tmp_path, capture_output=True, text=True
    )
    assert version.returncode == 0, version.stderr
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert version.stdout.strip() == f"patchling {project['version']}"
    where = subprocess.run(
        [str(python), "-c", "import bot.models, bot.baml_client as c; print(c.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(site)
