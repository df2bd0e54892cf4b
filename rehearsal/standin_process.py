"""Start the rehearsal's Snowflake stand-in in its own environment, and know when it serves.

The stand-in (`rehearsal/snowflake_standin.py`, fakesnow's server) runs with the python of
`.venv-standin`, which scripts/setup.sh installs from `rehearsal/snowflake_standin_env/uv.lock`:
fakesnow's pins (sqlglot, duckdb, snowflake-connector-python < 5) stay there and never hold
back the project's own environment. The project's modules come from the checkout (the child's
working folder), not from an install.

A stand-in that cannot serve says so in one line and exits before it listens (its self-test at
start-up); `wait_ready` turns that exit into `StandInFailed` with that line, in seconds, instead
of a connector retrying HTTP 500s for minutes.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
ENV_PROJECT = CHECKOUT / "rehearsal" / "snowflake_standin_env"
VENV = CHECKOUT / ".venv-standin"
# Another interpreter for the stand-in (e.g. `make upgrade-check`'s scratch copy of the project
# uses the checkout's `.venv-standin`).
PYTHON_VAR = "DATA_PIPELINES_STANDIN_PYTHON"
# The one line the stand-in prints when it cannot serve (see snowflake_standin.self_test).
CANNOT_SERVE = "Snowflake stand-in cannot serve"
_CANNOT_SERVE_LINE = re.compile(rf"^{CANNOT_SERVE}.*$", re.MULTILINE)


class StandInFailed(RuntimeError):
    """The stand-in is missing, exited, or never listened; the message's first line says why."""


def python() -> Path:
    """The stand-in environment's interpreter; refuses in one line if it is not installed."""
    configured = os.environ.get(PYTHON_VAR)
    path = Path(configured) if configured else VENV / "bin" / "python"
    if not path.exists():
        raise StandInFailed(
            f"{CANNOT_SERVE}: its environment {path} is missing; run scripts/setup.sh (installs "
            f"{ENV_PROJECT.relative_to(CHECKOUT)}/uv.lock into .venv-standin) or set {PYTHON_VAR}"
        )
    return path


def argv(port: int, *options: str) -> list[str]:
    """The command line of a stand-in on 127.0.0.1:`port` (`options`: its other flags)."""
    return [str(python()), "-m", "rehearsal.snowflake_standin", "--port", str(port), *options]


def cwd() -> Path:
    """The stand-in's working folder: the checkout, so `-m rehearsal...` finds the code."""
    return CHECKOUT


def _listening(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def cause_from_log(text: str) -> str:
    """The stand-in's own one-line cause, else the last non-empty line of its output."""
    if match := _CANNOT_SERVE_LINE.search(text):
        return match.group(0).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{CANNOT_SERVE}: it exited; last output: {lines[-1] if lines else '(none)'}"


def log_size(log: Path) -> int:
    """Where new output starts in `log` (logs are appended to across starts)."""
    return log.stat().st_size if log.exists() else 0


def wait_ready(
    port: int,
    exited: Callable[[], int | None],
    log: Path | None,
    timeout: float = 60.0,
    since: int = 0,
) -> None:
    """Until the stand-in listens on `port`; `exited()` is its exit code once it has ended
    (negative when unknown).

    Raises `StandInFailed` at once when it ends (the cause is its own line from `log`, read
    from byte `since`), or after `timeout` seconds without a listener.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = exited()
        if code is not None:
            text = ""
            if log and log.exists():
                with open(log, "rb") as handle:
                    handle.seek(since)
                    text = handle.read().decode(errors="replace")
            suffix = f" (exit {code})" if code >= 0 else ""
            raise StandInFailed(cause_from_log(text) + suffix)
        if _listening(port):
            return
        time.sleep(0.2)
    raise StandInFailed(f"{CANNOT_SERVE}: nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")


def start(
    port: int,
    options: Sequence[str],
    log: Path,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> subprocess.Popen[bytes]:
    """Start a stand-in (output to `log`) and return once it serves; `StandInFailed` if not."""
    since = log_size(log)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            argv(port, *options),
            cwd=cwd(),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_ready(port, process.poll, log, timeout, since)
    except BaseException:
        process.kill()
        process.wait(timeout=10)
        raise
    return process
