"""The sandbox as the deployments use it: from an unprivileged user (uid 10001,
the image's), where the rest of the suite runs as root.

A driver runs as that uid in the worker's layout (see deploy/): a data
directory of its own (mode 0700: the checkout, the mirrors, the `.env` that
first-run setup writes, and the working directory), the App's key in a
secrets directory (0400, owned by the uid, as compose mounts it) and the
App's secrets in its environment (compose's env_file). It makes the sandbox
from its Settings and calls bot.verify.run_tests, as a worker does, and prints
what came back; the tests check it from both sides. The sandbox's user maps
to the worker's own uid here, so file modes hide nothing from it: only what
is mounted counts.

Needs root (to become the uid), setpriv, prlimit, bubblewrap, unprivileged
user namespaces, and a Python the uid can read; skipped with the reason
otherwise.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

UID = 10001
PROJECT = Path(__file__).resolve().parent.parent
WEBHOOK_SECRET = "whsec_UNPRIVILEGED_SECRET_31"
KEY_TEXT = "-----BEGIN RSA PRIVATE KEY-----\nUNPRIVILEGED-KEY-MATERIAL\n-----END RSA PRIVATE KEY-----\n"
# The process cap of the fork test, and the idle threads its driver holds meanwhile.
PROCESSES = 48
THREADS = 30
# The sandbox's own tasks within the cap: bwrap (twice), the program, the output reader.
OWN_TASKS = 8

# A hostile "test suite": BLOCKED or LEAK for each attempt on the worker's secrets.
PROBE = r"""
import glob, os, socket, sys

parent, key, env_file, data, port, secret = sys.argv[1:7]

def attempt(name, action):
    try:
        got = action()
    except OSError as exc:
        print(f"BLOCKED {name}: {type(exc).__name__}")
        return
    print(f"LEAK {name}: {str(got)[:200]!r}" if got else f"BLOCKED {name}: nothing")

def environs():
    found = []
    for path in glob.glob("/proc/*/environ"):
        try:
            if secret in open(path, "rb").read().decode(errors="replace"):
                found.append(path)
        except OSError:
            pass
    return found

def plant():
    # May land on the sandbox's own tmpfs: the host checks its data directory afterwards.
    try:
        open(os.path.join(data, "planted"), "w").write("x")
    except OSError:
        pass

attempt("key", lambda: open(key).read())
attempt("env-file", lambda: open(env_file).read())
attempt("data", lambda: {".env", "mirrors"} & set(os.listdir(data)))
attempt("parent-environ", lambda: open(f"/proc/{parent}/environ").read())
attempt("parent-cwd", lambda: open(f"/proc/{parent}/cwd/.env").read())
attempt("parent-root", lambda: open(f"/proc/{parent}/root{key}").read())
attempt("environs", environs)
plant()
open("made.txt", "w").write("made\n")
try:
    socket.create_connection(("127.0.0.1", int(port)), timeout=2).close()
    print("NETWORK connected")
except OSError as exc:
    print(f"NETWORK {type(exc).__name__}")
"""
ATTEMPTS = {"key", "env-file", "data", "parent-environ", "parent-cwd", "parent-root", "environs"}

# Forks until the process cap stops it; the children wait on a pipe and end with it.
FORKS = r"""
import os
r, w = os.pipe()
n = 0
for _ in range(200):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    n += 1
os.close(w)
print("forked", n)
"""

# Runs as the uid: the sandbox the worker's Settings make, used as bot.verify uses it.
DRIVER = r"""
import json, os, site, sys, threading
args = json.loads(sys.argv[1])
if args["site"]:
    site.addsitedir(args["site"])
sys.path.insert(0, args["project"])
from pathlib import Path
from bot.config import Settings
from bot.sandbox import Limits, Sandbox, run
from bot.verify import run_tests

sandbox = Settings().make_sandbox()
checkout = Path(args["checkout"])

def report(ran):
    keys = ("exit_code", "timed_out", "could_not_run", "output_tail")
    return {key: getattr(ran, key) for key in keys}

probe = " ".join(["python3 probe.py", str(os.getpid()), *args["probe"]])
out = {"uid": os.getuid(), "hidden": [str(p) for p in sandbox.hidden]}
out["offline"] = report(run_tests(checkout, probe, 60, sandbox=sandbox, network="none"))
out["online"] = report(run_tests(checkout, probe, 60, sandbox=sandbox, network="all"))
out["timeout"] = report(run_tests(checkout, args["sleeper"], 1, sandbox=sandbox))
stop = threading.Event()
for _ in range(args["threads"]):
    threading.Thread(target=stop.wait, daemon=True).start()
forks = run(
    Sandbox(limits=Limits(processes=args["processes"])), ["python3", "forks.py"], cwd=checkout,
    env={"PATH": "/usr/bin:/bin"}, timeout_s=60, writable=[checkout],
)
stop.set()
out["forks"] = {"exit_code": forks.exit_code, "output": forks.output}
print(json.dumps(out))
"""


def _as_uid(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    become = ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups"]
    return subprocess.run([*become, *argv], capture_output=True, text=True, timeout=120, **kwargs)


def _readable(*paths: Path) -> bool:
    """Whether the uid can read every path (and so traverse every directory above it)."""
    check = 'for p; do [ -r "$p" ] || exit 1; done'
    return _as_uid(["/bin/sh", "-c", check, "sh", *map(str, paths)], cwd="/").returncode == 0


def _interpreter() -> tuple[str, str]:
    """The Python the driver runs with, and the site-packages it adds: the
    venv's own when the uid can read it (as in the image, where it lives in
    /opt and /usr/local); else the system's Python of the same version with
    the venv's packages, when the venv's base interpreter lies under a
    directory only root may enter (e.g. pyenv's under /root)."""
    purelib = Path(sysconfig.get_path("purelib"))
    needed = (purelib, PROJECT / "bot" / "__init__.py")
    own = Path(os.path.realpath(sys.executable))
    stdlib = Path(sysconfig.get_path("stdlib")) / "os.py"
    if _readable(own, stdlib, *needed):
        return sys.executable, ""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(version, path="/usr/local/bin:/usr/bin")
    if system is not None and _readable(Path(os.path.realpath(system)), *needed):
        return system, str(purelib)
    pytest.skip(f"uid {UID} can read neither the venv's Python ({own}) nor a system {version} with the venv")


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root, to run the driver as an unprivileged uid"
    missing = [p for p in ("setpriv", "bwrap", "prlimit") if shutil.which(p) is None]
    if missing:
        return f"{', '.join(missing)} not installed"
    probe = _as_uid(["bwrap", "--unshare-all", "--ro-bind", "/", "/", "--proc", "/proc", "true"], cwd="/")
    if probe.returncode != 0:
        return f"bubblewrap cannot make namespaces as uid {UID}: {probe.stderr.strip()}"
    return None


def _own(path: Path, mode: int) -> None:
    os.chown(path, UID, UID)
    path.chmod(mode)


def _layout(base: Path) -> dict[str, Path]:
    """The worker's files: the data directory (0700) with the checkout, the
    mirrors and `.env`; the key (0400) in a secrets directory; all the uid's."""
    data, secrets = base / "data", base / "secrets"
    checkout = data / "work" / "job-1" / "repo"
    (data / "mirrors" / "other.git").mkdir(parents=True)
    checkout.mkdir(parents=True)
    secrets.mkdir()
    (data / ".env").write_text(f"GITHUB_WEBHOOK_SECRET={WEBHOOK_SECRET}\n")
    (secrets / "github-private-key").write_text(KEY_TEXT)  # compose's /run/secrets
    (checkout / "probe.py").write_text(PROBE)
    (checkout / "forks.py").write_text(FORKS)
    (base / "driver.py").write_text(DRIVER)
    for path in [data, *data.rglob("*")]:
        _own(path, 0o700 if path.is_dir() else 0o600)
    key = secrets / "github-private-key"
    _own(key, 0o400)
    base.chmod(0o755)  # pytest's tmp_path lies under a root-only directory
    return {"data": data, "key": key, "checkout": checkout, "driver": base / "driver.py"}


def _drive(paths: dict[str, Path], port: int, sleeper: str) -> dict[str, Any]:
    python, site_dir = _interpreter()
    probe = [str(paths["key"]), str(paths["data"] / ".env"), str(paths["data"]), str(port), WEBHOOK_SECRET]
    args = {
        "site": site_dir,
        "project": str(PROJECT),
        "checkout": str(paths["checkout"]),
        "probe": probe,
        "sleeper": sleeper,
        "threads": THREADS,
        "processes": PROCESSES,
    }
    # The worker's environment as compose gives it: HOME and cwd the data directory.
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(paths["data"]),
        "PATCHLING_DATA_DIR": str(paths["data"]),
        "GITHUB_PRIVATE_KEY_PATH": str(paths["key"]),
        "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    driven = _as_uid([python, str(paths["driver"]), json.dumps(args)], cwd=paths["data"], env=env)
    assert driven.returncode == 0, driven.stderr
    result: dict[str, Any] = json.loads(driven.stdout.splitlines()[-1])
    return result


def _processes_with(marker: bytes) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker in cmdline.read_bytes():
                found.append(cmdline.parent.name)
        except OSError:
            continue
    return found


@pytest.fixture(scope="module")
def driven() -> Iterator[dict[str, Any]]:
    """One driver run for the module (a few seconds): its report, and the host's paths."""
    reason = _skip_reason()
    if reason is not None:
        pytest.skip(reason)
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # A world-traversable place the uid can reach; removed afterwards.
    base = Path(tempfile.mkdtemp(prefix="patchling-unprivileged-", dir="/tmp"))
    marker = f"86400.{uuid.uuid4().int % 10**9}"
    try:
        paths = _layout(base)
        sleeper = f"setsid sleep {marker} & sleep {marker}"
        result = _drive(paths, server.server_address[1], sleeper)
        yield {"report": result, "marker": marker, **paths}
    finally:
        server.shutdown()
        for pid in _processes_with(f"sleep\0{marker}".encode()):  # only if the timeout failed
            subprocess.run(["kill", "-9", pid], check=False)
        shutil.rmtree(base)


def _blocked(output: str) -> set[str]:
    return {line.split()[1].rstrip(":") for line in output.splitlines() if line.startswith("BLOCKED ")}


def test_the_driver_ran_as_the_unprivileged_uid(driven: dict[str, Any]) -> None:
    assert driven["report"]["uid"] == UID
    assert str(driven["data"]) in driven["report"]["hidden"]


def test_the_tests_run_and_their_output_and_exit_code_come_back(driven: dict[str, Any]) -> None:
    offline = driven["report"]["offline"]
    assert offline["could_not_run"] is None and offline["exit_code"] == 0, offline
    assert "NETWORK" in offline["output_tail"]


def test_the_checkout_is_writable_as_the_uid_and_the_data_directory_is_not(driven: dict[str, Any]) -> None:
    made = driven["checkout"] / "made.txt"
    assert made.read_text() == "made\n" and made.stat().st_uid == UID
    assert not (driven["data"] / "planted").exists()
    assert (driven["data"] / ".env").read_text() == f"GITHUB_WEBHOOK_SECRET={WEBHOOK_SECRET}\n"


def test_the_key_env_file_and_the_workers_proc_stay_out_of_reach(driven: dict[str, Any]) -> None:
    for name in ("offline", "online"):
        output = driven["report"][name]["output_tail"]
        assert "LEAK" not in output and _blocked(output) == ATTEMPTS, output
        assert WEBHOOK_SECRET not in output and "KEY-MATERIAL" not in output
    assert driven["key"].read_text() == KEY_TEXT


def test_the_network_is_off_unless_asked(driven: dict[str, Any]) -> None:
    assert "NETWORK connected" not in driven["report"]["offline"]["output_tail"]
    assert "NETWORK connected" in driven["report"]["online"]["output_tail"]


def test_the_timeout_kills_the_whole_sandbox(driven: dict[str, Any]) -> None:
    timed = driven["report"]["timeout"]
    assert timed["timed_out"] and timed["exit_code"] is None
    # Even the process in a session of its own: the pid namespace goes with bwrap.
    # Its end is asynchronous (the namespace's init is killed, then the rest), so wait for it.
    marker = f"sleep\0{driven['marker']}".encode()
    for _ in range(100):
        if not _processes_with(marker):
            break
        time.sleep(0.1)
    assert not _processes_with(marker)


def test_a_threaded_worker_leaves_the_sandbox_its_whole_process_cap(driven: dict[str, Any]) -> None:
    # RLIMIT_NPROC counts the driver's idle threads too: the cap is set above them.
    forks = driven["report"]["forks"]
    words = forks["output"].split()
    assert forks["exit_code"] == 0 and words[:1] == ["forked"], forks
    assert PROCESSES - OWN_TASKS <= int(words[1]) < PROCESSES
