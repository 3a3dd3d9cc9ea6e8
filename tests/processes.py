"""Test servers that run as processes of their own on loopback (the scripted
model, the fake GitHub): a free port, a start that waits until the server
answers, and a stop."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx

START_TIMEOUT_S = 20.0


def stop_gracefully(proc: subprocess.Popen[bytes] | None, timeout_s: float = 30) -> None:
    """SIGTERM, as a service manager stops Patchling; SIGKILL if it has not ended in time."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LoopbackProcess:
    """`python -m MODULE --port N ...` and its address; `probe` is a path that
    answers 200 once the server is up."""

    module = ""
    probe = "/healthz"

    def __init__(self) -> None:
        self.port = free_port()
        self.root = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def launch(self, *args: str) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", self.module, "--port", str(self.port), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.root}{self.probe}", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.module} did not start")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
            self._proc = None
