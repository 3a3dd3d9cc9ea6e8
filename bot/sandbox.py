"""Where repository code runs: a bubblewrap sandbox built for each command.

Everything that executes a repository's code (its setup command, its tests,
the uv build of its environment, which runs setup.py and build backends) goes
through `run`. The sandbox gets new user, pid, ipc, uts, cgroup and network
namespaces, dies with its parent, and starts a new session. Its file system is
built, not inherited: the system directories and a few files of /etc
read-only, the paths the caller names (the work tree, the environment) and a
private tmpfs for /tmp and HOME. Nothing else of the host is there: no data
directory, key file, `.env`, Patchling install or other job. Secrecy comes
from what is mounted, never from file modes (root mapped to another uid still
reads root's files).

Limits: wall clock (the whole sandbox is killed), CPU seconds, address space,
file size and the number of processes per command, and only the last
`output_bytes` of its output are kept. The process cap is RLIMIT_NPROC for an
unprivileged caller; the kernel ignores that limit for root, so a root caller
needs a writable pids cgroup, and without one the sandbox says it is
unavailable rather than run without a cap.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

SandboxMode = Literal["bwrap", "none"]
# When repository code may reach the network: during setup (and the environment build) only, never, always.
Network = Literal["setup", "none", "all"]

# Top-level system directories: read-only, or a symlink where the host has one (merged /usr).
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
# The few files of /etc that programs need: loader, time zone, name service, TLS roots, Python's own.
ETC_FILES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "nsswitch.conf",
    "host.conf",
    "gai.conf",
    "hosts",
    "services",
    "protocols",
    "alternatives",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "pki",
    "mime.types",
)
ETC_NETWORK_FILES = ("resolv.conf", "pip.conf")
SANDBOX_UID = 1000
SANDBOX_HOME = "/tmp/home"
# bwrap reports a command killed by signal N as exit status 128 + N.
_SIGNAL_EXIT = 128
_KILL_WAIT_S = 5.0
# bwrap's (or prlimit's) own words when the program cannot be started.
_EXEC_FAILED_RE = re.compile(
    r"\A(?:bwrap: execvp|prlimit: failed to execute) [^\n]*: "
    r"(No such file or directory|Permission denied)\n?\Z"
)


class SandboxUnavailable(Exception):
    """Repository code cannot run sandboxed here; the message says why."""


@dataclass(frozen=True)
class Limits:
    """Per command. Generous for a real test suite, small for a runaway one."""

    cpu_s: int = 900
    memory_bytes: int = 4 << 30  # address space of each process
    file_bytes: int = 1 << 30  # the largest file a command may write
    processes: int = 256
    output_bytes: int = 4_000_000  # the end of the output that is kept
    tmp_bytes: int = 512 << 20  # the tmpfs for /tmp and HOME


@dataclass(frozen=True)
class Sandbox:
    mode: SandboxMode = "bwrap"
    bwrap: str = "bwrap"
    limits: Limits = field(default_factory=Limits)
    # Never visible inside, even where they lie under a mounted directory.
    hidden: tuple[Path, ...] = ()

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    def unavailable(self) -> str | None:
        """Why this sandbox cannot run here, or None (always None when disabled)."""
        if not self.enabled:
            return None
        return _probe(self.bwrap)


@dataclass
class Outcome:
    exit_code: int | None  # None when the wall clock ran out
    timed_out: bool
    output: str
    note: str = ""  # a limit the command hit, for people


def patchling_paths() -> tuple[Path, ...]:
    """Patchling's own install: its package, and its virtual environment when
    it has one (without one, sys.prefix is the system's, e.g. /usr)."""
    import sys

    package = Path(__file__).resolve().parent
    if sys.prefix == sys.base_prefix:
        return (package,)
    return (package, Path(sys.prefix).resolve())


# -- probing ----------------------------------------------------------------------


def _probe_argv(bwrap: str) -> list[str]:
    return [bwrap, "--unshare-all", "--die-with-parent", *_system_mounts(), "--", "/bin/true"]


@functools.lru_cache(maxsize=8)
def _probe(bwrap: str) -> str | None:
    found = shutil.which(bwrap)
    if found is None:
        return f"bubblewrap (`{bwrap}`) is not installed"
    if os.geteuid() == 0 and _pids_cgroup_root() is None:
        return (
            "running as root, where the kernel does not apply RLIMIT_NPROC, and no writable pids cgroup"
            " caps the number of processes; run Patchling as an unprivileged user"
        )
    try:
        proc = subprocess.run(_probe_argv(found), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bubblewrap could not start: {exc}"
    if proc.returncode != 0:
        why = (proc.stderr or proc.stdout).strip().splitlines()
        return f"bubblewrap cannot create its namespaces here ({why[-1] if why else proc.returncode})"
    return None


# -- the file system --------------------------------------------------------------


def _system_mounts() -> list[str]:
    args: list[str] = []
    for name in SYSTEM_DIRS:
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    return args


def _etc_mounts(network: bool) -> list[str]:
    names = ETC_FILES + (ETC_NETWORK_FILES if network else ())
    found = [Path("/etc") / n for n in names] + sorted(Path("/etc").glob("python3*"))
    return [a for p in found if p.exists() for a in ("--ro-bind", str(p), str(p))]


def _identity_files(tmp: Path) -> list[str]:
    """A passwd and group naming only the sandbox's user: the host's stay unseen."""
    passwd = tmp / "passwd"
    passwd.write_text(f"sandbox:x:{SANDBOX_UID}:{SANDBOX_UID}::{SANDBOX_HOME}:/bin/sh\n")
    group = tmp / "group"
    group.write_text(f"sandbox:x:{SANDBOX_UID}:\n")
    return ["--ro-bind", str(passwd), "/etc/passwd", "--ro-bind", str(group), "/etc/group"]


def _under_mounts(path: Path, mounts: Sequence[Path]) -> bool:
    return any(path == m or path.is_relative_to(m) for m in mounts)


def _hide(hidden: Sequence[Path], mounted: Sequence[Path]) -> list[str]:
    """Cover each hidden path that a mounted directory would show: an empty
    tmpfs over a directory, /dev/null over a file."""
    args: list[str] = []
    for path in hidden:
        path = Path(os.path.realpath(path))
        if not _under_mounts(path, mounted) or not path.exists():
            continue
        args += ["--tmpfs", str(path)] if path.is_dir() else ["--ro-bind", "/dev/null", str(path)]
    return args


def bwrap_argv(
    sandbox: Sandbox,
    argv: Sequence[str],
    *,
    cwd: Path,
    tmp: Path,
    writable: Sequence[Path] = (),
    readable: Sequence[Path] = (),
    binds: Sequence[tuple[Path, str]] = (),
    writable_binds: Sequence[tuple[Path, str]] = (),
    network: bool = False,
) -> list[str]:
    """The bwrap command line that runs `argv` in `cwd`, seeing the system
    read-only, `readable` read-only, `writable` read-write (each at its own
    path), each (source, destination) of `binds` read-only and of
    `writable_binds` read-write, mounted last so they cover what lies there."""
    system = [p for p in (Path("/") / n for n in SYSTEM_DIRS) if p.is_dir() and not p.is_symlink()]
    readable = [Path(os.path.realpath(p)) for p in readable]
    writable = [Path(os.path.realpath(p)) for p in writable]
    args = [sandbox.bwrap, "--unshare-all", "--unshare-user", *(["--share-net"] if network else [])]
    args += ["--die-with-parent", "--new-session", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]
    args += ["--hostname", "sandbox", *_system_mounts(), *_etc_mounts(network), *_identity_files(tmp)]
    args += ["--proc", "/proc", "--dev", "/dev"]
    args += ["--size", str(sandbox.limits.tmp_bytes), "--tmpfs", "/tmp", "--dir", SANDBOX_HOME]
    for path in readable:
        args += ["--ro-bind", str(path), str(path)]
    args += _hide([*sandbox.hidden, *patchling_paths()], [*system, *readable])
    for path in writable:
        args += ["--bind", str(path), str(path)]
    for source, dest in writable_binds:
        args += ["--bind", str(source), dest]
    for source, dest in binds:
        args += ["--ro-bind", str(source), dest]
    args += ["--setenv", "HOME", SANDBOX_HOME, "--setenv", "USER", "sandbox"]
    for name in ("TMPDIR", "TMP", "TEMP"):
        args += ["--setenv", name, "/tmp"]
    return [*args, "--chdir", str(Path(os.path.realpath(cwd))), "--", *argv]


@contextlib.contextmanager
def _mount_points(binds: Sequence[tuple[Path, str]]) -> Iterator[None]:
    """Empty mount points for the bind destinations that do not exist yet (bwrap
    cannot make one under a read-only mount): a file for a file, else a
    directory; removed afterwards while still empty, so a run leaves the
    directories it was mounted into as it found them. A destination that
    exists as anything, a link included, is left alone."""
    made: list[Path] = []
    try:
        for source, dest in ((s, Path(d)) for s, d in binds):
            if not os.path.lexists(dest) and dest.parent.is_dir() and not dest.parent.is_symlink():
                try:
                    _make_mount_point(dest, file=source.is_file())
                except OSError:  # not ours to write (an unprivileged worker): bwrap then says why
                    continue
                made.append(dest)
        yield
    finally:
        for dest in reversed(made):
            _remove_if_empty(dest)


def _make_mount_point(dest: Path, *, file: bool) -> None:
    if file:
        dest.touch(exist_ok=False)
    else:
        dest.mkdir()


def _remove_if_empty(dest: Path) -> None:
    with contextlib.suppress(OSError):  # no longer empty: the run's own doing, kept
        if dest.is_dir() and not dest.is_symlink():
            dest.rmdir()
        elif dest.is_file() and not dest.is_symlink() and dest.stat().st_size == 0:
            dest.unlink()


# -- limits -----------------------------------------------------------------------


def _pids_cgroup_root() -> Path | None:
    """A directory where a child cgroup with a pids.max can be made, or None."""
    return _find_pids_cgroup()


@functools.lru_cache(maxsize=1)
def _find_pids_cgroup() -> Path | None:
    candidates: list[Path] = []
    try:
        own = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in own:
        _, controllers, path = line.split(":", 2)
        if "pids" in controllers.split(","):
            candidates.append(Path("/sys/fs/cgroup/pids") / path.lstrip("/"))
        elif controllers == "":
            candidates.append(Path("/sys/fs/cgroup") / path.lstrip("/"))
    for base in candidates:
        probe = base / f"patchling-probe-{uuid.uuid4().hex[:8]}"
        try:
            probe.mkdir()
        except OSError:
            continue
        usable = (probe / "pids.max").is_file()
        with contextlib.suppress(OSError):
            probe.rmdir()
        if usable:
            return base
    return None


class _ProcessCap:
    """The process limit of one command: a pids cgroup when there is one (the
    only cap that holds for root), else RLIMIT_NPROC above what this user
    already runs (the limit counts every task of the user, threads included)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.cgroup: Path | None = None
        base = _pids_cgroup_root()
        if base is not None:
            group = base / f"patchling-{uuid.uuid4().hex[:12]}"
            try:
                group.mkdir()
                (group / "pids.max").write_text(str(limit))
                self.cgroup = group
            except OSError:
                with contextlib.suppress(OSError):
                    group.rmdir()
        self.nproc = limit if self.cgroup is not None else _own_tasks() + limit

    def hit(self) -> bool:
        if self.cgroup is None:
            return False
        with contextlib.suppress(OSError, ValueError):
            for line in (self.cgroup / "pids.events").read_text().splitlines():
                name, _, count = line.partition(" ")
                if name == "max" and int(count) > 0:
                    return True
        return False

    def close(self) -> None:
        """Kill whatever is left in the cgroup, then remove it."""
        if self.cgroup is None:
            return
        for _ in range(50):
            try:
                pids = (self.cgroup / "cgroup.procs").read_text().split()
            except OSError:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            try:
                self.cgroup.rmdir()
                return
            except OSError:
                threading.Event().wait(0.05)


def _own_tasks() -> int:
    """This user's tasks, threads included: RLIMIT_NPROC counts each thread (a
    threaded worker's too), so counting processes alone would leave the
    sandbox fewer processes than its limit says."""
    uid = os.getuid()
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat(follow_symlinks=False).st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
    return count


# util-linux's prlimit sets the limits on itself, then execs the command.
PRLIMIT = "prlimit"
# Joins the cgroup named by $0 with the shell's own pid, then becomes "$@":
# builtins only, so nothing forks before the process cap holds.
_JOIN_CGROUP = 'echo $$ > "$0" && exec "$@"'


def limited_argv(argv: Sequence[str], limits: Limits, cap: _ProcessCap) -> list[str]:
    """`argv` started under its limits by exec wrappers, not a preexec_fn
    (which may deadlock the child of a threaded server such as ours)."""
    rlimits = [
        f"--cpu={limits.cpu_s}",
        f"--as={limits.memory_bytes}",
        f"--fsize={limits.file_bytes}",
        f"--nproc={cap.nproc}",
        "--core=0",
    ]
    join = ["/bin/sh", "-c", _JOIN_CGROUP, str(cap.cgroup / "cgroup.procs")] if cap.cgroup else []
    return [*join, PRLIMIT, *rlimits, "--", *argv]


# -- running ----------------------------------------------------------------------


class _Tail:
    """Reads a pipe to its end, keeping only the last `limit` bytes."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.total = 0
        self._stream = stream
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        # os.read: whatever the pipe holds now, without waiting to fill a buffer.
        while chunk := os.read(self._stream.fileno(), 65536):
            self.total += len(chunk)
            self.data += chunk
            if len(self.data) > 2 * self.limit:
                del self.data[: len(self.data) - self.limit]

    def text(self) -> str:
        # A process outside the sandbox may keep the pipe open: do not wait for it forever.
        self._thread.join(_KILL_WAIT_S)
        data = bytes(self.data[-self.limit :])
        return data.decode("utf-8", errors="replace")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _limit_note(code: int | None, limits: Limits, processes_hit: bool, tail: _Tail) -> str:
    notes = []
    if code is not None and code in (-signal.SIGXFSZ, _SIGNAL_EXIT + signal.SIGXFSZ):
        notes.append(f"a process was stopped for writing a file over {limits.file_bytes:,} bytes")
    if code is not None and code in (-signal.SIGXCPU, _SIGNAL_EXIT + signal.SIGXCPU):
        notes.append(f"a process was stopped after {limits.cpu_s}s of CPU time")
    if processes_hit:
        notes.append(f"the command hit the limit of {limits.processes} processes")
    if tail.total > limits.output_bytes:
        notes.append(f"the output ({tail.total:,} bytes) was cut to its last {limits.output_bytes:,} bytes")
    return "; ".join(notes)


def run(
    sandbox: Sandbox,
    argv: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str],
    timeout_s: float,
    writable: Sequence[Path] = (),
    readable: Sequence[Path] = (),
    binds: Sequence[tuple[Path, str]] = (),
    writable_binds: Sequence[tuple[Path, str]] = (),
    network: bool = False,
) -> Outcome:
    """Run `argv` in `sandbox` (see bwrap_argv) with its limits, at most
    `timeout_s` seconds. Raises SandboxUnavailable when it cannot run here."""
    reason = sandbox.unavailable()
    if reason is None and shutil.which(PRLIMIT) is None:
        reason = f"{PRLIMIT} (util-linux) is not installed, so the limits cannot be set"
    if reason is not None:
        raise SandboxUnavailable(reason)
    with (
        tempfile.TemporaryDirectory(prefix="patchling-sandbox-") as tmp,
        _mount_points([*writable_binds, *binds]),
    ):
        full = list(argv)
        if sandbox.enabled:
            full = bwrap_argv(
                sandbox,
                argv,
                cwd=cwd,
                tmp=Path(tmp),
                writable=writable,
                readable=readable,
                binds=binds,
                writable_binds=writable_binds,
                network=network,
            )
        cap = _ProcessCap(sandbox.limits.processes)
        try:
            outcome = _supervise(
                limited_argv(full, sandbox.limits, cap), cwd, env, timeout_s, sandbox.limits, cap
            )
        finally:
            cap.close()
    # As a shell would say it: 127 not found, 126 not executable.
    # bwrap exits 1 when it cannot start the program, prlimit 126 or 127.
    failed = _EXEC_FAILED_RE.match(outcome.output) if outcome.exit_code in (1, 126, 127) else None
    if failed is not None:
        outcome.exit_code = 127 if failed.group(1).startswith("No such") else 126
        outcome.output = f"{argv[0]}: {failed.group(1)}\n"
    return outcome


def _supervise(
    argv: list[str], cwd: Path, env: dict[str, str], timeout_s: float, limits: Limits, cap: _ProcessCap
) -> Outcome:
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: a timeout kills it all
        )
    except (FileNotFoundError, PermissionError) as exc:
        # As a shell would say it: 127 not found, 126 not executable.
        status = 127 if isinstance(exc, FileNotFoundError) else 126
        return Outcome(status, False, f"{argv[0]}: {exc.strerror}\n")
    assert proc.stdout is not None  # stdout=PIPE
    tail = _Tail(proc.stdout, limits.output_bytes)
    timed_out = False
    try:
        code: int | None = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        code, timed_out = None, True
    finally:
        # Background children too; bwrap's --die-with-parent takes the rest of the sandbox.
        _kill_group(proc)
        proc.wait()
    processes_hit = cap.hit()
    cap.close()
    output = tail.text()
    proc.stdout.close()
    return Outcome(code, timed_out, output, _limit_note(code, limits, processes_hit, tail))
