"""Running the app's server from another program (the browser benchmark, sharing, the browser
tests): a free loopback port, the health check, and a clean stop."""
from __future__ import annotations

import socket
import subprocess
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str, timeout: float = 5) -> bool:
    """Streamlit answers its health check at ``url``."""
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=timeout) as resp:
            return resp.status == 200
    except OSError:
        return False


def stop(proc: subprocess.Popen | None, timeout: float = 15) -> None:
    """Terminate, wait, kill if it will not go."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)
