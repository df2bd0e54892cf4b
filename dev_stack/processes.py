"""Background services of the local stack: start once, find again, stop cleanly.

Each service is one process group with a pid file and a log file under the data folder, so
`up` run twice reuses what is running and `down` stops exactly what `up` started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from pipelines.environment import data_dir


def run_dir() -> Path:
    path = data_dir() / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def log_dir() -> Path:
    path = data_dir() / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def pid_file(name: str) -> Path:
    return run_dir() / f"{name}.pid"


def log_file(name: str) -> Path:
    return log_dir() / f"{name}.log"


def running_pid(name: str) -> int | None:
    """The pid of service `name` if its process is alive, else None (stale files are removed)."""
    path = pid_file(name)
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        path.unlink(missing_ok=True)
        return None
    except PermissionError:
        return pid
    # a zombie (exited, not yet reaped) is not running
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except (FileNotFoundError, IndexError):
        return pid
    if state == "Z":
        path.unlink(missing_ok=True)
        return None
    return pid


def start(name: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path | None = None) -> int:
    """Start `argv` in its own process group, detached, logging to `logs/<name>.log`."""
    existing = running_pid(name)
    if existing:
        return existing
    log = open(log_file(name), "ab")  # noqa: SIM115 - handed to the child, closed below
    try:
        process = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env),
            cwd=str(cwd) if cwd else None,
            start_new_session=True,
        )
    finally:
        log.close()
    pid_file(name).write_text(str(process.pid))
    return process.pid


def stop(name: str, timeout: float = 20.0) -> bool:
    """SIGTERM the service's process group, then SIGKILL what is left. True if it was running."""
    pid = running_pid(name)
    if pid is None:
        return False
    # Prefect's worker wants a second signal before it exits, so repeat TERM, then KILL.
    deadline = time.monotonic() + timeout
    signals = [signal.SIGTERM, signal.SIGTERM]
    while time.monotonic() < deadline:
        if signals:
            try:
                os.killpg(pid, signals.pop(0))
            except ProcessLookupError:
                break
        time.sleep(0.5)
        if running_pid(name) is None:
            break
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    pid_file(name).unlink(missing_ok=True)
    return True


def stop_group(
    process: subprocess.Popen, first: signal.Signals = signal.SIGTERM, timeout: float = 30.0
) -> None:
    """Signal a child started with `start_new_session=True`, then SIGKILL its group if it
    has not exited within `timeout` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, first)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def choose_port(name: str, preferred: int) -> int:
    """The port service `name` used last time, else `preferred` if free, else any free port."""
    remembered = run_dir() / f"{name}.port"
    if remembered.exists():
        port = int(remembered.read_text())
        if running_pid(name) or port_is_free(port):
            return port
    port = preferred if port_is_free(preferred) else free_port()
    remembered.write_text(str(port))
    return port


def wait_until(
    check: Callable[[], bool], what: str, timeout: float, log: Path | None = None
) -> None:
    """Poll `check` until it is true; on timeout raise with the tail of the service log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    tail = ""
    if log and log.exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
    raise TimeoutError(f"{what} was not ready after {timeout:.0f}s. Last log lines:\n{tail}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # loopback only
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError):
        return False
