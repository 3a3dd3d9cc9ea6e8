"""Build hook: every build (wheel, sdist, editable) generates the BAML client
into bot/baml_client/ from baml_src/ first, so an installed Patchling always
has the client its prompts describe. The client is never committed: baml_src/
stays the only source, and no check is needed to keep two copies equal.

Metadata lives in pyproject.toml; baml-py (the pinned version) is a build
requirement there.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent
CLIENT_PACKAGE = "bot.baml_client"
# Runs baml-py's own command line in this interpreter (the build environment's),
# whatever is on PATH.
GENERATE = "import sys, baml_py; sys.argv = ['baml-cli', 'generate', '--from', 'baml_src']; " + (
    "sys.exit(baml_py.invoke_runtime_cli())"
)


def generate_client() -> None:
    subprocess.run([sys.executable, "-c", GENERATE], cwd=ROOT, check=True)


class BuildPyWithClient(build_py):
    def run(self) -> None:
        generate_client()
        # Found packages were listed before the client existed on a fresh checkout.
        if self.packages is not None and CLIENT_PACKAGE not in self.packages:
            self.packages.append(CLIENT_PACKAGE)
        super().run()
        # The App manifest stays at the top of the repository; a built package carries a
        # copy for setup mode (an editable install reads the checkout's own file).
        if not getattr(self, "editable_mode", False):
            target = Path(self.build_lib) / "bot"
            self.mkpath(str(target))
            self.copy_file(str(ROOT / "app.yml"), str(target / "app.yml"))


class SdistWithClient(sdist):
    def run(self) -> None:
        generate_client()
        super().run()


setup(cmdclass={"build_py": BuildPyWithClient, "sdist": SdistWithClient})
